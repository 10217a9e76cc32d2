"""Names that become file or folder names, and the report's reads and writes.

A name from a config or a data file (a loop variant, a cell, a sweep's scenario, a
text-to-image class id) reaches the file system only through `component`: one path
component, never a path. `components` maps a list of names and refuses two different
names that would land on the same file on a case-folding (macOS, Windows) or
normalising (macOS) file system. `regular_file_inside` and `refuse_symlink` are what
`ouroboros report` reads and writes through: regular files inside the run folder only,
and never through a symbolic link.
"""

from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
from pathlib import Path

from ouroboros.errors import UserError

MAX_BYTES = 255  # the usual limit on one file name (ext4, APFS, NTFS), in UTF-8 bytes
HASH_CHARS = 8  # hex digits of SHA-256 of the name, appended when it had to change


def _show(name) -> str:
    """A name for an `error:` line: repr (control characters escaped), at most ~60 characters."""
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def component(name: str, where: str, max_bytes: int = MAX_BYTES) -> str:
    """`name` as one safe path component; UserError when it is not a non-empty string of UTF-8.

    A name that is safe already is returned as is: printable (no control or format
    characters, no NUL), without '/' or '\\', not starting with '.' (so not '.' or '..'
    and never hidden), not ending with '.' or ' ' (Windows drops those), and at most
    `max_bytes` bytes of UTF-8. Otherwise each unsafe character becomes '_', the text is
    cut at a character boundary to leave room, and '-' plus 8 hex digits of SHA-256 of
    the original name are appended, so that two different names stay apart."""
    if not isinstance(name, str) or not name:
        raise UserError(f"{where} must be a non-empty name; got {_show(name)}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where} {ascii(name)[:60]} is not valid UTF-8 text; use plain UTF-8 characters") from None
    safe = "".join("_" if c in "/\\" or not c.isprintable() else c for c in name)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe.endswith((".", " ")):
        safe = safe[:-1] + "_"
    if safe == name and len(raw) <= max_bytes:
        return name
    room = max_bytes - 1 - HASH_CHARS
    cut = safe.encode("utf-8")[:room].decode("utf-8", "ignore")  # drops a character cut in two
    return f"{cut}-{hashlib.sha256(raw).hexdigest()[:HASH_CHARS]}"


def fold(name: str) -> str:
    """The form under which a case-insensitive, normalising file system compares names."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def components(names, where: str, max_bytes: int = MAX_BYTES, reserved=()) -> list[str]:
    """`component` of each name, in order; UserError when two different names would share
    one file name (compared case-insensitively and after Unicode normalisation) or one
    would be a name in `reserved` (files the tool writes itself). A name listed twice
    maps to the same component, which is not an error here."""
    taken = {fold(r): None for r in reserved}
    out = []
    for name in names:
        safe = component(name, where, max_bytes)
        key = fold(safe)
        if key in taken and taken[key] is None:
            raise UserError(f"{where}: {_show(name)} would be the file name {_show(safe)}, which ouroboros writes "
                            "itself; rename it")
        if key in taken and taken[key] != name:
            raise UserError(f"{where}: {_show(taken[key])} and {_show(name)} would share one file or folder name "
                            "(names are compared ignoring case and Unicode normalisation, as macOS and Windows do); "
                            "rename one of them")
        taken[key] = name
        out.append(safe)
    return out


def regular_file_inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path` resolved, when it is a regular file that resolves inside the folder `root`;
    UserError otherwise (a link out of the run folder, a FIFO, a device): refused, not
    read."""
    root, path = Path(root), Path(path)
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise UserError(f"{path} leads outside the run folder {root} (to {real}); refusing to read it: "
                        "replace the link with the file itself or remove it")
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is not a regular file; refusing to read it: remove it or put the file itself there")
    return real


def refuse_symlink(path: str | os.PathLike) -> Path:
    """`path`, when it is not a symbolic link (a file written there would land wherever
    the link points); UserError otherwise."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; refusing to write through it: remove the link "
                        "(or choose another output folder)")
    return path
