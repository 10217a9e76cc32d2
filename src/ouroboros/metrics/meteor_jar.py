"""METEOR 1.5 through pycocoevalcap's ``meteor-1.5.jar``, run as pycocoevalcap runs it.

METEOR's paraphrase tables and stemmer live in the jar (and its ``data/`` folder), so
ouroboros runs the jar itself rather than re-implement them: one Java process, the
same command line and the same line protocol as ``pycocoevalcap.meteor.Meteor`` (one
``SCORE ||| ref ||| ... ||| candidate`` line per image, then one ``EVAL`` line with
every image's statistics; the last number it prints is the corpus score). The jar is
the one inside the installed pycocoevalcap package (``pip install pycocoevalcap``), or
any ``meteor-1.5.jar`` given as `jar` (with its ``data/paraphrase-en.gz`` beside it).
`unavailable` says in one line why METEOR cannot run (no Java, no jar); then the other
caption metrics are reported without it.

Starting the jar loads its paraphrase table, which takes seconds (a minute on a busy
machine), so the process is kept and reused by later calls in the same Python process
(as one pycocoevalcap ``Meteor()`` object is), and ended when Python exits.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Sequence

from ouroboros.errors import UserError

JAR = "meteor-1.5.jar"
# pycocoevalcap's command line: 2 GB heap, stdin/stdout protocol, English, normalised text
COMMAND = ("-jar", "-Xmx2G", JAR, "-", "-", "-stdio", "-l", "en", "-norm")


def find_jar(jar: str | None = None) -> Path | None:
    """The METEOR jar: `jar` when given, else the one pycocoevalcap ships (found without
    importing pycocoevalcap), else None."""
    if jar is not None:
        return Path(jar) if Path(jar).is_file() else None
    try:
        spec = importlib.util.find_spec("pycocoevalcap")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "meteor" / JAR
        if path.is_file():
            return path
    return None


def unavailable(jar: str | None = None) -> str | None:
    """Why METEOR cannot be computed here (one line), or None when it can."""
    if shutil.which("java") is None:
        return ("METEOR is not computed: it runs pycocoevalcap's meteor-1.5.jar, which needs Java; install a Java "
                "runtime (Debian/Ubuntu: apt-get install default-jre-headless)")
    if find_jar(jar) is None:
        where = f"{jar} is not a file" if jar is not None else "pycocoevalcap is not installed"
        return (f"METEOR is not computed: it needs pycocoevalcap's meteor-1.5.jar and {where}; "
                "pip install pycocoevalcap")
    return None


_LOCK = threading.Lock()
_RUNNING: dict[Path, tuple[int, subprocess.Popen]] = {}  # jar -> (the pid that started it, its process)


def _process(path: Path) -> subprocess.Popen:
    """The running METEOR process of `path`, started when there is none in this process
    (a forked child never talks to its parent's)."""
    pid, proc = _RUNNING.get(path, (None, None))
    if proc is None or pid != os.getpid() or proc.poll() is not None:
        proc = subprocess.Popen(["java", *COMMAND[:2], path.name, *COMMAND[3:]], cwd=path.parent,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        _RUNNING[path] = (os.getpid(), proc)
    return proc


@atexit.register
def close() -> None:
    """End the METEOR processes this Python process started."""
    for pid, proc in _RUNNING.values():
        if pid == os.getpid():
            proc.kill()
            proc.wait()
    _RUNNING.clear()


def score(candidates: Sequence[str], references: Sequence[Sequence[str]], jar: str | None = None) -> float:
    """Corpus METEOR of tokenised candidates (one per image) against their references."""
    reason = unavailable(jar)
    if reason is not None:
        raise UserError(reason)
    path = find_jar(jar).resolve()
    with _LOCK:
        proc = _process(path)
        try:
            stats = []
            for cand, refs in zip(candidates, references):
                # as pycocoevalcap: '|||' cannot appear in the candidate; references go as they are
                line = " ||| ".join(("SCORE", " ||| ".join(refs), cand.replace("|||", "").replace("  ", " ")))
                stats.append(_ask(proc, line))
            _ask(proc, " ||| ".join(["EVAL", *stats]), answer=False)
            for _ in stats:  # one score per image, then the corpus score
                _read(proc)
            return float(_read(proc))
        except BaseException:  # the protocol is out of step: never reuse this process
            proc.kill()
            proc.wait()
            _RUNNING.pop(path, None)
            raise


def _ask(proc, line: str, answer: bool = True) -> str:
    proc.stdin.write((line + "\n").encode())
    proc.stdin.flush()
    return _read(proc) if answer else ""


def _read(proc) -> str:
    line = proc.stdout.readline().decode().strip()
    if not line:
        raise UserError(f"METEOR (java {JAR}) stopped without an answer; check that `java -jar {JAR}` runs "
                        "(Java 8 or later, 2 GB of memory for its heap)")
    return line
