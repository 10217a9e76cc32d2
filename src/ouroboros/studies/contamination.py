"""The contamination study (Hataya, Bao and Arai 2023) on disjoint real splits.

`data.train` is cut, per class, into disjoint splits: the downstream training set,
the generator split, a same-source real control and the test split; an other-source real
control (`ouroboros.data.controls`) comes from a second dataset. Every seed redraws
every random choice a repeat of the experiment would redraw: the generator fitted on
the generator split and the pools it samples (or, for an external pool, nothing),
which real images a mixture drops and which images fill it, and each classifier's
initialisation and data order. Within a seed, cells that the paper compares share
their draws (see `ouroboros.data.mixtures`): the generated and the control mixture
at a ratio keep the same real images, a larger ratio drops a superset of a smaller
one, and Table 7's "5% alone", "+ generated" and "+ real" start from the same subset.

Tables written to ``tables.md`` (mean and 95% Student-t interval over seeds; the
number of distinct images in each training set beside it):

- Table 1: generated vs. real control replacing 0/20/40/80/100% of the training set; each
  control in ``contamination.controls`` (same-source, other-source) is a row of its own.
- Table 3: a diffusion model trained on each mixture (generated and control), its
  samples scored against the test split; class-conditional like the pool's generator, or
  with ``contamination.table3_conditional: false`` unconditional, as the paper's IDDPM is.
- Table 4: the training sets themselves scored against the test split.
- Table 5: simple conditioning (one guidance) vs. diverse (guidance and sampling
  steps drawn per image), replacing the same shares.
- Table 6: accuracy on shifted test sets, per share of generated data.
- Table 7: a small real set alone vs. filled up to full size with generated or real.
- Table 10: Table 3's model trained on the real images the largest ratio below 100% keeps
  (the paper's 20% real subset of IN/SD-80%), alone, against the one trained on that mixture.
- Table 8: all real data plus appended generated data.
- Table 11: denoising-autoencoder pre-training + linear probe.
- Detection: probes separating held-out real (the first control) from generated images.

Tables 3, 4 and 10 are scored against the test split, which no model trains on (the
classifiers are only evaluated on it), in the features of a classifier trained on the
generator split, which is never one of the scored sets. Then ``tables.md`` states,
for each of the paper's directions, whether it holds, is reversed, or is not resolved
at this number of seeds, from the interval of the paired per-seed difference.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ouroboros.config import StudyConfig
from ouroboros.data.controls import load_other_source
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.runner import Stage
from ouroboros.graph import settings_params
from ouroboros.studies.common import data_stage, derived_seed, generator_params

PARAM_COLUMNS = ["table", "source", "ratio", "arch", "test", "control"]
SET_METRICS = ("images", "unique_images")  # rows describing each training set


@dataclasses.dataclass(frozen=True)
class Control:
    """A real control (`ouroboros.data.controls`): its split's role, its `source` in Tables
    1, 3, 4 and 6, its `source` in Table 7 (filling the small real set), its stage labels."""
    role: str
    source: str
    fill_source: str
    label: str


CONTROLS = {"same-source": Control("control", "real control", "+ real", "control"),
            "other-source": Control("other control", "other-source control", "+ other-source real", "other control")}
# The `control` column of a row: which real control its training set holds.
CONTROL_OF = {s: name for name, ctl in CONTROLS.items() for s in (ctl.source, ctl.fill_source)}
TABLE10 = "real alone"  # Table 10's source: the real images an r-generated mixture keeps, alone


def table10_ratio(ratios) -> float | None:
    """Table 10's share replaced (the paper's 80%): the largest ratio below 100%."""
    return max((float(r) for r in ratios if 0.0 < r < 1.0), default=None)


def mix_seed(seed: int) -> int:
    """Shared by every mixture of a seed: paired, nested draws (`ouroboros.data.mixtures`)."""
    return derived_seed("mix", seed)


def load_splits(config: StudyConfig) -> dict[str, ImageSet]:
    c = config.contamination
    full = load_dataset(config.data.train, config.data.image_size)
    # The generator split also trains the feature network of Tables 3 and 4, so it is
    # needed even when the generated pool comes from an external folder.
    fractions = {"train": c.split_train, "generator": c.split_generator}
    if "same-source" in c.controls:
        fractions["control"] = c.split_control
    if config.data.test is None:
        fractions["test"] = c.split_test
    missing = sorted(k for k, v in fractions.items() if v <= 0)
    if missing:
        raise UserError(f"contamination: split fractions for {missing} must be positive (the generator split also "
                        "trains the feature network of Tables 3 and 4)")
    counts = full.class_counts()
    if (counts < len(fractions)).any():
        raise UserError(f"every class needs at least {len(fractions)} images to make {len(fractions)} splits; "
                        f"counts {counts.tolist()}")
    splits = stratified_split(full, fractions, seed=config.data.split_seed)
    for role, spec in (("generated", c.generated), ("test", config.data.test)):
        if spec is not None:
            if role == "generated" and c.resize_generated:
                external = _load_resized(spec, full.shape)
            else:
                external = load_dataset(spec)
            if external.class_names != full.class_names:
                raise UserError(f"{role} set {spec} has classes {list(external.class_names)[:5]}..., "
                                f"the training data {list(full.class_names)[:5]}...: they must match")
            if external.shape != full.shape:
                fix = ("; set contamination.resize_generated: true to resize and convert it on loading"
                       if role == "generated" else "")
                raise UserError(f"{role} set {spec} has images {external.shape}, the training data {full.shape}{fix}")
            if role == "generated":  # images from disk load as real unless a manifest says what made them
                named = np.char.startswith(external.source.astype(np.str_), "gen:")
                folder = f"gen:{Path(spec.split(':', 1)[-1]).name}"
                external = external.with_provenance(source=np.where(named, external.source, folder),
                                                    generation=np.maximum(external.generation, 1))
            splits[role] = external
    if "other-source" in c.controls:
        splits[CONTROLS["other-source"].role] = load_other_source(c.control, config.data.train, full)
    return splits


def _load_resized(spec: str, shape: tuple[int, int, int]) -> ImageSet:
    """An ImageFolder pool made to match the training images: each image resized
    (Pillow's antialiased bilinear) to their size as it loads, then RGB -> grey
    (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, rounded) when they are grey."""
    from ouroboros.data.loaders import _detect, load_imagefolder

    c, h, w = shape
    path = spec.split(":", 1)[1] if spec.startswith("imagefolder:") else spec
    if not (spec.startswith("imagefolder:") or _detect(Path(spec)) == "imagefolder"):
        raise UserError(f"contamination.resize_generated applies to an ImageFolder pool; {spec} is not one")
    if h != w:
        raise UserError(f"contamination.resize_generated makes square images; the training images are {h}x{w}")
    pool = load_imagefolder(path, size=h)
    if pool.shape[0] == 3 and c == 1:
        luma = np.tensordot(np.array([299, 587, 114]), pool.images.astype(np.int64), axes=([0], [1]))
        grey = ((luma + 500) // 1000).astype(np.uint8)[:, None]
        pool = ImageSet(grey, pool.labels, pool.class_names, pool.source, pool.generation, pool.seed, pool.condition)
    return pool


@dataclasses.dataclass
class Cell:
    table: str
    source: str
    ratio: float
    seed: int
    mixture: Stage

    @property
    def control(self) -> str:
        """The real control the training set holds ("" for none)."""
        return CONTROL_OF.get(self.source, "")


@dataclasses.dataclass
class Plan:
    cells: list[Cell]
    runs: dict  # (mixture key, arch, seed) -> classify stage
    analysis: dict  # (table, source, ratio, seed) -> stage
    pools: dict  # seed -> {"simple": stage, "diverse": stage}

    def targets(self) -> list[Stage]:
        return list(self.runs.values()) + list(self.analysis.values())


def _pools(config: StudyConfig, stages: dict, n_pool: int, seed: int) -> dict[str, Stage]:
    """The seed's generated pools: a generator fitted on the generator split, sampled
    with one guidance (simple) and with guidance and steps drawn per image (diverse)."""
    if "generated" in stages:
        return {"simple": stages["generated"], "diverse": stages["generated"]}
    c = config.contamination
    fit_config, sampling = generator_params(config)
    fit = Stage("fit", {"config": fit_config, "seed": derived_seed("pool", "fit", seed), "name": "diffusion"},
                {"train": stages["generator"]}, label=f"pool generator seed={seed}")
    simple = Stage("sample", {"n": n_pool, "guidance": float(c.guidance), "seed": derived_seed("pool", "simple", seed),
                              **sampling}, {"model": fit}, label=f"simple pool seed={seed}")
    diverse = Stage("sample_diverse", {"n": n_pool, "guidance": [float(w) for w in c.diverse_guidance],
                                       "sample_steps": list(c.diverse_sample_steps),
                                       "seed": derived_seed("pool", "diverse", seed), "sampler": sampling["sampler"],
                                       "sample_batch_size": sampling["sample_batch_size"]},
                    {"model": fit}, label=f"diverse pool seed={seed}")
    return {"simple": simple, "diverse": diverse}


def plan(config: StudyConfig, cache: Path, splits: dict[str, ImageSet]) -> Plan:
    c = config.contamination
    stages = {role: data_stage(s, role, cache) for role, s in splits.items()}
    train = splits["train"]
    n_pool = train.num_classes * int(train.class_counts().max())  # enough of every class for 100%
    cells, pools = [], {}
    for seed in c.seeds:
        pools[seed] = pool = _pools(config, stages, n_pool, seed)
        controls = [CONTROLS[name] for name in c.controls]

        def mixture(mode, deps, ratio, repeats=False, label=""):
            if mode == "replace" and ratio == 0.0:
                return stages["train"]  # the clean training set itself
            return Stage("mix", {"mode": mode, "ratio": float(ratio), "seed": mix_seed(seed),
                                 "allow_repeats": repeats}, deps, label=f"{label} seed={seed}")

        def add(table, source, ratio, mixture_stage):
            cells.append(Cell(table, source, ratio, seed, mixture_stage))
            return mixture_stage

        for r in c.ratios:
            generated = add("1", "generated", r, mixture("replace", {"real": stages["train"], "other": pool["simple"]},
                                                         r, label=f"generated {r:g}"))
            for ctl in controls:  # a control may be short of a class: repeats allowed
                add("1", ctl.source, r, mixture("replace", {"real": stages["train"], "other": stages[ctl.role]}, r,
                                                True, f"{ctl.label} {r:g}"))
            add("5", "simple", r, generated)
            add("5", "diverse", r, mixture("replace", {"real": stages["train"], "other": pool["diverse"]}, r,
                                           label=f"diverse {r:g}"))
        small = c.small_fraction
        alone = add("7", f"{small:.0%} real", small,
                    mixture("subsample", {"real": stages["train"]}, small, label="small real"))
        fill_generated = {"real": alone, "other": pool["simple"], "target": stages["train"]}
        add("7", "+ generated", small, mixture("fill", fill_generated, small, label="filled generated"))
        for ctl in controls:
            fill_real = {"real": alone, "other": stages[ctl.role], "target": stages["train"]}
            add("7", ctl.fill_source, small, mixture("fill", fill_real, small, True, f"filled {ctl.fill_source[2:]}"))
        for r in c.append_ratios:
            add("8", "real + generated", r, mixture("append", {"real": stages["train"], "other": pool["simple"]}, r,
                                                   label=f"append {r:g}"))

    runs = {}
    for cell in cells:
        for arch in c.archs:
            key = (cell.mixture.key, arch, cell.seed)
            if key not in runs:
                cfg = settings_params(config.classifier) | {"arch": arch}
                runs[key] = Stage("classify", {"config": cfg, "seed": cell.seed, "shifts": list(c.shifts)},
                                  {"train": cell.mixture, "test": stages["test"]},
                                  label=f"{cell.mixture.label or f'real seed={cell.seed}'} {arch}")
    return Plan(cells, runs, _analysis_stages(config, stages, cells, pools, len(train)), pools)


def _analysis_stages(config, stages, cells, pools, n_samples: int) -> dict:
    """Tables 3, 4, 10 and 11 and the detection probes, keyed by (table, source, ratio, seed)."""
    feat_cfg = settings_params(config.classifier) | {"arch": "cnn"}
    # Features for Tables 3 and 4 come from a network trained on none of the sets they
    # score, and the sets are scored against the test split, which nothing trains on.
    features = Stage("classifier", {"config": feat_cfg, "seed": 0}, {"train": stages["generator"]},
                     label="feature classifier (generator split)")
    fit_config, sampling = generator_params(config)
    guidance = float(config.contamination.guidance)
    if not config.contamination.table3_conditional:  # the paper's IDDPM: no labels, so no guidance
        fit_config, guidance = {**fit_config, "conditional": False}, 0.0

    def generator_scores(training_set, source, ratio, seed, table="3"):
        """A generative model trained on `training_set`, its samples scored (Tables 3 and 10).
        Fit and sampling seeds depend on the ratio and seed alone: every source at a ratio is paired."""
        where = f"{source} {ratio:g} seed={seed}"
        fit = Stage("fit", {"config": fit_config, "seed": derived_seed("table3", ratio, seed), "name": "diffusion"},
                    {"train": training_set}, label=f"table {table} fit {where}")
        sample = Stage("sample", {"n": n_samples, "guidance": guidance,
                                  "seed": derived_seed("table3", "sample", ratio, seed), **sampling},
                       {"model": fit}, label=f"table {table} sample {where}")
        return Stage("score_set", {"k": 5}, {"images": sample, "reference": stages["test"], "classifier": features},
                     label=f"table {table} score {where}")

    out = {}
    for cell in cells:
        if cell.table not in ("1", "5") or (cell.table, cell.source) == ("5", "simple"):
            continue  # Table 5's simple cells are Table 1's generated cells
        where = (cell.source, cell.ratio, cell.seed)
        out[("4", *where)] = Stage("score_set", {"k": 5}, {"images": cell.mixture, "reference": stages["test"],
                                                            "classifier": features},
                                   label=f"table 4 {cell.source} {cell.ratio:g} seed={cell.seed}")
        if cell.table == "1":  # Table 3: a generative model trained on the mixture
            out[("3", *where)] = generator_scores(cell.mixture, *where)
        if cell.table == "1" and cell.source == "generated":  # Table 11: self-supervised pre-training
            out[("11", *where)] = Stage(
                "ssl", {"config": feat_cfg, "seed": cell.seed, "epochs": config.classifier.epochs},
                {"train": cell.mixture, "test": stages["test"]}, label=f"ssl {cell.ratio:g} seed={cell.seed}")
    top = table10_ratio(config.contamination.ratios)
    for seed in pools if top is not None else ():  # Table 10: the real images of the top mixture, alone
        alone = Stage("mix", {"mode": "keep", "ratio": top, "seed": mix_seed(seed), "allow_repeats": False},
                      {"real": stages["train"]}, label=f"real kept at {top:g} seed={seed}")
        out[("10", TABLE10, top, seed)] = generator_scores(alone, TABLE10, top, seed, table="10")
    held_out = stages[CONTROLS[config.contamination.controls[0]].role]
    for seed, pool in pools.items():
        for name, stage in pool.items():
            # Held-out real images for the probes: the first control (never the test split,
            # which must stay untouched by any training for Tables 3 and 4).
            out[("detection", name, "", seed)] = Stage(
                "detect", {"seed": seed}, {"real": held_out, "generated": stage, "classifier": features},
                label=f"detect {name} seed={seed}")
    return out


def _unique_images(images: ImageSet) -> int:
    flat = np.ascontiguousarray(images.images.reshape(len(images), -1))
    return len(np.unique(flat.view(np.dtype((np.void, flat.shape[1]))).ravel()))


def _rows(config: StudyConfig, p: Plan, paths: dict) -> list[dict]:
    first_control = config.contamination.controls[0]  # the detection probes' held-out real images

    def row(cell, seed, metric, value, table, source, ratio, arch, test):
        control = first_control if table == "detection" else CONTROL_OF.get(source, "")
        return {"study": config.name, "cell": cell, "seed": seed, "generation": "", "metric": metric, "value": value,
                "table": table, "source": source, "ratio": ratio, "arch": arch, "test": test, "control": control}

    rows = []
    for (table, source, ratio, seed), stage in p.analysis.items():
        arch = "dae + linear probe" if table == "11" else ""
        for metric, value in sorted(json.loads(paths[stage.key].read_text()).items()):
            if table == "detection":  # one value per probe
                arch, metric = metric, "accuracy"
            rows.append(row(f"table{table}:{source}:{ratio}", seed, metric, value, table, source, ratio, arch,
                            "held-out real" if table == "detection" else "test"))
        if table == "10":  # the size of its training set (score <- sample <- fit <- the set)
            images = ImageSet.load(paths[stage.deps["images"].deps["model"].deps["train"].key])
            for metric, value in zip(SET_METRICS, (len(images), _unique_images(images))):
                rows.append(row(f"table{table}:{source}:{ratio}", seed, metric, value, table, source, ratio, "", ""))
    described = {}
    for cell in p.cells:
        name = f"table{cell.table}:{cell.source}:{cell.ratio:g}"
        if cell.mixture.key not in described:
            images = ImageSet.load(paths[cell.mixture.key])
            described[cell.mixture.key] = (len(images), _unique_images(images))
        for metric, value in zip(SET_METRICS, described[cell.mixture.key]):
            rows.append(row(name, cell.seed, metric, value, cell.table, cell.source, cell.ratio, "", ""))
        for arch in config.contamination.archs:
            scores = json.loads(paths[p.runs[(cell.mixture.key, arch, cell.seed)].key].read_text())["scores"]
            for key, value in sorted(scores.items()):
                test, metric = key.split("/")
                rows.append(row(name, cell.seed, metric, value, cell.table, cell.source, cell.ratio, arch, test))
    return rows


def group_confusion(m: np.ndarray, class_names, groups) -> tuple[np.ndarray, list[str]]:
    """Sum a class confusion matrix over superclasses (Fig. 3); classes in no group are dropped."""
    if not groups:
        return m, list(class_names)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({c for g in groups for c in g} - set(index))
    if unknown:
        raise UserError(f"contamination.class_groups names unknown classes: {unknown[:5]}")
    member = np.zeros((len(groups), len(class_names)))
    for gi, g in enumerate(groups):
        member[gi, [index[c] for c in g]] = 1
    return member @ m @ member.T, ["/".join(g) if len(g) <= 4 else f"{g[0]}.. ({len(g)})" for g in groups]


def _figures(config, run_dir, splits, p: Plan, paths) -> None:
    """Fig. 6 (power spectra of real vs generated) and Fig. 3 (confusion matrices of a
    classifier trained on clean vs fully generated data), for the first seed."""
    from ouroboros.metrics.spectra import radial_power_spectra
    from ouroboros.report.plots import plot_confusions, plot_spectra

    c = config.contamination
    seed = c.seeds[0]
    spectra = {"real (training split)": radial_power_spectra(splits["train"].images)}
    if CONTROLS["other-source"].role in splits:
        spectra["real (other-source control)"] = radial_power_spectra(splits[CONTROLS["other-source"].role].images)
    for name, pool in p.pools[seed].items():
        spectra[f"generated ({name})"] = radial_power_spectra(ImageSet.load(paths[pool.key]).images)
    plot_spectra(spectra, run_dir / "plots" / "spectra.png")

    arch = c.archs[0]
    matrices, labels = {}, None
    for cell in p.cells:
        if cell.seed == seed and cell.table == "1" and cell.source == "generated" and cell.ratio in (0.0, 1.0):
            m = np.asarray(json.loads(paths[p.runs[(cell.mixture.key, arch, seed)].key].read_text())["confusion"])
            m, labels = group_confusion(m, splits["train"].class_names, c.class_groups)
            matrices[f"{arch}, trained on {cell.ratio:.0%} generated"] = m
    if matrices:
        plot_confusions(matrices, labels, run_dir / "plots" / "confusion.png")


def save_figures_and_grids(config: StudyConfig, run_dir: Path, splits: dict, p: Plan, paths: dict) -> None:
    """plots/: Fig. 6's spectra and Fig. 3's confusion matrices; samples/: the fully
    generated and fully control training sets of the first seed, and the real one."""
    from ouroboros.report.grids import save_grid

    _figures(config, run_dir, splits, p, paths)
    first = config.contamination.seeds[0]
    for cell in p.cells:
        if cell.seed == first and cell.table == "1" and cell.ratio == 1.0:
            name = "generated" if cell.source == "generated" else ("control" if cell.control == "same-source"
                                                                    else f"control-{cell.control}")
            save_grid(ImageSet.load(paths[cell.mixture.key]), run_dir / "samples" / f"{name}.png",
                      config.output.grid_per_class, config.output.grid_scale)
    save_grid(splits["train"], run_dir / "samples" / "real.png", config.output.grid_per_class, config.output.grid_scale)
