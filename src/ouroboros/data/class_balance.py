"""Class proportions of an image set: imbalanced real data by per-class subsampling, and
each class's share of a set with their entropy (what the feedback loop records per
generation as ``class_share/<class>`` and ``class_entropy``)."""

from __future__ import annotations

import math

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError


def subsample_counts(counts, weights) -> np.ndarray:
    """How many images of each class to keep: the largest subset whose class proportions
    are weights / sum(weights), each count rounded to the nearest integer. With M =
    min_c counts_c / p_c (the class that runs out first keeps all its images), class c
    keeps round(M p_c) <= counts_c."""
    counts = np.asarray(counts, dtype=np.int64)
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    size = np.min(counts / p)
    return np.minimum(np.floor(size * p + 0.5).astype(np.int64), counts)


def subsample(images: ImageSet, weights, seed: int, where: str = "data.class_weights") -> ImageSet:
    """The largest subset of `images` with class proportions `weights` (one per class,
    positive; `subsample_counts`), each class's images drawn uniformly without
    replacement, seeded by `seed`; in their original order. UserError when a class would
    keep no image (`where` names the setting)."""
    counts = images.class_counts()
    if len(weights) != len(counts):
        raise UserError(f"{where} has {len(weights)} weights for {len(counts)} classes")
    keep = subsample_counts(counts, weights)
    if (keep == 0).any():
        c = int(np.flatnonzero(keep == 0)[0])
        raise UserError(f"{where} leaves class {images.class_names[c]!r} with no image (the split has "
                        f"{int(counts.min())} to {int(counts.max())} per class); make the weights less extreme "
                        "or use more data")
    rng = np.random.default_rng(int(seed))
    chosen = [rng.choice(np.flatnonzero(images.labels == c), int(k), replace=False) for c, k in enumerate(keep)]
    return images.subset(np.sort(np.concatenate(chosen)))


def class_shares(images: ImageSet) -> dict[str, float]:
    """``class_share/<name>``: each class's share of the set (0 for a class it lacks), and
    ``class_entropy``: their entropy -sum p log p in nats (0 log 0 = 0; log C when
    balanced over C classes, 0 when one class is left)."""
    counts = images.class_counts()
    shares = counts / max(1, counts.sum())
    out = {f"class_share/{name}": float(s) for name, s in zip(images.class_names, shares)}
    out["class_entropy"] = float(-sum(s * math.log(s) for s in shares if s > 0))
    return out
