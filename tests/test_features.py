import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_user_error, run_cli
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.features import FEATURES, default_features, get_extractor
from ouroboros.features.inception import WEIGHTS_NAME, FIDInceptionV3, find_weights, load_inception

# Key names and shapes of the standard pt_inception-2015-12-05 state dict (pytorch-fid's
# port of TensorFlow's FID graph), a sample from each kind of block.
EXPECTED = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
}


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """A state dict with the standard keys (random values: the real file cannot be downloaded here)."""
    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    folder = tmp_path_factory.mktemp("weights")
    torch.save(state, folder / WEIGHTS_NAME)
    save_file(state, folder / "inception.safetensors")
    return folder, state


def test_state_dict_has_the_standard_keys():
    state = FIDInceptionV3().state_dict()
    for key, shape in EXPECTED.items():
        assert tuple(state[key].shape) == shape, key
    params = sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
    # torchvision's Inception-v3 has 27,161,264 parameters; less its auxiliary classifier
    # (3,326,696), plus 8 more classes in the 1008-way fc (8 x 2048 + 8).
    assert params == 27_161_264 - 3_326_696 + 8 * 2048 + 8


def test_loads_pth_and_safetensors_and_extracts_2048_features(fake_weights, monkeypatch):
    folder, state = fake_weights
    model = load_inception(folder / WEIGHTS_NAME)
    for k in EXPECTED:
        assert torch.equal(model.state_dict()[k], state[k])
    images = np.random.default_rng(0).integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)
    with torch.no_grad():
        feats = model(torch.as_tensor(images))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    model2 = load_inception(folder / "inception.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model2(torch.as_tensor(images)), feats)
    # Found through the environment variable and through torch's hub cache folder.
    monkeypatch.setenv("OUROBOROS_INCEPTION_WEIGHTS", str(folder))
    assert find_weights() == folder / WEIGHTS_NAME
    monkeypatch.delenv("OUROBOROS_INCEPTION_WEIGHTS")
    hub = folder / "torchhome" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / WEIGHTS_NAME).symlink_to(folder / WEIGHTS_NAME)
    monkeypatch.setenv("TORCH_HOME", str(folder / "torchhome"))
    assert find_weights() == hub / WEIGHTS_NAME


def test_preprocess_resizes_to_299_and_scales_to_unit_range():
    x = torch.full((1, 1, 8, 8), 255, dtype=torch.uint8)
    out = FIDInceptionV3.preprocess(x)
    assert out.shape == (1, 3, 299, 299) and torch.allclose(out, torch.ones_like(out))
    assert torch.allclose(FIDInceptionV3.preprocess(torch.zeros((1, 3, 32, 32))), -torch.ones(1, 3, 299, 299))


def test_missing_or_wrong_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("OUROBOROS_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match="Inception weights not found"):
        find_weights()
    with pytest.raises(UserError, match="not found"):
        load_inception(tmp_path / "nope.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="not the FID Inception-v3 state dict"):
        load_inception(tmp_path / "wrong.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read Inception weights"):
        load_inception(tmp_path / "corrupt.pth")


def test_registry_and_defaults(toy_set):
    assert set(FEATURES) == {"classifier", "inception", "pixels"}
    with pytest.raises(UserError, match="unknown feature extractor"):
        get_extractor("vgg")
    assert default_features(toy_set) == "classifier"
    big = ImageSet.create(np.zeros((2, 3, 64, 64), np.uint8), [0, 1], ["a", "b"], "real:x")
    assert default_features(big) == "inception"
    pixels = get_extractor("pixels")(toy_set)
    assert pixels.shape == (30, 64)
    np.testing.assert_array_equal(pixels, toy_set.images.reshape(30, 64) / 255.0)  # raw pixels in [0, 1]


def test_metrics_cli_on_feature_files_and_datasets(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "r.npy", rng.normal(size=(200, 8)))
    np.save(tmp_path / "f.npy", rng.normal(size=(150, 8)) * 0.1)
    proc = run_cli("metrics", tmp_path / "r.npy", tmp_path / "f.npy", "--json", "--kid-subsets", "5")
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert out["precision_recall"]["k"] == 3 and out["prdc"]["k"] == 5
    assert out["prdc"]["precision"] > 0.8 and out["prdc"]["recall"] < 0.3  # a collapsed "generator"
    proc = run_cli("metrics", "digits", "digits", "--features", "pixels", "--k", "4", "--kid-subsets", "2")
    assert proc.returncode == 0, proc.stderr
    assert "FID" in proc.stdout and "k=4" in proc.stdout


@pytest.mark.parametrize("make, fragment", [
    (lambda rng: rng.normal(size=(100, 7)), "different dimensions"),
    (lambda rng: np.full((100, 8), np.nan), "NaN or inf"),
    (lambda rng: rng.normal(size=(4, 8)), "at least k + 1"),
    (lambda rng: np.zeros((0, 8)), "empty"),
])
def test_metrics_cli_bad_features(tmp_path, make, fragment):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "r.npy", rng.normal(size=(100, 8)))
    np.save(tmp_path / "f.npy", make(rng))
    assert_user_error(run_cli("metrics", tmp_path / "r.npy", tmp_path / "f.npy"), fragment)


def test_metrics_cli_missing_weights_file(tmp_path):
    proc = run_cli("metrics", "digits", "digits", "--features", "inception", "--inception-weights",
                   tmp_path / "none.pth")
    assert_user_error(proc, "Inception weights not found")
