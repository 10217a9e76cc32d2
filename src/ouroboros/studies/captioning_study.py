"""The captioning study as a plug-in (`ouroboros.study`): its config section, data and
checks (`ouroboros.studies.captioning`), its stage kinds (`captioning_stages`), its
comparisons, tables and findings (`captioning_tables`)."""

from __future__ import annotations

from ouroboros.errors import UserError
from ouroboros.study import Study, count, register_study
from ouroboros.studies import captioning as C
from ouroboros.studies import captioning_stages  # noqa: F401  (registers the stage kinds)
from ouroboros.studies import captioning_tables as T


class CaptioningStudy(Study):
    name = "captioning"
    section = "captioning"
    section_type = C.CaptioningConfig
    comparison_labels = T.LABELS

    def validate(self, config) -> None:
        from ouroboros.bounds import check_stages

        c = config.captioning
        if c.generated is None and not config.generator.conditional:
            raise UserError("the captioning study's embedded generator makes each stand-in from the class its "
                            "caption names and needs a class-conditional generator: remove generator.conditional: "
                            "false, or give captioning.generated")
        mixtures = len(c.ratios) * (1 + len(c.controls)) + 2 * len(c.subsets)
        per_seed = (0 if c.generated is not None else 2) + 2 * mixtures
        check_stages(config, 5 + len(c.seeds) * per_seed,
                     [f"captioning.seeds ({len(c.seeds)} values)",
                      f"about {per_seed} stages a seed (captioning.ratios ({len(c.ratios)} values) x "
                      f"captioning.controls ({len(c.controls)} values), captioning.subsets ({len(c.subsets)} values))"])

    def prepare(self, config) -> dict:
        c = config.captioning
        c.captioner.validate("captioning.captioner")  # a BLIP folder is checked before any data is loaded
        splits = C.load_splits(config)  # bad data fails here, before anything is written
        from ouroboros.preflight import check_components
        from ouroboros.tasks.captioning import build_vocabulary

        if c.generated is None:  # the embedded generator, built once on this data
            check_components(config, splits["train"].shape, splits["train"].num_classes)

        build_vocabulary([list(t) for t in splits["train"].captions.texts], c.captioner.min_count)  # not empty
        return splits

    def describe(self, config, splits) -> str:
        c = config.captioning
        return (f"{config.name}: captioning study, {count(len(c.seeds), 'seed')}, "
                f"{len(splits['train'])} captioned training images, {len(splits['test'])} test images, controls "
                f"{', '.join(c.controls)}")

    def plan(self, config, splits, cache):
        return C.plan(config, cache, splits)

    def rows(self, config, plan, paths):
        return C.rows(config, plan, paths), list(C.PARAM_COLUMNS)

    def artifacts(self, config, splits, plan, paths, run_dir) -> None:
        T.report(run_dir, config)

    def redraw(self, run) -> None:
        T.report(run.path, run.config, run.rows)

    def comparisons(self, rows, config):
        return T.comparisons(rows, config)

    def findings(self, rows, config) -> list:
        return T.findings(rows, config)

    def report_sections(self, runs) -> list:
        return T.sections(runs)

    def summary(self, rows, config) -> str:
        return T.tables_markdown(rows, config)


register_study(CaptioningStudy())
