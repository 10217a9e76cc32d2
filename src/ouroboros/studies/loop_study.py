"""The feedback-loop study as a plug-in (`ouroboros.study`): its data and checks, its
plan (`ouroboros.studies.loop`), its results, sample grids, findings and report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ouroboros.config import LoopConfig
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.study import Study, count, register_study
from ouroboros.studies import loop, loop_compare, loop_report


@dataclass
class Prepared:
    splits: tuple[ImageSet, ImageSet]  # (train, test) of the first seed (of every seed when fixed)
    evaluate: dict  # the evaluate stage's parameters
    data: dict  # instruments key -> (train, test) (ouroboros.studies.loop_data.load_data)


class LoopStudy(Study):
    name = "loop"
    section = "loop"
    section_type = LoopConfig
    comparison_labels = tuple(loop_compare.LABELS)

    def validate(self, config) -> None:
        from ouroboros.bounds import check_stages, loop_stages
        from ouroboros.config_loop_extra import check_sampled_labels, check_warm_start
        from ouroboros.crosschecks import check_families, check_sizes

        for i, entry in enumerate(config.loop.generators or []):  # each family's own settings
            entry.generator_config(config.generator, f"loop.generators[{i}]")
        if not config.generator.conditional:
            guided = [w for _, lc in config.loop.cells() for w in lc.guidance if w != 0]
            if guided:
                raise UserError(f"generator.conditional is false, and an unconditional model takes no guidance, but "
                                f"loop.guidance holds {guided[0]:g}: set loop.guidance: [0]")
        check_families(config)  # each family's settings against the loop's
        check_warm_start(config)  # loop.init previous: every family can start from its predecessor
        check_sampled_labels(config)  # loop.labels sampled: conditional generators
        check_sizes(config)  # the images the metrics need against those the loop makes
        check_stages(config, *loop_stages(config.loop, config.evaluate.instruments))  # the plan's size
        loop_compare.baselines(config)  # compare.baseline names variants of the grid

    def prepare(self, config) -> Prepared:
        from ouroboros.preflight import check_components

        from ouroboros.studies.loop_data import split_seed

        data = loop.load_data(config)  # bad data fails here, before anything is written
        # and so does a real split too small for a scenario, or a curation certain to empty a class
        for key, (train, _) in data.items():
            for _, lc in config.loop.cells():
                loop.check_loop(lc, loop.curation_split(lc, split_seed(config, key), train)[0], len(train),
                                None if key is None else [key])
        splits = next(iter(data.values()))
        check_components(config, splits[0].shape, splits[0].num_classes)  # and a component that cannot work
        # and a family whose settings cannot fit this data, metrics short of images, limits.max_*_gib
        loop.check_families(config, *splits)
        return Prepared(splits, loop.evaluation(config, splits[0]), data)  # and missing Inception weights

    def describe(self, config, prepared: Prepared) -> str:
        lc = config.loop
        pool = " + ".join(f"{e.label} {e.share:.0%}" for e in lc.generators) if lc.generators else None
        cur = "" if lc.curation.kind == "none" else f", curation {lc.curation.kind}"
        cur += "".join(f", {key} {getattr(lc, key)}" for key, plain in (("init", "scratch"), ("labels", "balanced"))
                       if getattr(lc, key) != plain)
        what = (f"{len(lc.variants)} variants" if lc.variants is not None else
                f"scenario {lc.scenario}{f', families {pool}' if pool else ''}{cur}")
        evaluate = prepared.evaluate
        scores = ("classifier accuracy, " if evaluate["metrics"].startswith("classifier+") else "") + \
            f"FID/PRDC on {evaluate.get('features', 'classifier')} features against the real " \
            f"{config.evaluate.reference} split; instruments {config.evaluate.instruments}"
        return (f"{config.name}: {what}, {count(len(lc.guidance), 'guidance value')} x "
                f"{count(len(lc.seeds), 'seed')} x {count(lc.generations, 'generation')} on "
                f"{len(prepared.splits[0])} real training images ({scores})")

    def plan(self, config, prepared: Prepared, cache):
        return loop.plan(config, cache, prepared.data)

    def rows(self, config, plan, paths):
        return loop._rows(config, plan, paths), loop.param_columns(config, bool(plan.families))

    def artifacts(self, config, prepared: Prepared, plan, paths, run_dir: Path) -> None:
        loop.save_grids(config, plan, paths, run_dir)

    def check_rows(self, rows, path) -> None:
        for line, r in enumerate(rows, start=2):  # every generation's row names its generation and guidance
            if r["cell"] != "reference" and (r["generation"] == "" or r.get("guidance", "") == ""):
                raise UserError(f"{path} line {line} has no generation or guidance, so it is not a "
                                "feedback-loop results table; run the study again with the same --out to rewrite it")
        loop_report.recall_sweeps(rows)  # sweep names become plot file names: safe and distinct, or an error

    def findings(self, rows, config) -> list:
        return loop_report.findings(rows, config)

    def comparisons(self, rows, config):
        return loop_compare.comparisons(rows, config)

    def report_sections(self, runs) -> list:
        return loop_report.sections(runs)

    def plot(self, run, metric: str, ax) -> None:
        loop_report.plot(run, metric, ax)

    def summary(self, rows, config) -> str:
        header, table = loop.summary_table(rows)
        widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
        lines = ["Mean over seeds [95% Student-t interval, within the metric's range]:"]
        lines += ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in table]
        from ouroboros.report.comparisons import counts

        comparisons = loop_compare.comparisons(rows, config)
        if comparisons:
            lines.append(f"comparisons.csv: {counts(comparisons)} (Holm over all, alpha {config.compare.alpha:g})")
        return "\n".join(lines)


register_study(LoopStudy())
