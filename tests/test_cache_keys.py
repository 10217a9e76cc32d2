"""Cache keys cover the code that makes an artifact, and each artifact records what made
it (torch, ouroboros, device); a resume on artifacts made elsewhere says so, once."""

import dataclasses
import json

import pytest
import torch

import ouroboros
import ouroboros.version
from conftest import TINY
from ouroboros import runner as runner_module
from ouroboros.cli import main
from ouroboros.io import write_json_atomic
from ouroboros.config import load_config
from ouroboros.runner import STAGE_KINDS, Runner, Stage, made_elsewhere_warning
from ouroboros import graph
from ouroboros.studies import loop
from ouroboros.studies.common import data_stage

MIX = {"mode": "subsample", "ratio": 0.5, "seed": 0, "allow_repeats": False}


def _graph(toy_set, cache):
    """data -> mix: two cheap stages, no training."""
    data = data_stage(toy_set, "train", cache)
    return data, Stage("mix", MIX, {"real": data}, label="half")


def _bump(monkeypatch, kind):
    bumped = dataclasses.replace(STAGE_KINDS[kind], version=STAGE_KINDS[kind].version + 1)
    monkeypatch.setitem(STAGE_KINDS, kind, bumped)


def _keys(toy_set, cache):
    """The keys of a freshly built data -> mix -> mix graph (a stage computes its key once)."""
    data, mix = _graph(toy_set, cache)
    return data.key, mix.key, Stage("mix", MIX, {"real": mix}).key


def test_a_stage_kind_version_changes_its_keys_and_those_downstream_only(tmp_path, toy_set, monkeypatch):
    keys = _keys(toy_set, tmp_path)
    assert _keys(toy_set, tmp_path) == keys  # a key is a pure function of the stage
    _bump(monkeypatch, "mix")
    data, mix, downstream = _keys(toy_set, tmp_path)
    assert data == keys[0]
    assert mix != keys[1] and downstream != keys[2]


def test_the_package_version_changes_every_key(tmp_path, toy_set, monkeypatch):
    before = _keys(toy_set, tmp_path)
    monkeypatch.setattr(ouroboros.version, "__version__", "999.0.0")
    after = _keys(toy_set, tmp_path)
    assert all(a != b for a, b in zip(after, before))


def test_an_upgrade_recomputes_instead_of_reusing(tmp_path, toy_set, monkeypatch):
    first = Runner(tmp_path, workers=1, progress=False)
    first.run([_graph(toy_set, tmp_path / "cache")[1]])
    assert [k for k, _, _ in first.timings] == ["mix"]
    again = Runner(tmp_path, workers=1, progress=False)
    again.run([_graph(toy_set, tmp_path / "cache")[1]])
    assert again.timings == []
    _bump(monkeypatch, "mix")
    bumped = Runner(tmp_path, workers=1, progress=False)
    bumped.run([_graph(toy_set, tmp_path / "cache")[1]])
    assert [k for k, _, _ in bumped.timings] == ["mix"]


def test_every_artifact_records_what_made_it(tmp_path, toy_set):
    cache = tmp_path / "cache"
    data, mix = _graph(toy_set, cache)
    Runner(tmp_path, workers=1, progress=False).run([mix])
    for stage in (data, mix):  # the planner wrote the data artifact, the runner the mix
        assert stage.artifact(cache).exists()
        assert json.loads(stage.record(cache).read_text()) == {
            "torch": torch.__version__, "ouroboros": ouroboros.__version__, "device": "cpu"}


def _edit_records(cache, **changes):
    records = list((cache / ".made").rglob("*.json"))
    for path in records:
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return len(records)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_a_resume_on_artifacts_made_elsewhere_warns_once(tmp_path, capsys):
    overrides = TINY + ["loop.generations=1", "loop.seeds=[0]", "loop.guidance=[1.0]", "loop.samples_per_generation=50",
                        "generator.train_steps=10", "classifier.epochs=1"]
    demo = ["demo", "--out", str(tmp_path), "--quiet", *sum((["--set", s] for s in overrides), [])]
    assert main(demo) == 0
    assert capsys.readouterr().err == ""
    cache = tmp_path / "cache"
    artifacts = [p for d in cache.iterdir() if d.name != ".made" for p in d.iterdir() if not p.name.startswith(".")]
    records = {p.relative_to(cache / ".made").with_suffix("") for p in (cache / ".made").rglob("*.json")}
    assert records == {a.relative_to(cache).with_name(a.name.split(".")[0]) for a in artifacts}

    # A plain resume (same machine, same versions), straight through the runner: no plots.
    plan = loop.plan(load_config(None, overrides, base={"name": "demo"}), cache)
    resume = Runner(tmp_path, workers=1, progress=False)
    resume.run(plan.targets())
    assert resume.timings == [] and capsys.readouterr().err == ""

    n = _edit_records(cache, torch="2.12.0", device="cuda (NVIDIA H100 test)")
    assert main(demo) == 0
    (line,) = _warnings(capsys.readouterr().err)
    assert line.startswith(f"warning: {n} cached stages were made with torch 2.12.0 on cuda (NVIDIA H100 test); "
                           f"now torch {torch.__version__} on "), line


def _record(torch_version=None, device="cpu", version=None):
    return {"torch": torch_version or torch.__version__, "device": device,
            "ouroboros": version or ouroboros.__version__}


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runner_module, "gpu_name", lambda: "cuda (NVIDIA H200)")


def test_matching_records_give_no_warning(no_gpu):
    assert made_elsewhere_warning([]) is None
    assert made_elsewhere_warning([_record()] * 3) is None


def test_the_warning_names_what_differs(no_gpu):
    now = f"now torch {torch.__version__} on cpu"
    assert made_elsewhere_warning([_record("2.12.0", "cuda (NVIDIA H100)")] * 12 + [_record()]) == (
        f"warning: 12 cached stages were made with torch 2.12.0 on cuda (NVIDIA H100); {now}")
    # Same torch, but made on a GPU this machine lacks.
    assert made_elsewhere_warning([_record(device="cuda (NVIDIA H100)")]) == (
        f"warning: 1 cached stage was made with torch {torch.__version__} on cuda (NVIDIA H100); {now}")
    # Several origins: the most common first; another ouroboros named only where it differs.
    assert made_elsewhere_warning([_record("2.11.0")] + [_record("2.12.0")] * 2 + [_record(version="0.0.1")]) == (
        f"warning: 2 cached stages were made with torch 2.12.0 on cpu, 1 with torch 2.11.0 on cpu, "
        f"1 with ouroboros 0.0.1, torch {torch.__version__} on cpu; {now}")


def test_on_a_gpu_machine_only_another_gpu_is_a_different_device(gpu):
    assert made_elsewhere_warning([_record(device="cuda (NVIDIA H200)"), _record(device="cpu")]) is None
    assert made_elsewhere_warning([_record(device="cuda (NVIDIA H100)")]) == (
        f"warning: 1 cached stage was made with torch {torch.__version__} on cuda (NVIDIA H100); "
        f"now torch {torch.__version__} on cuda (NVIDIA H200)")


def test_the_record_names_the_gpu_only_when_the_stage_allocated_on_it(tmp_path, monkeypatch):
    """Stages pick their own device; the runner tells from CUDA allocations (faked here)."""
    allocations = [0]

    def stage(params, deps, out):
        allocations[0] += params["gpu_allocations"]
        write_json_atomic(out, {})

    monkeypatch.setitem(STAGE_KINDS, "probe", runner_module.StageKind(".json", stage, 1))
    monkeypatch.setattr(graph, "_cuda_allocations", lambda: allocations[0])
    monkeypatch.setattr(graph, "gpu_name", lambda: "cuda (Fake GPU)")
    on_gpu, on_cpu = Stage("probe", {"gpu_allocations": 3}), Stage("probe", {"gpu_allocations": 0})
    Runner(tmp_path, workers=1, progress=False).run([on_gpu, on_cpu])
    assert json.loads(on_gpu.record(tmp_path / "cache").read_text())["device"] == "cuda (Fake GPU)"
    assert json.loads(on_cpu.record(tmp_path / "cache").read_text())["device"] == "cpu"
