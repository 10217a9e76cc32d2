"""What a study is: one small protocol, and the registry that maps names to studies.

A study is a plug-in. The command line, the runner and the report know no study by
name: they look the config's ``study:`` up here and call the methods below. A study

- has a ``name`` (the config's ``study:`` value) and a config ``section`` (its
  settings, a dataclass `section_type`; None when it has none of its own);
- ``validate(config)``: checks across its section and the shared ones, with the config
  alone (`StudyConfig.validate` calls it);
- ``prepare(config)``: loads its data and makes every check that needs it, before
  anything is written (bad input raises `UserError`); returns whatever `plan` needs;
- ``plan(config, prepared, cache)``: expands the config into stages (`ouroboros.graph`),
  returning an object with ``targets() -> list[Stage]``;
- ``rows(config, plan, paths) -> (rows, param_columns)``: the finished stages' results,
  one dict per (cell, seed, generation, metric), and the parameter columns it varies;
- ``artifacts(config, prepared, plan, paths, run_dir)``: what else the run folder shows
  (sample grids, figures), drawn from the finished stages;
- ``findings(rows, config) -> list[Finding]``: what the run found, as computed
  comparisons (sentences with their verdict; `ouroboros.report.page.Finding`);
- ``comparisons(rows, config)``: the run's comparisons, decided in code
  (`ouroboros.report.comparisons.Comparison`s), which the run writes to
  ``comparisons.csv`` (its columns naming each pair after kind, a, b:
  ``comparison_labels``); None (the default) when the study writes no such file;
- ``report_sections(runs) -> list[Section]``: what the report draws for the study's
  runs (`ouroboros.api.Run`s): findings, plots (drawn by the report when it has checked
  where they go), sample grids, tables (`ouroboros.report.page`);
- ``check_rows(rows, path)``: that a results.csv read back is this study's (UserError
  otherwise), before a report draws it;
- ``summary(rows, config) -> str``: the text the command line prints after a run;
- ``describe(config, prepared) -> str``: one line saying what is about to run;
- ``plot(run, metric, ax)``: one metric of a finished run on matplotlib Axes
  (`ouroboros.api.Run.plot`); ``redraw(run)``: what `ouroboros report` rewrites besides
  the page (the contamination study's tables.md).

`Study` is a base class with a default for each optional method; subclass it and
register an instance with `register_study`. The built-in studies (``loop``,
``contamination``) register themselves when ``ouroboros.studies.builtin`` is imported;
this module imports none of them. A plug-in study's own stage kinds are keyed by their
module's source (`ouroboros.graph.stage_kind`), so editing them recomputes what they made.
"""

from __future__ import annotations

from typing import Any

from ouroboros.errors import UserError


class Study:
    name: str = ""
    section: str | None = None  # its config section (also a key of StudyConfig)
    section_type: type | None = None  # the dataclass of that section
    comparison_labels: tuple = ()  # comparisons.csv's columns naming a pair, after kind, a, b

    def validate(self, config) -> None:
        """Checks that span this study's section and the shared ones (no data needed)."""

    def prepare(self, config) -> Any:
        raise NotImplementedError

    def plan(self, config, prepared, cache):
        raise NotImplementedError

    def rows(self, config, plan, paths) -> tuple[list[dict], list[str]]:
        raise NotImplementedError

    def artifacts(self, config, prepared, plan, paths, run_dir) -> None:
        """Nothing beyond results.csv by default."""

    def check_rows(self, rows: list[dict], path) -> None:
        """Nothing beyond read_results' own checks by default."""

    def redraw(self, run) -> None:
        """Rewrite what the run folder derives from results.csv besides the report (the
        `report` command calls it); nothing by default."""

    def findings(self, rows: list[dict], config) -> list:
        return []

    def comparisons(self, rows: list[dict], config):
        return None

    def report_sections(self, runs: list) -> list:
        return []

    def summary(self, rows: list[dict], config) -> str:
        return ""

    def describe(self, config, prepared) -> str:
        return f"{config.name}: study {self.name}"

    def plot(self, run, metric: str, ax) -> None:
        """Draw `metric` of a finished run on matplotlib Axes `ax`."""
        raise UserError(f"the {self.name} study does not plot single metrics")


_STUDIES: dict[str, Study] = {}


def count(n: int, noun: str) -> str:
    """'1 seed', '3 seeds': a number and its noun, for describe() lines and the command line."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def register_study(study: Study) -> Study:
    """Add a study (an instance of a `Study` subclass) to the registry under its name."""
    if not isinstance(study, Study):
        raise TypeError(f"register_study takes a Study instance; got {study!r}")
    if not study.name or not study.name.isidentifier():
        raise ValueError(f"a study needs a name that is an identifier; got {study.name!r}")
    if study.name in _STUDIES and type(_STUDIES[study.name]) is not type(study):
        raise ValueError(f"study {study.name!r} is already registered")
    _STUDIES[study.name] = study
    return study


def studies() -> dict[str, Study]:
    """name -> study: the built-in ones (registered when ``ouroboros.studies.builtin`` is
    imported, as `ouroboros.api` does) and any registered since."""
    return _STUDIES


def get_study(name: str) -> Study:
    if name not in _STUDIES:
        raise UserError(f"unknown study {name!r}; use one of {', '.join(sorted(_STUDIES))}")
    return _STUDIES[name]
