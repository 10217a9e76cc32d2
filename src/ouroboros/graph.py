"""The stage graph: stages, the registry of stage kinds, and running one stage.

A study expands into `Stage`s. Each stage's key is a hash of everything its output
depends on (its parameters, the keys of the stages it reads, and the code that makes
it), so the same config lands on the same artifacts. `execute_stage` is what an
executor calls, in this process, a worker process or a Ray task: it makes sure the
stage's kind is registered there (importing the module that registered it), runs it
and records what made the artifact.

This module imports no study, stage kind or executor: they import it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ouroboros import version
from ouroboros.io import stable_hash, write_json_atomic
from ouroboros.write_errors import as_os_error

PACKAGE = "ouroboros"


def code_identity(obj, declared: int | str | None = None) -> str:
    """What identifies the code of a plug-in (a stage kind, a generator family, a study):
    "" for ouroboros' own code (the package version covers it); else the `declared`
    version when given; else a hash of the source of the module that defines `obj`, so
    that editing a plug-in recomputes what it made. For a plug-in defined in ``__main__``
    (a script, a notebook cell) the object's own source, or where that cannot be read
    (typed into an interpreter, exec'd) a hash of its compiled code."""
    module = getattr(obj, "__module__", "") or ""
    if module == PACKAGE or module.startswith(PACKAGE + "."):
        return ""
    if declared is not None:
        return f"v:{declared}"
    try:
        source = inspect.getsource(sys.modules[module]) if module != "__main__" else None
    except (OSError, TypeError, KeyError):
        source = None
    if source is None:  # __main__ (a script or a notebook): the object's own source
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):  # typed in an interpreter, or exec'd: its compiled code
            return "code:" + hashlib.sha256(_bytecode(obj)).hexdigest()[:16]
    return "src:" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _bytecode(obj) -> bytes:
    """What an object's code does, without where it was typed: the instructions, constants
    and names of its functions (a class's methods, recursively), not their file or line."""
    def code(c) -> bytes:
        consts = b"".join(code(k) if inspect.iscode(k) else repr(k).encode() for k in c.co_consts)
        return c.co_code + consts + repr(c.co_names).encode()

    if inspect.isclass(obj):
        parts = [name.encode() + _bytecode(value) for name, value in sorted(vars(obj).items())
                 if inspect.isfunction(value) or inspect.isclass(value)]
        return obj.__qualname__.encode() + b"".join(parts) + b"".join(_bytecode(b) for b in obj.__bases__
                                                                     if b.__module__ == obj.__module__)
    if inspect.isfunction(obj):
        return code(obj.__code__)
    return repr(obj).encode()


@dataclass(frozen=True)
class StageKind:
    suffix: str  # of the artifact; '' = a folder
    fn: Callable[[dict, dict, Path], None]  # fn(params, deps: dict[name, Path], out: Path)
    version: int  # of fn's output; part of every key of this kind
    module: str = PACKAGE  # where fn is defined: a worker imports it to register the kind
    code: str = ""  # code_identity(fn): "" for ouroboros' own kinds


STAGE_KINDS: dict[str, StageKind] = {}


def stage_kind(kind: str, suffix: str, version: int = 1):
    """Register the function that produces artifacts of `kind` (suffix '' = a folder).

    `version` is part of every key of this kind: bump it whenever a change to the code
    changes the artifact (different numbers, fields or format), so that existing caches
    recompute it instead of mixing old and new outputs. Refactors that keep the output
    byte-for-byte keep the version. A kind defined outside ouroboros (a plug-in study's)
    is keyed by its module's source as well (`code_identity`).
    """

    def register(fn):
        STAGE_KINDS[kind] = StageKind(suffix, fn, version, fn.__module__, code_identity(fn))
        return fn

    return register


def get_kind(kind: str, module: str | None = None) -> StageKind:
    """The registered kind; `module` (where it was registered) is imported first when the
    kind is not registered in this process yet (a fresh worker)."""
    if kind not in STAGE_KINDS and module:
        importlib.import_module(module)
    try:
        return STAGE_KINDS[kind]
    except KeyError:
        raise RuntimeError(f"stage kind {kind!r} is not registered (module {module!r})") from None


def settings_params(config) -> dict:
    """A settings dataclass as stage parameters: every field but those its `inert()` names
    (options that change nothing at their values, left out so that adding an option keeps
    the keys, and the cached artifacts, of the runs that do not use it)."""
    params = asdict(config)
    for name in getattr(config, "inert", tuple)():
        params.pop(name)
    return params


@dataclass
class Stage:
    kind: str
    params: dict  # JSON-serialisable: everything the stage needs besides its inputs
    deps: dict[str, "Stage"] = field(default_factory=dict)  # input name -> producing stage
    label: str = ""

    @functools.cached_property
    def key(self) -> str:
        # The package version too: code that changed without a bumped stage version must
        # still not reuse what an older release made. Computed once: a key hashes its
        # inputs' keys, and a chain that accumulates every earlier generation would
        # otherwise recompute them exponentially often (stages are not changed once built).
        kind = get_kind(self.kind)
        what = {"kind": self.kind, "version": kind.version, "ouroboros": version.__version__,
                "params": self.params, "deps": {k: d.key for k, d in sorted(self.deps.items())}}
        if kind.code:  # a plug-in's kind: its code too (ouroboros' own keys stay as they were)
            what["code"] = kind.code
        return stable_hash(what)

    def artifact(self, cache: Path) -> Path:
        return cache / self.kind / f"{self.key}{get_kind(self.kind).suffix}"

    def record(self, cache: Path) -> Path:
        """Where what the artifact was made with is recorded (see `write_record`)."""
        return cache / ".made" / self.kind / f"{self.key}.json"


def ordered(targets: list[Stage]) -> dict[str, Stage]:
    """key -> stage for every stage `targets` need, each after its inputs."""
    order: dict[str, Stage] = {}

    def visit(stage: Stage) -> None:
        if stage.key in order:
            return
        for dep in stage.deps.values():
            visit(dep)
        order[stage.key] = stage

    for t in targets:
        visit(t)
    return order


def ready(stage: Stage, unfinished: set[str]) -> bool:
    """Whether every input of `stage` exists: none of its dependencies is unfinished."""
    return all(d.key not in unfinished for d in stage.deps.values())


def in_main_module(stage: Stage) -> bool:
    """Whether `stage` runs code defined in ``__main__`` (a script or a notebook): its
    kind, or the plug-in family it fits or samples. Other processes cannot import that
    code, so such stages run in this process."""
    return get_kind(stage.kind).module == "__main__" or stage.params.get("module") == "__main__"


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def worker_init(threads: int) -> None:
    """Set up a local worker process: it dies with its parent (a killed run must not leave
    workers writing behind it) and uses `threads` torch threads."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    set_threads(threads)


def _cuda_allocations() -> int:
    """How many CUDA allocations this process has made so far (0 without CUDA)."""
    import torch

    if not torch.cuda.is_initialized():  # never initialise CUDA just to ask
        return 0
    return int(torch.cuda.memory_stats().get("allocation.all.allocated", 0))


def gpu_name() -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name()})"


def write_record(path: Path, device: str) -> None:
    """Record what an artifact was made with: torch and ouroboros versions, device."""
    import torch

    write_json_atomic(path, {"torch": torch.__version__, "ouroboros": version.__version__, "device": device})


def stage_args(stage: Stage, paths: dict[str, Path], cache: Path) -> tuple:
    """The arguments of `execute_stage` for `stage`, plain strings and dicts (they cross
    process and machine boundaries)."""
    return (stage.kind, stage.params, {n: str(paths[d.key]) for n, d in stage.deps.items()},
            str(paths[stage.key]), str(stage.record(cache)), get_kind(stage.kind).module)


def execute_stage(kind: str, params: dict, deps: dict[str, str], out: str, record: str,
                  module: str | None = None) -> float:
    """Run one stage and record what made it; returns its wall time in seconds."""
    start = time.perf_counter()
    fn = get_kind(kind, module).fn
    # Each stage picks its own device (config `device: auto` and the like); whether it
    # allocated CUDA memory says where it actually ran.
    allocations = _cuda_allocations()
    try:
        fn(params, {k: Path(v) for k, v in deps.items()}, Path(out))
        write_record(Path(record), gpu_name() if _cuda_allocations() > allocations else "cpu")
    except Exception as exc:  # a full disk in any library: an OSError naming a path, which pickles
        named = as_os_error(exc, out)
        if named is None or named is exc:
            raise
        raise named from None
    return time.perf_counter() - start
