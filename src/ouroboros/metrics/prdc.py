"""Precision/recall (Kynkäänniemi et al. 2019) and precision/recall/density/coverage
(Naeem et al. 2020) from k-nearest-neighbour balls.

Conventions (both exclude the point itself when finding its k-th neighbour, and count
exact duplicates as neighbours):

- `precision_recall` (default k = 3): a sample lies in a manifold if it is inside at
  least one k-NN ball *including the boundary* (``d <= r``), as in Kynkäänniemi et
  al.'s definition of the estimated manifold.
- `prdc` (default k = 5): strict inequality (``d < r``) everywhere, matching the
  reference `prdc` package (github.com/clovaai/generative-evaluation-prdc) number for
  number.

Both need memory bounded by the distance block, never N x M, and equal a float64 brute
force on the features as given, whatever their magnitude or offset; exact duplicates
are computed once, weighted by their multiplicity (see `ouroboros.metrics.knn`).
"""

from __future__ import annotations

import torch

from ouroboros.metrics._arrays import as_pair, check_k
from ouroboros.metrics.knn import DEFAULT_BLOCK, Prepared, ball_membership, distinct_rows, kth_neighbour_sq

PRECISION, RECALL, DENSITY, COVERAGE = "precision", "recall", "density", "coverage"


def _device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _geometry(real, fake, k, strict, block, device):
    r, f = as_pair(real, fake)
    k = check_k(k, r, f)
    dev = _device(device)
    # Identical rows have identical distances to everything: compute on the distinct
    # rows, each weighted by its multiplicity, and expand back to every row at the end.
    (r, r_of, r_weight), (f, f_of, f_weight) = distinct_rows(r.to(dev)), distinct_rows(f.to(dev))
    pr, pf = Prepared.pair(r, f, dev)
    r_real = kth_neighbour_sq(pr, k, block, r_weight)
    r_fake = kth_neighbour_sq(pf, k, block, f_weight)
    count, covered, reached = ball_membership(pf, pr, r_real, r_fake, strict, block, r_weight)
    return k, count[f_of], covered[r_of], reached[r_of]


def precision_recall(real, fake, k: int = 3, block: int = DEFAULT_BLOCK, device=None) -> dict[str, float]:
    """Kynkäänniemi et al. (2019): fraction of fake samples inside the real manifold
    (precision) and of real samples inside the fake manifold (recall); boundary included."""
    _, count, _, reached = _geometry(real, fake, k, False, block, device)
    return {PRECISION: float((count > 0).double().mean()), RECALL: float(reached.double().mean())}


def prdc(real, fake, k: int = 5, block: int = DEFAULT_BLOCK, device=None) -> dict[str, float]:
    """Naeem et al. (2020): precision, recall, density and coverage, strict inequalities
    as in the `prdc` package."""
    k, count, covered, reached = _geometry(real, fake, k, True, block, device)
    return {
        PRECISION: float((count > 0).double().mean()),
        RECALL: float(reached.double().mean()),
        DENSITY: float(count.double().mean() / k),
        COVERAGE: float(covered.double().mean()),
    }
