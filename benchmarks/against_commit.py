"""The demo (or any config) run by this tree's code and by an earlier commit's, one after
the other on the same machine: wall time of each and their ratio, and whether the two
results.csv are byte-identical (a refactor must keep every number).

Usage: python benchmarks/against_commit.py COMMIT [--config CONFIG] [--set KEY=VALUE ...] [--repeats N]

The earlier commit is checked out into a temporary git worktree; both runs use this
Python (its installed dependencies) with PYTHONPATH set to the tree's src/, each into a
fresh run folder, alternating when repeated so that a machine busy for a while slows
both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(src: Path, out: Path, config: str | None, sets: list[str]) -> float:
    command = ["run", config] if config else ["demo"]
    for s in sets:
        command += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ouroboros", *command, "--out", str(out), "--quiet"], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"error: the run with {src} failed:\n{proc.stderr[-2000:]}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the earlier commit (e.g. 640b760)")
    parser.add_argument("--config", help="a config to run instead of the demo")
    parser.add_argument("--set", action="append", default=[], help="override, as for ouroboros run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.commit],
                       check=True)
        try:
            walls: dict[str, list[float]] = {"base": [], "now": []}
            results: dict[str, bytes] = {}
            for i in range(args.repeats):
                for name, src in (("base", base / "src"), ("now", REPO / "src")):
                    out = tmp / f"{name}-{i}"
                    walls[name].append(run(src, out, args.config, args.set))
                    csv = (out / "results.csv").read_bytes()
                    if results.setdefault(name, csv) != csv:
                        sys.exit(f"error: two runs of {name} gave different results.csv")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    print(f"{'code':<24}{'runs':>5}{'median wall s':>15}{'ratio':>8}")
    ref = statistics.median(walls["base"])
    for name, label in (("base", f"commit {args.commit}"), ("now", "this tree")):
        med = statistics.median(walls[name])
        print(f"{label:<24}{len(walls[name]):>5}{med:>15.1f}{med / ref:>8.3f}")
    same = results["base"] == results["now"]
    print(f"results.csv byte-identical: {'yes' if same else 'NO'} ({len(results['now'])} bytes)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
