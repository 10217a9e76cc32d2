"""Whole-run bounds, checks before the first write, a full
disk as one line, Ray address errors. Each test names the guard it catches."""

import errno
import os
import socket
import subprocess
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error
from ouroboros import cli, commands
from ouroboros.bounds import check_loop_size, check_stages, check_text2image, loop_stages
from ouroboros.config import load_config
from ouroboros.errors import UserError
from ouroboros.executors.address import check_address, check_reachable
from ouroboros.io import atomic_path
from ouroboros.preflight import check_log_file
from ouroboros.runner import STAGE_KINDS, Runner, Stage, StageKind
from ouroboros.write_errors import as_os_error

DEMO = {"name": "demo"}


def _main(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


# -- whole-run bounds -----------------------------------------------------------------------

HUGE = ["loop.generations=9", f"loop.seeds={list(range(30))}", f"loop.guidance={[i / 10 for i in range(40)]}"]


def test_a_plan_of_too_many_stages_is_refused_naming_its_factors(capsys, tmp_path):
    with pytest.raises(UserError, match="limits.max_stages"):  # in process first: a missing guard fails fast
        load_config(None, HUGE, base=DEMO)
    out = tmp_path / "run"
    proc = _main(capsys, "demo", "--out", out, *sum((["--set", s] for s in HUGE), []))
    assert_user_error(proc, "loop.generations (9) x loop.seeds (30 values) x loop.guidance (40 values)",
                      "stages", "limits.max_stages (20,000)", "--set limits.max_stages=")
    assert not out.exists()


def test_a_raised_limit_lets_the_plan_through():
    config = load_config(None, [*HUGE, "limits.max_stages=100000"], base=DEMO)
    assert loop_stages(config.loop)[0] > 20_000
    check_stages(config, *loop_stages(config.loop))
    with pytest.raises(UserError, match="limits.max_stages"):
        check_stages(load_config(None, [], base=DEMO), *loop_stages(config.loop))


@pytest.mark.parametrize("bad, message", [("limits.max_stages=0", r"limits.max_stages must lie in"),
                                          ("limits.max_memory_gib=0", r"limits.max_memory_gib must lie in"),
                                          ("limits.max_disk_gib=-1", r"limits.max_disk_gib must lie in"),
                                          ("limits.max_files=3", r"unknown key 'limits.max_files'")])
def test_the_limits_section_is_validated(bad, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [bad], base=DEMO)


def test_the_estimate_bounds_the_plan_it_replaces(tmp_path):
    from ouroboros.studies import loop

    for sets in ([], ["loop.curation.kind=detector"], ["loop.scenario=fresh", "loop.real_fraction=0.1",
                                                       "loop.samples_per_generation=50"]):
        config = load_config(None, ["loop.generations=3", *sets], base=DEMO)
        seen: dict = {}

        def visit(stage):
            if stage.key not in seen:
                seen[stage.key] = stage
                for dep in stage.deps.values():
                    visit(dep)

        for target in loop.plan(config, tmp_path / "cache").targets():
            visit(target)
        estimate = loop_stages(config.loop)[0]
        assert len(seen) <= estimate <= 1.2 * len(seen) + 4, (sets, len(seen), estimate)


def test_memory_of_the_largest_stage_is_bounded():
    config = load_config(None, ["loop.samples_per_generation=1000000", "loop.curation.kind=reward",
                                "loop.curation.choices=100"], base=DEMO)
    with pytest.raises(UserError, match=r"loop.samples_per_generation \(1000000\) x loop.curation.choices \(100\) x "
                                        r"3x32x32 images.* GiB of images held at once.*limits.max_memory_gib"):
        check_loop_size(config, 1000, (3, 32, 32))
    config.limits.max_memory_gib = 10_000.0
    config.limits.max_disk_gib = 100_000.0
    check_loop_size(config, 1000, (3, 32, 32))


def test_bytes_written_to_the_cache_are_bounded():
    config = load_config(None, ["loop.generations=100", "loop.seeds=[0,1,2,3]", "loop.samples_per_generation=50000",
                                "loop.guidance=[1.0,0.1,0.0]"], base=DEMO)
    with pytest.raises(UserError, match=r"loop.generations \(100\) x loop.seeds \(4 values\) x loop.guidance "
                                        r"\(3 values\).*written to the cache.*limits.max_disk_gib \(50"):
        check_loop_size(config, 1000, (3, 32, 32))


def test_a_run_past_the_memory_limit_writes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    proc = _main(capsys, "demo", "--out", out, "--set", "loop.samples_per_generation=1000000",
                 "--set", "loop.curation.kind=reward", "--set", "loop.curation.choices=1000")
    assert_user_error(proc, "loop.curation.choices (1000)", "limits.max_memory_gib")
    assert not out.exists()


def test_text_to_image_bounds_classes_times_per_class():
    groups = [types.SimpleNamespace(id=str(i), names=[f"c{i}"]) for i in range(1000)]
    with pytest.raises(UserError, match=r"1000 classes x --per-class \(1000000\) = 1,000,000,000 images.*--max-images"):
        check_text2image(groups, "simple", 1_000_000, 512)
    with pytest.raises(UserError, match=r"--size 512 x 512 x 3 bytes.*--max-disk-gib"):
        check_text2image(groups, "simple", 1500, 512)
    assert check_text2image(groups, "simple", 1500, 512, max_disk_gib=2000) == 1_500_000


def test_text_to_image_refuses_before_the_work_list(capsys, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"class {i}" for i in range(1000)) + "\n")
    out = tmp_path / "out"
    proc = _main(capsys, "generate", "text2image", "--model", tmp_path / "nomodel", "--classes", classes,
                 "--per-class", 1_000_000, "--out", out)
    assert_user_error(proc, "--per-class (1000000)", "--max-images")
    assert not out.exists()


# -- checked before the first write -----------------------------------------------------------


@pytest.mark.parametrize("where", ["/dev/full", "RUN", "RUN/results.csv", "/proc/self/status", "/sys/kernel/x",
                                   "FOLDER", "FIFO", "LINK", "MISSING/x.jsonl"])
def test_log_json_is_checked_before_anything_is_written(capsys, tmp_path, where):
    out = tmp_path / "run"
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(out / "events.jsonl")
    path = {"RUN": str(out), "RUN/results.csv": str(out / "results.csv"), "FOLDER": str(tmp_path / "folder"),
            "FIFO": str(tmp_path / "fifo"), "LINK": str(tmp_path / "link"),
            "MISSING/x.jsonl": str(tmp_path / "missing" / "x.jsonl")}.get(where, where)
    with pytest.raises(UserError, match="--log-json"):  # in process first: a missing guard fails fast
        check_log_file(path, out)
    proc = _main(capsys, "demo", "--out", out, "--log-json", path)
    assert_user_error(proc, "--log-json")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder", "link"]


def test_an_unconditional_family_under_guidance_is_refused():
    family = "loop.generators=[{family: diffusion, share: 1, settings: {conditional: false}}]"
    with pytest.raises(UserError, match=r"loop.generators\[0\].settings sets conditional: false.*loop.guidance 1"):
        load_config(None, [family], base=DEMO)
    load_config(None, [family, "loop.guidance=[0]"], base=DEMO)
    with pytest.raises(UserError, match=r"loop.generators\[0\].bias 2"):
        load_config(None, [family.replace("}}]", "}, bias: 2}]"), "loop.guidance=[0]"], base=DEMO)


@pytest.mark.parametrize("sets, message", [
    (["loop.samples_per_generation=1"], r"loop.samples_per_generation is 1.*at least k \+ 1 = 6"),
    (["loop.samples_per_generation=5"], r"samples_per_generation is 5"),
    (["loop.samples_per_generation=100",
      "loop.generators=[{family: diffusion, share: 0.97}, {family: gaussian, share: 0.03}]"],
     r"loop.generators\[1\] \(share 0.03\) makes 3 of the 100"),
    (["loop.samples_per_generation=20", "loop.curation.kind=watermark", "loop.curation.recall=0.99"],
     r"keeps about 0.2 of the 20 images"),
])
def test_the_metrics_needs_are_checked_against_the_loop(sets, message):
    with pytest.raises(UserError, match=message):
        load_config(None, sets, base=DEMO)
    load_config(None, ["loop.samples_per_generation=6"], base=DEMO)


def test_a_real_split_too_small_for_the_metrics_is_refused_before_the_run_folder(capsys, tmp_path):
    from ouroboros.studies import loop

    config = load_config(None, [], base=DEMO)
    with pytest.raises(UserError, match=r"the real test split has 3 images.*k \+ 1 = 6"):
        loop.check_families(config, *(loop.load_splits(config)[0].subset(np.arange(n)) for n in (100, 3)))


# -- a full disk is one line -----------------------------------------------------------------------


def _safetensor_error():
    from safetensors import SafetensorError

    return SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_library_write_errors_become_os_errors_naming_the_path():
    named = as_os_error(_safetensor_error(), "/run/cache/fit/abc")
    assert (named.errno, named.filename) == (errno.ENOSPC, "/run/cache/fit/abc")
    numpy_like = OSError(errno.ENOSPC, "No space left on device")  # numpy's savez: no file name
    assert as_os_error(numpy_like, "/x").filename == "/x"
    assert as_os_error(ValueError("no"), "/x") is None


def test_a_write_error_in_the_driver_names_the_path(tmp_path):
    """Plots and grids are written in the driver process through atomic_path: numpy's and
    matplotlib's path-less OSErrors and safetensors' errors come out naming the file."""
    for error in (OSError(errno.ENOSPC, "No space left on device"), _safetensor_error()):
        with pytest.raises(OSError) as caught, atomic_path(tmp_path / "plot.png"):
            raise error
        assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(tmp_path / "plot.png"))
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


@pytest.fixture
def failing_kind():
    """A stage kind `t_write` that writes its artifact, except where params ask it to fail."""
    def fn(params, deps, out):
        if params.get("fail") == "outside":  # a library writing on its own, not through atomic_path
            raise OSError(errno.ENOSPC, "No space left on device")
        with atomic_path(out) as tmp:
            tmp.write_text("ok")
            if params.get("fail") == "safetensors":
                raise _safetensor_error()
            if params.get("fail"):
                raise OSError(getattr(errno, params["fail"]), os.strerror(getattr(errno, params["fail"])))

    STAGE_KINDS["t_write"] = StageKind(".txt", fn, 1)
    yield
    del STAGE_KINDS["t_write"]


@pytest.mark.parametrize("fail", ["safetensors", "ENOSPC", "EDQUOT", "EROFS", "EACCES", "outside"])
def test_a_write_error_in_a_stage_is_one_line_and_the_rerun_resumes(capsys, tmp_path, monkeypatch, failing_kind,
                                                                     fail):
    first = Stage("t_write", {"n": 1})
    second = Stage("t_write", {"n": 2, "fail": fail}, {"first": first})
    run_dir = tmp_path / "run"

    def study(config, out, args):
        Runner(run_dir, workers=1, progress=False).run([second])
        return 0

    monkeypatch.setattr(commands, "_run_study", study)
    proc = _main(capsys, "demo", "--out", run_dir)
    reason = {"safetensors": "No space left on device", "ENOSPC": "free some space and run again (finished stages "
              "are cached)", "EDQUOT": "free some space", "EROFS": "read-only", "EACCES": "permissions",
              "outside": "no space left on device"}[fail]
    assert_user_error(proc, str(second.artifact(run_dir / "cache")), reason)
    assert first.artifact(run_dir / "cache").read_text() == "ok"
    assert not second.artifact(run_dir / "cache").exists()
    events = []
    fixed = Stage("t_write", {"n": 2}, {"first": first})
    Runner(run_dir, workers=1, progress=False, on_event=events.append).run([fixed])
    assert [e["event"] for e in events] == ["cached", "started", "finished"]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk_with_worker_processes(tmp_path):
    """A 16 MiB tmpfs (root only; skipped elsewhere): mix stages in 2 worker processes fill
    it; the error is an OSError ENOSPC naming a cache path, and after the disk grows the rerun
    finds the finished stages cached."""
    from ouroboros.data.imageset import ImageSet
    from ouroboros.studies.common import data_stage

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "16m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        rng = np.random.default_rng(0)
        sets = [ImageSet.create(rng.integers(0, 256, (1000, 3, 32, 32), dtype=np.uint8), np.arange(1000) % 10,
                                [str(c) for c in range(10)], source="real") for _ in range(2)]
        cache = disk / "run" / "cache"
        real, other = (data_stage(s, role, cache) for s, role in zip(sets, ("train", "other")))
        mixes = [Stage("mix", {"mode": "replace", "ratio": 0.5, "seed": i, "allow_repeats": False},
                       {"real": real, "other": other}) for i in range(5)]
        with pytest.raises(OSError) as caught:
            Runner(disk / "run", workers=2, progress=False).run(mixes)
        assert caught.value.errno == errno.ENOSPC and str(cache) in caught.value.filename
        done = [m for m in mixes if m.artifact(cache).exists()]
        assert done and len(done) < len(mixes)
        assert subprocess.run(["mount", "-o", "remount,size=64m", str(disk)]).returncode == 0
        events = []
        Runner(disk / "run", workers=1, progress=False, on_event=events.append).run(mixes)
        cached = {e["key"] for e in events if e["event"] == "cached"}
        assert {m.key for m in done} <= cached
        assert all(m.artifact(cache).exists() for m in mixes)
    finally:
        subprocess.run(["umount", str(disk)])


# -- Ray addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["a..b:6379", "x" * 64 + ".com:1", ".:6379", "a b:6379", "x" * 254 + ":1",
                                     "ray://a..b:10001"])
def test_an_address_with_a_bad_label_is_one_line(address):
    with pytest.raises(UserError, match="executor.address must be auto, HOST:PORT"):
        check_address("executor.address", address)
    with pytest.raises(UserError, match="must be auto, HOST:PORT"):
        check_reachable(address)


def test_labels_of_63_characters_and_ip_addresses_pass():
    for address in ["x" * 63 + ".com:1", "10.0.0.1:6379", "[::1]:6379", "head-0.cluster.local:6379"]:
        assert check_address("a", address) == address


def _server(answer: bytes | None):
    """A local TCP server that accepts and answers `answer` (None: says nothing)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if answer is not None:
                conn.recv(100)
                conn.sendall(answer)
            threading.Timer(10, conn.close).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\x00"])
def test_an_endpoint_that_is_not_a_ray_head_is_named_so_quickly(answer):
    srv = _server(answer)
    try:
        start = time.monotonic()
        with pytest.raises(UserError, match="accepts connections but is not a Ray head"):
            check_reachable(f"127.0.0.1:{srv.getsockname()[1]}", handshake_timeout=1.0)
        assert time.monotonic() - start < 5
    finally:
        srv.close()


def test_an_http2_server_passes_the_probe():
    srv = _server(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64")  # SETTINGS, as gRPC answers
    try:
        check_reachable(f"127.0.0.1:{srv.getsockname()[1]}")
    finally:
        srv.close()


def test_the_cli_reports_a_non_ray_endpoint_in_one_line(capsys, tmp_path, monkeypatch):
    import ouroboros.executors.ray as ray_executor

    monkeypatch.setattr(ray_executor, "import_ray", lambda: None)
    srv = _server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        proc = _main(capsys, "demo", "--out", tmp_path / "run", "--executor", "ray", "--ray-address",
                     f"127.0.0.1:{srv.getsockname()[1]}")
    finally:
        srv.close()
    assert_user_error(proc, "is not a Ray head")
    assert not (tmp_path / "run").exists()
