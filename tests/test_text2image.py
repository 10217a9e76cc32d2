"""`ouroboros generate text2image` on a tiny randomly initialised Stable Diffusion
pipeline built here (no download): files, provenance, seeds, resume, splitting, errors."""

import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from conftest import assert_user_error
from ouroboros import cli
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.generators import text2image
from ouroboros.generators.prompts import Group, work_list
from ouroboros.generators.text2image import Settings, generate_shard, split_work
from ouroboros.generators.tiny_pipeline import build_tiny_pipeline

FAST = ["--steps", "2", "--size", "16", "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="module")
def pipe(model):
    return text2image.load_pipeline(Settings(str(model), steps=2, size=16), "cpu", "fp32")


@pytest.fixture
def classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("n01\ttench, Tinca tinca\nn02\tgoldfish, Carassius auratus\nn03\tgreat white shark\n")
    return path


def _main(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def _pixels(folder):
    """file -> pixel array for every PNG under folder."""
    return {p.relative_to(folder).as_posix(): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def test_cli_writes_an_image_folder_a_manifest_and_png_provenance(tmp_path, capsys, model, classes):
    out = tmp_path / "sd"
    proc = _main(capsys, "generate", "text2image", "--model", model, "--classes", classes, "--prompts", "complex",
                 "--per-class", 2, "--out", out, "--seed", 5, *FAST)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["generate.json", "manifest.jsonl", "n01/0.png", "n01/1.png", "n02/0.png", "n02/1.png",
                     "n03/0.png", "n03/1.png"]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    items = work_list([Group("n01", ("tench", "Tinca tinca")), Group("n02", ("goldfish", "Carassius auratus")),
                       Group("n03", ("great white shark",))], "complex", 2, seed=5)
    assert [(r["file"], r["class"], r["prompt"], r["seed"]) for r in lines] == \
        [(it.file, it.group, it.prompt, it.seed) for it in items]
    for r in lines:
        assert (r["model"], r["scheduler"], r["steps"], r["guidance_scale"], r["size"], r["dtype"]) == \
            ("tiny-sd", "PNDMScheduler", 2, 7.5, 16, "fp32")
        assert (r["safety_checker"], r["watermark"]) == (False, False)
        with Image.open(out / r["file"]) as im:  # the file keeps its provenance when it leaves the folder
            assert im.size == (16, 16) and im.mode == "RGB"
            assert im.text["prompt"] == r["prompt"] and json.loads(im.text["seed"]) == r["seed"]
            assert {k: (v if k in ("file", "class", "prompt", "model", "scheduler", "dtype") else json.loads(v))
                    for k, v in im.text.items()} == r
    # The loader reads the manifest as provenance.
    loaded = load_dataset(f"imagefolder:{out}")
    assert loaded.class_names == ("n01", "n02", "n03") and loaded.shape == (3, 16, 16)
    assert set(loaded.source) == {"gen:tiny-sd"} and set(loaded.generation) == {1}
    assert sorted(zip(loaded.seed.tolist(), loaded.condition.tolist())) == \
        sorted((r["seed"], r["prompt"]) for r in lines)


def test_images_do_not_depend_on_batch_size_and_regenerate_alone(tmp_path, model, pipe, classes):
    settings = Settings(str(model), steps=2, size=16)
    items = work_list([Group("a", ("cat",)), Group("b", ("dog",))], "complex", 3, seed=1)
    for batch in (1, 4):
        generate_shard(items, settings, tmp_path / f"b{batch}", "cpu", batch, pipe=pipe)
    alone = tmp_path / "alone"
    generate_shard(items[4:5], settings, alone, "cpu", 1, pipe=pipe)
    one, four = _pixels(tmp_path / "b1"), _pixels(tmp_path / "b4")
    assert len(one) == 6 and one.keys() == four.keys()
    for f in one:
        assert_same_image(one[f], four[f])
    assert_same_image(_pixels(alone)[items[4].file], one[items[4].file])
    a, b = one[items[0].file], one[items[1].file]  # another seed (and prompt): another image
    assert (np.abs(a.astype(int) - b.astype(int)) > 1).mean() > 0.5
    assert max(a.std() for a in one.values()) > 1  # not blank


def assert_same_image(a, b):
    """The same image: the same noise and prompt, so the same pixels up to the float
    rounding of kernels that sum in another order for another batch size (on this CPU:
    a handful of pixels one level apart out of 255)."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("n", [0, 1, 5, 7, 12])
@pytest.mark.parametrize("workers", [1, 2, 3, 5, 8])
def test_split_work_drops_nothing(n, workers):
    items = list(range(n))
    shards = split_work(items, workers)
    assert len(shards) == workers
    assert sum(shards, []) == items
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_the_split_does_not_change_the_images(tmp_path, model, pipe):
    settings = Settings(str(model), steps=2, size=16)
    items = work_list([Group("a", ("cat",)), Group("b", ("dog",))], "complex", 3, seed=2)
    generate_shard(items, settings, tmp_path / "whole", "cpu", 2, pipe=pipe)
    for shard in split_work(items, 2):
        generate_shard(shard, settings, tmp_path / "split", "cpu", 2, pipe=pipe)
    whole, split = _pixels(tmp_path / "whole"), _pixels(tmp_path / "split")
    assert len(whole) == 6 and whole.keys() == split.keys()
    for f in whole:
        assert_same_image(whole[f], split[f])


@pytest.mark.slow  # two worker processes each import torch, diffusers and transformers (~40 s on 2 cores)
def test_one_and_two_worker_processes_make_the_same_images(tmp_path, capsys, model, classes):
    for workers in (1, 2):
        proc = _main(capsys, "generate", "text2image", "--model", model, "--classes", classes, "--per-class", 3,
                     "--prompts", "complex", "--out", tmp_path / f"w{workers}", "--workers", workers,
                     "--batch-size", 2, *FAST)
        assert proc.returncode == 0, proc.stderr
    one, two = _pixels(tmp_path / "w1"), _pixels(tmp_path / "w2")
    assert len(one) == 9 and one.keys() == two.keys()
    for f in one:
        assert_same_image(one[f], two[f])
    assert (tmp_path / "w1" / "manifest.jsonl").read_text() == (tmp_path / "w2" / "manifest.jsonl").read_text()


def test_rerun_skips_verified_images_and_remakes_damaged_ones(tmp_path, capsys, model, classes):
    out = tmp_path / "sd"
    args = ["generate", "text2image", "--model", model, "--classes", classes, "--per-class", 3, "--out", out,
            "--prompts", "complex", "--steps", "2", "--size", "16"]
    assert _main(capsys, *args, "--quiet").returncode == 0
    before = _pixels(out)
    (out / "n01/0.png").unlink()  # missing
    data = (out / "n01/1.png").read_bytes()
    (out / "n01/1.png").write_bytes(data[: len(data) // 2])  # truncated
    with Image.open(out / "n02/0.png") as im:  # decodes, but made for another prompt
        im.load()
        im.save(out / "n02/0.png", pnginfo=text2image.png_info({**im.text, "prompt": "something else"}))
    untouched = {p: os.stat(out / p).st_mtime_ns for p in before if p not in ("n01/0.png", "n01/1.png", "n02/0.png")}
    proc = _main(capsys, *args)
    assert proc.returncode == 0, proc.stderr
    assert "(3 made, 6 already there)" in proc.stdout
    assert "9/9 images (6 already there)" in proc.stderr and "images/s" in proc.stderr
    after = _pixels(out)
    assert after.keys() == before.keys()
    for f in before:
        np.testing.assert_array_equal(after[f], before[f])
    assert {p: os.stat(out / p).st_mtime_ns for p in untouched} == untouched
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 9  # no duplicates
    assert not [p for p in out.rglob(".*")]  # no temporary files left
    proc = _main(capsys, *args, "--per-class", 4)  # more per class: only the new images are made
    assert proc.returncode == 0 and "(3 made, 9 already there)" in proc.stdout


def test_a_write_that_fails_leaves_no_partial_file(tmp_path, monkeypatch, model, pipe):
    settings = Settings(str(model), steps=2, size=16)
    items = work_list([Group("a", ("cat",))], "simple", 3, seed=0)
    real_save = Image.Image.save

    def save_then_die(self, fp, *args, **kwargs):
        if os.path.basename(fp).startswith(".tmp-2.png-"):  # atomic_path's temporary name for 2.png
            with open(fp, "wb") as f:
                f.write(b"\x89PNG half")
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        generate_shard(items, settings, tmp_path, "cpu", 3, pipe=pipe)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["0.png", "1.png"]
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert generate_shard(items, settings, tmp_path, "cpu", 3, pipe=pipe) == 1


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys, model, classes):
    out = tmp_path / "sd"
    base = ["generate", "text2image", "--model", model, "--classes", classes, "--out", out, "--size", "16", "--quiet"]
    assert _main(capsys, *base, "--steps", "2").returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert_user_error(_main(capsys, *base, "--steps", "3"), "steps = 2, not 3", "another --out")
    assert_user_error(_main(capsys, *base, "--steps", "2", "--seed", "1"), "seed = 0, not 1")
    assert_user_error(_main(capsys, *base, "--steps", "2", "--prompts", "complex"), "prompts")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def _not_a_pipeline(tmp_path, model):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _pickled(tmp_path, model):
    import shutil

    bad = tmp_path / "pickled"
    shutil.copytree(model, bad)
    for f in (bad / "unet").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    return bad


def _not_text_to_image(tmp_path, model):
    import shutil

    bad = tmp_path / "img2img"
    shutil.copytree(model, bad)
    index = json.loads((bad / "model_index.json").read_text())
    (bad / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionImg2ImgPipeline"}))
    return bad


def _damaged_weights(tmp_path, model):
    import shutil

    bad = tmp_path / "damaged"
    shutil.copytree(model, bad)
    for f in (bad / "unet").glob("*.safetensors"):
        f.write_bytes(b"not safetensors")
    return bad


@pytest.mark.parametrize("make_model, fragment", [
    (_not_a_pipeline, "not a diffusers pipeline folder"),
    (_pickled, "only pickled weights"),
    (_not_text_to_image, "not a text-to-image pipeline"),
    (_damaged_weights, "cannot load the pipeline"),
    (lambda tmp, model: tmp / "missing", "--model folder not found"),
])
def test_bad_model_folders(tmp_path, capsys, model, classes, make_model, fragment):
    bad = make_model(tmp_path, model)
    proc = _main(capsys, "generate", "text2image", "--model", bad, "--classes", classes, "--out", tmp_path / "out",
                 *FAST)
    assert_user_error(proc, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, args, fragment", [
    ("", [], "lists no classes"),
    ("n01\ta\nn01\tb\n", [], "class id 'n01' twice"),
    ("n01\ta\n", ["--per-class", "0"], "--per-class must lie in"),
    ("n01\ta\n", ["--size", "20"], "multiple of 8"),
    ("n01\ta\n", ["--scheduler", "nope"], "unknown --scheduler"),
    ("n01\ta\n", ["--template", "A {thing}"], "template"),
    ("n01\ta\n", ["--safety-checker"], "has no safety checker"),
    ("n01\ta\n", ["--watermark"], "has no watermarker"),
    ("n01\ta\n", ["--device", "cuda:7"], "cuda"),
    ("n01\ta\n", ["--workers", "0", "--executor", "ray"], "--workers must lie in [1, 1024]"),
    ("n01\ta\n", ["--batch-size", "-1"], "--batch-size must lie in"),
    ("n01\ta\n", ["--ray-address", "127.0.0.1:1"], "add --executor ray"),
    ("n01\ta\n", ["--executor", "ray", "--ray-address", "127.0.0.1:1"], "127.0.0.1:1"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, model, text, args, fragment):
    classes = tmp_path / "classes.txt"
    classes.write_text(text)
    proc = _main(capsys, "generate", "text2image", "--model", model, "--classes", classes, "--out", tmp_path / "out",
                 "--steps", "2", "--quiet", *(["--size", "16"] if "--size" not in args else []), *args)
    assert_user_error(proc, fragment)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path, capsys, monkeypatch, model, classes):
    import errno

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)  # what a read-only folder does (tests may run as root)
    proc = _main(capsys, "generate", "text2image", "--model", model, "--classes", classes,
                 "--out", tmp_path / "out", *FAST)
    assert_user_error(proc, "cannot write in", "Permission denied")
    assert not (tmp_path / "out").exists()


def test_captions_make_one_folder_per_image_id(tmp_path, capsys, model):
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"annotations": [{"image_id": 7, "caption": "a red bus"},
                                                    {"image_id": 8, "caption": "two cats on a sofa"},
                                                    {"image_id": 7, "caption": "a bus in the rain"}]}))
    out = tmp_path / "sd-coco"
    proc = _main(capsys, "generate", "text2image", "--model", model, "--captions", captions, "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["file"], r["prompt"]) for r in lines] == [("7/0.png", "a red bus"), ("7/1.png", "a bus in the rain"),
                                                          ("8/0.png", "two cats on a sofa")]
    assert_user_error(_main(capsys, "generate", "text2image", "--model", model, "--captions", captions,
                            "--prompts", "complex", "--out", tmp_path / "x", *FAST), "captions are the prompts")


def test_settings_validate():
    with pytest.raises(UserError, match="--steps"):
        Settings("m", steps=0).validate()
    with pytest.raises(UserError, match="--dtype"):
        Settings("m", dtype="fp8").validate()


# -- the generated folder as the contamination study's pool -----------------------------


def _real_folder(root, classes, n):
    rng = np.random.default_rng(0)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 100, (8, 8, 3), dtype=np.uint8)
            img[ci::3] += 150
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


@pytest.mark.slow  # a (tiny) contamination study end to end
def test_the_generated_folder_is_the_contamination_pool(tmp_path, capsys, model):
    """configs/contamination-sd-tiny.yaml on a small real ImageFolder: the 16 px pool is
    resized to the real 8 px on loading and enters the mixtures with its prompts and seeds."""
    from conftest import REPO
    from ouroboros.data.imageset import ImageSet

    real = _real_folder(tmp_path / "real", ["n01", "n02", "n03"], 40)
    classes = tmp_path / "classes.txt"
    classes.write_text("n01\ttench\nn02\tgoldfish\nn03\tshark\n")
    pool = tmp_path / "sd"
    assert _main(capsys, "generate", "text2image", "--model", model, "--classes", classes, "--per-class", 15,
                 "--prompts", "complex", "--out", pool, *FAST).returncode == 0
    manifest = {(r["seed"], r["prompt"]) for r in map(json.loads, (pool / "manifest.jsonl").read_text().splitlines())}
    tiny = ["contamination.ratios=[0.0,1.0]", "contamination.archs=[cnn]", "contamination.seeds=[0]",
            "contamination.append_ratios=[]", "contamination.shifts=[]", "contamination.class_groups=null",
            "generator.train_steps=20", "generator.sample_steps=4", "classifier.epochs=1", "executor.workers=1",
            f"data.train=imagefolder:{real}", f"contamination.generated=imagefolder:{pool}"]
    out = tmp_path / "run"
    proc = _main(capsys, "run", REPO / "configs" / "contamination-sd-tiny.yaml", "--out", out, "--quiet",
                 *sum((["--set", s] for s in tiny), []))
    assert proc.returncode == 0, proc.stderr
    mixes = [ImageSet.load(p) for p in (out / "cache" / "mix").glob("*.npz")]
    full = max(mixes, key=lambda m: (m.generation > 0).sum())
    gen = full.subset(np.flatnonzero(full.generation > 0))
    assert len(gen) == len(full) and full.shape == (3, 8, 8)  # 100% replaced, at the real images' size
    assert set(gen.source) == {"gen:tiny-sd"}
    assert set(zip(gen.seed.tolist(), gen.condition.tolist())) <= manifest
    # Without resize_generated, the other size is one error line naming the key.
    assert_user_error(_main(capsys, "run", REPO / "configs" / "contamination-sd-tiny.yaml", "--out", tmp_path / "x",
                            *sum((["--set", s] for s in tiny + ["contamination.resize_generated=false"]), [])),
                      "resize_generated")


def test_resize_generated_converts_colour_to_grey(tmp_path):
    from ouroboros.studies.contamination import _load_resized

    root = tmp_path / "pool"
    colours = {"a": (200, 10, 50), "b": (0, 255, 0)}
    for c, rgb in colours.items():
        (root / c).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), rgb, np.uint8)).save(root / c / "0.png")
    pool = _load_resized(f"imagefolder:{root}", (1, 8, 8))
    assert pool.shape == (1, 8, 8)
    for label, rgb in enumerate(colours.values()):
        luma = round((299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2]) / 1000)  # a flat colour stays flat when resized
        assert set(pool.images[pool.labels == label].ravel().tolist()) == {luma}


@pytest.mark.slow  # starts a local Ray cluster whose workers import torch and diffusers
def test_ray_executor_makes_the_same_images(tmp_path, capsys, model, classes):
    pytest.importorskip("ray")
    import ray

    base = ["generate", "text2image", "--model", model, "--classes", classes, "--per-class", 2, "--prompts", "complex",
            *FAST]
    assert _main(capsys, *base, "--out", tmp_path / "local").returncode == 0
    try:
        proc = _main(capsys, *base, "--out", tmp_path / "ray", "--executor", "ray", "--workers", 2)
    finally:
        ray.shutdown()
    assert proc.returncode == 0, proc.stderr
    local, remote = _pixels(tmp_path / "local"), _pixels(tmp_path / "ray")
    assert len(local) == 6 and local.keys() == remote.keys()
    for f in local:
        assert_same_image(local[f], remote[f])
    assert (tmp_path / "local" / "manifest.jsonl").read_text() == (tmp_path / "ray" / "manifest.jsonl").read_text()


def test_out_of_memory_halves_the_batch_and_keeps_the_images(tmp_path, monkeypatch, model, pipe):
    """On CUDA the first batch is 64 and halves on out-of-memory; per-image generators
    make the images the same whatever size finally fits (simulated: batches over 2 fail)."""
    import torch

    settings = Settings(str(model), steps=2, size=16, dtype="fp32")
    items = work_list([Group("a", ("cat",)), Group("b", ("dog",))], "complex", 3, seed=4)
    real_run, sizes = text2image.run_pipeline, []

    def small_gpu(pipe_, prompts, seeds, settings_):
        sizes.append(len(prompts))
        if len(prompts) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_run(pipe_, prompts, seeds, settings_)

    monkeypatch.setattr(text2image, "run_pipeline", small_gpu)
    assert generate_shard(items, settings, tmp_path / "gpu", "cuda", 0, pipe=pipe) == 6
    assert sizes == [6, 6, 6, 6, 4, 2, 2, 2]  # batches of 64, 32, 16, 8 (all 6) and 4 fail; 2 fits
    monkeypatch.setattr(text2image, "run_pipeline", real_run)
    generate_shard(items, settings, tmp_path / "cpu", "cpu", 6, pipe=pipe)
    gpu, cpu = _pixels(tmp_path / "gpu"), _pixels(tmp_path / "cpu")
    assert gpu.keys() == cpu.keys() and len(gpu) == 6
    for f in gpu:
        assert_same_image(gpu[f], cpu[f])
