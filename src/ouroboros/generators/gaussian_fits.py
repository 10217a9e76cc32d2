"""Fits on plain float arrays for the Gaussian families (`ouroboros.generators.gaussian`):
the PCA space, and one class's fit: a mixture by EM, from scratch or warm-started from
the previous model's components, or the fit of a class too small for it. A class's fit
returns (means K x d, covariances K x d x d, weights K); every covariance includes
``ridge`` times the identity, as the families store them.
"""

from __future__ import annotations

import numpy as np

from ouroboros.errors import UserError


def fit_pca(x: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre (D,), orthonormal components (k x D)) of the top-k principal directions.

    Each component's sign is fixed (largest |entry| positive, as scikit-learn does) so
    the space does not depend on the SVD routine's sign choice.
    """
    centre = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - centre, full_matrices=False)
    basis = vt[:components]
    signs = np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])
    return centre, basis * signs[:, None]


def check_init(init, family: str, k: int, d: int, pca) -> None:
    """A model to warm-start from (`init`, a fitted Gaussian family's model) must be of
    `family`, with k components of dimension d, in the same space (the same PCA or none)."""
    if init is None:
        return
    same_space = (init.pca is None) == (pca is None) and (pca is None or np.array_equal(init.pca[1], pca[1]))
    if init.family != family or init.means.shape[1:] != (k, d) or not same_space:
        raise UserError(f"a {family} model warm-starts only from a {family} model with the same components and space")


def small_class(x: np.ndarray, k: int, ridge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class with fewer images than its fit needs (under loop.labels: sampled a class can
    shrink to one image and die out): one Gaussian, their mean and maximum-likelihood
    covariance (0 for one image; plus the ridge), in the first of the k components, the
    others weighing 0. With no image every weight is 0: the class is absent, and the
    model never samples it."""
    d = x.shape[1]
    means, covs, weights = np.zeros((k, d)), np.tile(ridge * np.eye(d), (k, 1, 1)), np.zeros(k)
    if len(x):
        centred = x - x.mean(axis=0)
        means[:] = x.mean(axis=0)
        covs[0] += centred.T @ centred / len(x)
        weights[0] = 1.0
    return means, covs, weights


def fit_mixture(x: np.ndarray, k: int, ridge: float, max_iter: int, seed: int,
                init: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                steps: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A k-component Gaussian mixture with full covariances fitted to x by scikit-learn's
    EM: from k-means seeded by `seed` (at most `max_iter` iterations), or warm-started
    from `init` = (means, covariances, weights) of the previous model's class (at most
    `steps` iterations, None: `max_iter`; 0 returns `init` unchanged). A previous
    component of weight 0 stays at weight 0 (EM cannot revive it). ValueError when EM
    meets a singular covariance."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    if init is None:
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=ridge, max_iter=max_iter, random_state=int(seed))
    else:
        means, covs, weights = (np.asarray(a, dtype=np.float64) for a in init)
        steps = max_iter if steps is None else steps
        if steps == 0:
            return means.copy(), covs.copy(), weights.copy()
        try:
            precisions = np.linalg.inv(covs)
        except np.linalg.LinAlgError:
            raise UserError("the previous model has a singular covariance to warm-start from; set the "
                            "generator's ridge above 0") from None
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=ridge, max_iter=steps, random_state=int(seed),
                              weights_init=weights / weights.sum(), means_init=means, precisions_init=precisions)
    with warnings.catch_warnings():  # a warm start of few steps stops before EM converges, by design
        if init is not None:
            warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    return gmm.means_, gmm.covariances_, gmm.weights_
