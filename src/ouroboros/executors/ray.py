"""The Ray executor: each stage a Ray task, on a local Ray instance or a cluster.

`start(run_dir)` imports Ray (a `UserError` naming the extra to install when it is
missing), joins the cluster at `address` (``auto``: the one running on this machine;
``HOST:PORT``: its head, probed first so an address that does not answer is an error
within seconds) or starts a local instance (address None), then checks the run folder:
a task on every node reads a file the driver wrote there and writes one the driver
reads back. The folder must be on storage every node shares, at the same path.

`execute` submits every stage as a Ray task as soon as its inputs exist. A stage asks
for ``threads`` CPUs (its torch threads) and, when its device resolves to CUDA,
``gpus_per_stage`` GPUs (a fraction packs several small stages on one GPU). A stage
whose worker or node dies is run again, up to ``retries`` times; stage functions write
their artifacts atomically, so a killed attempt never leaves a partial one. The
progress bar shows the stages in flight per node.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from ouroboros.errors import UserError
from ouroboros.graph import ready
from ouroboros.executors.address import check_reachable

EXTRA = "pip install 'ouroboros[ray]'"
PROBE_TIMEOUT_S = 60.0  # for every node to answer the run-folder probe
LOCAL_OBJECT_STORE = 100 * 1024**2  # a local instance: tasks pass paths and numbers, not arrays


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"executor ray needs Ray, which is not installed; install the extra: {EXTRA}") from None
    return ray


def _own_device(stage) -> str | None:
    config = stage.params.get("config")
    return config.get("device") if isinstance(config, dict) else stage.params.get("device")


def uses_gpu(stage, cluster_has_gpu: bool) -> bool:
    """Whether `stage` runs on CUDA: its own device setting, or that of a stage whose model
    it loads (a direct input with a device setting: a fitted generator, a classifier),
    is ``cuda``/``cuda:N``, or ``auto`` on a cluster with GPUs."""
    for device in [_own_device(stage), *(_own_device(d) for d in stage.deps.values())]:
        if isinstance(device, str) and (device.startswith("cuda") or device == "auto" and cluster_has_gpu):
            return True
    return False


def _run_stage(threads: int, tracker, key: str, args: tuple) -> tuple[float, str]:
    """A Ray task: one stage with `threads` torch threads; returns (seconds, node id)."""
    import ray

    from ouroboros.graph import execute_stage, set_threads

    node = ray.get_runtime_context().get_node_id()
    tracker.started.remote(key, node)
    set_threads(threads)
    return execute_stage(*args), node


def _probe(run_dir: str, token: str, node: str) -> str | None:
    """A Ray task pinned to one node: read the driver's probe file and write this node's.
    Returns why the node cannot use the run folder, or None."""
    try:
        if (Path(run_dir) / f".ouroboros-probe-{token}").read_text() != token:
            return "it reads a different probe file there"
        (Path(run_dir) / f".ouroboros-probe-{token}-{node}").write_text(node)
    except OSError as exc:
        return f"{exc.strerror or exc}"
    return None


class _Tracker:
    """A Ray actor: which node each stage in flight started on (for the progress bar)."""

    def __init__(self):
        self.nodes: dict[str, str] = {}

    def started(self, key: str, node: str) -> None:
        self.nodes[key] = node

    def where(self) -> dict[str, str]:
        return self.nodes


class RayExecutor:
    def __init__(self, address: str | None = None, workers: int = 0, threads: int = 1, gpus_per_stage: float = 1.0,
                 retries: int = 3):
        self.address = address
        self.workers = workers  # a local instance gets CPUs for this many stages at once (0: one per core)
        self.threads = threads
        self.gpus_per_stage = gpus_per_stage
        self.retries = retries
        self.started_ray = False  # whether start() called ray.init (and close() shuts it down)
        self.checked: set[Path] = set()  # run folders every node was seen to share
        self.names: dict[str, str] = {}  # Ray node id -> node name
        self.latencies: list[float] = []  # per stage: driver's submit-to-result time less the stage's own

    # -- connecting --------------------------------------------------------------------

    def start(self, run_dir) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            self._connect(ray)
        self._refresh_names()
        if Path(run_dir) not in self.checked:
            self.check_shared(Path(run_dir))
            self.checked.add(Path(run_dir))

    def _connect(self, ray) -> None:
        where = "a local Ray instance" if self.address is None else f"the Ray cluster at {self.address}"
        try:
            if self.address is None:
                cpus = (self.workers or os.cpu_count() or 1) * self.threads
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, object_store_memory=LOCAL_OBJECT_STORE)
            else:
                check_reachable(self.address)
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = "start one with `ray start --head`, or give its address with --ray-address" \
                if self.address == "auto" else "check --ray-address and that the cluster is up"
            raise UserError(f"cannot connect to {where}: {first}; {hint}") from None
        self.started_ray = True

    def close(self) -> None:
        if self.started_ray:
            import ray

            ray.shutdown()
            self.started_ray = False

    def _refresh_names(self) -> None:
        import ray

        self.names = {n["NodeID"]: n.get("NodeName") or n["NodeManagerAddress"] for n in ray.nodes()}

    def node_name(self, node_id: str) -> str:
        if node_id not in self.names:
            self._refresh_names()  # a node that joined since
        return self.names.get(node_id, node_id[:12])

    def check_shared(self, run_dir: Path) -> None:
        """Every live node reads a file the driver wrote in `run_dir` and writes one the
        driver reads back; else one UserError naming the first node that cannot."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n["Alive"]]
        created = [p for p in [run_dir, *run_dir.parents] if not p.exists()]  # removed again on failure
        run_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        mine = run_dir / f".ouroboros-probe-{token}"
        mine.write_text(token)
        probe = ray.remote(_probe)
        try:
            refs = {probe.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(str(run_dir.resolve()), token, n["NodeID"]): n for n in nodes}
            _, late = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
            for ref, node in refs.items():
                if ref in late:
                    reason = f"it did not answer within {PROBE_TIMEOUT_S:g} s"
                else:
                    try:
                        reason = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the node died, or its worker could not start
                        reason = type(exc).__name__
                    theirs = run_dir / f".ouroboros-probe-{token}-{node['NodeID']}"
                    if reason is None and not theirs.is_file():
                        reason = "what it wrote there does not show up here"
                if reason is not None:
                    name = self.node_name(node["NodeID"])
                    raise UserError(f"the run folder {run_dir.resolve()} is not usable from Ray node {name} "
                                    f"({node['NodeManagerAddress']}): {reason}; put --out on storage every node "
                                    "shares (e.g. NFS), mounted at the same path")
        except BaseException:
            _remove_probes(run_dir, token)
            for folder in created:  # innermost first
                folder.rmdir()
            raise
        finally:
            _remove_probes(run_dir, token)

    # -- running -----------------------------------------------------------------------

    def execute(self, todo: dict, args, finished, bar=None, started=None, failed=None) -> None:
        from ouroboros.graph import in_main_module

        here = [stage for stage in todo.values() if in_main_module(stage)]
        if here:  # a plug-in typed into a notebook or a script: no Ray worker can import it
            raise UserError(f"stage {here[0].kind} {here[0].label} runs code defined in __main__ (a notebook or "
                            "script), which Ray workers cannot import; put the plug-in in a module, or run it "
                            "with the local executor")
        import ray

        started = started or (lambda stage: None)
        failed = failed or (lambda stage, exc: None)
        gpu = ray.cluster_resources().get("GPU", 0) > 0
        run = ray.remote(_run_stage)
        tracker = ray.remote(num_cpus=0)(_Tracker).remote()
        pending = dict(todo)
        running: dict = {}  # ObjectRef -> (stage, submit time)
        try:
            while pending or running:
                unfinished = set(pending) | {s.key for s, _ in running.values()}  # once per pass
                for key, stage in list(pending.items()):
                    if ready(stage, unfinished):
                        del pending[key]
                        started(stage)
                        ref = run.options(**self.options(stage, gpu)).remote(self.threads, tracker, key, args(stage))
                        running[ref] = (stage, time.perf_counter())
                if not running:
                    raise RuntimeError("stage graph has a cycle or a missing dependency")
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in done:
                    stage, submitted = running.pop(ref)
                    try:
                        seconds, node = _result(ray, ref)
                    except BaseException as exc:
                        failed(stage, exc)
                        raise
                    self.latencies.append(time.perf_counter() - submitted - seconds)
                    finished(stage, seconds, self.node_name(node))
                if bar is not None:
                    self._show_in_flight(bar, tracker, {s.key for s, _ in running.values()})
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        finally:
            ray.kill(tracker)

    def options(self, stage, cluster_has_gpu: bool) -> dict:
        """The Ray task options of `stage`: its resources, retries and name (the worker's
        process title shows it: ``ray::fit w=1 seed=0 gen=0``)."""
        return {"num_cpus": self.threads, "num_gpus": self.gpus_per_stage if uses_gpu(stage, cluster_has_gpu) else 0,
                "max_retries": self.retries, "retry_exceptions": False, "name": f"{stage.kind} {stage.label}".strip()}

    def _show_in_flight(self, bar, tracker, keys: set[str]) -> None:
        import ray

        where = ray.get(tracker.where.remote())
        per_node: dict[str, int] = {}
        for key in keys:
            if key in where:
                name = self.node_name(where[key])
                per_node[name] = per_node.get(name, 0) + 1
        queued = len(keys) - sum(per_node.values())
        parts = [f"{name} {n}" for name, n in sorted(per_node.items())] + ([f"queued {queued}"] if queued else [])
        bar.set_description(f"stages (in flight: {', '.join(parts) or 'none'})", refresh=False)
        bar.refresh()


def _result(ray, ref):
    """The task's (seconds, node); a stage's own bad-input or file-system error as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (UserError, OSError)):
            raise exc.cause from None
        raise


def _remove_probes(run_dir: Path, token: str) -> None:
    for path in run_dir.glob(f".ouroboros-probe-{token}*"):
        path.unlink(missing_ok=True)
