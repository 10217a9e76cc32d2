"""Contamination recipes (Hataya et al. 2023): real and generated images mixed per class.

All recipes work class by class, so every mixture keeps the real set's class balance,
and every image keeps its provenance. For a class with n real images and ratio p,
the number taken is ``round(p * n)``.

- `replace`: swap ``round(p n)`` real images of each class for images of the same class
  from `other` (generated, or a second real source for the control), total size
  unchanged. Real images are dropped without replacement; `other` is drawn without
  replacement, or with replacement when ``allow_repeats`` (the control source may be
  short of a class).
- `subsample`: keep ``round(p n)`` real images of each class, nothing else.
- `append`: all real images plus ``round(p n)`` images of each class from `other`.
"""

from __future__ import annotations

import math

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError

MODES = ("replace", "append", "subsample")


def check_ratio(ratio: float) -> float:
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise UserError(f"ratio must be a number in [0, 1]; got {ratio!r}") from None
    if not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
        raise UserError(f"ratio must lie in [0, 1] (a fraction, 0.4 = 40%); got {ratio}")
    return ratio


def _check_compatible(real: ImageSet, other: ImageSet) -> None:
    if real.class_names != other.class_names:
        raise UserError(
            f"classes differ: real has {list(real.class_names)}, the other set {list(other.class_names)}; "
            "mix sets with the same classes in the same order"
        )
    if real.shape != other.shape:
        raise UserError(f"image shapes differ: real {real.shape}, the other set {other.shape}")


def _take(rng: np.random.Generator, pool: np.ndarray, count: int, allow_repeats: bool, what: str) -> np.ndarray:
    if count == 0:
        return pool[:0]
    if len(pool) >= count:
        return rng.choice(pool, count, replace=False)
    if not allow_repeats or len(pool) == 0:
        raise UserError(f"{what}: needs {count} images but the pool has {len(pool)}; "
                        "give a larger pool or a smaller ratio")
    return np.concatenate([pool, rng.choice(pool, count - len(pool), replace=True)])  # all once, then repeats


def counts_for(real: ImageSet, ratio: float) -> np.ndarray:
    """Per-class number of images a ratio selects: round(ratio * n_c)."""
    return np.array([int(round(ratio * n)) for n in real.class_counts()], dtype=np.int64)


def replace(real: ImageSet, other: ImageSet, ratio: float, seed: int = 0, allow_repeats: bool = False) -> ImageSet:
    ratio = check_ratio(ratio)
    _check_compatible(real, other)
    rng = np.random.default_rng(seed)
    keep, add = [], []
    for c, k in enumerate(counts_for(real, ratio)):
        idx = np.flatnonzero(real.labels == c)
        dropped = set(rng.choice(idx, k, replace=False).tolist()) if k else set()
        keep.append(np.array([i for i in idx if i not in dropped], dtype=np.int64))
        add.append(_take(rng, np.flatnonzero(other.labels == c), k, allow_repeats,
                         f"class {real.class_names[c]!r}"))
    return ImageSet.concat([real.subset(np.concatenate(keep)), other.subset(np.concatenate(add))])


def subsample(real: ImageSet, ratio: float, seed: int = 0) -> ImageSet:
    ratio = check_ratio(ratio)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(real.labels == c), k, replace=False)
              for c, k in enumerate(counts_for(real, ratio))]
    index = np.sort(np.concatenate(chosen))
    if len(index) == 0:
        raise UserError(f"ratio {ratio} keeps no images of {len(real)}; use a larger ratio")
    return real.subset(index)


def append(real: ImageSet, other: ImageSet, ratio: float, seed: int = 0, allow_repeats: bool = False) -> ImageSet:
    ratio = check_ratio(ratio)
    _check_compatible(real, other)
    rng = np.random.default_rng(seed)
    add = [_take(rng, np.flatnonzero(other.labels == c), k, allow_repeats, f"class {real.class_names[c]!r}")
           for c, k in enumerate(counts_for(real, ratio))]
    return ImageSet.concat([real, other.subset(np.concatenate(add))])


def mix(mode: str, real: ImageSet, other: ImageSet | None, ratio: float, seed: int = 0,
        allow_repeats: bool = False) -> ImageSet:
    """Dispatch by mode name ('replace', 'append', 'subsample')."""
    if mode not in MODES:
        raise UserError(f"unknown mixture mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "subsample":
        return subsample(real, ratio, seed)
    if other is None:
        raise UserError(f"mode {mode!r} needs a second set (--generated)")
    fn = replace if mode == "replace" else append
    return fn(real, other, ratio, seed, allow_repeats)
