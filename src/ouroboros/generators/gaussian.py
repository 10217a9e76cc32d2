"""Analytic generator families: a per-class Gaussian and a per-class Gaussian mixture.

They are fast, and theory knows what they do when they are trained on their own
output (see tests/test_theory.py), which makes them the check on the simulator
before it is trusted on images.

The math core works on plain float arrays, so theory tests run the very code the
image families run, without uint8 quantisation:

- ``fit_gaussian(x, unbiased)``: mean and covariance of M samples, dividing the
  scatter by M (maximum likelihood) or by M - 1 (unbiased).
- ``sample_gaussian(mu, cov, n, rng, temperature)``: ``mu + sqrt(T) L z`` with
  ``L L^T = cov`` (Cholesky) and z standard normal from the given numpy Generator.
- ``sample_mixture(means, covs, weights, n, rng, temperature)``: component by weight,
  then ``sample_gaussian``.

The families (``gaussian``, ``gmm``) fit one model per class on images as float
vectors in [-1, 1], either on the pixels or on a PCA space (``space: pca``,
``components`` dimensions) fitted on the `reference` images when ``fit`` is given them
(the feedback loop gives the real training split, so every generation models the same
space) and otherwise on all the training images. The stored covariance is the
estimate plus ``ridge`` times the identity (scikit-learn's ``reg_covar`` convention),
so classes whose covariance is singular (a pixel that is always black, fewer images
than dimensions) still sample. The default ridge, 1e-6, is a standard deviation of
0.001 in [-1, 1] units: far below one grey level (2/255 ~ 0.008), so it changes no
image visibly.

Sampling bias: ``temperature`` T >= 0 scales every covariance (1.0 samples the fit,
0.0 returns the class means, or the component means of a mixture; mixture weights
are not changed). Samples are mapped back to pixels and quantised to uint8 like any
published image. A fitted model saves as ``model.safetensors`` + ``generator.json``;
nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.errors import UserError
from ouroboros.generators.base import GeneratorFamily, balanced_labels, register_family, save_fitted
from ouroboros.generators.gaussian_fits import (  # noqa: F401  (fit_pca: used through this module too)
    check_init, fit_mixture, fit_pca, small_class,
)

FORMAT = "ouroboros.FittedGaussianMixture"


# -- math core ---------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def check_temperature(temperature: float) -> float:
    if not _is_number(temperature) or not np.isfinite(temperature) or temperature < 0:
        raise UserError(f"temperature must be a finite number >= 0 (it scales the covariance; 1 samples the fit); "
                        f"got {temperature!r}")
    return float(temperature)


def _as_rows(x: np.ndarray) -> np.ndarray:
    """M samples as an M x D float64 array (a 1-D array is M samples of one dimension)."""
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def fit_gaussian(x: np.ndarray, unbiased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of M samples x (M x D, or M for one dimension).

    The covariance divides the scatter by M (maximum likelihood, ``unbiased=False``) or by
    M - 1 (unbiased): the same as ``np.cov(x.T, ddof=0 or 1)``.
    """
    x = _as_rows(x)
    m = len(x)
    if m < 2:
        raise UserError(f"a covariance needs at least 2 samples; got {m}")
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, centred.T @ centred / (m - 1 if unbiased else m)


def _cholesky(cov: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise UserError("a fitted covariance is singular or not positive definite; "
                        "set the generator's ridge above 0 (e.g. 1e-6)") from None


def sample_gaussian(mu: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator,
                    temperature: float = 1.0) -> np.ndarray:
    """n draws (n x D) from N(mu, temperature * cov), using `rng`'s standard normals."""
    temperature = check_temperature(temperature)
    mu = np.asarray(mu, dtype=np.float64)
    factor = _cholesky(np.asarray(cov, dtype=np.float64))
    z = rng.standard_normal((n, len(mu)))
    return mu + np.sqrt(temperature) * (z @ factor.T)


def sample_mixture(means: np.ndarray, covs: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator,
                   temperature: float = 1.0) -> np.ndarray:
    """n draws (n x D) from sum_k w_k N(means[k], temperature * covs[k])."""
    k = len(weights)
    if k == 1:  # no component draw: a single Gaussian samples exactly as sample_gaussian does
        return sample_gaussian(means[0], covs[0], n, rng, temperature)
    component = rng.choice(k, size=n, p=np.asarray(weights, dtype=np.float64))
    out = np.empty((n, means.shape[1]))
    for j in range(k):
        idx = np.flatnonzero(component == j)
        if len(idx):
            out[idx] = sample_gaussian(means[j], covs[j], len(idx), rng, temperature)
    return out


# -- configs -----------------------------------------------------------------------------


@dataclass
class _SpaceConfig:
    space: Literal["pixels", "pca"] = "pixels"  # where the Gaussians live
    # PCA dimensions (space: pca only), at most the pixel values per image. Pixel space keeps
    # a D x D covariance per class: fine for digits (D = 64), large for colour images.
    components: int = 32
    ridge: float = 1e-6  # added to every covariance's diagonal, in [-1, 1] pixel units squared

    def validate(self) -> None:
        if self.space not in ("pixels", "pca"):
            raise UserError(f"space must be pixels or pca; got {self.space!r}")
        if self.space == "pca" and not _is_count(self.components):
            raise UserError(f"components (PCA dimensions) must be an integer >= 1; got {self.components!r}")
        if not _is_number(self.ridge) or not np.isfinite(self.ridge) or self.ridge < 0:
            raise UserError(f"ridge must be a finite number >= 0 (e.g. 1.0e-6); got {self.ridge!r}")


@dataclass
class GaussianConfig(_SpaceConfig):
    """A per-class multivariate Gaussian."""

    covariance: Literal["mle", "unbiased"] = "mle"  # divide the scatter by M, or by M - 1

    def validate(self) -> None:
        super().validate()
        if self.covariance not in ("mle", "unbiased"):
            raise UserError(f"covariance must be mle (divide by M) or unbiased (M - 1); got {self.covariance!r}")


@dataclass
class GMMConfig(_SpaceConfig):
    """A per-class Gaussian mixture with full covariances, fitted by EM (scikit-learn)."""

    mixture_components: int = 3  # Gaussians per class
    max_iter: int = 100  # EM iterations

    def validate(self) -> None:
        super().validate()
        if not _is_count(self.mixture_components) or not _is_count(self.max_iter):
            raise UserError(f"mixture_components and max_iter must be integers >= 1; "
                            f"got {self.mixture_components!r} and {self.max_iter!r}")


# -- the fitted model --------------------------------------------------------------------


class FittedGaussianMixture:
    """Per class c: weights[c] (K), means[c] (K x d), covariances[c] (K x d x d), in pixel
    space or, when `pca` = (centre, basis) is given, in the PCA space x = centre + z @ basis.
    A single Gaussian is the case K = 1."""

    def __init__(self, means: np.ndarray, covariances: np.ndarray, weights: np.ndarray,
                 class_names: tuple[str, ...], image_shape: tuple[int, int, int], generation: int,
                 name: str, family: str, config: _SpaceConfig, pca: tuple[np.ndarray, np.ndarray] | None = None,
                 info: dict | None = None):
        self.means, self.covariances, self.weights = means, covariances, weights
        self.class_names = tuple(class_names)
        self.image_shape = tuple(image_shape)
        self.generation = generation  # provenance generation of the images it makes
        self.name = name
        self.family = family
        self.config = config
        self.pca = pca
        self.info = dict(info or {})

    def sample(self, n: int, labels: np.ndarray | None = None, seed: int = 0, temperature: float = 1.0) -> ImageSet:
        """Draw n images (balanced over classes unless `labels` is given), quantised to uint8."""
        temperature = check_temperature(temperature)
        labels = balanced_labels(n, len(self.class_names)) if labels is None else np.asarray(labels, dtype=np.int64)
        if len(labels) != n:
            raise UserError(f"got {len(labels)} labels for {n} samples")
        if n and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise UserError(f"labels must lie in [0, {len(self.class_names) - 1}]")
        absent = [self.class_names[c] for c in np.unique(labels) if self.weights[c].sum() <= 0]
        if absent:
            raise UserError(f"class {absent[0]!r} is absent from this model (its training set had no image of it)")
        rng = np.random.default_rng(int(seed))
        z = np.empty((n, self.means.shape[-1]))
        for c in range(len(self.class_names)):  # class by class, in order, from one stream
            idx = np.flatnonzero(labels == c)
            if len(idx):
                z[idx] = sample_mixture(self.means[c], self.covariances[c], self.weights[c], len(idx), rng,
                                        temperature)
        x = z if self.pca is None else self.pca[0] + z @ self.pca[1]
        conditions = [f"class={self.class_names[c]};temperature={temperature:g}" for c in labels]
        return ImageSet.create(
            quantize(x.reshape(n, *self.image_shape)), labels, self.class_names, source=f"gen:{self.name}",
            generation=self.generation, seed=int(seed), condition=conditions,
        )

    # -- persistence --------------------------------------------------------------

    def _tensors(self) -> dict[str, np.ndarray]:
        tensors = {"means": self.means, "covariances": self.covariances, "weights": self.weights}
        if self.pca is not None:
            tensors.update(pca_centre=self.pca[0], pca_basis=self.pca[1])
        return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        tensors = self._tensors()
        return save_fitted(self, directory, FORMAT, lambda path: save_file(tensors, path), family=self.family)

    @classmethod
    def load(cls, directory: str | Path) -> "FittedGaussianMixture":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta_path, weights_path = directory / "generator.json", directory / "model.safetensors"
        if not meta_path.is_file() or not weights_path.is_file():
            raise UserError(f"{directory} is not a saved Gaussian generator "
                            "(needs generator.json and model.safetensors)")
        try:
            meta = json.loads(meta_path.read_text())
            is_ours = isinstance(meta, dict) and meta.get("format") == FORMAT
            if is_ours:
                t = load_file(weights_path)
                config = (GMMConfig if meta["family"] == "gmm" else GaussianConfig)(**meta["config"])
                means, covs, weights = t["means"], t["covariances"], t["weights"]
                pca = (t["pca_centre"], t["pca_basis"]) if "pca_basis" in t else None
                class_names, image_shape = tuple(meta["class_names"]), tuple(meta["image_shape"])
        except (KeyError, TypeError, ValueError, SafetensorError) as exc:
            raise UserError(f"{directory} holds a damaged Gaussian generator ({type(exc).__name__}: {exc}); "
                            f"fit it again") from None
        if not is_ours:
            raise UserError(f"{meta_path} is not an ouroboros Gaussian generator")
        d, pixels = means.shape[-1], int(np.prod(image_shape))
        if (means.ndim != 3 or len(means) != len(class_names) or covs.shape != (*means.shape, d)
                or weights.shape != means.shape[:2]
                or (pca is None and d != pixels) or (pca is not None and pca[1].shape != (d, pixels))):
            raise UserError(f"{weights_path} has arrays whose shapes do not match {meta_path}; fit it again")
        return cls(means, covs, weights, class_names, image_shape, meta["generation"], meta["name"], meta["family"],
                   config, pca, meta.get("info"))


def log_density(x: np.ndarray, means: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(x; means[k], covs[k]) of each row of x (M x D), exactly (Cholesky,
    log-sum-exp over the components)."""
    from scipy.linalg import solve_triangular
    from scipy.special import logsumexp

    x = _as_rows(x)
    per_component = [np.full(len(x), -np.inf)]  # components of weight 0 (a small or absent class) add nothing
    for mu, cov, w in ((m, c, w) for m, c, w in zip(means, covs, weights) if w > 0):
        factor = _cholesky(np.asarray(cov, dtype=np.float64))
        z = solve_triangular(factor, (x - mu).T, lower=True)
        log_det = 2.0 * np.log(np.diag(factor)).sum()
        per_component.append(np.log(w) - 0.5 * (x.shape[1] * np.log(2 * np.pi) + log_det + (z * z).sum(axis=0)))
    return logsumexp(np.stack(per_component), axis=0)


def heldout_nll(fitted: FittedGaussianMixture, images: ImageSet) -> float:
    """The exact negative log-likelihood of `images` under the fitted model, -log p(x | y)
    with each image's own label y, in nats per dimension of the model's space (the pixels
    as floats in [-1, 1], or the PCA coordinates with space: pca), averaged over the images:
    the density as fitted (temperature 1; ridge included), as the feedback loop's test_loss.
    Images of a class the model lacks (absent from its training set under loop.labels:
    sampled; its density is undefined) are left out; nan when every image is."""
    if images.class_names != fitted.class_names or images.shape != fitted.image_shape:
        raise UserError(f"the held-out images ({images.shape}, classes {list(images.class_names)}) do not match the "
                        f"model ({fitted.image_shape}, classes {list(fitted.class_names)})")
    if len(images) == 0:
        raise UserError("the held-out loss needs at least one image")
    x = images.to_float().reshape(len(images), -1).astype(np.float64)
    if fitted.pca is not None:
        x = (x - fitted.pca[0]) @ fitted.pca[1].T
    log_p = np.full(len(images), np.nan)
    for c in range(len(fitted.class_names)):
        idx = np.flatnonzero(images.labels == c)
        if len(idx) and fitted.weights[c].sum() > 0:
            log_p[idx] = log_density(x[idx], fitted.means[c], fitted.covariances[c], fitted.weights[c])
    return float(-np.mean(log_p[~np.isnan(log_p)]) / x.shape[1]) if (~np.isnan(log_p)).any() else float("nan")


# -- the families ------------------------------------------------------------------------


def _prepare(train: ImageSet, config: _SpaceConfig, family: str, need: int, reference: ImageSet | None = None):
    """Training images as float vectors in the model's space, plus the PCA (or None),
    fitted on `reference` when given, else on `train`. Every class needs at least
    `need` images."""
    if len(train) < 1:
        raise UserError("cannot fit a generator on an empty training set")
    counts = train.class_counts()
    short = [f"{train.class_names[c]!r} ({counts[c]})" for c in range(train.num_classes) if counts[c] < need]
    if short:
        raise UserError(f"the {family} generator needs at least {need} training images per class to estimate a "
                        f"covariance; too few in class(es) {', '.join(short)}: add images or drop the class")
    x = train.to_float().reshape(len(train), -1).astype(np.float64)
    if config.space == "pixels":
        return x, None
    if config.components > x.shape[1]:
        raise UserError(f"components ({config.components}) exceeds the {x.shape[1]} pixel values per image; "
                        f"use at most {x.shape[1]}")
    basis_x = x if reference is None else reference.to_float().reshape(len(reference), -1).astype(np.float64)
    if reference is not None and basis_x.shape[1] != x.shape[1]:
        raise UserError(f"the PCA's reference images have {basis_x.shape[1]} pixel values, the training images "
                        f"{x.shape[1]}; they must match")
    if config.components > len(basis_x):
        raise UserError(f"components ({config.components}) exceeds the {len(basis_x)} images the PCA is "
                        f"fitted on; use at most {len(basis_x)}")
    centre, basis = fit_pca(basis_x, config.components)
    return (x - centre) @ basis.T, (centre, basis)


def _info(train: ImageSet, seed: int) -> dict:
    return {"train_hash": train.content_hash(), "seed": int(seed)}


class GaussianGenerator:
    """``GaussianGenerator(config).fit(train, seed) -> FittedGaussianMixture`` (one
    Gaussian per class; the fit is deterministic, `seed` is only recorded)."""

    def __init__(self, config: GaussianConfig | None = None, name: str = "gaussian"):
        self.config = config or GaussianConfig()
        self.config.validate()
        self.name = name

    def fit(self, train: ImageSet, seed: int, reference: ImageSet | None = None,
            small_classes: bool = False) -> FittedGaussianMixture:
        """`reference`: the images the PCA space is fitted on (space: pca; default `train`);
        `small_classes`: a class with fewer than 2 images is fitted by `small_class` (one image:
        covariance 0 plus the ridge; none: absent) instead of refused (loop.labels: sampled)."""
        cfg = self.config
        x, pca = _prepare(train, cfg, "gaussian", need=0 if small_classes else 2, reference=reference)
        d = x.shape[1]
        means, covs = np.empty((train.num_classes, 1, d)), np.empty((train.num_classes, 1, d, d))
        weights = np.ones((train.num_classes, 1))
        for c in range(train.num_classes):
            xc = x[train.labels == c]
            if len(xc) < 2:
                means[c], covs[c], weights[c] = small_class(xc, 1, cfg.ridge)
                continue
            mu, cov = fit_gaussian(xc, unbiased=cfg.covariance == "unbiased")
            means[c, 0], covs[c, 0] = mu, cov + cfg.ridge * np.eye(d)
        generation = int(train.generation.max()) + 1
        return FittedGaussianMixture(means, covs, weights, train.class_names, train.shape,
                                     generation, self.name, "gaussian", cfg, pca, _info(train, seed))


class GMMGenerator:
    """``GMMGenerator(config).fit(train, seed) -> FittedGaussianMixture`` (a Gaussian
    mixture per class, fitted by scikit-learn's EM with k-means initialisation seeded
    by `seed`; only its weights, means and covariances are kept)."""

    def __init__(self, config: GMMConfig | None = None, name: str = "gmm"):
        self.config = config or GMMConfig()
        self.config.validate()
        self.name = name

    def fit(self, train: ImageSet, seed: int, reference: ImageSet | None = None, init=None,
            steps: int | None = None, small_classes: bool = False) -> FittedGaussianMixture:
        """`reference`: the images the PCA space is fitted on (space: pca; default `train`).
        `init` (loop.init: previous): the previous gmm model (same space and components),
        whose components EM starts each class from, for at most `steps` iterations (None:
        max_iter; a class `init` lacks starts from k-means). `small_classes`: a class with
        fewer images than components is fitted by `small_class` instead of refused."""
        cfg = self.config
        k = cfg.mixture_components
        x, pca = _prepare(train, cfg, "gmm", need=0 if small_classes else max(2, k), reference=reference)
        d = x.shape[1]
        check_init(init, "gmm", k, d, pca)
        means, covs, weights = np.empty((train.num_classes, k, d)), np.empty((train.num_classes, k, d, d)), \
            np.empty((train.num_classes, k))
        for c in range(train.num_classes):
            xc = x[train.labels == c]
            if len(xc) < max(2, k):
                means[c], covs[c], weights[c] = small_class(xc, k, cfg.ridge)
                continue
            start = None if init is None or init.weights[c].sum() <= 0 else \
                (init.means[c], init.covariances[c], init.weights[c])
            try:
                means[c], covs[c], weights[c] = fit_mixture(xc, k, cfg.ridge, cfg.max_iter, int(seed) + c, start, steps)
            except ValueError as exc:  # EM hit a singular covariance
                raise UserError(f"the gmm generator could not fit class {train.class_names[c]!r} ({exc}); "
                                f"raise ridge or lower mixture_components") from None
        generation = int(train.generation.max()) + 1
        return FittedGaussianMixture(means, covs, weights, train.class_names, train.shape, generation, self.name,
                                     "gmm", cfg, pca, _info(train, seed))


register_family(GeneratorFamily("gaussian", GaussianConfig, GaussianGenerator, FittedGaussianMixture.load, FORMAT,
                                bias="temperature", bias_default=1.0, heldout_loss=heldout_nll,
                                warm_start=lambda _: "its fit is the closed-form maximum-likelihood estimate, "
                                "which has no starting point (a warm start would give the model scratch gives)"))
register_family(GeneratorFamily("gmm", GMMConfig, GMMGenerator, FittedGaussianMixture.load, FORMAT,
                                bias="temperature", bias_default=1.0, heldout_loss=heldout_nll,
                                warm_start=lambda _: None))
