"""Artifacts and outputs get ordinary permissions (the umask decides, as for any tool),
and atomic writes reach the disk before and after their rename."""

import os
import stat
import sys
from pathlib import Path

import pytest

from ouroboros import io
from ouroboros.cli import main
from ouroboros.io import atomic_path, write_json_atomic, write_text_atomic

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_written_file_gets_0666_less_the_umask(tmp_path, umask):
    write_text_atomic(tmp_path / "results.csv", "a,b\n")
    write_json_atomic(tmp_path / "new" / "timings.json", [])  # the parent folder is made here
    assert _mode(tmp_path / "results.csv") == 0o666 & ~umask
    assert _mode(tmp_path / "new" / "timings.json") == 0o666 & ~umask
    assert _mode(tmp_path / "new") == 0o777 & ~umask


def test_an_imageset_artifact_gets_0666_less_the_umask(tmp_path, toy_set, umask):
    toy_set.save(tmp_path / "set.npz")
    assert _mode(tmp_path / "set.npz") == 0o666 & ~umask


@pytest.mark.parametrize("replace", [False, True], ids=["new", "replacing"])
def test_a_folder_artifact_gets_0777_less_the_umask(tmp_path, umask, replace):
    out = tmp_path / "fit" / "model"
    if replace:  # an existing folder is swapped out (os.replace cannot overwrite one)
        out.mkdir(parents=True)
        (out / "old").write_text("x")
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / "weights").write_bytes(b"\0" * 8)
    assert _mode(out) == 0o777 & ~umask
    assert _mode(out / "weights") == 0o666 & ~umask
    assert sorted(p.name for p in out.iterdir()) == ["weights"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # no .tmp-* or .trash-* left


def test_ouroboros_mix_output_gets_0666_less_the_umask(tmp_path, umask, capsys):
    out = tmp_path / "mixes" / "half.npz"
    assert main(["mix", "--real", "digits", "--ratio", "0.5", "--mode", "subsample", "--out", str(out)]) == 0
    assert _mode(out) == 0o666 & ~umask
    assert _mode(out.parent) == 0o777 & ~umask


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name a file descriptor")
@pytest.mark.parametrize("is_dir", [False, True], ids=["file", "folder"])
def test_atomic_writes_are_flushed_before_and_after_the_rename(tmp_path, monkeypatch, is_dir):
    target = tmp_path / ("model" if is_dir else "a.json")
    synced = []  # (path synced, did the target exist yet)
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((Path(os.readlink(f"/proc/self/fd/{fd}")), target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)
    with atomic_path(target, is_dir=is_dir) as tmp:
        (tmp / "weights" if is_dir else tmp).write_text("{}")
    before = [p for p, exists in synced if not exists]
    after = [p for p, exists in synced if exists]
    # The content is on disk before the rename (the temporary file, or each file in the
    # temporary folder) ...
    if is_dir:
        assert any(p.name == "weights" and p.parent.name.startswith(".tmp-model-") for p in before), synced
    else:
        assert any(p.name.startswith(".tmp-a.json-") for p in before), synced
    # ... and the rename itself is made durable by syncing the folder that holds it.
    assert after == [tmp_path], synced
