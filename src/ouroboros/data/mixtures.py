"""Contamination recipes (Hataya et al. 2023): real and generated images mixed per class.

All recipes work class by class, so every mixture keeps the real set's class balance,
and every image keeps its provenance. For a class with n real images and ratio p,
the number taken is ``round(p n)``.

- `replace`: swap ``round(p n)`` real images of each class for images of the same class
  from `other` (generated, or a second real source for the control), total size
  unchanged. Real images are dropped without replacement; `other` is drawn without
  replacement, or with replacement when ``allow_repeats`` (the control source may be
  short of a class): then every image of the class once, and the rest repeated.
- `subsample`: keep ``round(p n)`` real images of each class, nothing else.
- `keep`: the real images `replace` keeps at ratio p (``n - round(p n)`` of each class), nothing else.
- `substitute`: `replace`, with each dropped image's own stand-in: the image of `other`
  that carries its caption id (generated from one of its captions, SD-COCO's
  construction), so every caption stays and only its image changes.
- `append`: all real images plus ``round(p n)`` images of each class from `other`.
- `fill`: all real images plus, per class, as many from `other` as it takes to reach
  given class counts (a small real subset filled up to full size, Table 7).

Draws are *paired and nested*. Which real images a seed drops, and in which order it
takes images of `other`, come from one permutation per class that depends only on the
seed and the class, not on the ratio or on the other set. So for one seed, replacing
40% drops a superset of what replacing 20% drops, the generated and the control
mixture at one ratio keep the same real images, and `append` adds the same generated
images that `replace` would put in. Comparisons between such cells then measure the
recipe, not a different random draw.
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


def _order(seed: int, stream: int, c: int, pool: np.ndarray) -> np.ndarray:
    """The seed's fixed random order of one class's pool (stream 0: real images to drop
    or keep, stream 1: images of the other set to take)."""
    return np.random.default_rng([int(seed), stream, c]).permutation(pool)


def _take(seed: int, c: int, pool: np.ndarray, count: int, allow_repeats: bool, what: str) -> np.ndarray:
    """The first `count` images of the class's order; when the pool is short (and repeats
    are allowed), every image once, then the rest drawn with replacement."""
    if count == 0:
        return pool[:0]
    order = _order(seed, 1, c, pool)
    if len(pool) >= count:
        return order[:count]
    if not allow_repeats or len(pool) == 0:
        raise UserError(f"{what}: needs {count} images but the pool has {len(pool)}; "
                        "give a larger pool or a smaller ratio")
    extra = np.random.default_rng([int(seed), 2, c]).choice(pool, count - len(pool), replace=True)
    return np.concatenate([order, extra])


def counts_for(real: ImageSet, ratio: float) -> np.ndarray:
    """Per-class number of images a ratio selects: round(ratio * n_c)."""
    return np.array([int(round(ratio * n)) for n in real.class_counts()], dtype=np.int64)


def _kept(real: ImageSet, ratio: float, seed: int) -> np.ndarray:
    """Indices of the real images `replace` keeps at `ratio`, class by class."""
    return np.concatenate([np.sort(_order(seed, 0, c, np.flatnonzero(real.labels == c))[k:])
                           for c, k in enumerate(counts_for(real, ratio))])


def replace(real: ImageSet, other: ImageSet, ratio: float, seed: int = 0, allow_repeats: bool = False) -> ImageSet:
    ratio = check_ratio(ratio)
    _check_compatible(real, other)
    add = [_take(seed, c, np.flatnonzero(other.labels == c), k, allow_repeats, f"class {real.class_names[c]!r}")
           for c, k in enumerate(counts_for(real, ratio))]
    return ImageSet.concat([real.subset(_kept(real, ratio, seed)), other.subset(np.concatenate(add))])


def substitute(real: ImageSet, other: ImageSet, ratio: float, seed: int = 0) -> ImageSet:
    """The images `replace(real, ..., ratio, seed)` drops, each swapped for the image of
    `other` with its caption id (the first such image); the kept ones as `replace` keeps them."""
    ratio = check_ratio(ratio)
    _check_compatible(real, other)
    if real.captions is None or other.captions is None:
        raise UserError("substitute swaps each image for the one made from its captions: both sets need captions")
    kept = _kept(real, ratio, seed)
    dropped = np.setdiff1d(np.arange(len(real)), kept)
    first: dict[str, int] = {}
    for i, image_id in enumerate(other.captions.ids):
        first.setdefault(image_id, i)
    missing = [real.captions.ids[i] for i in dropped.tolist() if real.captions.ids[i] not in first]
    if missing:
        raise UserError(f"the generated set has no image for {len(missing)} caption id(s) it must stand in for "
                        f"({', '.join(map(repr, missing[:3]))}{', ...' if len(missing) > 3 else ''}); generate one "
                        "image per training image's captions")
    stand_ins = np.array([first[real.captions.ids[i]] for i in dropped.tolist()], dtype=np.int64)
    return ImageSet.concat([real.subset(kept), other.subset(stand_ins)])


def keep(real: ImageSet, ratio: float, seed: int = 0) -> ImageSet:
    """The real images `replace(real, other, ratio, seed)` keeps, alone and in the same order:
    the (1 - ratio) real share of that mixture without what replaced the rest (Table 10)."""
    index = _kept(real, check_ratio(ratio), seed)
    if len(index) == 0:
        raise UserError(f"ratio {ratio} keeps no images of {len(real)}; use a smaller ratio")
    return real.subset(index)


def subsample(real: ImageSet, ratio: float, seed: int = 0) -> ImageSet:
    ratio = check_ratio(ratio)
    chosen = [_order(seed, 0, c, np.flatnonzero(real.labels == c))[:k] for c, k in enumerate(counts_for(real, ratio))]
    index = np.sort(np.concatenate(chosen))
    if len(index) == 0:
        raise UserError(f"ratio {ratio} keeps no images of {len(real)}; use a larger ratio")
    return real.subset(index)


def _add_per_class(real: ImageSet, other: ImageSet, counts, seed: int, allow_repeats: bool) -> ImageSet:
    _check_compatible(real, other)
    add = [_take(seed, c, np.flatnonzero(other.labels == c), int(k), allow_repeats, f"class {real.class_names[c]!r}")
           for c, k in enumerate(counts)]
    return ImageSet.concat([real, other.subset(np.concatenate(add))])


def append(real: ImageSet, other: ImageSet, ratio: float, seed: int = 0, allow_repeats: bool = False) -> ImageSet:
    return _add_per_class(real, other, counts_for(real, check_ratio(ratio)), seed, allow_repeats)


def fill(real: ImageSet, other: ImageSet, counts, seed: int = 0, allow_repeats: bool = False) -> ImageSet:
    """All of `real` plus images of `other` until class c holds counts[c] images."""
    missing = np.asarray(counts, dtype=np.int64) - real.class_counts()
    if len(missing) != real.num_classes or (missing < 0).any():
        raise UserError(f"fill: target class counts {list(counts)} must not be below the real set's "
                        f"{real.class_counts().tolist()}")
    return _add_per_class(real, other, missing, seed, allow_repeats)


def mix(mode: str, real: ImageSet, other: ImageSet | None, ratio: float, seed: int = 0,
        allow_repeats: bool = False) -> ImageSet:
    """Dispatch by mode name ('replace', 'append', 'subsample')."""
    if mode not in MODES:
        raise UserError(f"unknown mixture mode {mode!r}; use one of {', '.join(MODES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"the mixture seed must be an integer >= 0; got {seed!r}")
    if mode == "subsample":
        return subsample(real, ratio, seed)
    if other is None:
        raise UserError(f"mode {mode!r} needs a second set (--generated)")
    fn = replace if mode == "replace" else append
    return fn(real, other, ratio, seed, allow_repeats)
