import numpy as np
import pytest
import torch

from ouroboros.data.imageset import stratified_split
from ouroboros.data.loaders import load_digits
from ouroboros.errors import UserError
from ouroboros.features.classifier import Classifier, ClassifierConfig
from ouroboros.generators import DiffusionConfig, DiffusionGenerator, FittedDiffusion
from ouroboros.metrics import classification_metrics


class LabelEcho(torch.nn.Module):
    """A fake denoiser whose noise prediction is the class label (null label = K)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, labels):
        return labels.float().view(-1, 1, 1, 1).expand_as(x) + 0 * self.p


def test_guidance_convention_matches_the_paper():
    fitted = FittedDiffusion(DiffusionConfig(), LabelEcho(), tuple("abcd"), (1, 2, 2), generation=1)
    x = torch.zeros(3, 1, 2, 2)
    labels = torch.tensor([0, 1, 3])
    t = torch.tensor(5)
    for w in [0.0, 0.1, 1.0, 7.5]:
        eps = fitted.eps(x, t, labels, w)
        expected = (1 + w) * labels.float() - w * 4.0  # null label = num_classes = 4
        torch.testing.assert_close(eps[:, 0, 0, 0], expected)


@pytest.mark.parametrize("w", [-0.5, float("nan"), float("inf")])
def test_negative_or_nonfinite_guidance_is_refused(w):
    fitted = FittedDiffusion(DiffusionConfig(), LabelEcho(), tuple("ab"), (1, 2, 2), generation=1)
    with pytest.raises(UserError, match="guidance"):
        fitted.sample(4, guidance=w)


@pytest.fixture(scope="module")
def digits_split():
    parts = stratified_split(load_digits(), {"train": 0.7, "test": 0.3}, seed=0)
    return parts["train"], parts["test"]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_save_load_and_seed_reproduce_samples(tmp_path, digits_split, sampler):
    train = digits_split[0].subset(np.arange(100))
    cfg = DiffusionConfig(train_steps=20, sample_steps=5, sampler=sampler, device="cpu")
    fitted = DiffusionGenerator(cfg).fit(train, seed=1)
    a = fitted.sample(30, guidance=0.5, seed=3)
    assert a.shape == (1, 8, 8) and len(a) == 30
    assert a.class_counts().tolist() == [3] * 10  # balanced
    assert set(a.generation) == {1} and set(a.source) == {"gen:diffusion"} and set(a.seed) == {3}
    fitted.save(tmp_path / "m")
    b = FittedDiffusion.load(tmp_path / "m").sample(30, guidance=0.5, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    c = fitted.sample(30, guidance=0.5, seed=4)
    assert not np.array_equal(a.images, c.images)
    # Refitting with the same seed gives the same weights, hence the same samples.
    again = DiffusionGenerator(cfg).fit(train, seed=1).sample(30, guidance=0.5, seed=3)
    np.testing.assert_array_equal(a.images, again.images)


def test_generation_index_follows_the_training_data(digits_split):
    train = digits_split[0].subset(np.arange(50))
    cfg = DiffusionConfig(train_steps=5, sample_steps=2, device="cpu")
    g1 = DiffusionGenerator(cfg).fit(train, seed=0).sample(20, seed=0)
    g2 = DiffusionGenerator(cfg).fit(g1, seed=0).sample(20, seed=0)
    assert set(g1.generation) == {1} and set(g2.generation) == {2}


def test_unet_denoiser_trains_samples_and_reloads(tmp_path, digits_split):
    train = digits_split[0].subset(np.arange(40))
    cfg = DiffusionConfig(denoiser="unet", hidden=8, depth=2, train_steps=3, batch_size=8, sample_steps=2, device="cpu")
    fitted = DiffusionGenerator(cfg).fit(train, seed=0)
    s = fitted.sample(12, guidance=1.0, seed=0)
    assert s.images.shape == (12, 1, 8, 8)
    fitted.save(tmp_path / "u")
    again = FittedDiffusion.load(tmp_path / "u").sample(12, guidance=1.0, seed=0)
    np.testing.assert_array_equal(s.images, again.images)


def test_loading_a_non_generator_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a saved diffusion generator"):
        FittedDiffusion.load(tmp_path)


def test_generation0_samples_are_recognised_by_the_real_classifier(digits_split):
    """The real-data sanity figure: generation 0 trained on real digits makes digits of the
    intended class far above chance (10%); guidance makes them clearer still."""
    train, test = digits_split
    clf = Classifier.train(train, ClassifierConfig(device="cpu"), seed=0)
    real = classification_metrics(clf.logits(test), test.labels, test.class_names)
    assert real["accuracy"] > 0.95
    fitted = DiffusionGenerator(DiffusionConfig(device="cpu")).fit(train, seed=0)
    plain = fitted.sample(500, guidance=0.0, seed=1)
    guided = fitted.sample(500, guidance=1.0, seed=1)
    acc_plain = classification_metrics(clf.logits(plain), plain.labels, plain.class_names)["accuracy"]
    acc_guided = classification_metrics(clf.logits(guided), guided.labels, guided.class_names)["accuracy"]
    print(f"real test {real['accuracy']:.3f}, generation 0: w=0 {acc_plain:.3f}, w=1 {acc_guided:.3f}")
    assert acc_plain > 0.6
    assert acc_guided > 0.9
    assert acc_guided > acc_plain
