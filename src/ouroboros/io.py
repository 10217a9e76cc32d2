"""Atomic file writes and hashing helpers shared by every module that writes artifacts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Iterator

from ouroboros.errors import UserError


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


# -- bounded reads ------------------------------------------------------------------------

MAX_INPUT_SETTING = "OUROBOROS_MAX_INPUT_MB"
# Default limits in MiB, per kind of file. "text": configs, JSON settings and model
# configs, class lists; "table": results.csv, manifest.jsonl, caption files (COCO's
# captions are ~90 MB); "data": images, IDX, CIFAR, .npz/.npy, model weights.
INPUT_LIMITS_MIB = {"text": 64, "table": 1024, "data": 16 * 1024}
_KINDS = {"text": "configs, JSON and text lists", "table": "tables, manifests and caption files",
          "data": "datasets, images and weights"}


def input_limit(kind: str) -> int:
    """The largest file of `kind` ("text", "table" or "data") that ouroboros reads, in bytes.

    OUROBOROS_MAX_INPUT_MB (a whole number of MiB) raises the limit of every kind to at
    least that value; unset, the limits are INPUT_LIMITS_MIB (64 MiB for text files, 1 GiB
    for tables and manifests, 16 GiB for data files). The limits stop a huge or sparse file
    from becoming a MemoryError or an endless read; they never lower below the defaults.
    """
    mib = INPUT_LIMITS_MIB[kind]
    raw = os.environ.get(MAX_INPUT_SETTING, "").strip()
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= 1 << 40:
            raise UserError(f"{MAX_INPUT_SETTING}={raw[:40]!r} must be a whole number of MiB (e.g. 100000); "
                            "fix or unset it")
        mib = max(mib, int(raw))
    return mib << 20


def _show(path) -> str:
    from ouroboros.errors import printable

    return printable(os.fspath(path))


def _check_stat(st: os.stat_result, path, what: str, kind: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
        name = next((n for test, n in kinds if test(st.st_mode)), "not a regular file")
        raise UserError(f"{what} {_show(path)} is {name}, not a regular file; give a regular file")
    limit = input_limit(kind)
    if st.st_size > limit:
        need = -(-st.st_size // (1 << 20))
        raise UserError(f"{what} {_show(path)} is {st.st_size:,} bytes, over the {limit >> 20:,} MiB limit on "
                        f"{_KINDS[kind]}; if it is meant to be read, raise the limit: {MAX_INPUT_SETTING}={need}")


def check_regular_file(path: str | os.PathLike, what: str = "file", kind: str = "text") -> os.stat_result:
    """The stat of `path` (symlinks followed) when it is a regular file within the size
    limit of `kind` (see `input_limit`); otherwise a UserError naming the problem and, for
    size, the setting that raises it. Folders, FIFOs, sockets and devices are refused."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UserError(f"cannot read {what} {_show(path)}: {exc.strerror or exc}") from None
    _check_stat(st, path, what, kind)
    return st


@contextlib.contextmanager
def open_bounded(path: str | os.PathLike, what: str = "file", kind: str = "text") -> Iterator:
    """`path` opened for reading in binary, checked first (`check_regular_file`) and again
    on the open descriptor: a file swapped for a FIFO between the two is opened without
    blocking (O_NONBLOCK) and refused."""
    check_regular_file(path, what, kind)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserError(f"cannot read {what} {_show(path)}: {exc.strerror or exc}") from None
    try:
        _check_stat(os.fstat(fd), path, what, kind)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_bytes_bounded(path: str | os.PathLike, what: str = "file", kind: str = "text") -> bytes:
    """The whole of `path`, refused (UserError) when it is not a regular file or is larger
    than the limit of `kind`; see `input_limit` for the limits and OUROBOROS_MAX_INPUT_MB."""
    with open_bounded(path, what, kind) as f:
        limit = input_limit(kind)
        try:  # sized by the file, not the limit (a read(16 GiB) would allocate 16 GiB first)
            data = f.read(min(os.fstat(f.fileno()).st_size, limit) + 1)
            while len(data) <= limit and (more := f.read(min(1 << 24, limit + 1 - len(data)))):
                data += more  # it grew after the check
        except OSError as exc:
            raise UserError(f"cannot read {what} {_show(path)}: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew after the check
        raise UserError(f"{what} {_show(path)} is over the {limit >> 20:,} MiB limit on {_KINDS[kind]}; "
                        f"if it is meant to be read, raise the limit: set {MAX_INPUT_SETTING}")
    return data


def read_text_bounded(path: str | os.PathLike, what: str = "file", kind: str = "text",
                      encoding: str = "utf-8") -> str:
    """`read_bytes_bounded` decoded; text that is not `encoding` is a UserError."""
    try:
        return read_bytes_bounded(path, what, kind).decode(encoding)
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {_show(path)} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
