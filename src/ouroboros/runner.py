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

import json
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import ouroboros.stages  # noqa: F401  (registers the built-in stage kinds)
from ouroboros import version
from ouroboros.write_errors import as_os_error
from ouroboros.graph import (  # noqa: F401  (re-exported: the runner's public names)
    STAGE_KINDS, Stage, StageKind, execute_stage, gpu_name, ordered, stage_args, stage_kind, write_record,
)


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
            now_device.append(gpu_name() if torch.cuda.is_available() else "cpu")
        return now_device[0]

    groups: dict[_Made, int] = {}
    for r in records:
        made = _Made(str(r.get("torch")), str(r.get("device")), str(r.get("ouroboros")))
        if (made.torch != torch.__version__ or made.ouroboros != version.__version__
                or made.device != "cpu" and made.device != device_now()):
            groups[made] = groups.get(made, 0) + 1
    if not groups:
        return None

    def describe(made: _Made) -> str:
        other = f"ouroboros {made.ouroboros}, " if made.ouroboros != version.__version__ else ""
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

    def forget(self, targets: list[Stage], kinds) -> int:
        """Remove the cached artifacts of the stages of `kinds` (``"all"``: every kind) that
        `targets` need, and of every stage downstream of them, so that running the targets
        recomputes those. Returns how many artifacts were removed."""
        import shutil

        kinds = set(kinds)
        forced: set[str] = set()
        removed = 0
        for key, stage in ordered(targets).items():  # inputs first
            if not ("all" in kinds or stage.kind in kinds or any(d.key in forced for d in stage.deps.values())):
                continue
            if stage.kind == "data":  # written by the planner from the loaded data, not recomputable here
                continue
            forced.add(key)
            path = stage.artifact(self.cache)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed += 1
        return removed

    def run(self, targets: list[Stage]) -> dict[str, Path]:
        """Run every stage the targets need; return key -> artifact path."""
        order = ordered(targets)
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
        from ouroboros.progress import bar

        return bar(total, initial, desc="stages", unit="stage", mininterval=0.5)

    def _schedule(self, todo: dict[str, Stage], paths: dict[str, Path], bar) -> None:
        def args(stage: Stage):
            return stage_args(stage, paths, self.cache)

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
