"""The local executor: stages in worker processes on this machine (the default).

``workers`` processes (0: one per CPU core, at most one per stage due), each with
``threads`` torch threads, so results do not depend on how many workers there are.
With one worker the stages run in this process, one after another; so do they when a
stage runs code defined in ``__main__`` (a plug-in typed into a notebook or a script),
which no other process can import.

Workers are started with ``spawn`` (a fresh interpreter: no inherited torch or CUDA
state). Spawn normally re-runs the user's main script in every worker, so a plain
script calling ``ouroboros.run`` without an ``if __name__ == "__main__":`` guard would
start the run again in each of them; the workers here are told there is no main script
(`_main_script_hidden`): they need nothing from it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import platform
import sys


class LocalExecutor:
    def __init__(self, workers: int = 0, threads: int = 1):
        self.workers = workers
        self.threads = threads
        self.node = platform.node() or "local"  # what timings.json records as where each stage ran

    def start(self, run_dir) -> None:
        """Nothing to connect to: the run folder was checked by the study's preflight."""

    def close(self) -> None:
        pass

    def _n_workers(self, n_todo: int) -> int:
        if self.workers > 0:
            return self.workers
        return max(1, min(os.cpu_count() or 1, n_todo))

    def execute(self, todo: dict, args, finished, bar=None, started=None, failed=None) -> None:
        from ouroboros.graph import execute_stage, in_main_module, ready, set_threads, worker_init

        started = started or (lambda stage: None)
        failed = failed or (lambda stage, exc: None)
        workers = self._n_workers(len(todo))
        if workers == 1 or any(in_main_module(stage) for stage in todo.values()):
            set_threads(self.threads)
            for stage in todo.values():  # `todo` is in dependency order
                started(stage)
                try:
                    seconds = execute_stage(*args(stage))
                except BaseException as exc:
                    failed(stage, exc)
                    raise
                finished(stage, seconds, self.node)
            return

        pending = dict(todo)
        running: dict[cf.Future, object] = {}
        ctx = multiprocessing.get_context("spawn")
        with _main_script_hidden(), cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker_init,
                                                           initargs=(self.threads,)) as pool:
            try:
                while pending or running:
                    # once per pass, not per stage: with thousands of stages pending, building
                    # it per stage made this driver loop compete with the workers for the CPUs
                    unfinished = set(pending) | {s.key for s in running.values()}
                    for key, stage in list(pending.items()):
                        if len(running) >= workers:
                            break
                        if ready(stage, unfinished):
                            del pending[key]
                            started(stage)
                            running[pool.submit(execute_stage, *args(stage))] = stage
                    if not running:
                        raise RuntimeError("stage graph has a cycle or a missing dependency")
                    done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        stage = running.pop(fut)
                        try:
                            seconds = fut.result()
                        except BaseException as exc:
                            failed(stage, exc)
                            raise
                        finished(stage, seconds, self.node)
            except BaseException:
                for fut in running:
                    fut.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
                raise


@contextlib.contextmanager
def _main_script_hidden():
    """While workers start, ``__main__`` shows no file to re-run (spawn reads
    ``__main__.__file__`` to decide what to re-import in the child; a module run with
    ``python -m`` is found by its spec's name and is not re-run either way)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    path = getattr(main, "__file__", None)
    if main is None or spec is not None or path is None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path
