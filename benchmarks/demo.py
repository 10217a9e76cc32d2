"""Wall time of a whole study in a fresh run folder, and time per stage kind.

Usage: python benchmarks/demo.py [--keep DIR] [--config CONFIG --target SECONDS] [-- extra args]
Default: `ouroboros demo`, target under 300 s on a 2-core CPU machine.
With --config, `ouroboros run CONFIG`; e.g. the contamination study:
python benchmarks/demo.py --config configs/contamination-digits.yaml --target 600
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="run folder to keep (default: a temporary one)")
    parser.add_argument("--config", help="time `ouroboros run CONFIG` instead of the demo")
    parser.add_argument("--target", type=float, default=300.0, help="target wall time in seconds (default 300)")
    parser.add_argument("extra", nargs="*", help="extra arguments for ouroboros")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "demo"
        if out.exists() and any(out.iterdir()):
            print(f"error: {out} is not empty; the benchmark needs a fresh run folder", file=sys.stderr)
            return 2
        load_before, cpu_before = os.getloadavg()[0], os.times()
        start = time.perf_counter()
        command = ["run", args.config] if args.config else ["demo"]
        proc = subprocess.run([sys.executable, "-m", "ouroboros", *command, "--out", str(out), "--quiet", *args.extra])
        wall = time.perf_counter() - start
        cpu_after = os.times()
        cpu = (cpu_after.children_user - cpu_before.children_user) + (cpu_after.children_system -
                                                                      cpu_before.children_system)
        if proc.returncode:
            return proc.returncode
        timings = json.loads((out / "timings.json").read_text())

    by_kind: dict[str, list[float]] = defaultdict(list)
    for t in timings:
        by_kind[t["kind"]].append(t["seconds"])
    busy = sum(sum(v) for v in by_kind.values())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"{'stage kind':<12}{'count':>7}{'total s':>10}{'mean s':>9}{'max s':>8}")
    for kind in sorted(by_kind, key=lambda k: -sum(by_kind[k])):
        v = by_kind[kind]
        if v:
            print(f"{kind:<12}{len(v):>7}{sum(v):>10.1f}{sum(v) / len(v):>9.2f}{max(v):>8.2f}")
    print(f"{'stage sum':<12}{sum(len(v) for v in by_kind.values()):>7}{busy:>10.1f}")
    print(f"{'wall':<12}{'':>7}{wall:>10.1f}   (target < {args.target:g} s; parallel speed-up {busy / wall:.2f}x "
          "incl. start-up)")
    print(f"{'cpu':<12}{'':>7}{cpu:>10.1f}   (the study's processes, user + system; the wall time with the "
          f"machine to itself is about cpu / {os.cpu_count()} at best)")
    print(f"load average: {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          f"(above {os.cpu_count()}: other work shared the cores and the wall time is not a quiet measurement)")
    return 0 if wall < args.target else 1


if __name__ == "__main__":
    sys.exit(main())
