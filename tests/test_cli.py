"""Bad input from the command line: one `error:` line, exit code 2, nothing written."""

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, assert_user_error, run_cli, run_main


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
def test_bad_values(tmp_path, capsys, tripwire, override, fragment):
    proc = run_main(capsys, "demo", "--out", tmp_path / "out", "--set", override)
    assert_user_error(proc, fragment)
    assert not (tmp_path / "out").exists()


def test_imagefolder_with_one_class(tmp_path, capsys, tripwire):
    root = _folder(tmp_path / "data", ["only"])
    proc = run_main(capsys, "demo", "--out", tmp_path / "out", "--set", f"data.train=imagefolder:{root}")
    assert_user_error(proc, "at least 2")
    assert not (tmp_path / "out").exists()


def test_corrupt_png(tmp_path, capsys, tripwire):
    root = _folder(tmp_path / "data", ["a", "b"])
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRjunk")
    proc = run_main(capsys, "demo", "--out", tmp_path / "out", "--set", f"data.train=imagefolder:{root}")
    assert_user_error(proc, "bad.png")
    assert not (tmp_path / "out").exists()


def test_usage_errors_are_one_line_too(tmp_path):
    assert_user_error(run_cli("run"), "config")
    assert_user_error(run_cli("report", tmp_path), "no results table")


# -- in-process: each failure below is one `error:` line, exit 2, and nothing written --

import errno  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402

import yaml  # noqa: E402

from ouroboros import cli, commands  # noqa: E402
from ouroboros.config import load_config  # noqa: E402
from ouroboros.data.imageset import ImageSet  # noqa: E402
from ouroboros.report.results import read_results, write_results  # noqa: E402


_main = run_main  # cli.main in this process


def _snapshot(root):
    """Every file under root with its bytes, to show that nothing changed."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("make_out, fragment", [
    (lambda tmp: tmp.joinpath("file.txt"), "exists and is not a folder"),
    (lambda tmp: tmp.joinpath("file.txt", "run"), "which is a file"),
    (lambda tmp: tmp.joinpath("caf\udce9"), "not valid UTF-8"),  # undecodable bytes in argv
    (lambda tmp: tmp.joinpath("x" * 300), "choose a shorter --out"),
])
def test_bad_output_paths(tmp_path, capsys, make_out, fragment):
    (tmp_path / "file.txt").write_text("keep me")
    before = _snapshot(tmp_path)
    assert_user_error(_main(capsys, "demo", "--out", make_out(tmp_path), "--quiet"), fragment)
    assert _snapshot(tmp_path) == before and len(list(tmp_path.iterdir())) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the simulated test covers it")
def test_unwritable_output_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_user_error(_main(capsys, "demo", "--out", locked / "run", "--quiet"), "cannot write in", str(locked))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("target, exc, fragment", [
    ("tempfile.mkstemp", PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
    ("os.fsync", OSError(errno.ENOSPC, "No space left on device"), "free some space"),
])
def test_output_probe_failures(tmp_path, capsys, monkeypatch, target, exc, fragment):
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(target, fail)
    assert_user_error(_main(capsys, "demo", "--out", tmp_path / "run", "--quiet"), "cannot write in", fragment)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def _old_run(root):
    run = root / "run"
    (run / "cache").mkdir(parents=True)
    (run / "config.yaml").write_text("old config\n")
    (run / "results.csv").write_text("old results\n")
    (run / "cache" / "artifact").write_bytes(b"old artifact")
    return run


def test_full_disk_keeps_an_existing_run_intact(tmp_path, capsys, monkeypatch):
    run = _old_run(tmp_path)
    before = _snapshot(run)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr("pathlib.Path.write_text", full)
    assert_user_error(_main(capsys, "demo", "--out", run, "--quiet"), "No space left on device", "free some space")
    monkeypatch.undo()
    assert _snapshot(run) == before  # no half-written file and no .tmp-* leftovers either


@pytest.mark.parametrize("args, fragment", [
    (["demo", "--set", "generator.denoiser=unet", "--set", "generator.hidden=8", "--set", "generator.depth=5"],
     "U-Net of generator.depth 5 takes images whose sides are multiples of 16"),
    (["run", REPO / "configs" / "contamination-digits.yaml", "--set", "classifier.shift=8"],
     "classifier.shift (8) must be smaller"),
    (["demo", "--set", "classifier.device=cuda:99"], "classifier.device"),
])
def test_components_are_built_before_anything_is_written(tmp_path, capsys, tripwire, args, fragment):
    run = _old_run(tmp_path)
    before = _snapshot(run)
    assert_user_error(_main(capsys, *args, "--out", run, "--quiet"), fragment)
    assert _snapshot(run) == before


def test_test_set_with_another_image_size(tmp_path, capsys, tripwire):
    rng = np.random.default_rng(0)
    other = ImageSet.create(rng.integers(0, 256, (20, 1, 16, 16), dtype=np.uint8), np.arange(20) % 10,
                            [str(i) for i in range(10)], source="real:big")
    other.save(tmp_path / "big.npz")
    proc = _main(capsys, "demo", "--out", tmp_path / "run", "--quiet", "--set", f"data.test={tmp_path / 'big.npz'}")
    assert_user_error(proc, "data.test has images of shape (1, 16, 16) but data.train (1, 8, 8)")
    assert not (tmp_path / "run").exists()


def _results(path):
    rows = [{"study": "s", "cell": "reference", "seed": "", "generation": "", "metric": "accuracy", "value": 0.5,
             "guidance": ""},
            {"study": "s", "cell": "guidance=1", "seed": 0, "generation": 0, "metric": "accuracy", "value": 0.25,
             "guidance": 1.0}]
    write_results(path / "results.csv", rows, ["guidance"])
    (path / "config.yaml").write_text(yaml.safe_dump(load_config(None).to_dict()))  # a loop study's
    return path / "results.csv"


@pytest.mark.parametrize("damage, fragment", [
    (lambda text: "", "is empty"),
    (lambda text: text[:-8], "truncated"),
    (lambda text: text.split("\n", 1)[0] + "\n", "has no rows"),
    (lambda text: text.replace("metric", "measure", 1), "not an ouroboros results table"),
    (lambda text: text.replace("0.25", "lots"), "line 3: value 'lots' is not a number"),
    (lambda text: text.replace(",0,0,", ",0,zero,"), "generation 'zero' is not a number"),
    (lambda text: text.replace("0.25,1.0", "0.25,strong"), "guidance 'strong' is not a number"),
    (lambda text: text.replace("accuracy,0.5", "accuracy,0.5,extra"), "line 2 has 8 fields"),
    (lambda text: text.replace("s,ref", "s\x00,ref"), "contains NUL bytes"),
    (lambda text: text.replace("s,ref", "s,\"ref"), "not a readable CSV"),  # an unclosed quote
    (lambda text: text.replace("reference", "r\udcffe"), "not UTF-8"),
    (lambda text: text.replace(",0,0,", ",0,,"), "line 3 has no generation or guidance"),
    (lambda text: text.replace("0.25,1.0", "0.25,"), "line 3 has no generation or guidance"),
])
def test_report_on_damaged_results(tmp_path, capsys, damage, fragment):
    path = _results(tmp_path)
    assert len(read_results(path)) == 2  # the undamaged table reads
    path.write_bytes(damage(path.read_text()).encode("utf-8", "surrogateescape"))
    assert_user_error(_main(capsys, "report", tmp_path), fragment)


def test_report_on_a_missing_folder(tmp_path, capsys):
    assert_user_error(_main(capsys, "report", tmp_path / "nope"), "run folder not found")


@pytest.mark.parametrize("args, fragment", [
    (["--k", "0"], "--k must lie in [1, 1000]"),  # was silently the defaults (`args.k or 3`)
    (["--k", "-3"], "--k must lie in [1, 1000]"),
    (["--kid-subsets", "0"], "--kid-subsets must lie in [1, 100000]"),
])
def test_metrics_options_checked_before_loading(tmp_path, capsys, args, fragment):
    # The data do not exist: the option is checked first.
    assert_user_error(_main(capsys, "metrics", tmp_path / "r.npy", tmp_path / "f.npy", *args), fragment)


def test_metrics_uses_the_k_given(tmp_path, capsys):
    import json

    rng = np.random.default_rng(0)
    np.save(tmp_path / "r.npy", rng.normal(size=(30, 3)))
    np.save(tmp_path / "f.npy", rng.normal(size=(30, 3)))
    proc = _main(capsys, "metrics", tmp_path / "r.npy", tmp_path / "f.npy", "--k", "1", "--kid-subsets", "5", "--json")
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["precision_recall"]["k"] == 1 and result["prdc"]["k"] == 1


def test_warnings_and_multi_line_messages_collapse(capsys, monkeypatch):
    def noisy_failure(args):
        warnings.warn("a library warning\nover two lines")
        raise UserError("first line\n   second line")

    def noisy_success(args):
        warnings.warn("twice\nthe same")
        warnings.warn("twice\nthe same")
        return 0

    from ouroboros.errors import UserError

    monkeypatch.setattr(commands, "cmd_report", noisy_failure)
    proc = _main(capsys, "report", "x")
    assert proc.returncode == 2 and proc.stderr == "error: first line second line\n"
    monkeypatch.setattr(commands, "cmd_report", noisy_success)
    proc = _main(capsys, "report", "x")
    assert proc.returncode == 0 and proc.stderr == "warning: UserWarning: twice the same\n"


def test_os_errors_a_user_can_fix_are_one_line(capsys, monkeypatch):
    def denied(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/run/results.csv")

    def bug(args):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(commands, "cmd_report", denied)
    assert_user_error(_main(capsys, "report", "x"), "cannot access /data/run/results.csv: Permission denied")
    monkeypatch.setattr(commands, "cmd_report", bug)
    with pytest.raises(OSError):  # not foreseeable: a traceback helps more than a guess
        cli.main(["report", "x"])


def test_preflight_in_a_real_process(tmp_path):
    run = _old_run(tmp_path)
    before = _snapshot(run)
    proc = run_cli("demo", "--out", run, "--set", "generator.denoiser=unet", "--set", "generator.hidden=24",
                   "--set", "generator.depth=5")
    assert_user_error(proc, "generator.depth 5")
    assert _snapshot(run) == before


def test_mix_output_under_a_file(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("keep me")
    proc = _main(capsys, "mix", "--real", "digits", "--ratio", "0.5", "--mode", "subsample",
                 "--out", tmp_path / "file.txt" / "mixed.npz")
    assert_user_error(proc, "file.txt", "a file is in the way")
    assert (tmp_path / "file.txt").read_text() == "keep me"
