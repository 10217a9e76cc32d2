"""The Ray executor: the same results.csv as the local executor, byte for byte;
a worker killed mid-stage is retried; a killed driver resumes; a two-node cluster spreads
the stages and timings.json says where each ran; bad input is one error line.

The runs are the demo shrunk to 16 stages (1 guidance x 2 seeds x 2 generations). The
cluster is real: `ray start --head` and a second `ray start --address` node, each with one
CPU, the second in its own mount namespace so that a folder can be hidden from it alone.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, assert_user_error, run_cli
from ouroboros.config import load_config
from ouroboros.errors import UserError
from ouroboros.executors.address import check_address
from ouroboros.executors.ray import RayExecutor, uses_gpu
from ouroboros.runner import Stage

SMALL = [
    "loop.generations=2",
    "loop.guidance=[1.0]",
    "loop.seeds=[0,1]",
    "loop.samples_per_generation=200",
    "generator.train_steps=60",
    "generator.sample_steps=8",
    "classifier.epochs=2",
    "executor.workers=1",  # the local reference: stages one after another in one process
    "evaluate.instruments=fixed",  # one split and classifier for both seeds (the kill tests wait on it)
]
SETS = sum((["--set", s] for s in SMALL), [])
# 2 data, the classifier, the reference evaluation, and 2 chains x 2 generations x (fit, sample,
# evaluate, held-out loss)
STAGES = 20
RAY = str(Path(sys.executable).with_name("ray"))
# The test cluster runs without Ray's token authentication (its second node would need the
# head's token); the driver then needs the same setting to join it.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled",
       "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _demo(out, *extra):
    return [sys.executable, "-m", "ouroboros", "demo", "--out", str(out), *SETS, *extra]


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    proc = run_cli("demo", "--out", out, "--quiet", *SETS)
    assert proc.returncode == 0, proc.stderr
    return (out / "results.csv").read_bytes()


def _session(sid: int) -> list[int]:
    """The processes of session `sid` (the ones a driver started with start_new_session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                pass
    return pids


def _title(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _kill_session(sid: int) -> None:
    """End what is left of a session this test started, process by process."""
    for pid in _session(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _timings(out) -> list[dict]:
    return json.loads((out / "timings.json").read_text())


# -- configuration and resources (no Ray needed) ------------------------------------------


def test_executor_settings_are_checked():
    config = load_config(None, ["executor.kind=ray", "executor.address=auto", "executor.gpus_per_stage=0.25"])
    assert (config.executor.kind, config.executor.address, config.executor.gpus_per_stage) == ("ray", "auto", 0.25)
    for bad, message in [("executor.gpus_per_stage=0", r"gpus_per_stage must lie in \(0, 1\]"),
                         ("executor.gpus_per_stage=1.5", r"gpus_per_stage must lie in \(0, 1\]"),
                         ("executor.retries=-1", r"retries must lie in \[0, 100\]"),
                         ("executor.kind=dask", "executor.kind must be one of local, ray")]:
        with pytest.raises(UserError, match=message):
            load_config(None, [bad])


@pytest.mark.parametrize("address", ["auto", "10.0.0.1:6379", "head.cluster:6379", "ray://10.0.0.1:10001",
                                     "[::1]:6379"])
def test_cluster_addresses(address):
    assert check_address("executor.address", address) == address


@pytest.mark.parametrize("address", ["10.0.0.1", "head:", ":6379", "head:port", "head:0", "head:65536", ""])
def test_malformed_cluster_addresses(address):
    with pytest.raises(UserError, match="executor.address must be auto, HOST:PORT or ray://HOST:PORT"):
        check_address("executor.address", address)


def test_stage_resources_follow_the_config_and_the_device():
    fit = lambda device: Stage("fit", {"config": {"device": device}, "seed": 0})  # noqa: E731
    data = Stage("data", {"content_hash": "x", "role": "train"})
    sample = lambda model: Stage("sample", {"n": 10, "seed": 0}, {"model": model})  # noqa: E731
    assemble = Stage("assemble", {}, {"samples": sample(fit("cuda")), "real": data})
    assert uses_gpu(fit("cuda"), False) and uses_gpu(fit("cuda:1"), False)
    assert uses_gpu(fit("auto"), True) and not uses_gpu(fit("auto"), False)
    assert not uses_gpu(fit("cpu"), True) and not uses_gpu(data, True)
    assert uses_gpu(sample(fit("cuda")), False)  # it loads a model made for CUDA
    assert not uses_gpu(sample(fit("cpu")), True)
    assert not uses_gpu(assemble, True)  # only pools images: no model of its own or of its inputs
    executor = RayExecutor(threads=3, gpus_per_stage=0.25, retries=5)
    assert executor.options(fit("cuda"), False) == {"num_cpus": 3, "num_gpus": 0.25, "max_retries": 5,
                                                    "retry_exceptions": False, "name": "fit"}
    assert executor.options(fit("auto"), False)["num_gpus"] == 0


# -- bad input: one error line, nothing written ------------------------------------------


def test_a_stage_of_code_in_main_is_refused_in_one_line(monkeypatch):
    """A plug-in typed into a notebook or a script (module __main__): no Ray worker can
    import it, so the Ray executor refuses it before submitting anything."""
    from ouroboros import graph

    def typed(params, deps, out):
        raise AssertionError("never run")

    typed.__module__ = "__main__"
    monkeypatch.setitem(graph.STAGE_KINDS, "t_typed", graph.StageKind(".json", typed, 1, "__main__", "code:x"))
    stage = Stage("t_typed", {}, label="cell")
    with pytest.raises(UserError, match="stage t_typed cell runs code defined in __main__.*local executor"):
        RayExecutor().execute({stage.key: stage}, lambda s: (), lambda *a: None)


def test_without_ray_the_error_names_the_extra(tmp_path):
    hide_ray = "import sys; sys.modules['ray'] = None; from ouroboros.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", hide_ray, *_demo(tmp_path / "run", "--executor", "ray")[3:]],
                          capture_output=True, text=True, timeout=300)
    assert_user_error(proc, "Ray, which is not installed", "pip install 'ouroboros[ray]'")
    assert not (tmp_path / "run").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_that_does_not_answer_is_an_error_within_30_s(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    proc = subprocess.run(_demo(tmp_path / "run", "--quiet", "--executor", "ray", "--ray-address", address),
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert time.perf_counter() - start < 30
    assert_user_error(proc, f"the Ray cluster at {address} does not answer", "ray start --head")
    assert not (tmp_path / "run").exists()


def test_auto_without_a_running_cluster_is_an_error(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "RAY_ADDRESS"}
    env["TMPDIR"] = str(tmp_path)  # where Ray looks for the cluster last started on this machine: none there
    proc = subprocess.run(_demo(tmp_path / "run", "--quiet", "--executor", "ray", "--ray-address", "auto"),
                          capture_output=True, text=True, timeout=120, env=env)
    assert_user_error(proc, "cannot connect to the Ray cluster at auto", "ray start --head")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--ray-address", "auto"], "--ray-address applies to the ray executor"),
    (["--executor", "ray", "--ray-address", "headnode"], "executor.address must be auto, HOST:PORT"),
])
def test_bad_executor_options(tmp_path, args, message):
    proc = run_cli(*_demo(tmp_path / "run", "--quiet", *args)[3:])
    assert_user_error(proc, message)
    assert not (tmp_path / "run").exists()


# -- a local Ray instance: faults -----------------------------------------------------------


def test_a_worker_killed_mid_stage_is_retried_to_the_same_results(tmp_path, local_results):
    out = tmp_path / "run"
    proc = subprocess.Popen(_demo(out, "--quiet", "--executor", "ray"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    killed = None
    try:
        deadline = time.time() + 240
        while killed is None and time.time() < deadline and proc.poll() is None:
            for pid in _session(proc.pid):  # the worker running the classifier stage (its first, ~seconds)
                if _title(pid).startswith(b"ray::classifier"):
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
            time.sleep(0.02)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        _kill_session(proc.pid)
    assert killed is not None, "no worker was seen running the classifier stage"
    assert proc.returncode == 0, err
    assert (out / "results.csv").read_bytes() == local_results
    assert len(_timings(out)) == STAGES - 2  # every stage but the data, which the planner writes


def test_a_killed_driver_resumes_from_the_finished_stages(tmp_path, local_results):
    out = tmp_path / "run"
    proc = subprocess.Popen(_demo(out, "--quiet", "--executor", "ray"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV, start_new_session=True)
    try:
        deadline = time.time() + 240
        fits = out / "cache" / "fit"
        while time.time() < deadline and proc.poll() is None:
            if fits.is_dir() and [p for p in fits.iterdir() if not p.name.startswith(".")]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        proc.kill()  # SIGKILL: no cleanup in the driver
        proc.wait()
    finally:
        _kill_session(proc.pid)  # Ray's agents that outlive a killed driver
    assert not (out / "results.csv").exists()
    resumed = subprocess.run(_demo(out, "--quiet", "--executor", "ray"), capture_output=True, text=True,
                             timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "results.csv").read_bytes() == local_results
    rerun = [t["kind"] for t in _timings(out)]
    assert "classifier" not in rerun and len(rerun) < STAGES - 3, rerun  # the classifier and a fit were kept


# -- a two-node cluster ----------------------------------------------------------------------


def _start_node(args: list[str], log: Path, hide: Path | None = None) -> subprocess.Popen:
    """`ray start ... --block` with one CPU; returns once the node is up. With `hide`, the node
    runs in its own mount namespace with an empty tmpfs over that folder."""
    command = [RAY, "start", "--num-cpus=1", f"--object-store-memory={100 * 1024**2}", "--block", *args]
    if hide is not None:
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs ouroboros-test "$0" && exec "$@"', str(hide), *command]
    with open(log, "w") as f:
        proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if "Ray runtime started" in log.read_text():
            return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"ray start {' '.join(args)} did not come up:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def cluster():
    # A short root: Ray's socket paths under its temp dir must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="ouro-ray-", dir="/tmp"))
    hidden = root / "hidden"
    hidden.mkdir()
    port = _free_port()
    nodes = []
    try:
        nodes.append(_start_node(["--head", f"--port={port}", "--node-name=head", "--include-dashboard=false",
                                  f"--temp-dir={root / 'ray'}", "--disable-usage-stats"], root / "head.log"))
        nodes.append(_start_node([f"--address=127.0.0.1:{port}", "--node-name=second"], root / "second.log", hidden))
        yield SimpleNamespace(address=f"127.0.0.1:{port}", hidden=hidden)
    finally:
        for node in reversed(nodes):  # `ray start --block` stops its node's processes on SIGTERM
            node.terminate()
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                pass
            _kill_session(node.pid)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _on_a_terminal(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run `command` with its stderr on a pseudo-terminal (progress is a bar there, plain
    lines in a pipe); returns what it wrote there as `stderr`."""
    import fcntl
    import os
    import pty
    import struct
    import termios
    import threading

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # 50 rows, 200 columns
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=slave, timeout=timeout, env=env)
    finally:
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    return subprocess.CompletedProcess(command, proc.returncode, "", b"".join(chunks).decode(errors="replace"))


def test_a_study_spreads_over_two_nodes_with_the_same_results(cluster, tmp_path, local_results):
    out = tmp_path / "run"
    proc = _on_a_terminal(_demo(out, "--executor", "ray", "--ray-address", cluster.address), ENV, 400)
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.csv").read_bytes() == local_results
    nodes = [t["node"] for t in _timings(out)]
    assert len(nodes) == STAGES - 2 and set(nodes) == {"head", "second"}, nodes
    # The progress bar: stages done / total, and the stages in flight per node.
    assert re.search(r"stages \(in flight: [^)]*\b(head|second) [12]\b", proc.stderr), proc.stderr[-2000:]
    assert f"{STAGES}/{STAGES}" in proc.stderr


def test_a_node_that_cannot_see_the_run_folder_is_named(cluster):
    out = cluster.hidden / "new" / "run"  # the head sees this folder; the second node sees an empty tmpfs there
    proc = subprocess.run(_demo(out, "--quiet", "--executor", "ray", "--ray-address", cluster.address),
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert_user_error(proc, f"the run folder {out} is not usable from Ray node second", "shares")
    assert list(cluster.hidden.iterdir()) == []  # the folders made for the probe are gone


def test_bad_input_inside_a_stage_reaches_the_cli_as_itself():
    """A stage's UserError comes back from its Ray task as that UserError (the CLI prints
    its one line), not as Ray's wrapper with a remote traceback."""
    import ray

    from ouroboros.executors.ray import _result

    def bad_input():  # nested: Ray ships it by value (its workers cannot import this test module)
        raise UserError("generator.hidden is too small for this data")

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024**2)
    try:
        with pytest.raises(UserError) as caught:
            _result(ray, ray.remote(bad_input).remote())
        assert type(caught.value) is UserError and str(caught.value) == "generator.hidden is too small for this data"
    finally:
        ray.shutdown()
