"""The contamination study as a plug-in (`ouroboros.study`): its data and checks, its
plan (`ouroboros.studies.contamination`), its results, tables, figures and report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouroboros.config import ContaminationConfig
from ouroboros.errors import UserError
from ouroboros.study import Study, count, register_study
from ouroboros.studies import contamination as C
from ouroboros.studies import contamination_report
from ouroboros.studies import contamination_tables as T


class ContaminationStudy(Study):
    name = "contamination"
    section = "contamination"
    section_type = ContaminationConfig

    def validate(self, config) -> None:
        from ouroboros.bounds import check_stages, contamination_stages

        if not config.generator.conditional:
            raise UserError("the contamination study replaces images class by class and needs a class-conditional "
                            "generator: remove generator.conditional: false")
        if config.data.imbalanced():
            raise UserError("data.class_weights and data.long_tail apply to the loop study only; remove them")
        steps = config.generator.num_train_timesteps
        for st in config.contamination.diverse_sample_steps:
            if st > steps:
                raise UserError(f"contamination.diverse_sample_steps has {st}, more than generator."
                                f"num_train_timesteps ({steps}); use at most {steps} sampling steps")
        check_stages(config, *contamination_stages(config.contamination))  # the plan's size

    def prepare(self, config) -> dict:
        from ouroboros.preflight import check_components

        from ouroboros.bounds import check_contamination_size

        splits = C.load_splits(config)  # bad data fails here, before anything is written
        check_components(config, splits["train"].shape, splits["train"].num_classes)
        check_contamination_size(config, len(splits["train"]), splits["train"].shape)  # and limits.max_*_gib
        k = splits["train"].num_classes
        C.group_confusion(np.zeros((k, k)), splits["train"].class_names, config.contamination.class_groups)
        return splits

    def describe(self, config, splits) -> str:
        c = config.contamination
        controls = ", ".join(f"{len(splits[C.CONTROLS[name].role])} {name} control images" for name in c.controls)
        return (f"{config.name}: contamination study, {count(len(c.archs), 'arch')} x {count(len(c.seeds), 'seed')}, "
                f"{len(splits['train'])} real training images, {controls}")

    def plan(self, config, splits, cache):
        return C.plan(config, cache, splits)

    def rows(self, config, plan, paths):
        return C._rows(config, plan, paths), list(C.PARAM_COLUMNS)

    def artifacts(self, config, splits, plan, paths, run_dir: Path) -> None:
        T.report(run_dir, config)
        C.save_figures_and_grids(config, run_dir, splits, plan, paths)

    def findings(self, rows, config) -> list:
        return contamination_report.findings(rows, config)

    def report_sections(self, runs) -> list:
        return contamination_report.sections(runs)

    def plot(self, run, metric: str, ax) -> None:
        contamination_report.plot(run, metric, ax)

    def redraw(self, run) -> None:
        T.report(run.path, run.config, run.rows)

    def summary(self, rows, config) -> str:
        return T.tables_markdown(rows, config)


register_study(ContaminationStudy())
