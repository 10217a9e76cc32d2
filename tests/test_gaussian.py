"""The generator-family registry and the analytic families (gaussian, gmm): fits
against numpy, sampling against closed forms, persistence, stages, bad input."""

import numpy as np
import pytest

from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.errors import UserError
from ouroboros.generators import (
    FittedDiffusion, FittedGaussianMixture, GaussianConfig, GaussianGenerator, GMMConfig, GMMGenerator, families,
    get_family, load_fitted, sample_gaussian, sample_mixture,
)
from ouroboros.runner import Runner, Stage
from ouroboros.stages import sample_stage


def blob_set(per_class=(12, 15, 9), shape=(1, 3, 3), seed=0, generation=0):
    """Classes whose pixels are normal around different grey levels (full-rank covariances)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c, n in enumerate(per_class):
        images.append(np.clip(rng.normal(60 + 70 * c, 25, size=(n, *shape)), 0, 255).astype(np.uint8))
        labels += [c] * n
    return ImageSet.create(np.concatenate(images), labels, [f"k{c}" for c in range(len(per_class))],
                           source="real:blobs", generation=generation)


def as_vectors(s: ImageSet) -> np.ndarray:
    return s.to_float().reshape(len(s), -1).astype(np.float64)


# -- fits ----------------------------------------------------------------------------


@pytest.mark.parametrize("covariance,ddof", [("mle", 0), ("unbiased", 1)])
def test_per_class_means_and_covariances_match_numpy(covariance, ddof):
    train = blob_set()
    ridge = 1e-3
    fitted = GaussianGenerator(GaussianConfig(covariance=covariance, ridge=ridge)).fit(train, seed=0)
    x = as_vectors(train)
    for c in range(3):
        xc = x[train.labels == c]
        np.testing.assert_allclose(fitted.means[c, 0], xc.mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(fitted.covariances[c, 0], np.cov(xc.T, ddof=ddof) + ridge * np.eye(9),
                                   rtol=1e-10, atol=1e-12)
    assert fitted.pca is None and fitted.weights.tolist() == [[1.0]] * 3


def test_pca_space_is_the_training_data_principal_subspace():
    from sklearn.decomposition import PCA

    train = blob_set(per_class=(30, 30, 30), shape=(1, 4, 4))
    fitted = GaussianGenerator(GaussianConfig(space="pca", components=3, ridge=0.0)).fit(train, seed=0)
    x = as_vectors(train)
    centre, basis = fitted.pca
    reference = PCA(3).fit(x)
    np.testing.assert_allclose(centre, reference.mean_, atol=1e-12)
    # Same subspace (projector), orthonormal rows; signs are ours to fix.
    np.testing.assert_allclose(basis.T @ basis, reference.components_.T @ reference.components_, atol=1e-10)
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    z = (x - centre) @ basis.T
    for c in range(3):
        np.testing.assert_allclose(fitted.covariances[c, 0], np.cov(z[train.labels == c].T, ddof=0), atol=1e-12)
    # The fixed sign convention: the largest entry of each component is positive.
    assert (basis[np.arange(3), np.abs(basis).argmax(axis=1)] > 0).all()


def test_gmm_keeps_scikit_learns_mixture_per_class():
    from sklearn.mixture import GaussianMixture

    train = blob_set(per_class=(40, 40), shape=(1, 2, 2))
    fitted = GMMGenerator(GMMConfig(mixture_components=2)).fit(train, seed=5)
    x = as_vectors(train)
    ref = GaussianMixture(2, covariance_type="full", reg_covar=1e-6, random_state=5 + 1).fit(x[train.labels == 1])
    np.testing.assert_allclose(fitted.means[1], ref.means_)
    np.testing.assert_allclose(fitted.covariances[1], ref.covariances_)
    np.testing.assert_allclose(fitted.weights[1], ref.weights_)


# -- sampling ------------------------------------------------------------------------


def test_family_samples_are_the_math_core_quantised():
    """The family draws class by class, in class order, from one numpy stream seeded by
    `seed` through sample_gaussian: the code the theory tests check."""
    train = blob_set()
    fitted = GaussianGenerator().fit(train, seed=0)
    labels = np.array([2, 0, 1, 0, 2, 2, 1])
    got = fitted.sample(7, labels, seed=11, temperature=0.7)
    rng = np.random.default_rng(11)
    expected = np.empty((7, 9))
    for c in range(3):
        idx = np.flatnonzero(labels == c)
        expected[idx] = sample_gaussian(fitted.means[c, 0], fitted.covariances[c, 0], len(idx), rng, 0.7)
    np.testing.assert_array_equal(got.images, quantize(expected.reshape(7, 1, 3, 3)))
    assert got.labels.tolist() == labels.tolist()
    assert set(got.source) == {"gen:gaussian"} and set(got.generation) == {1} and set(got.seed) == {11}
    assert got.condition[0] == "class=k2;temperature=0.7"


def test_generation_is_one_past_the_training_data():
    fitted = GaussianGenerator().fit(blob_set(generation=3), seed=0)
    assert set(fitted.sample(6, seed=0).generation) == {4}


@pytest.mark.parametrize("family,settings", [
    ("gaussian", {}), ("gaussian", {"space": "pca", "components": 4, "covariance": "unbiased"}),
    ("gmm", {"mixture_components": 2, "space": "pca", "components": 3}),
])
def test_same_seed_same_samples_and_save_load_round_trip(tmp_path, family, settings):
    train = blob_set(per_class=(20, 20, 20))
    fitted = get_family(family).fit(train, settings, seed=3, name="mine")
    a = fitted.sample(60, seed=4, temperature=1.3)
    np.testing.assert_array_equal(a.images, fitted.sample(60, seed=4, temperature=1.3).images)
    assert not np.array_equal(a.images, fitted.sample(60, seed=5, temperature=1.3).images)
    fitted.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["generator.json", "model.safetensors"]
    loaded_family, loaded = load_fitted(tmp_path / "m")
    assert loaded_family.name == family and loaded.name == "mine" and loaded.config == fitted.config
    b = loaded.sample(60, seed=4, temperature=1.3)
    assert a.content_hash() == b.content_hash()  # pixels and provenance alike
    # A fit is reproducible too (the gmm's EM is seeded).
    again = get_family(family).fit(train, settings, seed=3, name="mine").sample(60, seed=4, temperature=1.3)
    assert again.content_hash() == a.content_hash()


def test_temperature_zero_gives_the_class_means():
    train = blob_set()
    fitted = GaussianGenerator().fit(train, seed=0)
    out = fitted.sample(9, seed=0, temperature=0.0)
    x = as_vectors(train)
    for i, c in enumerate(out.labels):
        np.testing.assert_array_equal(out.images[i], quantize(x[train.labels == c].mean(axis=0).reshape(1, 3, 3)))


def test_temperature_scales_the_sample_variance():
    """Var of N(mu, T cov) along each axis is T cov_ii; the sample variance s2 of n
    draws has standard error sqrt(2 / (n - 1)) * T cov_ii."""
    cov = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    n = 20000
    for temperature in (0.25, 2.0):
        x = sample_gaussian(np.ones(3), cov, n, np.random.default_rng(1), temperature)
        expected = temperature * np.diag(cov)
        np.testing.assert_array_less(np.abs(x.var(axis=0, ddof=1) - expected), 4 * np.sqrt(2 / (n - 1)) * expected)


def test_mixture_temperature_scales_components_not_weights():
    """One dimension: Var = sum_k w_k (T s2_k + m_k^2) - (sum_k w_k m_k)^2, mean sum_k w_k m_k;
    at T = 0 only the component means come out, in proportion w."""
    means, covs, w = np.array([[-2.0], [1.0], [4.0]]), np.array([[[0.5]], [[1.0]], [[2.0]]]), np.array([.2, .5, .3])
    n, temperature = 40000, 0.5
    x = sample_mixture(means, covs, w, n, np.random.default_rng(2), temperature)[:, 0]
    m = means[:, 0]
    mean, var = w @ m, w @ (temperature * covs[:, 0, 0] + m ** 2) - (w @ m) ** 2
    assert abs(x.mean() - mean) < 4 * np.sqrt(var / n)
    # s2's standard error from the sample's fourth central moment.
    se = np.sqrt((np.mean((x - x.mean()) ** 4) - x.var() ** 2) / n)
    assert abs(x.var() - var) < 4 * se
    cold = sample_mixture(means, covs, w, n, np.random.default_rng(3), 0.0)[:, 0]
    values, counts = np.unique(cold, return_counts=True)
    assert values.tolist() == m.tolist()
    np.testing.assert_array_less(np.abs(counts / n - w), 4 * np.sqrt(w * (1 - w) / n))


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [-0.1, float("nan"), float("inf"), "1.0", None])
def test_bad_temperature_is_refused(temperature):
    fitted = GaussianGenerator().fit(blob_set(), seed=0)
    with pytest.raises(UserError, match="temperature must be a finite number >= 0"):
        fitted.sample(3, temperature=temperature)
    with pytest.raises(UserError, match="temperature"):
        sample_gaussian(np.zeros(1), np.eye(1), 3, np.random.default_rng(0), temperature)


@pytest.mark.parametrize("make,match", [
    (lambda: GaussianGenerator(GaussianConfig(space="pca", components=10)).fit(blob_set(), 0),
     r"components \(10\) exceeds the 9 pixel values per image; use at most 9"),
    (lambda: GaussianGenerator(GaussianConfig(space="pca", components=6)).fit(blob_set((2, 2, 1), (1, 3, 3)), 0),
     r"too few in class\(es\) 'k2' \(1\)"),
    (lambda: GaussianGenerator().fit(blob_set((5, 1, 5)), 0),
     r"at least 2 training images per class .* 'k1' \(1\)"),
    (lambda: GaussianGenerator().fit(blob_set((5, 0, 5)), 0), r"'k1' \(0\)"),
    (lambda: GMMGenerator(GMMConfig(mixture_components=4)).fit(blob_set((5, 3, 5)), 0),
     r"at least 4 training images per class .* 'k1' \(3\)"),
    (lambda: GaussianGenerator(GaussianConfig(covariance="n-1")), "covariance must be mle"),
    (lambda: GaussianGenerator(GaussianConfig(space="latent")), "space must be pixels or pca"),
    (lambda: GaussianGenerator(GaussianConfig(space="pca", components=0)), "components"),
    (lambda: GaussianGenerator(GaussianConfig(ridge=-1e-3)), "ridge must be"),
    (lambda: GaussianGenerator(GaussianConfig(ridge="1e-6")),
     r"ridge must be a finite number >= 0 \(e.g. 1.0e-6\); got '1e-6'"),
    (lambda: GaussianGenerator(GaussianConfig(space="pca", components=2.5)), "components .* integer"),
    (lambda: GMMGenerator(GMMConfig(mixture_components=0)), "mixture_components"),
    (lambda: GMMGenerator(GMMConfig(mixture_components=2.0)), "mixture_components and max_iter must be integers"),
    (lambda: get_family("gaussian").fit(blob_set(), {"temprature": 1.0}, seed=0), r"unknown gaussian .*temprature"),
    (lambda: get_family("vae"), "unknown generator family 'vae'; use one of diffusion, gaussian, gmm, latent"),
])
def test_bad_settings_and_data_are_user_errors(make, match):
    with pytest.raises(UserError, match=match):
        make()


def test_pca_components_cannot_exceed_the_training_images():
    train = blob_set((3, 3, 3), shape=(1, 4, 4))
    with pytest.raises(UserError, match=r"components \(10\) exceeds the 9 images the PCA is fitted on"):
        GaussianGenerator(GaussianConfig(space="pca", components=10)).fit(train, 0)


def test_singular_covariance_without_ridge_names_the_fix():
    # Three images of nine pixels: the class covariance has rank 2.
    fitted = GaussianGenerator(GaussianConfig(ridge=0.0)).fit(blob_set((3, 3, 3)), seed=0)
    with pytest.raises(UserError, match="set the generator's ridge above 0"):
        fitted.sample(3)
    # The default ridge makes the same data sample.
    assert len(GaussianGenerator().fit(blob_set((3, 3, 3)), seed=0).sample(3)) == 3


def test_loading_something_else_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a saved generator"):
        load_fitted(tmp_path)
    (tmp_path / "generator.json").write_text('{"format": "something.else"}')
    with pytest.raises(UserError, match="no generator family reads"):
        load_fitted(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not an ouroboros Gaussian generator"):
        FittedGaussianMixture.load(tmp_path)
    # A saved model with a file damaged or missing an entry: a user error, not a traceback.
    GaussianGenerator().fit(blob_set(), seed=0).save(tmp_path / "m")
    good = (tmp_path / "m" / "generator.json").read_text()
    (tmp_path / "m" / "generator.json").write_text(good.replace('"class_names"', '"classes"'))
    with pytest.raises(UserError, match="damaged Gaussian generator .*KeyError"):
        load_fitted(tmp_path / "m")
    (tmp_path / "m" / "generator.json").write_text(good.replace('"k2"', '"k2", "k3"'))
    with pytest.raises(UserError, match="shapes do not match"):
        load_fitted(tmp_path / "m")
    (tmp_path / "m" / "generator.json").write_text(good)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}garbage")
    with pytest.raises(UserError, match="damaged Gaussian generator"):
        load_fitted(tmp_path / "m")


# -- stages --------------------------------------------------------------------------


def _data_stage(imageset, cache):
    stage = Stage("data", {"content_hash": imageset.content_hash(), "role": "train"})
    imageset.save(stage.artifact(cache))
    return stage


def test_stages_run_a_gaussian_loop_reproducibly(tmp_path):
    """fit -> sample -> fit -> sample through the runner, twice in separate run folders."""
    results = []
    for run in ("a", "b"):
        runner = Runner(tmp_path / run, workers=1, progress=False)
        source = _data_stage(blob_set(per_class=(10, 10, 10)), runner.cache)
        chain = []
        for g in range(2):
            fit = Stage("fit", {"family": "gaussian", "config": {"space": "pca", "components": 4}, "seed": g,
                                "name": "gauss"}, {"train": source})
            source = Stage("sample", {"n": 30, "seed": 10 + g, "temperature": 0.5}, {"model": fit})
            chain.append((fit, source))
        paths = runner.run([source])
        results.append([(paths[f.key], paths[s.key]) for f, s in chain])
    for g, ((fit_a, sample_a), (_, sample_b)) in enumerate(zip(*results)):
        a, b = ImageSet.load(sample_a), ImageSet.load(sample_b)
        assert a.content_hash() == b.content_hash()
        # The stage passed the temperature and seed: same as sampling the saved model directly.
        model = FittedGaussianMixture.load(fit_a)
        assert model.config == GaussianConfig(space="pca", components=4)  # the stage's settings were used
        direct = model.sample(30, seed=10 + g, temperature=0.5)
        assert direct.content_hash() == a.content_hash()
    last = ImageSet.load(results[0][1][1])
    assert set(last.generation) == {2} and set(last.source) == {"gen:gauss"}
    assert set(last.condition) >= {"class=k0;temperature=0.5"}


def test_fit_stage_defaults_to_diffusion_and_sample_stage_passes_its_settings(tmp_path):
    runner = Runner(tmp_path, workers=1, progress=False)
    train = _data_stage(blob_set(per_class=(4, 4, 4), shape=(1, 4, 4)), runner.cache)
    config = {"train_steps": 2, "batch_size": 8, "warmup_steps": 1, "hidden": 16, "device": "cpu"}
    fit = Stage("fit", {"config": config, "seed": 0, "name": "diffusion"}, {"train": train})
    sample = Stage("sample", {"n": 6, "guidance": 0.5, "seed": 3, "sampler": "ddim", "sample_steps": 3,
                              "sample_batch_size": 4}, {"model": fit})
    paths = runner.run([sample])
    assert load_fitted(paths[fit.key])[0].name == "diffusion"
    got = ImageSet.load(paths[sample.key])
    direct = FittedDiffusion.load(paths[fit.key]).sample(6, guidance=0.5, seed=3, sampler="ddim", sample_steps=3)
    assert got.content_hash() == direct.content_hash()


def test_sample_stage_refuses_another_familys_knob(tmp_path):
    GaussianGenerator().fit(blob_set(), seed=0).save(tmp_path / "m")
    with pytest.raises(UserError, match="does not take sampling parameter.*'guidance'.*knob is 'temperature'"):
        sample_stage({"n": 3, "seed": 0, "guidance": 1.0}, {"model": tmp_path / "m"}, tmp_path / "out.npz")
    with pytest.raises(UserError, match="expects a gmm generator"):
        sample_stage({"n": 3, "seed": 0, "family": "gmm"}, {"model": tmp_path / "m"}, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_registering_a_family_adds_it_once(monkeypatch):
    from ouroboros.generators import base

    monkeypatch.setattr(base, "_FAMILIES", dict(families()))
    extra = base.GeneratorFamily("gaussian2", GaussianConfig, GaussianGenerator, FittedGaussianMixture.load,
                                 "x", bias="temperature", bias_default=1.0)
    base.register_family(extra)
    assert get_family("gaussian2") is extra
    with pytest.raises(ValueError, match="already registered"):
        base.register_family(extra)


def test_every_family_has_a_bias_knob_its_sample_takes():
    import inspect

    assert {"diffusion", "gaussian", "gmm", "latent"} <= set(families())
    for family in families().values():
        fitted_cls = family.load.__self__  # each family's loader is its fitted class's classmethod
        params = inspect.signature(fitted_cls.sample).parameters
        assert family.bias in params and params[family.bias].default == family.bias_default
