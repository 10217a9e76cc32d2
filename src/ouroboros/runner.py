"""The stage runner: the only place that knows about stages, caching and execution.

A study expands into `Stage`s. Each stage's key is a hash of everything its output
depends on (its parameters and the keys of the stages it reads), so the same
config lands on the same artifacts. An artifact is written atomically under
``RUN_DIR/cache/<kind>/<key>``; a stage whose artifact exists is skipped. Killing
the process at any point therefore loses at most the stages in flight, and running
again resumes.

Independent stages run in parallel, on an executor (`ouroboros.executors`): local
worker processes (``executor.workers``) or Ray tasks on a cluster. Each stage uses
``threads_per_worker`` torch threads, so results do not depend on how many run at once
or where.

A key also covers the code that makes the artifact: the stage kind's `version` and the
package version, so an upgrade never reuses artifacts older code made. Beside each
artifact, ``cache/.made/<kind>/<key>.json`` records the torch and ouroboros versions
and the device it was made on; a resume that reuses artifacts made elsewhere says so.
"""

from __future__ import annotations

import functools

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import ouroboros
from ouroboros.io import stable_hash, write_json_atomic
from ouroboros.write_errors import as_os_error


@dataclass(frozen=True)
class StageKind:
    suffix: str  # of the artifact; '' = a folder
    fn: Callable[[dict, dict, Path], None]  # fn(params, deps: dict[name, Path], out: Path)
    version: int  # of fn's output; part of every key of this kind


STAGE_KINDS: dict[str, StageKind] = {}


def stage_kind(kind: str, suffix: str, version: int = 1):
    """Register the function that produces artifacts of `kind` (suffix '' = a folder).

    `version` is part of every key of this kind: bump it whenever a change to the code
    changes the artifact (different numbers, fields or format), so that existing caches
    recompute it instead of mixing old and new outputs. Refactors that keep the output
    byte-for-byte keep the version.
    """

    def register(fn):
        STAGE_KINDS[kind] = StageKind(suffix, fn, version)
        return fn

    return register


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
        return stable_hash({"kind": self.kind, "version": _kinds()[self.kind].version,
                            "ouroboros": ouroboros.__version__, "params": self.params,
                            "deps": {k: d.key for k, d in sorted(self.deps.items())}})

    def artifact(self, cache: Path) -> Path:
        return cache / self.kind / f"{self.key}{_kinds()[self.kind].suffix}"

    def record(self, cache: Path) -> Path:
        """Where what the artifact was made with is recorded (see `write_record`)."""
        return cache / ".made" / self.kind / f"{self.key}.json"


def _kinds() -> dict:
    import ouroboros.stages  # noqa: F401  (registers the stage functions)

    return STAGE_KINDS


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker_init(threads: int) -> None:
    # Die with the parent: a killed run must not leave workers writing behind it.
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    _set_threads(threads)


def _cuda_allocations() -> int:
    """How many CUDA allocations this process has made so far (0 without CUDA)."""
    import torch

    if not torch.cuda.is_initialized():  # never initialise CUDA just to ask
        return 0
    return int(torch.cuda.memory_stats().get("allocation.all.allocated", 0))


def _gpu_name() -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name()})"


def write_record(path: Path, device: str) -> None:
    """Record what an artifact was made with: torch and ouroboros versions, device."""
    import torch

    write_json_atomic(path, {"torch": torch.__version__, "ouroboros": ouroboros.__version__, "device": device})


def _execute(kind: str, params: dict, deps: dict[str, str], out: str, record: str) -> float:
    """Run one stage (in a worker or in process) and record what made it; returns its wall time."""
    start = time.perf_counter()
    # Each stage picks its own device (config `device: auto` and the like); whether it
    # allocated CUDA memory says where it actually ran.
    allocations = _cuda_allocations()
    try:
        _kinds()[kind].fn(params, {k: Path(v) for k, v in deps.items()}, Path(out))
        write_record(Path(record), _gpu_name() if _cuda_allocations() > allocations else "cpu")
    except Exception as exc:  # a full disk in any library: an OSError naming a path, which pickles
        named = as_os_error(exc, out)
        if named is None or named is exc:
            raise
        raise named from None
    return time.perf_counter() - start


class _Made(NamedTuple):
    torch: str
    device: str
    ouroboros: str


def made_elsewhere_warning(records: list[dict]) -> str | None:
    """One warning line when cached artifacts were made with another torch or ouroboros
    version, or on a GPU this machine does not have; None when all match.

    Artifacts made on the CPU are not flagged on a GPU machine: many stages (data,
    mixing) run on the CPU everywhere, and a CPU/GPU switch of the same torch release
    shows in its version's build tag (2.13.0+cpu, 2.13.0+cu126).
    """
    import torch

    now_device: list[str] = []  # looked up only when needed: naming the GPU initialises CUDA

    def device_now() -> str:
        if not now_device:
            now_device.append(_gpu_name() if torch.cuda.is_available() else "cpu")
        return now_device[0]

    groups: dict[_Made, int] = {}
    for r in records:
        made = _Made(str(r.get("torch")), str(r.get("device")), str(r.get("ouroboros")))
        if (made.torch != torch.__version__ or made.ouroboros != ouroboros.__version__
                or made.device != "cpu" and made.device != device_now()):
            groups[made] = groups.get(made, 0) + 1
    if not groups:
        return None

    def describe(made: _Made) -> str:
        other = f"ouroboros {made.ouroboros}, " if made.ouroboros != ouroboros.__version__ else ""
        return f"{other}torch {made.torch} on {made.device}"

    (first, n), *rest = sorted(groups.items(), key=lambda item: -item[1])  # the most common first
    text = f"{n} cached stage{'s were' if n > 1 else ' was'} made with {describe(first)}"
    text += "".join(f", {m} with {describe(made)}" for made, m in rest)
    return f"warning: {text}; now torch {torch.__version__} on {device_now()}"


class Runner:
    """Runs stages into ``run_dir/cache``. With `progress`, a bar of stages done / total
    with the time remaining, and one line per finished stage. `on_event`, when given, is
    called with one dict per event: ``{"event": "cached" | "started" | "finished" |
    "failed", "kind", "label", "key"}``, plus ``"seconds"`` (wall time) when finished or
    failed and ``"error"`` when failed (see `JsonEventLog`)."""

    def __init__(self, run_dir: Path, workers: int = 0, threads_per_worker: int = 1, progress: bool = True,
                 on_event: Callable[[dict], None] | None = None, executor=None):
        """`executor` runs the stages (`ouroboros.executors`); by default the local one with
        `workers` processes of `threads_per_worker` torch threads each."""
        from ouroboros.executors import LocalExecutor

        self.on_event = on_event
        self.run_dir = Path(run_dir)
        self.cache = self.run_dir / "cache"
        self.executor = executor if executor is not None else LocalExecutor(workers, threads_per_worker)
        self.progress = progress
        self.timings: list[tuple[str, str, float]] = []  # (kind, label, seconds) of stages run now
        self.nodes: list[str] = []  # the node each of those stages ran on, in the same order
        self.warned = False  # about cached artifacts made elsewhere: once per runner

    def run(self, targets: list[Stage]) -> dict[str, Path]:
        """Run every stage the targets need; return key -> artifact path."""
        order: dict[str, Stage] = {}

        def visit(stage: Stage) -> None:
            if stage.key in order:
                return
            for dep in stage.deps.values():
                visit(dep)
            order[stage.key] = stage

        for t in targets:
            visit(t)
        paths = {k: s.artifact(self.cache) for k, s in order.items()}
        todo = {k: s for k, s in order.items() if not paths[k].exists()}
        done_before = len(order) - len(todo)
        for key, stage in order.items():
            if key not in todo:
                self._emit("cached", stage)
        self._check_records([s for k, s in order.items() if k not in todo])
        bar = self._bar(len(order), done_before)
        try:
            if todo:
                self._schedule(todo, paths, bar)
        finally:
            if bar is not None:
                bar.close()
        return paths

    def _emit(self, event: str, stage: Stage, **extra) -> None:
        if self.on_event is not None:
            self.on_event({"event": event, "kind": stage.kind, "label": stage.label, "key": stage.key, **extra})

    def _check_records(self, cached: list[Stage]) -> None:
        """Warn (once, one line) when cached artifacts were made elsewhere."""
        records = []
        for stage in cached:
            try:
                records.append(json.loads(stage.record(self.cache).read_text()))
            except (OSError, ValueError):
                pass  # unrecorded: the run was killed between artifact and record
        warning = made_elsewhere_warning(records)
        if warning is not None and not self.warned:
            self.warned = True
            print(warning, file=sys.stderr)

    def _bar(self, total: int, initial: int):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc="stages", unit="stage", file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)

    def _schedule(self, todo: dict[str, Stage], paths: dict[str, Path], bar) -> None:
        def args(stage: Stage):
            return (stage.kind, stage.params, {n: str(paths[d.key]) for n, d in stage.deps.items()},
                    str(paths[stage.key]), str(stage.record(self.cache)))

        def finished(stage: Stage, seconds: float, node: str) -> None:
            self.timings.append((stage.kind, stage.label, seconds))
            self._emit("finished", stage, seconds=round(seconds, 3))
            self.nodes.append(node)
            if bar is not None:
                bar.write(f"[{bar.n + 1}/{bar.total}] {stage.kind} {stage.label}: {seconds:.1f}s", file=sys.stderr)
                bar.update(1)

        def started(stage: Stage) -> None:
            self._emit("started", stage)
            start_times[stage.key] = time.perf_counter()

        def failed(stage: Stage, exc: BaseException) -> None:
            self._emit("failed", stage, seconds=round(time.perf_counter() - start_times.get(stage.key, 0.0), 3),
                       error=f"{type(exc).__name__}: {exc}")

        start_times: dict[str, float] = {}
        self.executor.execute(todo, args, finished, bar, started=started, failed=failed)


class JsonEventLog:
    """A Runner's `on_event` writing JSON Lines: each event one JSON object on one line
    (the Runner's fields plus ``time``, seconds since the epoch), flushed as it
    happens so another program can follow the file while the run goes on. The file is
    created at the first event, so a run that fails its checks writes nothing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = None

    def __call__(self, event: dict) -> None:
        try:
            if self.file is None:
                self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115  (closed by close())
            self.file.write(json.dumps({**event, "time": round(time.time(), 3)}) + "\n")
            self.file.flush()
        except OSError as exc:  # a full disk: one error line naming the log
            raise as_os_error(exc, self.path) or exc from None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
