"""Write errors as OSErrors that name their path, whatever library raised them.

A full disk (or a quota, a read-only remount, lost permissions) can strike inside any
library that writes: Python's own files, numpy's savez (an OSError without a file
name), matplotlib's savefig, or safetensors' save_file, which raises its own
``SafetensorError("Error while serializing: I/O error: No space left on device (os
error 28)")``, not an OSError at all. `as_os_error` turns each into an OSError with its
errno and the path being written, so that the CLI reports it as one `error:` line
(ouroboros.cli) and a worker process sends back something that pickles.
"""

from __future__ import annotations

import os
import re

_OS_CODE = re.compile(r"os error (\d+)|code: (\d+)")


def as_os_error(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """`exc` as an OSError naming `path` (the exception itself when it names a file
    already); None when `exc` is not an error of the operating system's."""
    if isinstance(exc, OSError):
        if exc.errno is None or exc.filename is not None:
            return exc if exc.errno is not None else None
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path))
    if type(exc).__name__ == "SafetensorError":  # safetensors' Rust I/O errors carry the OS code
        match = _OS_CODE.search(str(exc))
        if match:
            code = int(match.group(1) or match.group(2))
            return OSError(code, os.strerror(code), os.fspath(path))
    return None
