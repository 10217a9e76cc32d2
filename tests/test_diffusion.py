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


class DtypeSpy(LabelEcho):
    """LabelEcho that records the dtype autocast gives a matrix product inside it."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.seen = []

    def forward(self, x, t, labels):
        self.seen.append(self.lin(torch.ones(1, 1, device=x.device)).dtype)
        return super().forward(x, t, labels)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_sets_the_denoisers_compute_dtype_and_sampling_stays_float32(precision, dtype):
    fitted = FittedDiffusion(DiffusionConfig(precision=precision), DtypeSpy(), tuple("ab"), (1, 2, 2), generation=1)
    eps = fitted.eps(torch.zeros(2, 1, 2, 2), torch.tensor(3), torch.tensor([0, 1]), 0.5)
    assert fitted.model.seen == [dtype] and eps.dtype == torch.float32
    torch.testing.assert_close(eps[:, 0, 0, 0], torch.tensor([-1.0, 0.5]))  # (1 + w) y - w * null(2)


def test_bf16_training_and_sampling_run_and_differ_from_fp32(digits_split):
    train = digits_split[0].subset(np.arange(100))
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = DiffusionConfig(train_steps=20, sample_steps=5, device="cpu", precision=precision)
        fitted = DiffusionGenerator(cfg).fit(train, seed=1)
        runs[precision] = (fitted.info["final_loss"], fitted.sample(20, guidance=0.5, seed=3).images)
        assert fitted.config.precision == precision
    assert np.isfinite(runs["bf16"][0]) and abs(runs["bf16"][0] - runs["fp32"][0]) < 0.2 * runs["fp32"][0]
    assert runs["bf16"][0] != runs["fp32"][0]  # autocast was on: the arithmetic differs
    assert np.abs(runs["bf16"][1].astype(int) - runs["fp32"][1]).mean() < 40  # same model, within rounding drift


def test_compiled_denoiser_gives_the_eager_samples(tmp_path, digits_split, monkeypatch):
    pytest.importorskip("torch._inductor")
    train = digits_split[0].subset(np.arange(50))
    out, calls, compile_fn = {}, [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(model) or compile_fn(model, **kw))
    for compile_ in (False, True):
        cfg = DiffusionConfig(hidden=32, train_steps=3, sample_steps=3, device="cpu", compile=compile_)
        fitted = DiffusionGenerator(cfg).fit(train, seed=1)
        assert isinstance(fitted._net, torch._dynamo.eval_frame.OptimizedModule) == compile_
        out[compile_] = fitted.sample(10, guidance=0.5, seed=3).images
        fitted.save(tmp_path / str(compile_))  # the state dict has no torch.compile prefixes
        again = FittedDiffusion.load(tmp_path / str(compile_)).sample(10, guidance=0.5, seed=3)
        assert again.images.shape == (10, 1, 8, 8)
    assert np.abs(out[True].astype(int) - out[False]).max() <= 2  # kernel fusion changes only float rounding
    assert len(calls) == 3  # the training network, the fitted and the reloaded model's sampling networks


@pytest.mark.parametrize("field, value, message", [("precision", "fp16", "precision must be fp32 or bf16"),
                                                   ("compile", "yes", "compile must be true or false")])
def test_bad_precision_or_compile_is_refused(field, value, message):
    with pytest.raises(UserError, match=message):
        DiffusionConfig(**{field: value}).validate()
