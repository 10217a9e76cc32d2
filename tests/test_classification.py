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


@pytest.mark.parametrize("arch, width", [("cnn", 16), ("resnet", 8)])
def test_both_architectures_learn_digits_and_suffer_under_shift(split, arch, width, tmp_path):
    train, test = split
    tests = {"clean": test, "noise": apply_shift("noise", test, sigma=0.6, seed=0)}
    config = ClassifierConfig(arch=arch, width=width, epochs=8, device="cpu")
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
