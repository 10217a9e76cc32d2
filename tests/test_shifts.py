import numpy as np
import pytest

from ouroboros.data.imageset import ImageSet
from ouroboros.data.loaders import load_digits
from ouroboros.data.shifts import SHIFTS, apply_shift
from ouroboros.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return load_digits().subset(np.arange(50))


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_every_shift_keeps_labels_and_provenance_and_is_reproducible(digits, name):
    out = apply_shift(name, digits, seed=3)
    assert out.images.dtype == np.uint8 and out.images.shape == digits.images.shape
    np.testing.assert_array_equal(out.labels, digits.labels)
    np.testing.assert_array_equal(out.source, digits.source)
    assert all(f"shift={name}" in c for c in out.condition)
    assert not np.array_equal(out.images, digits.images)  # it changed something
    assert apply_shift(name, digits, seed=3).content_hash() == out.content_hash()


@pytest.mark.parametrize("name, params", [("noise", {"sigma": 0.0}), ("blur", {"sigma": 0.0}),
                                          ("rotation", {"degrees": 0.0}), ("contrast", {"factor": 1.0}),
                                          ("elastic", {"alpha": 0.0})])
def test_zero_strength_is_the_identity(digits, name, params):
    np.testing.assert_array_equal(apply_shift(name, digits, **params).images, digits.images)


def test_rotation_by_90_degrees_is_exact():
    rng = np.random.default_rng(0)
    s = ImageSet.create(rng.integers(0, 256, (3, 1, 6, 6), dtype=np.uint8), [0, 1, 0], ["a", "b"], "real:x")
    out = apply_shift("rotation", s, degrees=90)
    # Counter-clockwise in image coordinates (y down) is np.rot90 with k = -1 on (H, W).
    assert any(np.array_equal(out.images[:, 0], np.rot90(s.images[:, 0], k, axes=(1, 2))) for k in (1, -1))


def test_blur_keeps_constants_and_lowers_the_variation(digits):
    flat = ImageSet.create(np.full((2, 1, 8, 8), 93, np.uint8), [0, 1], ["a", "b"], "real:x")
    np.testing.assert_array_equal(apply_shift("blur", flat, sigma=1.5).images, flat.images)
    out = apply_shift("blur", digits, sigma=1.0)
    def roughness(images):
        return np.abs(np.diff(images.astype(float), axis=3)).mean()

    assert roughness(out.images) < roughness(digits.images)


def test_contrast_and_noise_change_the_spread(digits):
    low = apply_shift("contrast", digits, factor=0.3)
    assert low.images.std() < digits.images.std()
    # Contrast scales each image's deviation from its own mean by the factor.
    x = digits.images.astype(float)
    dev = x - x.mean(axis=(1, 2, 3), keepdims=True)
    y = low.images.astype(float)
    np.testing.assert_allclose(y - y.mean(axis=(1, 2, 3), keepdims=True), 0.3 * dev, atol=1.0)  # uint8 rounding
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=0.5)  # each image's mean kept
    # Noise is N(0, sigma^2) in [-1, 1] units: 0.3 * 127.5 = 38.25 grey levels on a flat grey image.
    grey = ImageSet.create(np.full((50, 1, 8, 8), 128, np.uint8), np.zeros(50, np.int64), ["a"], "real:x")
    added = apply_shift("noise", grey, sigma=0.3, seed=1).images.astype(float) - 128
    assert abs(added.mean()) < 2 and 36 < added.std() < 40.5, (added.mean(), added.std())


def test_bad_parameters(digits):
    with pytest.raises(UserError, match="unknown shift"):
        apply_shift("jpeg", digits)
    with pytest.raises(UserError, match="sigma must be >= 0"):
        apply_shift("blur", digits, sigma=-1)


def test_power_spectra_of_noise_and_smooth_images():
    from ouroboros.metrics.spectra import radial_power_spectra

    rng = np.random.default_rng(0)
    white = rng.normal(size=(200, 1, 16, 16))
    spec = radial_power_spectra(white)
    assert spec.shape == (200, 8)
    mean = spec.mean(axis=0)
    assert mean.max() - mean.min() < 0.15  # flat: white noise has equal power at every frequency
    smooth = apply_shift("blur", ImageSet.create(rng.integers(0, 256, (50, 1, 16, 16), dtype=np.uint8),
                                                  np.zeros(50, np.int64), ["a"], "real:x"), sigma=1.5).images
    s = radial_power_spectra(smooth).mean(axis=0)
    assert s[0] > s[-1] + 1  # blurred: power falls with frequency
