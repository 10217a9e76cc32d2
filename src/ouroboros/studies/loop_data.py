"""The feedback loop's real data and measuring instruments (``evaluate:``).

Each chain is measured with a real training split (what generation 0 and the scenarios'
real parts train on), a real test split (what nothing trains on), a classifier trained
on the training split (its scores, and its penultimate features for FID and PRDC unless
Inception's are used) and the split every generation is scored against
(``evaluate.reference``: test by default, or train). ``evaluate.instruments`` says
whether seeds redraw them:

- ``per-seed`` (the default): seed s splits data.train with the seed derived from
  data.split_seed and s (a given data.test is kept: only the classifier is redrawn then)
  and trains its classifier with the seed derived from s (initialisation, data order),
  so a seed redraws every random choice and the spread over seeds includes the
  instruments'. The real yardstick rows exist per seed.
- ``fixed``: one split (data.split_seed) and one classifier (seed 0) for every seed.

With ``data.class_weights`` or ``data.long_tail`` the training split is subsampled per
class to those proportions (`imbalanced`; seeded by the split's seed) before anything
uses it: generation 0, the scenarios' real images, the classifier and the yardstick are
the imbalanced data's; the test split is left as it is.

The yardstick (results.csv's ``reference`` rows) is the other real split scored exactly
as a generation is: under reference test, the real training split (what a model that
reproduced its training set would score; its accuracy is the classifier's on its own
training images); under reference train, the real test split.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.graph import Stage, settings_params
from ouroboros.studies import curation, scenarios
from ouroboros.studies.common import data_stage, derived_seed


@dataclasses.dataclass
class Instruments:
    """The real splits and the measuring instruments of one seed (of every seed when fixed)."""

    seed: int | None  # None: evaluate.instruments fixed
    train: ImageSet
    test: ImageSet
    split_seed: int  # seeds the split (and the detector probe's held-out part of train)
    train_stage: Stage
    test_stage: Stage
    classifier: Stage
    reference: Stage  # the real split every generation is scored against
    yardstick: Stage  # the other real split scored against it (the real reference rows)
    yardstick_tails: Stage | None  # ... and its tails (ouroboros.metrics.tails; None without evaluate.tails)


def keys(config: StudyConfig) -> list[int | None]:
    """The instruments' keys: one per seed, or [None] when they are fixed."""
    return [None] if config.evaluate.instruments == "fixed" else list(config.loop.seeds)


def key(config: StudyConfig, seed: int) -> int | None:
    return None if config.evaluate.instruments == "fixed" else seed


def split_seed(config: StudyConfig, seed: int | None) -> int:
    """data.split_seed when fixed, else a seed derived from it and the chain's seed."""
    return config.data.split_seed if seed is None else derived_seed(config.data.split_seed, seed, "split")


def load_splits(config: StudyConfig, seed: int | None = None) -> tuple[ImageSet, ImageSet]:
    """(train, test): data.test when given, else data.train split per class with
    `split_seed(config, seed)` (data.split_seed for seed None)."""
    return _split(config, *_load(config), seed)


def load_data(config: StudyConfig) -> dict[int | None, tuple[ImageSet, ImageSet]]:
    """The (train, test) splits of every instruments key (`keys`), the dataset read once."""
    full, test = _load(config)
    return {k: _split(config, full, test, k) for k in keys(config)}


def _load(config: StudyConfig) -> tuple[ImageSet, ImageSet | None]:
    full = load_dataset(config.data.train, config.data.image_size)
    if config.data.test is None:
        counts = full.class_counts()
        if (counts < 2).any():
            raise UserError(f"every class needs at least 2 images to split off a test set; counts {counts.tolist()}")
        return full, None
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
        raise UserError(f"data.test has images of shape {test.shape} but data.train {full.shape}; they must match")
    return full, test


def _split(config: StudyConfig, full: ImageSet, test: ImageSet | None, seed: int | None) -> tuple[ImageSet, ImageSet]:
    if test is None:
        fraction = config.data.test_fraction
        parts = stratified_split(full, {"train": 1.0 - fraction, "test": fraction}, seed=split_seed(config, seed))
        full, test = parts["train"], parts["test"]
    return imbalanced(config, full, seed), test


def imbalanced(config: StudyConfig, train: ImageSet, seed: int | None) -> ImageSet:
    """The real training split with the class proportions data.class_weights or
    data.long_tail set (`ouroboros.data.class_balance.subsample`, seeded by the split's
    seed), or as it is; the test split stays as it is. Generation 0's class_share rows
    record the proportions."""
    from ouroboros.config_loop_extra import class_weights
    from ouroboros.data.class_balance import subsample

    weights = class_weights(config.data, train.class_names)
    if weights is None:
        return train
    what = "data.long_tail" if config.data.long_tail is not None else "data.class_weights"
    return subsample(train, weights, derived_seed(split_seed(config, seed), "class weights"), what)


def instruments(config: StudyConfig, data: dict, evaluate: dict, cache: Path | None) -> dict:
    """key -> `Instruments` for every (train, test) of `data` (as `load_data` returns)."""
    out = {}
    for k, (train, test) in data.items():
        tag = "" if k is None else f" seed={k}"
        train_stage, test_stage = data_stage(train, "train", cache), data_stage(test, "test", cache)
        classifier = Stage("classifier", {"config": settings_params(config.classifier),
                                          "seed": 0 if k is None else derived_seed(k, "classifier")},
                           {"train": train_stage}, label=f"real data{tag}")
        scorer = {"classifier": classifier} if uses_classifier(evaluate) else {}
        reference, other, name = ((test_stage, train_stage, "train") if config.evaluate.reference == "test"
                                  else (train_stage, test_stage, "test"))
        yardstick = Stage("evaluate", evaluate, {"images": other, **scorer, "real": reference},
                          label=f"real {name}{tag}")
        tails = (Stage("tails", tails_params(evaluate), {"images": other, **scorer, "real": reference},
                       label=f"real {name}{tag}") if config.evaluate.tails else None)
        out[k] = Instruments(k, train, test, split_seed(config, k), train_stage, test_stage, classifier, reference,
                             yardstick, tails)
    return out


def curation_split(lc, seed: int, train: ImageSet) -> tuple[ImageSet, ImageSet | None]:
    """(the scenario's real split R, the detector probe's held-out real images or None):
    with detector curation a stratified `probe_fraction` of the real training split
    (seeded by `seed`, the instruments' split seed) is held out for the probe and kept out
    of R, which the scenario draws real images from from generation 1 on (generation 0
    trains on the whole real training split, as every variant's does); otherwise R is all
    of it."""
    cur = lc.curation
    if cur.kind != "detector":
        return train, None
    parts = stratified_split(train, {"loop": 1.0 - cur.probe_fraction, "probe": cur.probe_fraction}, seed=seed)
    return parts["loop"], parts["probe"]


def check_loop(lc, loop_real: ImageSet, n_train: int | None = None, seeds=None) -> None:
    """Config errors that need the real split's size or labels, before anything is written:
    a real reservoir too small for the scenario, and a curation certain to empty a class
    (`lc`: the loop settings of one variant; `n_train`: the real training split's size,
    default |R|; `seeds`: the chain seeds drawing from this R, default all of lc.seeds)."""
    n = scenarios.samples_per_generation(lc, n_train or len(loop_real), len(loop_real))
    scenarios.check_reservoir(lc.scenario, n, lc.generations, lc.real_fraction, len(loop_real))
    real_seeds = [derived_seed(s, "real order") for s in (lc.seeds if seeds is None else seeds)]
    for real_seed in real_seeds:
        labels = []
        for g in range(1, lc.generations):
            index = scenarios.real_candidates(lc.scenario, g, len(loop_real), n, lc.real_fraction, real_seed)
            # mix keeps the first round(rho N) real survivors: exactly the first of the order
            # when no real image is removed
            if index is not None and lc.scenario == "mix" and lc.curation.false_positive == 0:
                index = scenarios.real_order(len(loop_real), real_seed)[: int(round(lc.real_fraction * n))]
            labels.append(None if index is None or len(index) == 0 else loop_real.labels[index])
        curation.certain_empty_class(lc.curation, labels, loop_real.class_names)
    lc.curation.check_classes(loop_real.class_names)


def evaluation(config: StudyConfig, train: ImageSet) -> dict:
    """The evaluate stage's parameters for this study and data: ``metrics`` is
    ``classifier+fid+prdc`` for a conditional generator, ``fid+prdc`` otherwise;
    ``features`` (absent: the classifier's) is ``inception`` for colour images of at
    least 32x32 when the weights file is found, with its path and SHA-256 (so other
    weights make other keys)."""
    params = {"metrics": "classifier+fid+prdc" if config.generator.conditional else "fid+prdc", "k": 5}
    c, h, w = train.shape
    if c == 3 and min(h, w) >= 32:
        weights = inception_weights(config.loop.inception_weights)
        if weights is not None:
            params.update(features="inception", weights=str(weights), weights_sha256=_sha256(weights))
    return params


def tails_params(evaluate: dict) -> dict:
    """The tails stage's parameters: the evaluate stage's features (and weights), no more."""
    return {k: v for k, v in evaluate.items() if k not in ("metrics", "k")}


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
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
