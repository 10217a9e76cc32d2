import re

import numpy as np
import pytest

from ouroboros.data.imageset import stratified_split
from ouroboros.data.loaders import load_digits
from ouroboros.data.shifts import apply_shift
from ouroboros.errors import UserError
from ouroboros.features.classifier import Classifier, ClassifierConfig
from ouroboros.tasks.classification import confusion_matrix, train_and_score


@pytest.fixture(scope="module")
def split():
    parts = stratified_split(load_digits(), {"train": 0.7, "test": 0.3}, seed=0)
    return parts["train"], parts["test"]


@pytest.mark.parametrize("arch, width, warp", [("cnn", 16, {}), ("resnet", 8, {}),
                                               ("cnn", 16, {"rotation": 10.0, "scale": 0.1})])
def test_both_architectures_learn_digits_and_suffer_under_shift(split, arch, width, warp, tmp_path):
    train, test = split
    tests = {"clean": test, "noise": apply_shift("noise", test, sigma=0.6, seed=0)}
    config = ClassifierConfig(arch=arch, width=width, epochs=8, device="cpu", **warp)
    clf, scores = train_and_score(train, tests, config, seed=0)
    assert scores["clean/accuracy"] > 0.9, scores
    assert scores["noise/accuracy"] < scores["clean/accuracy"]
    clf.save(tmp_path / "c")
    again = Classifier.load(tmp_path / "c")
    np.testing.assert_allclose(again.logits(test), clf.logits(test))


def test_class_mismatch_is_refused(split):
    train, test = split
    other = test.subset(np.arange(5))
    other = type(other)(other.images, other.labels, tuple("abcdefghij"), other.source, other.generation,
                        other.seed, other.condition)
    with pytest.raises(UserError, match="has classes"):
        train_and_score(train, {"bad": other}, ClassifierConfig(epochs=1, device="cpu"))


def test_confusion_matrix():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert confusion_matrix(logits, np.array([0, 0, 1]), 2).tolist() == [[1, 1], [1, 0]]


def test_unknown_arch(split):
    with pytest.raises(UserError, match="unknown classifier arch"):
        Classifier.train(split[0], ClassifierConfig(arch="vgg", epochs=1, device="cpu"))


def test_images_too_small_for_the_cnn_are_one_error_line(tmp_path):
    """1 x 1 images load (they are valid), but the classifier features cannot use them."""
    import numpy as np

    from conftest import assert_user_error, run_cli
    from ouroboros.data.imageset import ImageSet

    rng = np.random.default_rng(0)
    tiny = ImageSet.create(rng.integers(0, 256, (40, 1, 1, 1), dtype=np.uint8), np.arange(40) % 2, ["a", "b"],
                           source="real:tiny")
    tiny.save(tmp_path / "tiny.npz")
    proc = run_cli("metrics", tmp_path / "tiny.npz", tmp_path / "tiny.npz", "--features", "classifier")
    assert_user_error(proc, "at least 2 x 2 pixels")


def _bar_moments(images):
    """Per image: the centre of mass (x, y) of the bright pixels, their principal axis's
    angle in degrees from the horizontal, in (-90, 90], and their variance along x."""
    import torch

    w = ((images[:, 0] + 1) / 2).clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = w.sum((1, 2))
    cx, cy = (w * xs).sum((1, 2)) / mass, (w * ys).sum((1, 2)) / mass
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    cxx, cyy, cxy = ((w * a * b).sum((1, 2)) / mass for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * cxy, cxx - cyy))
    return cx.numpy(), cy.numpy(), angle.numpy(), cxx.numpy()


def test_the_affine_warp_turns_zooms_and_moves_each_image_within_its_settings():
    """A horizontal bar across the centre of 28 x 28 images: rotation 30 turns each image by
    its own angle within 30 degrees either way, about the centre; scale 0.2 stretches it by
    at most 20%; shift 3 moves it by at most 3 pixels; neither: the whole-pixel batch shift
    of before."""
    import torch

    from ouroboros.features.classifier import _random_shift, augment

    bars = torch.full((200, 1, 28, 28), -1.0)
    bars[:, :, 13:15, 4:24] = 1.0
    _, _, _, length = _bar_moments(bars)

    def warp(seed=0, **settings):
        config = ClassifierConfig(**{"shift": 0, **settings})
        return _bar_moments(augment(bars, config, torch.Generator().manual_seed(seed)))

    cx, cy, angle, _ = warp(rotation=30.0)
    assert np.abs(angle).max() <= 30.5 and np.abs(angle).max() > 25 and angle.std() > 10, angle
    assert np.abs(cx - 13.5).max() < 0.2 and np.abs(cy - 13.5).max() < 0.2
    cx, cy, angle, stretched = warp(scale=0.2)
    ratio = np.sqrt(stretched / length)  # zoom 1 + s shows the bar 1 / (1 + s) as long
    assert np.abs(angle).max() < 0.5 and ratio.min() > 1 / 1.2 - 0.02 and ratio.max() < 1 / 0.8 + 0.02
    assert ratio.min() < 0.9 and ratio.max() > 1.1, (ratio.min(), ratio.max())
    cx, cy, angle, _ = warp(scale=0.01, shift=3)
    moved = np.maximum(np.abs(cx - 13.5), np.abs(cy - 13.5))
    assert moved.max() <= 3.05 and moved.max() > 2.5 and cx.std() > 1 and cy.std() > 1
    shifted = augment(bars, ClassifierConfig(shift=2), torch.Generator().manual_seed(4))
    assert torch.equal(shifted, _random_shift(bars, 2, torch.Generator().manual_seed(4)))


def test_classifier_warp_settings_out_of_range_are_refused():
    for bad, fragment in (({"rotation": -1.0}, "classifier.rotation must lie in [0, 180]"),
                          ({"scale": 0.6}, "classifier.scale must lie in [0, 0.5]")):
        with pytest.raises(UserError, match=re.escape(fragment)):
            ClassifierConfig(**bad).validate()
