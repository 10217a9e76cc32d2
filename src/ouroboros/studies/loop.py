"""The feedback-loop study (Martinez et al. 2023).

Generation 0 is a class-conditional diffusion model trained on the real training
split. Every later generation is a fresh model trained on a set that `loop.scenario`
draws from real data and earlier generations' samples (ouroboros.studies.scenarios;
the default "replace" trains only on the previous generation's samples, the worst
case), each generation sampling as many images as the real set, balanced over
classes. results.csv records each training set's size and make-up from provenance
(train_size, train_real_share, train_share_gen<k>) and the scenario in its own
column. `loop.curation` (ouroboros.studies.curation) filters each generation's
candidates before the scenario draws from them (watermark, detector, reward) and
results.csv records what it removed (curation_*) and the kind in a `curation` column.
One chain per (guidance, seed). Each generation's training set's class proportions are
recorded too (``class_share/<class>`` and their entropy ``class_entropy``, in nats): they
drift under ``loop.labels: sampled`` (ouroboros.config_loop_extra, with ``loop.init``:
warm-started retraining) and start from the real split's (``data.class_weights``,
``data.long_tail``).

Each generation's samples are scored as the data allows (`evaluation`): a classifier
trained on the real training split gives accuracy, cross-entropy and per-class
accuracy when the generator is class-conditional; FID, precision, recall, density and
coverage against the real test split (``evaluate.reference``: test, the default; train
scores against the training split), on Inception features for colour images of 32x32
and up when Inception weights are given (`loop.inception_weights`, or found where
ouroboros.features.inception looks), on the real-data classifier's penultimate features
otherwise. The split, the classifier and the yardstick rows (cell ``reference``) are
redrawn per seed unless ``evaluate.instruments`` is fixed (ouroboros.studies.loop_data);
results.csv's ``scored_on`` and ``instruments`` columns record both.

Each generation's model also gets ``test_loss``, its family's held-out loss on the real
test split (`GeneratorFamily.heldout_loss`; the test-loss curve of Gerstgrasser et al.):
for diffusion the denoising loss (mean squared noise-prediction error per pixel value)
at fixed timesteps and fixed noise, the same for every generation and chain; for the
gaussian and gmm families the exact negative log-likelihood in nats per dimension of
the model's space. The two are different quantities: compare a family with itself.
Families without a held-out loss get no test_loss row.

In results.csv, ``generation`` is the model's index (0 = trained on real data); the
images it makes carry provenance generation ``g + 1``.

Several generator families (``loop.generators``; by default one diffusion family with
the ``generator:`` settings). Each generation, every listed family is fitted on the
same training set and samples its count of the generation's N images: share x N,
rounded by largest remainders so the counts sum to N (`pool_counts`; a family whose
count is 0 makes nothing that generation). Labels cycle through the classes across the
families in entry order, so the pooled output O_g is balanced over classes as one set.
Its images carry source ``gen:<name>`` (the entry's name, default the family's); a
`pool` stage concatenates the families' samples into O_g, which the scenario then draws
from as from a single generator's output. The bias knob: an entry's ``bias`` when set;
otherwise ``loop.guidance`` (the chain axis) for families whose knob is guidance
(diffusion), and the family's neutral value for the others (temperature 1). With one
family every stage keeps the key it had before families existed. With several,
results.csv gets a ``family`` column: the rows of the pooled output (and the make-up,
with ``train_share_family_<name>`` from provenance) leave it empty; each family's own
samples are scored too, in rows naming the family (with its test_loss).

A grid's curated variants each get an unfiltered control (``<name> control``, curation
column ``control``, ``control_of`` naming the curated variant; loop.curation_controls).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ouroboros.config import StudyConfig
from ouroboros.data.class_balance import class_shares
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.crosschecks import cell_label, check_cells, variant_at  # noqa: F401  (used through this module too)
from ouroboros.studies import scenarios
from ouroboros.studies.loop_data import (  # noqa: F401  (the data's names, used through this module too)
    check_loop, curation_split, evaluation, inception_weights, load_data, load_splits, uses_classifier,
)
from ouroboros.studies.loop_plan import (  # noqa: F401  (the planner's names, used through this module too)
    Chain, Condition, LoopPlan, PoolEntry, distinct_generation0, plan, pool_counts, pool_entries,
)


def varied_columns(config: StudyConfig) -> dict[str, dict[str, object]]:
    """column -> {variant: value} for each key a loop.grid crosses (`config_grid.grid_columns`)
    and every loop setting whose value differs between the variants (nested settings
    flattened as ``section.key``); {} without variants."""
    from ouroboros.config_grid import grid_columns

    cells, grid = config.loop.cells(), grid_columns(config.loop)
    if len(cells) < 2:
        return grid
    skip = {"generations", "guidance", "seeds", "variants", "scenario", "grid"}  # scenario has its own column
    flat = {name: _flatten({k: v for k, v in dataclasses.asdict(lc).items() if k not in skip}) for name, lc in cells}
    keys = list(next(iter(flat.values())))
    return {**grid, **{k: {name: values[k] for name, values in flat.items()} for k in keys
                       if len({repr(values[k]) for values in flat.values()}) > 1}}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):  # e.g. the generators: a readable summary of the entries
            out[f"{prefix}{k}"] = " + ".join(_entry_text(e) for e in v)
        else:
            out[f"{prefix}{k}"] = "" if v is None else v
    return out


def _entry_text(entry) -> str:
    if isinstance(entry, dict) and "family" in entry:
        return f"{entry.get('name') or entry['family']} {entry.get('share', 1.0):g}"
    return str(entry)


def param_columns(config: StudyConfig, several_families: bool) -> list[str]:
    """The parameter columns of results.csv: guidance, scenario and curation (its kind, or
    ``control`` for a curated variant's unfiltered control); the split each metric was
    scored against (`scored_on`: test or train) and whether seeds redrew the instruments
    (`instruments`: per-seed or fixed); with loop.variants the variant's name, each loop
    setting the variants vary and, with controls, the curated variant each control is
    matched to (`control_of`); with several generator families, the family column."""
    columns = ["guidance", "scenario", "curation", "scored_on", "instruments"]
    if config.loop.variants is not None:
        columns += ["variant", *varied_columns(config)]
        if config.loop.controls():
            columns.append("control_of")
    if any(encoder_fit(config, lc) for _, lc in config.loop.cells()):
        columns.append("encoder_fit")
    return columns + (["family"] if several_families else [])


def encoder_fit(config: StudyConfig, lc) -> str:
    """Which images the latent families of loop cell `lc` fit their encoder on (own or
    real, joined by + with several; "" without a latent family): the report flags real."""
    return "+".join(e.fit_config["encoder_fit"] for e in pool_entries(config, lc) if "encoder_fit" in e.fit_config)


def instrument_accuracy(classifier_dir: Path, test_path: Path) -> float:
    """The share of the real test split that the measuring classifier (trained on the real
    training split) recognises: how far its scores of the generations can be trusted."""
    from ouroboros.features.classifier import Classifier

    test = ImageSet.load(test_path)
    return float(np.mean(Classifier.load(classifier_dir).logits(test).argmax(1) == test.labels))


def _rows(config: StudyConfig, plan_: LoopPlan, paths: dict) -> list[dict]:
    import json

    measured = {"scored_on": config.evaluate.reference, "instruments": config.evaluate.instruments}
    rows = []
    for seed, inst in plan_.instruments.items():  # the real yardstick, per seed unless fixed
        scores = json.loads(paths[inst.yardstick.key].read_text())
        if inst.yardstick_tails is not None:
            scores.update(json.loads(paths[inst.yardstick_tails.key].read_text()))
        if inst.classifier.key in paths:  # the instrument itself: its accuracy on the split it never trained on
            scores["instrument_accuracy"] = instrument_accuracy(paths[inst.classifier.key], paths[inst.test_stage.key])
        for metric, value in scores.items():
            rows.append({"study": config.name, "cell": "reference", "seed": "" if seed is None else seed,
                         "generation": "", "metric": metric, "value": value, "guidance": "", "scenario": "",
                         "curation": "", **measured})
    cells, controls = dict(config.loop.cells()), config.loop.controls()
    varied = varied_columns(config)
    for (variant, w, s), chain in plan_.chains.items():
        lc = cells[variant]
        row = {"study": config.name, "cell": cell_label(variant, w), "seed": s, "guidance": w,
               "scenario": lc.scenario, "curation": "control" if variant in controls else lc.curation.kind, **measured}
        if variant:
            row.update({"variant": variant, **{col: by[variant] for col, by in varied.items()}})
        if variant in controls:
            row["control_of"] = controls[variant]
        families = plan_.families.get((variant, w, s), [{}] * len(chain))
        heldout = plan_.heldout.get((variant, w, s), [{}] * len(chain))
        tails = plan_.tails.get((variant, w, s), [{}] * len(chain))
        if encoder_fit(config, lc):
            row["encoder_fit"] = encoder_fit(config, lc)
        for g, (fit, _, ev) in enumerate(chain):
            metrics = json.loads(paths[ev.key].read_text())
            # The training set's size and make-up, read from the provenance of the set
            # the model was actually fitted on, and its class proportions.
            train = ImageSet.load(paths[fit.deps["train"].key])
            metrics.update(scenarios.makeup(train, by_family=len(lc.families()) > 1))
            metrics.update(class_shares(train))
            curate = fit.deps["train"].deps.get("curation")
            if curate is not None:  # what curation removed from this generation's candidates
                metrics.update(json.loads(paths[curate.key].read_text())["stats"])
            losses = {name: json.loads(paths[st.key].read_text()) for name, st in heldout[g].items()}
            tail = {name: json.loads(paths[st.key].read_text()) for name, st in tails[g].items()}
            metrics.update(tail.get("", {}))  # the pooled output's (ouroboros.metrics.tails)
            if not families[g]:  # one family: its held-out loss is the generation's
                for loss in losses.values():
                    metrics.update(loss)
            rows += [{**row, "generation": g, "metric": metric, "value": value} for metric, value in metrics.items()]
            # With several families: each family's own samples scored too, named in the
            # family column (the pooled rows above leave it empty), with its held-out loss.
            for name, (_, _, fam_ev) in families[g].items():
                scores = {**json.loads(paths[fam_ev.key].read_text()), **losses.get(name, {}), **tail.get(name, {})}
                rows += [{**row, "generation": g, "metric": metric, "value": value, "family": name}
                         for metric, value in scores.items()]
    return rows


def pooled(rows: list[dict]) -> list[dict]:
    """The rows of the pooled output (and the reference): those without a family."""
    return [r for r in rows if not r.get("family")]


def check_families(config: StudyConfig, train: ImageSet, test: ImageSet | None = None) -> None:
    """Before anything is written: each diffusion entry's own settings build on this data
    (the top-level generator is checked by check_run), and a Gaussian family's PCA fits in
    the pixels and in the smallest training set a generation can have (N or |R|)."""
    for variant, (_, lc) in enumerate(config.loop.cells()):
        at = variant_at(config.loop, variant)
        _check_pool(config, lc, train, at)
    from ouroboros.bounds import check_loop_size
    from ouroboros.crosschecks import check_sizes

    # what the metrics need, with the data's sizes
    check_sizes(config, len(train), None if test is None else len(test), train.num_classes)
    check_loop_size(config, len(train), train.shape)  # memory and disk against the config's limits


def _check_pool(config: StudyConfig, lc, train: ImageSet, at: str) -> None:
    from ouroboros.preflight import check_components

    smallest = min(scenarios.samples_per_generation(lc, len(train), len(train)), len(train))
    classes = train.num_classes
    for i, (spec, entry) in enumerate(zip(lc.families(), pool_entries(config, lc))):
        settings = {**entry.fit_config, **entry.sampling}
        where = f"{at}generators[{i}].settings"
        if spec.settings and entry.family.config is type(config.generator):
            try:
                check_components(dataclasses.replace(config, generator=entry.family.config(**settings)),
                                 train.shape, train.num_classes)
            except UserError as exc:
                raise UserError(f"{where}: {exc}") from None
        components = settings.get("components") if settings.get("space") == "pca" else None
        pixels = int(np.prod(train.shape))
        if components is not None and components > min(len(train), pixels):  # the PCA is fitted on R
            raise UserError(f"{where}: components ({components}) exceeds the {pixels} pixel values per image or "
                            f"the {len(train)} real training images the PCA is fitted on; "
                            f"use at most {min(len(train), pixels)}")
        fit_on = {"own": smallest, "real": len(train)}.get(settings.get("encoder_fit"))  # a latent family's PCA
        if fit_on is not None and settings["components"] > min(fit_on, pixels):
            raise UserError(f"{where}: components ({settings['components']}) exceeds the {pixels} pixel values per "
                            f"image or the {fit_on} images of the smallest set its encoder is fitted on; "
                            f"use at most {min(fit_on, pixels)}")
        if "space" in settings:  # the Gaussian families estimate a covariance per class (per component)
            need = max(2, settings.get("mixture_components", 2))
            if train.class_counts().min() < need:  # generation 0 trains on the real split (imbalanced data)
                c = int(train.class_counts().argmin())
                raise UserError(f"{where}: the {entry.family.name} family needs at least {need} images per class, "
                                f"but the real training split has {train.class_counts()[c]} of class "
                                f"{train.class_names[c]!r}; make data.class_weights or data.long_tail less extreme")
            if smallest // classes < need:
                raise UserError(f"{where}: the {entry.family.name} family needs at least {need} images per class "
                                f"in every training set, but a generation of {smallest} images has "
                                f"{smallest // classes} per class for {classes} classes; raise "
                                "loop.samples_per_generation")


def save_grids(config: StudyConfig, plan_: LoopPlan, paths: dict, run_dir: Path) -> None:
    """samples/: a grid of the first seed's samples per condition and generation, and one
    of the real training split."""
    from ouroboros.report.grids import save_grid

    folders = check_cells(config.loop)  # safe and distinct (checked with the config, before anything is written)
    first_seed = config.loop.seeds[0]
    for (variant, w, s), chain in plan_.chains.items():
        if s != first_seed:
            continue
        for g, (_, sample, _) in enumerate(chain):
            out = run_dir / "samples" / folders[(variant, w)] / f"gen{g}.png"
            save_grid(ImageSet.load(paths[sample.key]), out, config.output.grid_per_class, config.output.grid_scale)
    save_grid(plan_.train, run_dir / "samples" / "real.png", config.output.grid_per_class, config.output.grid_scale)


def summary_table(rows: list[dict]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Key metrics at the first, middle and last generation per guidance (or per variant
    and guidance, with loop.variants), of the pooled output; then, when several families
    feed the pool, of each family's own samples (the first column names the family). Each
    value is the mean over seeds with its 95% Student-t interval within the metric's range
    (`ouroboros.report.stats.Interval.format`; "no interval (1 seed)" with one seed)."""
    from ouroboros.report.stats import metric_range, t_interval

    loop_rows = [r for r in rows if r["cell"] != "reference"]
    by_variant = any(r.get("variant") for r in loop_rows)
    header = ("variant" if by_variant else "guidance", "generation", "seeds", "accuracy", "cross-entropy", "FID",
              "precision", "recall")
    out = []
    gens = sorted({int(r["generation"]) for r in loop_rows})
    for family in sorted({r.get("family", "") for r in loop_rows}):  # "" (pooled) first
        for cell in _cells(loop_rows):
            for g in sorted({gens[0], gens[len(gens) // 2], gens[-1]}):
                sel = [r for r in loop_rows
                       if r["cell"] == cell and int(r["generation"]) == g and r.get("family", "") == family]
                if not sel:
                    continue
                values = []
                for metric, digits in (("accuracy", 3), ("cross_entropy", 2), ("fid", 1), ("precision", 3),
                                       ("recall", 3)):
                    v = [float(r["value"]) for r in sel if r["metric"] == metric]
                    values.append(t_interval(v).format(1, digits, metric_range(metric)))
                first = cell if by_variant else f"{float(sel[0]['guidance']):g}"
                out.append((first + (f" {family}" if family else ""), str(g),
                            str(len({r["seed"] for r in sel})), *values))
    return header, out


def _cells(loop_rows: list[dict]) -> list[str]:
    """The conditions of a run in display order: variants as listed, guidance descending."""
    order = {}
    for r in loop_rows:
        order.setdefault(r["cell"], (len(order) if r.get("variant") else 0, -float(r["guidance"])))
    return sorted(order, key=order.get)
