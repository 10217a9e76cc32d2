"""The feedback-loop study (Martinez et al. 2023).

Generation 0 is a class-conditional diffusion model trained on the real training
split. Every later generation is a fresh model trained on a set that `loop.scenario`
draws from real data and earlier generations' samples (ouroboros.studies.scenarios;
the default "replace" trains only on the previous generation's samples, the worst
case), each generation sampling as many images as the real set, balanced over
classes. results.csv records each training set's size and make-up from provenance
(train_size, train_real_share, train_share_gen<k>) and the scenario in its own
column. Each generation's samples are scored by one classifier trained on the real
training split. One chain per (guidance, seed).

In results.csv, ``generation`` is the model's index (0 = trained on real data); the
images it makes carry provenance generation ``g + 1``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.preflight import check_run
from ouroboros.runner import Stage
from ouroboros.studies import scenarios
from ouroboros.studies.common import (data_stage, derived_seed, generator_params, open_run, start_runner,
                                      write_timings)


def load_splits(config: StudyConfig) -> tuple[ImageSet, ImageSet]:
    full = load_dataset(config.data.train)
    if config.data.test is not None:
        test = load_dataset(config.data.test)
        if test.class_names != full.class_names:
            raise UserError(
                f"train and test datasets have different classes: {list(full.class_names)} vs {list(test.class_names)}"
            )
        if test.shape != full.shape:
            raise UserError(f"data.test has images of shape {test.shape} but data.train {full.shape}; "
                            "they must match")
        return full, test
    counts = full.class_counts()
    if (counts < 2).any():
        raise UserError(f"every class needs at least 2 images to split off a test set; counts {counts.tolist()}")
    parts = stratified_split(
        full, {"train": 1.0 - config.data.test_fraction, "test": config.data.test_fraction}, seed=config.data.split_seed
    )
    return parts["train"], parts["test"]


@dataclasses.dataclass
class LoopPlan:
    train: ImageSet
    test: ImageSet
    classifier: Stage
    reference: Stage  # classifier on the real test split
    # (guidance, seed) -> per generation: (fit, sample, evaluate)
    chains: dict[tuple[float, int], list[tuple[Stage, Stage, Stage]]]

    def targets(self) -> list[Stage]:
        return [self.reference] + [ev for chain in self.chains.values() for (_, _, ev) in chain]


def plan(config: StudyConfig, cache: Path, splits: tuple[ImageSet, ImageSet] | None = None) -> LoopPlan:
    """Expand the config into stages; `splits` (train, test) defaults to loading the data."""
    train, test = splits or load_splits(config)
    if train.num_classes < 2:
        raise UserError("the feedback loop needs at least 2 classes")
    train_stage, test_stage = data_stage(train, "train", cache), data_stage(test, "test", cache)
    classifier = Stage("classifier", {"config": dataclasses.asdict(config.classifier), "seed": 0},
                       {"train": train_stage}, label="real data")
    evaluate = {"metrics": "classifier+fid+prdc", "k": 5}
    reference = Stage("evaluate", evaluate, {"images": test_stage, "classifier": classifier, "real": train_stage},
                      label="real test")
    lc = config.loop
    n = lc.samples_per_generation or len(train)
    scenarios.check_reservoir(lc.scenario, n, lc.generations, lc.real_fraction, len(train))
    # Each generation samples N images; augment's window (one generation by default) must
    # also hold round(lambda |R|) of them.
    n_sample = max(n, scenarios.generated_count(lc.scenario, n, len(train), lc.real_fraction, lc.synthetic_ratio)
                   if lc.scenario == "augment" else n)
    fit_config, sampling = generator_params(config)
    chains = {}
    for w in lc.guidance:
        for s in lc.seeds:
            outputs, chain = [], []
            for g in range(lc.generations):
                label = f"w={w:g} seed={s} gen={g}"
                source = _training_set(lc, g, s, n, train_stage, outputs, label)
                fit = Stage("fit", {"config": fit_config, "seed": derived_seed(s, g, "fit"), "name": "diffusion"},
                            {"train": source}, label=label)
                sample = Stage("sample", {"n": n_sample, "guidance": float(w), "seed": derived_seed(s, g, "sample"),
                                          **sampling}, {"model": fit}, label=label)
                ev = Stage("evaluate", evaluate, {"images": sample, "classifier": classifier, "real": train_stage},
                           label=label)
                chain.append((fit, sample, ev))
                outputs.append(sample)
            chains[(float(w), s)] = chain
    return LoopPlan(train, test, classifier, reference, chains)


def _training_set(lc, g: int, s: int, n: int, train_stage: Stage, outputs: list[Stage], label: str) -> Stage:
    """The stage whose artifact generation g trains on. The real split itself for
    generation 0, and O_{g-1} itself under plain replace, so those keep the keys they
    had before scenarios existed; an `assemble` stage otherwise."""
    if g == 0 and lc.scenario != "fresh":
        return train_stage
    if lc.scenario == "replace" and lc.window in (None, 1):
        return outputs[g - 1]
    params = {"scenario": lc.scenario, "generation": g, "n": n, "seed": derived_seed(s, g, "assemble"),
              "real_seed": derived_seed(s, "real order")}
    # Only what the scenario reads goes into the key: changing rho does not recompute augment.
    if lc.scenario in ("mix", "fresh"):
        params["real_fraction"] = lc.real_fraction
    if lc.scenario == "augment":
        params["synthetic_ratio"] = lc.synthetic_ratio
    deps = {"real": train_stage,
            **{f"out{k}": outputs[k] for k in scenarios.window_of(lc.scenario, lc.window, g)}}
    return Stage("assemble", params, deps, label=label)


def _rows(config: StudyConfig, plan_: LoopPlan, paths: dict) -> list[dict]:
    import json

    rows = []
    ref = json.loads(paths[plan_.reference.key].read_text())
    for metric, value in ref.items():
        rows.append({"study": config.name, "cell": "reference", "seed": "", "generation": "",
                     "metric": metric, "value": value, "guidance": "", "scenario": ""})
    scenario = config.loop.scenario
    for (w, s), chain in plan_.chains.items():
        for g, (fit, _, ev) in enumerate(chain):
            metrics = json.loads(paths[ev.key].read_text())
            # The training set's size and make-up, read from the provenance of the set
            # the model was actually fitted on.
            metrics.update(scenarios.makeup(ImageSet.load(paths[fit.deps["train"].key])))
            for metric, value in metrics.items():
                rows.append({"study": config.name, "cell": f"guidance={w:g}", "seed": s, "generation": g,
                             "metric": metric, "value": value, "guidance": w, "scenario": scenario})
    return rows


def run(config: StudyConfig, run_dir: Path, progress: bool = True, runner=None) -> dict:
    """Run (or resume) the study into `run_dir`; returns a summary dict."""
    from ouroboros.report.grids import save_grid
    from ouroboros.report.results import write_results

    splits = load_splits(config)  # bad data fails here, before anything is written
    lc = config.loop  # and so does a real split too small for the scenario
    scenarios.check_reservoir(lc.scenario, lc.samples_per_generation or len(splits[0]), lc.generations,
                              lc.real_fraction, len(splits[0]))
    check_run(config, run_dir, splits[0].shape, splits[0].num_classes)  # and a bad --out or component
    runner = start_runner(config, Path(run_dir), progress, runner)  # and a cluster that cannot run it
    if progress:
        print(f"ouroboros: {config.name}: scenario {config.loop.scenario}, {len(config.loop.guidance)} guidance x "
              f"{len(config.loop.seeds)} seeds x "
              f"{config.loop.generations} generations on {len(splits[0])} real training images -> {run_dir}",
              file=sys.stderr)
    run_dir = Path(run_dir)
    runner = open_run(config, run_dir, progress, runner)
    p = plan(config, runner.cache, splits)
    paths = runner.run(p.targets())

    write_results(run_dir / "results.csv", _rows(config, p, paths), ["guidance", "scenario"])
    write_timings(run_dir, runner)
    first_seed = config.loop.seeds[0]
    for (w, s), chain in p.chains.items():
        if s != first_seed:
            continue
        for g, (_, sample, _) in enumerate(chain):
            out = run_dir / "samples" / f"guidance={w:g}" / f"gen{g}.png"
            save_grid(ImageSet.load(paths[sample.key]), out, config.output.grid_per_class, config.output.grid_scale)
    save_grid(p.train, run_dir / "samples" / "real.png", config.output.grid_per_class, config.output.grid_scale)
    report(run_dir)
    return {"run_dir": str(run_dir), "timings": runner.timings}


def summary_table(rows: list[dict]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Key metrics (mean ± std over seeds) at the first, middle and last generation per guidance."""
    import numpy as np

    header = ("guidance", "generation", "accuracy", "cross-entropy", "FID", "precision", "recall", "seeds")
    out = []
    loop_rows = [r for r in rows if r["cell"] != "reference"]
    guidances = sorted({r["guidance"] for r in loop_rows}, key=lambda g: -float(g))
    gens = sorted({int(r["generation"]) for r in loop_rows})
    for w in guidances:
        for g in sorted({gens[0], gens[len(gens) // 2], gens[-1]}):
            sel = [r for r in loop_rows if r["guidance"] == w and int(r["generation"]) == g]
            cells = []
            for metric in ("accuracy", "cross_entropy", "fid", "precision", "recall"):
                v = [float(r["value"]) for r in sel if r["metric"] == metric]
                cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "-")
            out.append((f"{float(w):g}", str(g), *cells, str(len({r["seed"] for r in sel}))))
    return header, out


def report(run_dir: Path) -> Path:
    """(Re)draw plots and report.html from results.csv."""
    from ouroboros.report.html import write_report
    from ouroboros.report.plots import plot_class_accuracy, plot_metric
    from ouroboros.report.results import read_results

    run_dir = Path(run_dir)
    rows = read_results(run_dir / "results.csv")
    for line, r in enumerate(rows, start=2):  # every generation's row names its generation and guidance
        if r["cell"] != "reference" and (r["generation"] == "" or r.get("guidance", "") == ""):
            raise UserError(f"{run_dir / 'results.csv'} line {line} has no generation or guidance, so it is not a "
                            "feedback-loop results table; run the study again with the same --out to rewrite it")
    for metric in ("accuracy", "cross_entropy", "fid", "precision", "recall", "density", "coverage"):
        plot_metric(rows, metric, run_dir / "plots" / f"{metric}.png")
    plot_class_accuracy(rows, run_dir / "plots" / "class_accuracy.png")
    header, table = summary_table(rows)
    study = rows[0]["study"] if rows else "study"
    return write_report(run_dir, f"ouroboros feedback loop: {study}", table, header)
