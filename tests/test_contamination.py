"""The contamination study end to end, small: on the embedded digits and on ImageFolders."""

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, assert_user_error, run_cli
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError

TINY = [
    "contamination.ratios=[0.0,0.4,1.0]",
    "contamination.archs=[cnn]",
    "contamination.seeds=[0]",
    "contamination.append_ratios=[0.4]",
    "contamination.shifts=[noise,rotation]",
    "contamination.diverse_sample_steps=[4,8]",
    "generator.train_steps=40",
    "generator.sample_steps=6",
    "classifier.epochs=1",
    "executor.workers=1",
]


def _sets(extra=()):
    return sum((["--set", s] for s in TINY + list(extra)), [])


def test_contamination_digits_end_to_end(tmp_path):
    proc = run_cli("run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", tmp_path, "--quiet", *_sets())
    assert proc.returncode == 0, proc.stderr
    tables = (tmp_path / "tables.md").read_text()
    for title in ("Table 1", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Table 8", "Table 11",
                  "Detection"):
        assert title in tables
    assert "| - |" not in tables.split("## Table 7")[0]  # every cell of the ratio tables is filled
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-5:] == ["table", "source", "ratio", "arch", "test"]
    assert {r["test"] for r in rows if r["table"] in ("1", "5", "7", "8")} == {"clean", "noise", "rotation"}
    assert {r["table"] for r in rows} == {"1", "3", "4", "5", "7", "8", "11", "detection"}
    detect = [float(r["value"]) for r in rows if r["table"] == "detection"]
    assert len(detect) == 4 and all(0.0 <= v <= 1.0 for v in detect)
    # The fully generated mixture holds only generated images, the half one its share.
    mixes = [ImageSet.load(p) for p in (tmp_path / "cache" / "mix").glob("*.npz")]
    shares = sorted(round(float((m.generation > 0).mean()), 2) for m in mixes if set(m.source) & {"gen:diffusion"})
    assert 1.0 in shares and 0.4 in shares
    assert (tmp_path / "samples" / "generated.png").is_file()
    assert (tmp_path / "plots" / "spectra.png").is_file() and (tmp_path / "plots" / "confusion.png").is_file()
    # `ouroboros report` redraws the tables from results.csv alone.
    (tmp_path / "tables.md").unlink()
    redo = run_cli("report", tmp_path)
    assert redo.returncode == 0, redo.stderr
    assert (tmp_path / "tables.md").read_text() == tables


def _folder(root, classes, n, seed, size=8):
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size), dtype=np.uint8)
            img[ci::3, :] += 150  # a class-dependent stripe pattern
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


def test_imagefolder_with_an_external_generated_folder(tmp_path):
    """Item 8's layout: real ImageFolder + a folder of generated images, root/<class>/*.png."""
    real = _folder(tmp_path / "real", ["n01", "n02", "n03"], 40, 0)
    gen = _folder(tmp_path / "sd", ["n01", "n02", "n03"], 20, 1)
    out = tmp_path / "run"
    proc = run_cli("run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", out, "--quiet",
                   *_sets([f"data.train=imagefolder:{real}", f"contamination.generated=imagefolder:{gen}",
                           "contamination.split_generator=0.0", "contamination.class_groups=null"]))
    assert proc.returncode == 0, proc.stderr
    full = [ImageSet.load(p) for p in (out / "cache" / "mix").glob("*.npz")]
    sources = set().union(*(set(m.source) for m in full))
    assert "gen:sd" in sources and "real:real" in sources
    assert "n01" in (out / "tables.md").read_text() or "Table 1" in (out / "tables.md").read_text()


def test_external_folder_with_other_classes_is_refused(tmp_path):
    real = _folder(tmp_path / "real", ["a", "b"], 20, 0)
    gen = _folder(tmp_path / "gen", ["a", "c"], 10, 1)
    proc = run_cli("run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", tmp_path / "run",
                   *_sets([f"data.train=imagefolder:{real}", f"contamination.generated=imagefolder:{gen}",
                           "contamination.split_generator=0.0"]))
    assert_user_error(proc, "classes")
    assert not (tmp_path / "run").exists()


def test_class_groups_naming_unknown_classes_fail_before_anything_is_written(tmp_path):
    proc = run_cli("run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", tmp_path / "run",
                   *_sets(['contamination.class_groups=[["0", "x"]]']))
    assert_user_error(proc, "unknown classes")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, fragment", [
    ("contamination.ratios=[0.2,1.5]", "ratio must lie in [0, 1]"),
    ("contamination.archs=[vgg]", "unknown arch"),
    ("contamination.shifts=[jpeg]", "unknown shift"),
    ("contamination.split_train=0.9", "sum to at most 1"),
])
def test_bad_contamination_configs(override, fragment):
    with pytest.raises(UserError) as info:
        load_config(str(REPO / "configs" / "contamination-digits.yaml"), [override])
    assert fragment in str(info.value)


def test_loop_config_file_matches_the_demo_defaults():
    from ouroboros.config import StudyConfig

    from_file = load_config(REPO / "configs" / "loop-digits.yaml")
    defaults = StudyConfig()
    for section in ("data", "loop", "generator", "classifier", "output", "executor"):
        assert getattr(from_file, section) == getattr(defaults, section), section
