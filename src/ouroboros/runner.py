"""The stage runner: the only place that knows about stages, caching and execution.

A study expands into `Stage`s. Each stage's key is a hash of everything its output
depends on (its parameters and the keys of the stages it reads), so the same
config lands on the same artifacts. An artifact is written atomically under
``RUN_DIR/cache/<kind>/<key>``; a stage whose artifact exists is skipped. Killing
the process at any point therefore loses at most the stages in flight, and running
again resumes.

Independent stages run in parallel worker processes (``executor.workers``). Each
worker uses ``threads_per_worker`` torch threads, so results do not depend on how
many workers there are.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ouroboros.errors import UserError
from ouroboros.io import stable_hash

# kind -> (artifact suffix, function(params, deps: dict[name, Path], out: Path))
STAGE_KINDS: dict[str, tuple[str, Callable[[dict, dict, Path], None]]] = {}


def stage_kind(kind: str, suffix: str):
    """Register the function that produces artifacts of `kind` (suffix '' = a folder)."""

    def register(fn):
        STAGE_KINDS[kind] = (suffix, fn)
        return fn

    return register


@dataclass
class Stage:
    kind: str
    params: dict  # JSON-serialisable: everything the stage needs besides its inputs
    deps: dict[str, "Stage"] = field(default_factory=dict)  # input name -> producing stage
    label: str = ""

    @property
    def key(self) -> str:
        return stable_hash({"kind": self.kind, "params": self.params,
                            "deps": {k: d.key for k, d in sorted(self.deps.items())}})

    def artifact(self, cache: Path) -> Path:
        suffix = _kinds()[self.kind][0]
        return cache / self.kind / f"{self.key}{suffix}"


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


def _execute(kind: str, params: dict, deps: dict[str, str], out: str) -> float:
    """Run one stage (in a worker or in process); returns its wall time."""
    start = time.perf_counter()
    _kinds()[kind][1](params, {k: Path(v) for k, v in deps.items()}, Path(out))
    return time.perf_counter() - start


class Runner:
    def __init__(self, run_dir: Path, workers: int = 0, threads_per_worker: int = 1, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.cache = self.run_dir / "cache"
        self.workers = workers
        self.threads = threads_per_worker
        self.progress = progress
        self.timings: list[tuple[str, str, float]] = []  # (kind, label, seconds) of stages run now

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
        bar = self._bar(len(order), done_before)
        try:
            if todo:
                self._schedule(todo, paths, bar)
        finally:
            if bar is not None:
                bar.close()
        return paths

    def _bar(self, total: int, initial: int):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc="stages", unit="stage", file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)

    def _n_workers(self, todo: dict[str, Stage]) -> int:
        if self.workers > 0:
            return self.workers
        return max(1, min(os.cpu_count() or 1, len(todo)))

    def _schedule(self, todo: dict[str, Stage], paths: dict[str, Path], bar) -> None:
        workers = self._n_workers(todo)
        pending = dict(todo)
        running: dict[cf.Future, Stage] = {}

        def ready(stage: Stage) -> bool:
            return all(d.key not in pending and d.key not in {s.key for s in running.values()} for d in stage.deps.values())

        def args(stage: Stage):
            return (stage.kind, stage.params, {n: str(paths[d.key]) for n, d in stage.deps.items()},
                    str(paths[stage.key]))

        def finished(stage: Stage, seconds: float) -> None:
            self.timings.append((stage.kind, stage.label, seconds))
            if bar is not None:
                bar.set_postfix_str(f"{stage.kind} {stage.label} {seconds:.1f}s", refresh=False)
                bar.update(1)

        if workers == 1:
            _set_threads(self.threads)
            for key, stage in todo.items():  # `todo` is in dependency order
                finished(stage, _execute(*args(stage)))
            return

        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(self.threads,)) as pool:
            try:
                while pending or running:
                    for key, stage in list(pending.items()):
                        if len(running) >= workers:
                            break
                        if ready(stage):
                            del pending[key]
                            running[pool.submit(_execute, *args(stage))] = stage
                    if not running:
                        raise RuntimeError("stage graph has a cycle or a missing dependency")
                    done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        stage = running.pop(fut)
                        finished(stage, fut.result())
            except BaseException:
                for fut in running:
                    fut.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output path {run_dir} exists and is not a folder")
    return run_dir
