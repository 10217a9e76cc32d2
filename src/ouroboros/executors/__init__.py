"""Executors: what runs a study's stage graph once the runner knows which stages are due.

The runner (`ouroboros.runner`) decides *what* to run: every stage whose artifact is
missing. An executor decides *where*: `local` (worker processes on this machine, the
default) or `ray` (each stage a Ray task on a cluster). Both call the same stage
functions, which write their artifacts atomically under the run folder, so results,
caching and resuming do not depend on the executor.

An executor has three methods:

- ``start(run_dir)``: connect and check what it needs, before the study writes
  anything to `run_dir` (Ray: join or start the cluster, check every node sees the
  run folder). Bad input raises `UserError`.
- ``execute(todo, args, finished, bar, started=None, failed=None)``: run the stages in
  `todo` (key -> Stage, in dependency order), each as soon as its inputs exist;
  `args(stage)` gives the arguments of `ouroboros.graph.execute_stage`, the one public
  function that runs a stage; call
  ``started(stage)`` as each is handed out, ``finished(stage, seconds, node)`` as each
  completes, and ``failed(stage, exc)`` before raising a stage's error.
- ``close()``: release what `start` acquired.
"""

from __future__ import annotations

from ouroboros.executors.local import LocalExecutor


def make_executor(config):
    """The executor an `ExecutorConfig` names."""
    if config.kind == "ray":
        from ouroboros.executors.ray import RayExecutor

        return RayExecutor(config.address, config.workers, config.threads_per_worker, config.gpus_per_stage,
                           config.retries)
    return LocalExecutor(config.workers, config.threads_per_worker)


__all__ = ["LocalExecutor", "make_executor"]
