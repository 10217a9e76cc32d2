"""Wall time of one study grid with the local executor and with Ray on this machine.

Usage: python benchmarks/executors.py [--full] [--ray-address ADDR] [--set KEY=VALUE ...]

Runs the grid twice in fresh run folders, in this process: `executor.kind: local`
(worker processes, one per core) and `executor.kind: ray` (a local Ray instance with
the same number of CPUs, or the cluster at --ray-address), and checks that both write
the same results.csv. Prints the wall time of each, Ray's overhead (goal: within 10%
of local on 2 cores), Ray's start-up (joining or starting Ray and the
run-folder check on every node) and the per-stage scheduling latency:

- round trip: an empty Ray task with a stage's resources, submitted and awaited one at
  a time (what Ray adds to every stage when a CPU is free);
- in the run: per stage, the driver's submit-to-result time less the stage's own run
  time (round trip plus any wait for a free CPU).

Default grid: the demo shrunk (2 guidance x 2 seeds x 3 generations, 200 training
steps: 40 stages); --full: the demo as `ouroboros demo` runs it (9 generations, 3
guidance, 2 seeds; about 200 s per executor on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

SMALL = ["loop.generations=3", "loop.guidance=[1.0,0.0]", "loop.seeds=[0,1]", "generator.train_steps=200",
         "classifier.epochs=5"]


def run_study(kind: str, sets: list[str], out: Path, address: str | None) -> dict:
    from ouroboros.config import load_config
    from ouroboros.executors import make_executor
    from ouroboros.runner import Runner
    from ouroboros.api import execute

    config = load_config(None, [*sets, f"executor.kind={kind}"], base={"name": "bench"})
    config.executor.address = address if kind == "ray" else None
    executor = make_executor(config.executor)
    runner = Runner(out, progress=False, executor=executor)
    start = time.perf_counter()
    executor.start(out)  # loop.run would start it; timed apart here
    startup = time.perf_counter() - start
    execute(config, out, progress=False, runner=runner)
    wall = time.perf_counter() - start
    result = {"wall": wall, "startup": startup, "stages": len(runner.timings),
              "busy": sum(s for _, _, s in runner.timings), "nodes": sorted(set(runner.nodes)),
              "results": (out / "results.csv").read_bytes()}
    if kind == "ray":
        result["in_run"] = executor.latencies
        result["round_trip"] = round_trips(config.executor.threads_per_worker)
    executor.close()
    return result


def round_trips(threads: int, n: int = 30) -> list[float]:
    """Seconds for an empty task with a stage's CPUs, submitted and awaited one at a time."""
    import ray

    task = ray.remote(_empty).options(num_cpus=threads)
    ray.get(task.remote())  # a worker ready, as during a run
    times = []
    for _ in range(n):
        start = time.perf_counter()
        ray.get(task.remote())
        times.append(time.perf_counter() - start)
    return times


def _empty() -> None:
    return None


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"median {1000 * statistics.median(values):.1f} ms, p90 {1000 * p90:.1f} ms, max {1000 * values[-1]:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full demo grid instead of the small default")
    parser.add_argument("--ray-address", help="a running cluster (auto or HOST:PORT); default: a local Ray instance")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value of the grid (repeatable)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sets = ([] if args.full else SMALL) + args.set
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("local", "ray"):
            runs[kind] = run_study(kind, sets, Path(tmp) / kind, args.ray_address)
    local, ray = runs["local"], runs["ray"]
    same = local["results"] == ray["results"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"grid: {'full demo' if args.full else 'small'} {' '.join(sets)}; {local['stages']} stages run")
    print(f"{'executor':<10}{'wall s':>9}{'start-up s':>12}{'stage sum s':>13}  nodes")
    for kind, r in runs.items():
        print(f"{kind:<10}{r['wall']:>9.1f}{r['startup']:>12.1f}{r['busy']:>13.1f}  {', '.join(r['nodes'])}")
    overhead = ray["wall"] - local["wall"]
    ratio = ray["wall"] / local["wall"]
    print(f"Ray overhead: {overhead:+.1f} s ({100 * (ratio - 1):+.1f}% of local; goal within +10%)")
    print(f"per-stage scheduling latency, round trip of an empty task: {_ms(ray['round_trip'])}")
    print(f"per-stage submit-to-result less run time, in the run:       {_ms(ray['in_run'])}")
    print(f"results.csv identical: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
