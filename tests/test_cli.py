"""Bad input from the command line: one `error:` line, exit code 2, nothing written."""

import numpy as np
import pytest
from PIL import Image

from conftest import assert_user_error, run_cli


def _folder(root, classes):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_missing_config_file(tmp_path):
    proc = run_cli("run", tmp_path / "nope.yaml", "--out", tmp_path / "out")
    assert_user_error(proc, "config file not found")
    assert not (tmp_path / "out").exists()


def test_unknown_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loop:\n  generation: 3\n")
    proc = run_cli("run", cfg, "--out", tmp_path / "out")
    assert_user_error(proc, "unknown key 'loop.generation'", "generations")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, fragment", [
    ("loop.guidance=[1.0,-0.5]", "guidance must be a finite number >= 0"),
    ("loop.generations=0", "loop.generations must lie in [1, 1000]"),
    ("loop.generations=abc", "must be an integer"),
])
def test_bad_values(tmp_path, override, fragment):
    proc = run_cli("demo", "--out", tmp_path / "out", "--set", override)
    assert_user_error(proc, fragment)
    assert not (tmp_path / "out").exists()


def test_imagefolder_with_one_class(tmp_path):
    root = _folder(tmp_path / "data", ["only"])
    proc = run_cli("demo", "--out", tmp_path / "out", "--set", f"data.train=imagefolder:{root}")
    assert_user_error(proc, "at least 2")
    assert not (tmp_path / "out").exists()


def test_corrupt_png(tmp_path):
    root = _folder(tmp_path / "data", ["a", "b"])
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRjunk")
    proc = run_cli("demo", "--out", tmp_path / "out", "--set", f"data.train=imagefolder:{root}")
    assert_user_error(proc, "bad.png")
    assert not (tmp_path / "out").exists()


def test_usage_errors_are_one_line_too(tmp_path):
    assert_user_error(run_cli("run"), "config")
    assert_user_error(run_cli("report", tmp_path), "no results table")
