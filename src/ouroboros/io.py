"""Atomic file writes and hashing helpers shared by every module that writes artifacts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    A killed process leaves at most a `.tmp-*` sibling, never a half-written `path`.
    What the block wrote is on disk (fsync) before the rename, and the rename is on
    disk after it, so a power cut cannot leave `path` empty or missing either. The
    result has ordinary permissions: 0o666 (files) or 0o777 (folders) less the umask,
    like any file a user's tools write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path, is_dir)
    try:
        yield tmp
        _fsync_tree(tmp)
        if is_dir and path.exists():
            _replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        from ouroboros.write_errors import as_os_error  # a library's write error names the path

        named = as_os_error(exc, path) if isinstance(exc, Exception) else None
        if named is not None and named is not exc:
            raise named from None
        raise


def _create_temp(path: Path, is_dir: bool) -> Path:
    """An empty file or folder beside `path` with a fresh name. Not tempfile.mkstemp /
    mkdtemp: they create 0o600 / 0o700 whatever the umask, and those modes would end
    up on the artifact. Here the kernel applies the umask to 0o666 / 0o777."""
    while True:
        tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}{'' if is_dir else path.suffix}")
        try:
            if is_dir:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def _fsync_tree(path: Path) -> None:
    """Flush a written file, or every file and folder under a written folder, to disk."""
    if path.is_dir():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync_file(Path(root) / name)
            _fsync_dir(Path(root))
    else:
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable, where the platform can open folders (not Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)  # atomic_path flushes it to disk before the rename


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _replace_dir(tmp: Path, path: Path) -> None:
    """Swap a finished directory in for an existing one (os.replace cannot overwrite a
    non-empty directory). If another process finished the same directory first, keep
    theirs: artifacts are keyed by content, so both are the same."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        pass
    try:
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
