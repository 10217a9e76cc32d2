"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr( (S1^1/2 S2 S1^1/2)^1/2 )

The last trace is the sum of square roots of the eigenvalues of S1 S2, which are
those of the symmetric PSD matrix A^T S2 A for any A with S1 = A A^T. We take A from
a Cholesky factor of S1, or from its eigendecomposition when S1 is singular (N < D,
rank-deficient features), and clip the tiny negative eigenvalues round-off makes.
The result is real and finite, and equals the ``scipy.linalg.sqrtm`` formula used by
pytorch-fid and clean-fid (to ~1e-10 relative in float64) at a fraction of its cost.
Covariances use the unbiased estimator (``np.cov``), as those references do.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.linalg.blas

from ouroboros.errors import UserError
from ouroboros.metrics._arrays import as_pair


def feature_stats(x) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) of N x D features, float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 2:
        raise UserError(f"FID needs at least 2 samples per set to estimate a covariance; got {x.shape[0]}")
    mu = x.mean(axis=0)
    xc = x - mu
    return mu, (xc.T @ xc) / (x.shape[0] - 1)


def _congruence(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """A^T sigma2 A for some A with sigma1 = A A^T: the Cholesky factor (two triangular
    products, half the work of general ones), or the eigendecomposition when sigma1 is
    singular."""
    try:
        a = scipy.linalg.cholesky(sigma1, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        w, v = scipy.linalg.eigh(sigma1, check_finite=False)
        a = v * np.sqrt(np.clip(w, 0.0, None))
        return a.T @ sigma2 @ a
    trmm = scipy.linalg.blas.get_blas_funcs("trmm", (a, sigma2))
    left = trmm(1.0, a, sigma2, side=0, lower=1, trans_a=1)  # A^T sigma2
    return trmm(1.0, a, left, side=1, lower=1, trans_a=0)  # (A^T sigma2) A


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise UserError(f"statistics do not match: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(arr).all():
            raise UserError(f"{name} has NaN or inf values")
    m = _congruence(s1, s2)
    eig = scipy.linalg.eigvalsh((m + m.T) / 2.0, check_finite=False)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid(real, fake) -> float:
    """FID between two N x D feature arrays (numpy or torch)."""
    r, f = as_pair(real, fake)
    stats = (*feature_stats(r.double().cpu().numpy()), *feature_stats(f.double().cpu().numpy()))
    if not all(np.isfinite(s).all() for s in stats):  # covariances square the features
        big = max(float(r.abs().max()), float(f.abs().max()))
        raise UserError(f"FID overflows float64 on these features (values up to {big:.3g}); "
                        "divide both sets by the same constant first (FID scales with its square)")
    return fid_from_stats(*stats)
