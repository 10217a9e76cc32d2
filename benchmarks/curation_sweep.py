"""How good must detection be to stop the collapse: the feedback loop with a watermark
filter of each recall, one plot of each metric at the last generation against recall.

Usage: python benchmarks/curation_sweep.py --out DIR [--recalls 0 0.5 0.9] [--config CONFIG]
       [--set key=value ...]
Each recall is one run of the loop (DIR/recall=<r>/), all sharing one cache, so what
does not depend on the recall (the classifier, generation 0) is computed once. Their
rows are merged into DIR/results.csv with a `curation.recall` column, and
DIR/plots/sweep_<metric>.png is drawn by ouroboros.report.plots.plot_sweep. The
defaults are a small CPU-sized setting (4 generations, 3 seeds, 300 images per
generation, scenario accumulate-subsample, where what the filter removes is replaced by
real images of the pool); --config and --set change any of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SMALL = ["loop.generations=4", "loop.guidance=[1.0]", "loop.seeds=[0,1,2]", "loop.samples_per_generation=300",
         "loop.scenario=accumulate-subsample", "generator.train_steps=300", "generator.sample_steps=20",
         "classifier.epochs=5", "executor.workers=2"]
METRICS = ("accuracy", "fid", "recall", "train_real_share", "curation_recall")


def main() -> int:
    from ouroboros.config import load_config
    from ouroboros.report.plots import plot_sweep, sweep_series
    from ouroboros.report.results import read_results, write_results
    from ouroboros.report.stats import metric_range
    from ouroboros.runner import Runner
    from ouroboros.api import execute

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the runs, the merged results and the plots")
    parser.add_argument("--recalls", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    parser.add_argument("--config", help="a loop study config (default: the demo's, shrunk)")
    parser.add_argument("--set", action="append", default=[], help="key=value override, as for ouroboros run")
    args = parser.parse_args()
    out = Path(args.out)
    runner = Runner(out, workers=2, progress=False)
    rows, columns = [], ["guidance", "scenario", "curation", "curation.recall"]
    for r in args.recalls:
        config = load_config(args.config, [*SMALL, *args.set, "loop.curation.kind=watermark",
                                           f"loop.curation.recall={r}"], base={"name": "curation-sweep"})
        run_dir = out / f"recall={r:g}"
        execute(config, run_dir, progress=False, runner=runner)
        rows += [{**row, "curation.recall": r if row["cell"] != "reference" else ""}
                 for row in read_results(run_dir / "results.csv")]
    write_results(out / "results.csv", rows, columns)
    print("mean over seeds [95% Student-t interval, within the metric's range]")
    print(f"{'metric':<18}{'guidance':>9}" + "".join(f"{f'r = {r:g}':>22}" for r in args.recalls))
    for metric in METRICS:
        plot_sweep(rows, "curation.recall", metric, out / "plots" / f"sweep_{metric}.png")
        for w, points in sweep_series(rows, "curation.recall", metric).items():
            print(f"{metric:<18}{w:>9}" + "".join(f"{i.format(1, 3, metric_range(metric)):>22}" for _, i in points))
    print(f"plots: {out / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
