"""The captioning study (Hataya, Bao and Arai 2023, Tables 2 and 9): a captioner trained
on a captioned set whose images are partly replaced by images generated from their own
captions, against real controls replacing the same shares.

`data.train` (captioned: the embedded ``digits`` or ``mnist5k``, captioned from their
pixels by `ouroboros.data.digit_captions`, or a captioned ``.npz``) is cut, per class, into
disjoint splits: the captioner's training set, the generator split, a same-source real
control and the test split, whose captions are the references. The generated stand-ins
(SD-COCO's construction: one image per training image, made from one of its captions,
keeping all its captions and its id) come

- on the embedded default, from the digits' class-conditional generator, fitted on the
  generator split and conditioned on the class the chosen caption names
  (`ouroboros.studies.captioning_stages`);
- or, with ``captioning.generated``, from a folder of images keyed by caption id
  (``<folder>/<image id>/*.png``): what ``ouroboros generate text2image --model DIR
  --captions CAPTIONS.json --per-class 1 --out FOLDER`` writes from a text-to-image pipeline.

The mixtures are the contamination study's (`ouroboros.data.mixtures`, drawn with its
`mix_seed`): ``substitute`` drops exactly the images ``replace`` drops and puts in each one's
own stand-in, so the generated and the control mixtures of a seed keep the same real
images and a larger share drops a superset of a smaller one. The controls
(`ouroboros.studies.contamination.CONTROLS`) replace the same shares with real captioned
images: the same-source control split, and the other-source control (``mnist5k`` for
``digits`` and the other way round, captioned from its own pixels). Table 9's "f% real"
is the real part alone of the (1 - f) mixture, and "+ generated" that mixture itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ouroboros.config_compare import margin
from ouroboros.config_sections import MAX_LIST, _guidance, _seeds
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.errors import UserError, check_float, check_list
from ouroboros.graph import Stage, settings_params
from ouroboros.studies.common import data_stage, derived_seed, generator_params
from ouroboros.studies.contamination import CONTROLS, mix_seed
from ouroboros.tasks.captioner_config import CaptionerConfig

PARAM_COLUMNS = ["table", "source", "ratio", "control"]
EMBEDDED = ("digits", "mnist5k")  # captioned from their pixels (ouroboros.data.digit_captions)


@dataclass
class CaptioningConfig:
    """The captioning study (Tables 2 and 9 of Hataya et al. 2023) on disjoint splits of data.train."""

    # Disjoint real splits (fractions of data.train, per class): the captioner's training set, the generator's
    # own training data, the same-source control (at least as large as the training set: 100% needs no repeats),
    # and the test split (its captions are the references; nothing trains on it).
    split_train: float = 0.3
    split_generator: float = 0.23
    split_control: float = 0.32
    split_test: float = 0.15
    # A folder of generated images keyed by caption id (<folder>/<image id>/*.png, as `ouroboros generate
    # text2image --captions` writes them), resized to the training images; null: the embedded generator.
    generated: Optional[str] = None
    controls: list[str] = field(default_factory=lambda: ["same-source", "other-source"])
    control: Optional[str] = None  # the other-source control (null: mnist5k for digits, digits for mnist5k)
    ratios: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.8, 1.0])  # Table 2
    subsets: list[float] = field(default_factory=lambda: [0.05, 0.2])  # Table 9: real subsets, alone or filled up
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # each redraws every random choice
    guidance: float = 1.0  # the embedded generator's guidance
    # The metrics compared in comparisons.csv (Holm over all of them) and the equivalence margin of "no effect"
    # (TOST): a number in the metric's units, or "N%" of the baseline's mean.
    compare_metrics: list[str] = field(default_factory=lambda: ["Bleu_4", "ROUGE_L", "CIDEr"])
    equivalence_margin: Union[float, str] = "5%"
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)

    def validate(self, where: str = "captioning") -> None:
        from ouroboros.data.controls import check_controls, check_splits_and_sources
        from ouroboros.data.mixtures import check_ratio
        from ouroboros.metrics.captions import KEYS

        check_splits_and_sources(where, self)
        check_controls(where, self.controls, self.control)
        for name, lo_open in (("ratios", False), ("subsets", True)):
            values = check_list(f"{where}.{name}", getattr(self, name), MAX_LIST, nonempty=name == "ratios",
                                 distinct=True)
            for r in values:
                if isinstance(r, bool) or not isinstance(r, (int, float)):
                    raise UserError(f"{where}.{name} must hold numbers; got {r!r}")
                check_float(f"{where}.{name}", check_ratio(r), 0.0, 1.0, lo_open=lo_open, hi_open=lo_open)
        _seeds(f"{where}.seeds", self.seeds)
        _guidance(f"{where}.guidance", self.guidance)
        check_list(f"{where}.compare_metrics", self.compare_metrics, len(KEYS), nonempty=False, distinct=True)
        for m in self.compare_metrics:
            if m not in KEYS:
                raise UserError(f"{where}.compare_metrics: unknown metric {m!r}; use some of {', '.join(KEYS)}")
        margin(f"{where}.equivalence_margin", self.equivalence_margin)
        self.captioner.check_values(f"{where}.captioner")

    def delta_of(self, metric: str, baseline_mean: float) -> float:
        value = self.equivalence_margin
        return margin("", value) * abs(baseline_mean) if isinstance(value, str) else float(value)


# -- data ---------------------------------------------------------------------------------------


def _captioned(spec: str, what: str) -> ImageSet:
    """A captioned dataset: an embedded digit set captioned from its pixels, or one that carries captions."""
    from ouroboros.data.digit_captions import load_captioned
    from ouroboros.data.loaders import load_dataset

    if spec in EMBEDDED:
        return load_captioned(spec)
    images = load_dataset(spec)
    if images.captions is None:
        raise UserError(f"{what} {spec} has no captions: every image needs its captions (use digits, mnist5k or "
                        "a captioned .npz, e.g. ouroboros.data.caption_loaders.load_coco(...).save(PATH))")
    return images


def _other_source(c: CaptioningConfig, train_spec: str, full: ImageSet) -> ImageSet:
    """The other-source control, resized to the training images and captioned (`ouroboros.data.controls`)."""
    from ouroboros.data.controls import COUNTERPARTS, load_other_source
    from ouroboros.data.digit_captions import caption_digits

    if c.control is None and train_spec not in COUNTERPARTS:
        raise UserError(f"captioning.controls runs other-source, a second real captioned source of the training "
                        f"data's classes: name it as captioning.control (data.train {train_spec} has no embedded "
                        "counterpart)")
    spec = c.control if c.control is not None else COUNTERPARTS[train_spec]
    other = load_other_source(spec, train_spec, full)  # its classes checked against the training data's
    if other.captions is not None:
        return other
    if spec in EMBEDDED:
        return caption_digits(other, spec)
    raise UserError(f"the other-source control {spec} has no captions: every control image needs its captions "
                    "(use digits, mnist5k or a captioned .npz)")


def _generated_folder(c: CaptioningConfig, folder: str, train: ImageSet) -> ImageSet:
    """One stand-in per training image from a folder keyed by caption id: the first image of
    ``<folder>/<id>/``, resized to the training images, with that image's label and captions."""
    from ouroboros.studies.contamination import _load_resized

    pool = _load_resized(folder if folder.startswith("imagefolder:") else f"imagefolder:{folder}", train.shape)
    first: dict[str, int] = {}
    for i, label in enumerate(pool.labels.tolist()):
        first.setdefault(pool.class_names[label], i)
    ids = train.captions.ids
    missing = [i for i in ids if i not in first]
    if missing:
        raise UserError(f"captioning.generated {folder} has no image for {len(missing)} of the {len(ids)} training "
                        f"images (caption id {missing[0]!r} first): it needs a folder <id>/ per image, as "
                        "`ouroboros generate text2image --captions CAPTIONS.json --per-class 1` writes")
    picked = pool.subset(np.array([first[i] for i in ids], dtype=np.int64))
    name = Path(folder.split(":", 1)[-1]).name or "generated"
    return ImageSet(picked.images, train.labels, train.class_names, np.full(len(ids), f"gen:{name}"),
                    np.maximum(picked.generation, 1), picked.seed, picked.condition, train.captions)


def load_splits(config) -> dict[str, ImageSet]:
    c = config.captioning
    if config.data.test is not None:
        raise UserError("the captioning study splits its test set off data.train (captioning.split_test); "
                        "remove data.test")
    full = _captioned(config.data.train, "data.train")
    fractions = {"train": c.split_train, "generator": c.split_generator, "test": c.split_test}
    if "same-source" in c.controls:
        fractions["control"] = c.split_control
    missing = sorted(k for k, v in fractions.items() if v <= 0)
    if missing:
        raise UserError(f"captioning: split fractions for {missing} must be positive")
    counts = full.class_counts()
    if (counts < len(fractions)).any():
        raise UserError(f"every class needs at least {len(fractions)} images to make {len(fractions)} splits; "
                        f"counts {counts.tolist()}")
    splits = stratified_split(full, fractions, seed=config.data.split_seed)
    if "other-source" in c.controls:
        splits[CONTROLS["other-source"].role] = _other_source(c, config.data.train, full)
    if c.generated is not None:
        splits["generated"] = _generated_folder(c, c.generated, splits["train"])
    return splits


# -- plan ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    table: str  # "2" or "9"
    source: str
    ratio: float  # Table 2: the share replaced; Table 9: the real subset's fraction
    seed: int
    mixture: Stage

    @property
    def control(self) -> str:
        return next((name for name, ctl in CONTROLS.items() if ctl.source == self.source), "")


@dataclasses.dataclass
class Plan:
    cells: list[Cell]
    runs: dict  # (mixture key, seed) -> caption stage
    pools: dict  # seed -> the stage of its generated stand-ins

    def targets(self) -> list[Stage]:
        return list(self.runs.values())


def subset_source(fraction: float) -> str:
    return f"{fraction:.0%} real"


FILLED = "+ generated"  # Table 9: the subset filled up with the generated stand-ins of the rest


def plan(config, cache: Path | None, splits: dict[str, ImageSet]) -> Plan:
    c = config.captioning
    stages = {role: data_stage(s, role, cache) for role, s in splits.items()}
    fit_config, sampling = generator_params(config)
    cells, pools = [], {}
    for seed in c.seeds:
        if "generated" in stages:
            pool = stages["generated"]
        else:
            fit = Stage("fit", {"config": fit_config, "seed": derived_seed("pool", "fit", seed), "name": "diffusion"},
                        {"train": stages["generator"]}, label=f"pool generator seed={seed}")
            pool = Stage("caption_pool", {"guidance": float(c.guidance), "seed": derived_seed("captions", seed),
                                          **sampling}, {"model": fit, "captions": stages["train"]},
                         label=f"generated from captions seed={seed}")
        pools[seed] = pool

        def mixture(mode, deps, ratio, repeats=False, label=""):
            if mode != "keep" and ratio == 0.0:
                return stages["train"]
            return Stage("mix", {"mode": mode, "ratio": float(ratio), "seed": mix_seed(seed),
                                 "allow_repeats": repeats}, deps, label=f"{label} seed={seed}")

        for r in c.ratios:
            cells.append(Cell("2", "generated", r, seed, mixture("substitute", {"real": stages["train"],
                                                                                "other": pool}, r,
                                                                 label=f"generated {r:g}")))
            for name in c.controls:
                ctl = CONTROLS[name]
                cells.append(Cell("2", ctl.source, r, seed, mixture(
                    "replace", {"real": stages["train"], "other": stages[ctl.role]}, r, True, f"{ctl.label} {r:g}")))
        for f in c.subsets:
            cells.append(Cell("9", subset_source(f), f, seed, mixture("keep", {"real": stages["train"]}, 1 - f,
                                                                      label=f"{f:g} real")))
            cells.append(Cell("9", FILLED, f, seed, mixture("substitute", {"real": stages["train"], "other": pool},
                                                            1 - f, label=f"generated {1 - f:g}")))
    captioner = settings_params(c.captioner)
    runs = {}
    for cell in cells:
        key = (cell.mixture.key, cell.seed)
        if key not in runs:
            runs[key] = Stage("caption", {"config": captioner, "seed": derived_seed("captioner", cell.seed)},
                              {"train": cell.mixture, "test": stages["test"]},
                              label=f"captioner {cell.mixture.label or f'real seed={cell.seed}'}")
    return Plan(cells, runs, pools)


def rows(config, p: Plan, paths: dict) -> list[dict]:
    out = []
    for cell in p.cells:
        scores = json.loads(paths[p.runs[(cell.mixture.key, cell.seed)].key].read_text())["scores"]
        for metric, value in sorted(scores.items()):
            out.append({"study": config.name, "cell": f"table{cell.table}:{cell.source}:{cell.ratio:g}",
                        "seed": cell.seed, "generation": "", "metric": metric, "value": value, "table": cell.table,
                        "source": cell.source, "ratio": cell.ratio, "control": cell.control})
    return out
