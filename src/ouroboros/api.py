"""The Python API: run a study, read a finished run folder.

    import ouroboros
    run = ouroboros.run("loop-digits", out="runs/mine", overrides=["loop.generations=3"])
    run.results          # a pandas DataFrame, one row per (cell, seed, generation, metric)
    run.findings         # what the study found, as computed comparisons
    run.plot("accuracy") # a matplotlib Axes

`run` works from a plain script (no ``if __name__ == "__main__":`` guard needed: the
worker processes do not re-run it) and from a notebook (progress shows as a notebook
bar). A config is a shipped name (``ouroboros configs`` lists them), a YAML path, a
`StudyConfig`, or a dict of sections. Every study runs through the same steps here
(`execute`), whatever its name: the study plug-in (`ouroboros.study`) says what to
load, plan, tabulate, draw and conclude.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Iterable

import ouroboros.studies.builtin  # noqa: F401  (registers the built-in studies)
from ouroboros.config import StudyConfig, load_config
from ouroboros.errors import UserError
from ouroboros.study import get_study


def resolve_config(config, overrides: Iterable[str] = (), base: dict | None = None) -> StudyConfig:
    """A validated StudyConfig from a shipped name, a path, a dict or a StudyConfig."""
    overrides = list(overrides)
    if isinstance(config, StudyConfig):
        config = config.to_dict()
    if isinstance(config, dict):
        config = _in_memory_data(config)
        config = load_config(None, overrides, base={**(base or {}), **config})
    elif config is None or isinstance(config, (str, Path)):
        config = load_config(config, overrides, base=base)
    else:
        raise UserError(f"config must be a shipped config's name, a YAML path, a dict or a StudyConfig; "
                        f"got {type(config).__name__}")
    return config


def _in_memory_data(config: dict) -> dict:
    """data.train / data.test given as ImageSets: held in this process and named by their
    content hash (``memory:<hash>``, what config.yaml records)."""
    from ouroboros.data.imageset import ImageSet
    from ouroboros.data.loaders import in_memory

    data = config.get("data")
    if not isinstance(data, dict) or not any(isinstance(v, ImageSet) for v in data.values()):
        return config
    data = {k: in_memory(v) if isinstance(v, ImageSet) else v for k, v in data.items()}
    return {**config, "data": data}


@dataclasses.dataclass
class Run:
    """A finished run folder: its config, results and what the study found."""

    path: Path
    config: StudyConfig
    rows: list[dict]  # results.csv as read (strings), in file order
    label: str = ""
    timings: list = dataclasses.field(default_factory=list, repr=False)  # (kind, label, s) of stages run now

    @property
    def study(self):
        return get_study(self.config.study)

    @functools.cached_property
    def config_text(self) -> str:
        """config.yaml as written (the report shows it)."""
        from ouroboros.io import read_text_bounded

        path = self.path / "config.yaml"
        return read_text_bounded(path, "config file") if path.is_file() else ""

    @functools.cached_property
    def results(self):
        """results.csv as a pandas DataFrame: `value` a float, `seed` and `generation`
        integers (pandas' nullable Int64), parameter columns as numbers where they are;
        the rows of the real reference split (scored as a yardstick, not a cell of the
        study) are marked by `reference` = True rather than mixed in with missing values
        unmarked."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return frame
        frame["reference"] = frame["cell"] == "reference"
        for column in ("seed", "generation"):
            if column in frame:
                frame[column] = pd.to_numeric(frame[column].replace("", None)).astype("Int64")
        frame["value"] = pd.to_numeric(frame["value"])
        for column in frame.columns:
            if column in ("study", "cell", "metric", "value", "seed", "generation", "reference"):
                continue
            numbers = pd.to_numeric(frame[column].replace("", None), errors="coerce")
            if numbers.notna().sum() == (frame[column] != "").sum() and numbers.notna().any():
                frame[column] = numbers
        return frame

    @functools.cached_property
    def comparisons(self):
        """comparisons.csv as a DataFrame, when the study writes one; else None."""
        import io

        import pandas as pd

        from ouroboros.io import read_text_bounded

        path = self.path / "comparisons.csv"
        if not path.is_file():
            return None
        return pd.read_csv(io.StringIO(read_text_bounded(path, "comparisons table", "table")))

    @functools.cached_property
    def findings(self) -> list:
        """The study's findings (`ouroboros.report.page.Finding`: text and verdict)."""
        return self.study.findings(self.rows, self.config)

    def plot(self, metric: str, ax=None):
        """`metric` over the run (per generation, or per share, as the study lays it out),
        on `ax` or a new figure's Axes; returns the Axes. The files in ``plots/`` are drawn
        by the same code."""
        if not any(r["metric"] == metric for r in self.rows):
            known = sorted({r["metric"] for r in self.rows})
            raise UserError(f"{self.path} has no metric {metric!r}; it has {', '.join(known[:20])}")
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 3.6))
        self.study.plot(self, metric, ax)
        return ax

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, study={self.config.study!r}, {len(self.rows)} result rows)"


def load_run(run_dir: str | Path, label: str | None = None) -> Run:
    """The `Run` of a finished run folder (its results.csv and config.yaml)."""
    from ouroboros.report.html import check_run_folder
    from ouroboros.report.results import read_results

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run folder not found: {path}; give the --out folder of a study run")
    check_run_folder(path)  # results.csv, config.yaml and the images a report embeds: regular files inside
    rows = read_results(path / "results.csv")
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{path} has no config.yaml; run the study again with the same --out to rewrite it")
    config = load_config(str(config_path))
    study = get_study(config.study)  # a plug-in study's run needs its plug-in registered
    study.check_rows(rows, path / "results.csv")
    return Run(path, config, rows, label or path.resolve().name)


def run(config, out: str | Path | None = None, overrides: Iterable[str] = (), executor: str | None = None,
        progress: bool = True, force: Iterable[str] = (), on_event=None) -> Run:
    """Run (or resume) a study and return its `Run`.

    `config`: a shipped config's name, a YAML path, a dict of sections or a StudyConfig;
    `overrides`: ``key=value`` strings as ``--set`` takes them; `out`: the run folder
    (default ``runs/<name>``); `executor`: ``local`` or ``ray`` (default: the config's);
    `force`: stage kinds to recompute even when cached (``"all"`` for every kind).
    """
    config = resolve_config(config, overrides)
    if executor is not None:
        config.executor.kind = executor
        config.validate()
    out = Path(out) if out is not None else Path("runs") / config.name
    return execute(config, out, progress=progress, force=tuple(force), on_event=on_event)


def execute(config: StudyConfig, out: Path, progress: bool = True, force: tuple = (), on_event=None,
            runner=None) -> Run:
    """The steps every study goes through: check, plan, run the stages, tabulate, draw.
    `runner` (an `ouroboros.runner.Runner` of `out`): one of one's own, e.g. to time it."""
    from ouroboros.preflight import check_output_dir
    from ouroboros.report.results import write_results
    from ouroboros.rundir import open_run, write_timings
    from ouroboros.studies.common import make_runner

    study = get_study(config.study)
    out = check_output_dir(out)  # before loading data
    prepared = study.prepare(config)  # bad data or settings fail here, before anything is written
    check_output_dir(out)
    own = runner is None  # an executor this call starts, it closes (a Ray instance it started shuts down)
    runner = make_runner(config, out, progress, on_event) if own else runner
    runner.executor.start(out)  # and a cluster that cannot run it
    try:
        if progress:
            print(f"ouroboros: {study.describe(config, prepared)} -> {out}", file=sys.stderr)
        open_run(config, out)
        plan = study.plan(config, prepared, runner.cache)
        targets = plan.targets()
        if force:
            runner.forget(targets, force)
        paths = runner.run(targets)
        rows, columns = study.rows(config, plan, paths)
        write_results(out / "results.csv", rows, columns)
        write_timings(out, runner)
        study.artifacts(config, prepared, plan, paths, out)
        run_ = load_run(out)
        write_comparisons(run_)
        write_report([run_])
    finally:
        if own:
            runner.executor.close()
    run_.timings = runner.timings
    return run_


def write_comparisons(run: Run) -> None:
    """comparisons.csv of a run whose study compares (`Study.comparisons`), from its
    results.csv as read back, so that the file, the findings and the report agree."""
    from ouroboros.report.comparisons import write_comparisons as write

    comparisons = run.study.comparisons(run.rows, run.config)
    if comparisons is not None:
        write(run.path / "comparisons.csv", comparisons, run.study.comparison_labels)
    run.__dict__.pop("comparisons", None)  # Run.comparisons reads the new file


def dry_run(config: StudyConfig, out: Path) -> dict:
    """What `execute` would do, writing nothing: the number of stages and how many are
    cached in `out` already, by kind."""
    from ouroboros.graph import ordered

    study = get_study(config.study)
    prepared = study.prepare(config)
    plan = study.plan(config, prepared, None)
    cache = Path(out) / "cache"
    order = ordered(plan.targets())
    by_kind: dict[str, list[int]] = {}
    for stage in order.values():
        counts = by_kind.setdefault(stage.kind, [0, 0])
        counts[0] += 1
        counts[1] += stage.artifact(cache).exists()
    return {"stages": len(order), "cached": sum(c for _, c in by_kind.values()), "by_kind": by_kind}


def write_report(runs: list[Run], out: Path | None = None) -> Path:
    """report.html of `runs` (one self-contained page; several runs are compared): each
    study hands the report its sections (`Study.report_sections`); the report draws them."""
    from ouroboros.report.html import report_path, write_page

    return write_page(runs, _sections(runs), report_path([r.path for r in runs], out))


def _sections(runs: list[Run]) -> list:
    """What each study hands the report for its runs, in the order the runs were given."""
    by_study: dict[str, list[Run]] = {}
    for r in runs:
        by_study.setdefault(r.config.study, []).append(r)
    return [s for name, group in by_study.items() for s in get_study(name).report_sections(group)]


def report(run_dirs: Iterable[str | Path], out: str | Path | None = None) -> Path:
    """Redraw what runs derive from their results (`Study.redraw`) and write one report of
    the run folders (several: compared on one page); returns the page's path. Every folder
    and the output are checked before anything is written."""
    from ouroboros.report.html import check_writes, report_path, run_labels

    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise UserError("give at least one run folder")
    from ouroboros.report.html import write_page

    out = report_path(run_dirs, Path(out) if out is not None else None)
    runs = [load_run(p, label) for p, label in zip(run_dirs, run_labels(run_dirs))]
    sections = _sections(runs)
    check_writes(out, sections)  # before the first write, redrawing included
    for r in runs:
        r.study.redraw(r)
        write_comparisons(r)
    return write_page(runs, sections, out)
