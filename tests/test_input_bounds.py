"""No pickle behind a model folder's index, and bounded input.

Every file ouroboros reads is size-checked (OUROBOROS_MAX_INPUT_MB raises the limits)
and must be a regular file: a 1 TiB sparse file or a FIFO is one UserError, at once.
YAML is parsed with a bound on its alias-expanded size. Every reader is tried here.
"""

import contextlib
import json
import os
import signal
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_cli
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet, read_npy
from ouroboros.data.loaders import load_dataset, read_manifest
from ouroboros.errors import UserError
from ouroboros.features.inception import find_weights, load_state_dict
from ouroboros.generators import model_folder, prompts, text2image_run, tiny_pipeline
from ouroboros.io import MAX_INPUT_SETTING, read_bytes_bounded
from ouroboros.report.results import read_results
from ouroboros.safe_yaml import load_yaml

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sparse files and FIFOs (POSIX)")

TIB = 1 << 40


@contextlib.contextmanager
def no_hang(seconds=5):
    """A read that blocks (a FIFO opened without O_NONBLOCK) fails the test instead of hanging."""
    def expire(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)


def _folder(root):
    for c in ("a", "b"):
        _png(root / c / "0.png")
    return root


def _model(root):
    """A fake pipeline folder: enough for the checks made before diffusers loads anything."""
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"],
                                                       "safety_checker": [None, None],
                                                       "requires_safety_checker": False}))
    (root / "unet" / "config.json").write_text("{}")
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"decoy")
    return root


def _cifar_meta(tmp, make):  # beside a valid one-record batch
    (tmp / "data_batch_1.bin").write_bytes(bytes(3073))
    make(tmp / "batches.meta.txt")
    return lambda: load_dataset(f"cifar10:{tmp}")


def _idx(tmp, make):
    make(tmp / "train-images-idx3-ubyte")
    (tmp / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\0")
    return lambda: load_dataset(f"idx:{tmp}")


def _image(tmp, make):
    _folder(tmp / "f")
    make(tmp / "f" / "a" / "1.png")
    return lambda: load_dataset(f"imagefolder:{tmp / 'f'}")


def _manifest_in_folder(tmp, make):
    _folder(tmp / "f")
    make(tmp / "f" / "manifest.jsonl")
    return lambda: load_dataset(f"imagefolder:{tmp / 'f'}")


def _model_file(name):
    def reader(tmp, make):
        model = _model(tmp / "m")
        (model / "unet" / name).unlink(missing_ok=True)
        make(model / "unet" / name)
        return lambda: model_folder.check_component_folder(model, "unet")
    return reader


def _model_index(tmp, make):
    (tmp / "m").mkdir()
    make(tmp / "m" / "model_index.json")
    return lambda: model_folder.read_model_index(tmp / "m")


def _settings_file(tmp, make):
    make(tmp / "generate.json")
    return lambda: text2image_run.check_settings_file(tmp, {})


def _file(name, read):
    def reader(tmp, make):
        make(tmp / name)
        return lambda: read(tmp / name)
    return reader


READERS = {
    "config": _file("c.yaml", load_config),
    "results.csv": _file("results.csv", read_results),
    "manifest": _file("manifest.jsonl", read_manifest),
    "manifest in an ImageFolder": _manifest_in_folder,
    "class list": _file("classes.txt", prompts.read_classes),
    "captions": _file("captions.json", prompts.read_captions),
    "model_index.json": _model_index,
    "component config.json": _model_file("config.json"),
    "component weights": _model_file("diffusion_pytorch_model.safetensors"),
    "weight index": _model_file("diffusion_pytorch_model.safetensors.index.json"),
    "generate.json": _settings_file,
    "ImageFolder image": _image,
    "IDX images": _idx,
    "CIFAR-10 batch": _file("data_batch_1.bin", lambda p: load_dataset(f"cifar10:{p}")),
    "CIFAR-10 class list": _cifar_meta,
    "ImageSet .npz": _file("set.npz", ImageSet.load),
    ".npy": _file("f.npy", read_npy),
    "Inception weights (path)": _file("w.pth", find_weights),
    "Inception weights (read)": _file("w.pth", load_state_dict),
}


def _sparse(path):
    path.write_bytes(b"")
    os.truncate(path, TIB)


@pytest.mark.parametrize("name", READERS)
def test_a_1_tib_sparse_file_is_one_error_at_once(tmp_path, name, monkeypatch):
    monkeypatch.delenv(MAX_INPUT_SETTING, raising=False)
    read = READERS[name](tmp_path, _sparse)
    start = time.perf_counter()
    with no_hang(), pytest.raises(UserError, match=f"1,099,511,627,776 bytes, over the .* MiB limit .*"
                                                   f"{MAX_INPUT_SETTING}=1048576"):
        read()
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("name", READERS)
def test_a_fifo_is_refused_without_blocking(tmp_path, name):
    read = READERS[name](tmp_path, os.mkfifo)
    # read_results tests is_file() first (its validation is another change's): a FIFO is "no results table"
    expected = "no results table" if name == "results.csv" else "is a FIFO, not a regular file"
    start = time.perf_counter()
    with no_hang(), pytest.raises(UserError, match=expected):
        read()
    assert time.perf_counter() - start < 1.0


def test_a_device_is_refused(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with no_hang(), pytest.raises(UserError, match="character device"):
        load_config("/dev/zero")
    with no_hang(), pytest.raises(UserError, match="character device"):
        read_manifest(Path("/dev/zero"))


def test_a_fifo_in_an_image_folder_is_one_error_line_from_the_cli(tmp_path):
    _folder(tmp_path / "f")
    os.mkfifo(tmp_path / "f" / "b" / "1.png")
    proc = run_cli("mix", "--real", f"imagefolder:{tmp_path / 'f'}", "--ratio", "0", "--out", tmp_path / "o.npz",
                   timeout=60)
    assert_user_error(proc, "1.png is a FIFO")
    assert not (tmp_path / "o.npz").exists()


def test_the_setting_raises_the_limit_and_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"")
    os.truncate(path, 65 << 20)  # just over the 64 MiB limit on configs
    monkeypatch.delenv(MAX_INPUT_SETTING, raising=False)
    with pytest.raises(UserError, match=f"over the 64 MiB limit on configs.*{MAX_INPUT_SETTING}=65"):
        load_config(path)
    monkeypatch.setenv(MAX_INPUT_SETTING, "65")
    with pytest.raises(UserError, match="not valid YAML"):  # read, then refused for its NUL bytes
        load_config(path)
    for bad in ("lots", "-1", "0", "1.5"):
        monkeypatch.setenv(MAX_INPUT_SETTING, bad)
        with pytest.raises(UserError, match=f"{MAX_INPUT_SETTING}=.* must be a whole number of MiB"):
            read_bytes_bounded(path)


def test_a_fifo_swapped_in_after_the_check_does_not_block(tmp_path, monkeypatch):
    import ouroboros.io as io_

    os.mkfifo(tmp_path / "swapped")
    monkeypatch.setattr(io_, "check_regular_file", lambda *a: None)  # the check saw a regular file
    with no_hang(), pytest.raises(UserError, match="is a FIFO"):  # O_NONBLOCK open, then fstat
        read_bytes_bounded(tmp_path / "swapped")


def test_a_file_that_grows_after_its_check_is_still_bounded(tmp_path, monkeypatch):
    import ouroboros.io as io_

    path = tmp_path / "c.yaml"
    path.write_bytes(b"x" * 100)
    monkeypatch.setattr(io_, "_check_stat", lambda *a: None)  # the check passed; the file then grew
    monkeypatch.setattr(io_, "input_limit", lambda kind: 10)
    with pytest.raises(UserError, match="over the 0 MiB limit"):
        read_bytes_bounded(path)


# -- YAML ---------------------------------------------------------------------------------

def _bomb(levels=9):
    parts, prev = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for n in "bcdefghijk"[:levels - 1]:
        parts.append(f"&{n} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = n
    return "[" + ", ".join(parts) + "]"


def test_a_500_byte_alias_bomb_is_one_error_within_a_second(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"study: loop\nname: {_bomb()}\n")
    assert path.stat().st_size < 500
    start = time.perf_counter()
    with no_hang(), pytest.raises(UserError, match="over 100,000 YAML values once aliases are expanded"):
        load_config(path)
    with no_hang(), pytest.raises(UserError, match="--set name: over 100,000 YAML values"):
        load_config(None, [f"name={_bomb()}"])
    assert time.perf_counter() - start < 1.0


def test_the_alias_bomb_from_the_cli_is_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"study: loop\nname: {_bomb()}\n")
    proc = run_cli("run", path, "--out", tmp_path / "run", timeout=60)
    assert_user_error(proc, "over 100,000 YAML values")
    assert not (tmp_path / "run").exists()


def test_yaml_bounds_count_expanded_values_and_refuse_cycles():
    assert load_yaml("a: &x [1, 2]\nb: *x\nc: *x\n") == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}
    # the mapping, 3 keys and 3 copies of a 4-node list: 16 values expanded, 8 as written
    with pytest.raises(UserError, match="over 15 YAML values"):
        load_yaml("a: &x [1, 2, 3]\nb: *x\nc: *x\n", max_nodes=15)
    load_yaml("a: &x [1, 2, 3]\nb: *x\nc: *x\n", max_nodes=16)
    with no_hang(), pytest.raises(UserError, match="alias inside its own anchor"):
        load_yaml("a: &x [1, *x]\n")
    with pytest.raises(UserError, match="over 100,000"):
        load_yaml("[" + ",".join(["1"] * 100_001) + "]")  # no alias at all: the bound holds too


# -- model folders: no pickle behind an index, model_index.json checked -------------------------

def _index(model, name, files):
    (model / "unet" / name).write_text(json.dumps({"metadata": {}, "weight_map": {f"w{i}": f
                                                                                  for i, f in enumerate(files)}}))


@pytest.mark.parametrize("name, files, fragment", [
    ("diffusion_pytorch_model.safetensors.index.json", ["diffusion_pytorch_model-00001-of-00001.bin"],
     "not a safetensors file"),
    ("diffusion_pytorch_model.bin.index.json", ["diffusion_pytorch_model-00001-of-00001.bin"],
     "not a safetensors file"),
    ("diffusion_pytorch_model.safetensors.index.json", ["../x.safetensors"], "not a file in"),
    ("diffusion_pytorch_model.safetensors.index.json", ["/etc/x.safetensors"], "not a file in"),
    ("diffusion_pytorch_model.safetensors.index.json", [".hidden.safetensors"], "not a file in"),
    ("diffusion_pytorch_model.safetensors.index.json", ["missing.safetensors"], "missing from"),
])
def test_an_index_naming_anything_but_safetensors_beside_it_is_refused(tmp_path, name, files, fragment):
    model = _model(tmp_path / "m")  # it holds a decoy diffusion_pytorch_model.safetensors
    (model / "unet" / "diffusion_pytorch_model-00001-of-00001.bin").write_bytes(b"pickle")
    (tmp_path / "m" / "x.safetensors").write_bytes(b"outside")
    _index(model, name, files)
    with pytest.raises(UserError, match=fragment):
        model_folder.check_component_folder(model, "unet")


def test_good_shards_and_unnamed_pickles_pass(tmp_path):
    model = _model(tmp_path / "m")
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (model / "unet" / "s-1.safetensors").write_bytes(b"x")
    (model / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"never read: use_safetensors=True")
    _index(model, "diffusion_pytorch_model.safetensors.index.json", ["s-1.safetensors", "s-1.safetensors"])
    model_folder.check_component_folder(model, "unet")
    (model / "unet" / "weights.index.json").write_text(json.dumps({"weight_map": []}))
    with pytest.raises(UserError, match="no weight_map"):
        model_folder.check_component_folder(model, "unet")


def test_pickled_weights_only_are_refused(tmp_path):
    model = _model(tmp_path / "m")
    (model / "unet" / "diffusion_pytorch_model.safetensors").rename(model / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(UserError, match="only pickled weights"):
        model_folder.check_component_folder(model, "unet")


@pytest.mark.parametrize("index, fragment", [
    ({"_class_name": "StableDiffusionPipeline", "unet": []}, "component 'unet' must be"),
    ({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers"]}, "component 'unet' must be"),
    ({"_class_name": "StableDiffusionPipeline", "unet": [1, 2]}, "component 'unet' must be"),
    ({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", None]}, "component 'unet' must be"),
    ({"_class_name": "StableDiffusionPipeline", "unet": ["../x", "Y"]}, "component 'unet' must be"),
    ({"_class_name": "StableDiffusionPipeline", "../unet": ["diffusers", "UNet2DConditionModel"]},
     "component '../unet' must be"),
    ([1, 2], "must hold a JSON object"),
    ("x", "must hold a JSON object"),
])
def test_a_malformed_model_index_is_one_error(tmp_path, index, fragment):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match=fragment):
        model_folder.read_model_index(tmp_path / "m")


def test_model_index_that_is_not_json_is_one_error(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_bytes(b"{\xff")
    with pytest.raises(UserError, match="not valid JSON"):
        model_folder.read_model_index(tmp_path / "m")


# -- the attack end to end, through a real (tiny) pipeline ----------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    return tiny_pipeline.build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


def _main(capsys, *args):
    from ouroboros import cli

    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (os.environ["OUROBOROS_TEST_PWNED"],))


def _pickle_behind_index(model, tmp_path):
    import torch
    from safetensors.torch import load_file

    unet = model / "unet"
    state = load_file(unet / "diffusion_pytorch_model.safetensors")
    torch.save({**state, "payload": _Payload()}, unet / "diffusion_pytorch_model-00001-of-00001.bin")
    (unet / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: "diffusion_pytorch_model-00001-of-00001.bin" for k in state}}))


def _empty_unet_entry(model, tmp_path):
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps({**index, "unet": []}))


def _fifo_tokenizer_file(model, tmp_path):
    (model / "tokenizer" / "tokenizer.json").unlink()
    os.mkfifo(model / "tokenizer" / "tokenizer.json")


@pytest.mark.parametrize("damage, fragment", [
    (_pickle_behind_index, "not a safetensors file"),
    (_empty_unet_entry, "component 'unet' must be"),
    (_fifo_tokenizer_file, "is a FIFO"),
])
def test_hostile_pipeline_folders_are_one_error_line_and_nothing_is_written(tmp_path, capsys, monkeypatch, tiny,
                                                                            damage, fragment):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    monkeypatch.setenv("OUROBOROS_TEST_PWNED", str(tmp_path / "pwned"))  # where the payload would write
    damage(model, tmp_path)
    (tmp_path / "classes.txt").write_text("n01\ttench\n")
    with no_hang(30):
        proc = _main(capsys, "generate", "text2image", "--model", model, "--classes", tmp_path / "classes.txt",
                     "--out", tmp_path / "out", "--steps", "1", "--size", "16", "--quiet")
    assert_user_error(proc, fragment)
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned").exists()
