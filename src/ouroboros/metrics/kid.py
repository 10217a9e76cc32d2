"""Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of squared
MMD with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random
subsets (as in torch-fidelity and clean-fid). Float64 throughout.
"""

from __future__ import annotations

import numpy as np

from ouroboros.errors import UserError
from ouroboros.metrics._arrays import as_pair


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two sample sets with the cubic polynomial kernel."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kid(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `subsets` random subsets drawn without
    replacement; the subset size is capped at the smaller set."""
    r, f = as_pair(real, fake)
    r, f = r.double().cpu().numpy(), f.double().cpu().numpy()
    size = min(subset_size, len(r), len(f))
    if size < 2:
        raise UserError(f"KID needs at least 2 samples per set; got {len(r)} real and {len(f)} fake")
    if subsets < 1:
        raise UserError(f"KID needs at least one subset; got {subsets}")
    rng = np.random.default_rng(seed)
    vals = np.array([
        mmd2_unbiased(r[rng.choice(len(r), size, replace=False)], f[rng.choice(len(f), size, replace=False)])
        for _ in range(subsets)
    ])
    if not np.isfinite(vals).all():  # the kernel cubes x.y / D: overflows near |x| ~ 1e100
        big = max(np.abs(r).max(), np.abs(f).max())
        raise UserError(f"KID overflows float64 on these features (values up to {big:.3g}); its kernel "
                        "(x.y / D + 1)^3 is not scale invariant: divide both sets by the same constant first")
    return float(vals.mean()), float(vals.std())
