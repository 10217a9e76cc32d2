"""The feedback-loop study (Martinez et al. 2023).

Generation 0 is a class-conditional diffusion model trained on the real training
split. Every later generation is a fresh model trained on a set that `loop.scenario`
draws from real data and earlier generations' samples (ouroboros.studies.scenarios;
the default "replace" trains only on the previous generation's samples, the worst
case), each generation sampling as many images as the real set, balanced over
classes. results.csv records each training set's size and make-up from provenance
(train_size, train_real_share, train_share_gen<k>) and the scenario in its own
column. One chain per (guidance, seed).

Each generation's samples are scored as the data allows (`evaluation`): a classifier
trained on the real training split gives accuracy, cross-entropy and per-class
accuracy when the generator is class-conditional; FID, precision, recall, density and
coverage against the real training split always, on Inception features for colour
images of 32x32 and up when Inception weights are given (`loop.inception_weights`, or
found where ouroboros.features.inception looks), on the real-data classifier's
penultimate features otherwise.

In results.csv, ``generation`` is the model's index (0 = trained on real data); the
images it makes carry provenance generation ``g + 1``.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.preflight import check_run
from ouroboros.runner import Stage
from ouroboros.studies import scenarios
from ouroboros.studies.common import data_stage, derived_seed, generator_params, open_run, write_timings


def load_splits(config: StudyConfig) -> tuple[ImageSet, ImageSet]:
    full = load_dataset(config.data.train, config.data.image_size)
    if config.data.test is not None:
        test = load_dataset(config.data.test, config.data.image_size)
        if test.class_names != full.class_names:
            raise UserError(
                f"train and test datasets have different classes: {list(full.class_names)} vs {list(test.class_names)}"
            )
        if test.shape[0] != full.shape[0]:
            kind = {1: "greyscale (1 channel)", 3: "colour (3 channels)"}
            raise UserError(f"data.train is {kind.get(full.shape[0], full.shape[0])} but data.test "
                            f"{kind.get(test.shape[0], test.shape[0])}; use a test set of the same kind of images")
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
    # (variant, guidance, seed) -> per generation: (fit, sample, evaluate); variant is
    # "" without loop.variants
    chains: dict[tuple[str, float, int], list[tuple[Stage, Stage, Stage]]]

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
    evaluate = evaluation(config, train)
    scorer = {"classifier": classifier} if uses_classifier(evaluate) else {}
    reference = Stage("evaluate", evaluate, {"images": test_stage, **scorer, "real": train_stage},
                      label="real test")
    fit_config, sampling = generator_params(config)
    chains = {}
    for variant, lc in config.loop.cells():
        n = lc.samples_per_generation or len(train)
        scenarios.check_reservoir(lc.scenario, n, lc.generations, lc.real_fraction, len(train))
        # Each generation samples N images; augment's window (one generation by default)
        # must also hold round(lambda |R|) of them.
        n_sample = max(n, scenarios.generated_count(lc.scenario, n, len(train), lc.real_fraction,
                                                    lc.synthetic_ratio) if lc.scenario == "augment" else n)
        for w, s in itertools.product(lc.guidance, lc.seeds):
            outputs, chain = [], []
            for g in range(lc.generations):
                label = f"{variant + ' ' if variant else ''}w={w:g} seed={s} gen={g}"
                source = _training_set(lc, g, s, n, train_stage, outputs, label)
                fit = Stage("fit", {"config": fit_config, "seed": derived_seed(s, g, "fit"), "name": "diffusion"},
                            {"train": source}, label=label)
                sample = Stage("sample", {"n": n_sample, "guidance": float(w), "seed": derived_seed(s, g, "sample"),
                                          **sampling}, {"model": fit}, label=label)
                ev = Stage("evaluate", evaluate, {"images": sample, **scorer, "real": train_stage}, label=label)
                chain.append((fit, sample, ev))
                outputs.append(sample)
            chains[(variant, float(w), s)] = chain
    return LoopPlan(train, test, classifier, reference, chains)


def evaluation(config: StudyConfig, train: ImageSet) -> dict:
    """The evaluate stage's parameters for this study and data (see the module docstring):
    ``metrics`` is ``classifier+fid+prdc`` for a conditional generator, ``fid+prdc``
    otherwise; ``features`` (absent: the classifier's) is ``inception`` for colour
    images of at least 32x32 when the weights file is found, with its path and SHA-256
    (so other weights make other keys)."""
    params = {"metrics": "classifier+fid+prdc" if config.generator.conditional else "fid+prdc", "k": 5}
    c, h, w = train.shape
    if c == 3 and min(h, w) >= 32:
        weights = inception_weights(config.loop.inception_weights)
        if weights is not None:
            params.update(features="inception", weights=str(weights), weights_sha256=_sha256(weights))
    return params


def uses_classifier(evaluate: dict) -> bool:
    """Whether the evaluate stage needs the real-data classifier (for scores or features)."""
    return evaluate["metrics"].startswith("classifier+") or evaluate.get("features", "classifier") == "classifier"


def inception_weights(path: str | None) -> Path | None:
    """The Inception weights file: `path` (an error when it is not there), else
    $OUROBOROS_INCEPTION_WEIGHTS or the cache folders (None when not found there)."""
    from ouroboros.features.inception import find_weights

    if path is not None:
        return find_weights(path).resolve()
    try:
        return find_weights().resolve()
    except UserError:
        return None


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def varied_columns(config: StudyConfig) -> dict[str, dict[str, object]]:
    """column -> {variant: value} for every loop setting whose value differs between the
    variants (nested settings flattened as ``section.key``); {} without variants."""
    cells = config.loop.cells()
    if len(cells) < 2:
        return {}
    skip = {"generations", "guidance", "seeds", "variants", "scenario"}  # scenario has its own column
    flat = {name: _flatten({k: v for k, v in dataclasses.asdict(lc).items() if k not in skip}) for name, lc in cells}
    keys = list(next(iter(flat.values())))
    return {k: {name: values[k] for name, values in flat.items()} for k in keys
            if len({repr(values[k]) for values in flat.values()}) > 1}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = "" if v is None else v
    return out


def param_columns(config: StudyConfig) -> list[str]:
    """The parameter columns of results.csv: guidance and scenario, then (with
    loop.variants) the variant's name and each loop setting the variants vary."""
    if config.loop.variants is None:
        return ["guidance", "scenario"]
    return ["guidance", "scenario", "variant", *varied_columns(config)]


def _rows(config: StudyConfig, plan_: LoopPlan, paths: dict) -> list[dict]:
    import json

    rows = []
    ref = json.loads(paths[plan_.reference.key].read_text())
    for metric, value in ref.items():
        rows.append({"study": config.name, "cell": "reference", "seed": "", "generation": "",
                     "metric": metric, "value": value, "guidance": "", "scenario": ""})
    cells = dict(config.loop.cells())
    varied = varied_columns(config)
    for (variant, w, s), chain in plan_.chains.items():
        extra = {"variant": variant, **{col: by[variant] for col, by in varied.items()}} if variant else {}
        cell = f"{variant}, guidance={w:g}" if variant else f"guidance={w:g}"
        for g, (fit, _, ev) in enumerate(chain):
            metrics = json.loads(paths[ev.key].read_text())
            # The training set's size and make-up, read from the provenance of the set
            # the model was actually fitted on.
            metrics.update(scenarios.makeup(ImageSet.load(paths[fit.deps["train"].key])))
            for metric, value in metrics.items():
                rows.append({"study": config.name, "cell": cell, "seed": s, "generation": g, "metric": metric,
                             "value": value, "guidance": w, "scenario": cells[variant].scenario, **extra})
    return rows


def run(config: StudyConfig, run_dir: Path, progress: bool = True, runner=None) -> dict:
    """Run (or resume) the study into `run_dir`; returns a summary dict."""
    from ouroboros.report.grids import save_grid
    from ouroboros.report.results import write_results

    splits = load_splits(config)  # bad data fails here, before anything is written
    for _, lc in config.loop.cells():  # and so does a real split too small for a scenario
        scenarios.check_reservoir(lc.scenario, lc.samples_per_generation or len(splits[0]), lc.generations,
                                  lc.real_fraction, len(splits[0]))
    check_run(config, run_dir, splits[0].shape, splits[0].num_classes)  # and a bad --out or component
    evaluate = evaluation(config, splits[0])  # and missing Inception weights named in the config
    if progress:
        names = [name for name, _ in config.loop.cells()]
        what = f"{len(names)} variants" if config.loop.variants is not None else f"scenario {config.loop.scenario}"
        scores = ("classifier accuracy, " if evaluate["metrics"].startswith("classifier+") else "") + \
            f"FID/PRDC on {evaluate.get('features', 'classifier')} features"
        print(f"ouroboros: {config.name}: {what}, {len(config.loop.guidance)} guidance x "
              f"{len(config.loop.seeds)} seeds x "
              f"{config.loop.generations} generations on {len(splits[0])} real training images ({scores}) -> {run_dir}",
              file=sys.stderr)
    run_dir = Path(run_dir)
    runner = open_run(config, run_dir, progress, runner)
    p = plan(config, runner.cache, splits)
    paths = runner.run(p.targets())

    write_results(run_dir / "results.csv", _rows(config, p, paths), param_columns(config))
    write_timings(run_dir, runner)
    first_seed = config.loop.seeds[0]
    for (variant, w, s), chain in p.chains.items():
        if s != first_seed:
            continue
        folder = f"{variant}, guidance={w:g}" if variant else f"guidance={w:g}"
        for g, (_, sample, _) in enumerate(chain):
            out = run_dir / "samples" / folder / f"gen{g}.png"
            save_grid(ImageSet.load(paths[sample.key]), out, config.output.grid_per_class, config.output.grid_scale)
    save_grid(p.train, run_dir / "samples" / "real.png", config.output.grid_per_class, config.output.grid_scale)
    report(run_dir)
    return {"run_dir": str(run_dir), "timings": runner.timings}


def summary_table(rows: list[dict]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Key metrics (mean ± std over seeds) at the first, middle and last generation per
    guidance, or per variant and guidance when the run has loop.variants."""
    import numpy as np

    loop_rows = [r for r in rows if r["cell"] != "reference"]
    by_variant = any(r.get("variant") for r in loop_rows)
    header = ("variant" if by_variant else "guidance", "generation", "accuracy", "cross-entropy", "FID",
              "precision", "recall", "seeds")
    out = []
    gens = sorted({int(r["generation"]) for r in loop_rows})
    for cell in _cells(loop_rows):
        for g in sorted({gens[0], gens[len(gens) // 2], gens[-1]}):
            sel = [r for r in loop_rows if r["cell"] == cell and int(r["generation"]) == g]
            values = []
            for metric in ("accuracy", "cross_entropy", "fid", "precision", "recall"):
                v = [float(r["value"]) for r in sel if r["metric"] == metric]
                values.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "-")
            first = cell if by_variant else f"{float(sel[0]['guidance']):g}"
            out.append((first, str(g), *values, str(len({r["seed"] for r in sel}))))
    return header, out


def _cells(loop_rows: list[dict]) -> list[str]:
    """The conditions of a run in display order: variants as listed, guidance descending."""
    order = {}
    for r in loop_rows:
        order.setdefault(r["cell"], (len(order) if r.get("variant") else 0, -float(r["guidance"])))
    return sorted(order, key=order.get)


def report(run_dir: Path) -> Path:
    """(Re)draw plots and report.html from results.csv."""
    from ouroboros.report.html import write_report
    from ouroboros.report.plots import plot_class_accuracy, plot_makeup, plot_metric
    from ouroboros.report.results import read_results

    run_dir = Path(run_dir)
    rows = read_results(run_dir / "results.csv")
    for line, r in enumerate(rows, start=2):  # every generation's row names its generation and guidance
        if r["cell"] != "reference" and (r["generation"] == "" or r.get("guidance", "") == ""):
            raise UserError(f"{run_dir / 'results.csv'} line {line} has no generation or guidance, so it is not a "
                            "feedback-loop results table; run the study again with the same --out to rewrite it")
    by = "cell" if any(r.get("variant") for r in rows) else "guidance"
    present = {r["metric"] for r in rows}
    for metric in ("accuracy", "cross_entropy", "fid", "precision", "recall", "density", "coverage"):
        if metric in present:  # an unconditional model's samples have no accuracy
            plot_metric(rows, metric, run_dir / "plots" / f"{metric}.png", by=by)
    if "accuracy" in present:
        plot_class_accuracy(rows, run_dir / "plots" / "class_accuracy.png", by=by)
    plot_makeup(rows, run_dir / "plots" / "makeup.png", by=by)
    header, table = summary_table(rows)
    study = rows[0]["study"] if rows else "study"
    return write_report(run_dir, f"ouroboros feedback loop: {study}", table, header)
