"""--log-mlflow and --log-tensorboard (`ouroboros.exporters`): a tiny run logged with the real
libraries into a temporary folder, then read back with their own readers (MLflow's client,
TensorBoard's EventAccumulator) and compared with the run's results.csv; an exporter that is
not installed, or a target in the way, is one error line before anything is written."""

import csv
import sys
import types

import pytest
from conftest import assert_user_error

from ouroboros import cli

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

TINY_GAUSSIAN = ["loop.generations=3", "loop.seeds=[0,1]", "loop.samples_per_generation=120", "classifier.epochs=1",
                 "executor.workers=1"]


def _main(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One tiny run of the Gaussian loop, logged to both trackers."""
    root = tmp_path_factory.mktemp("exporters")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    args = ["run", "loop-digits-gaussian", "--out", root / "run", "--quiet",
            "--log-mlflow", f"file:{root / 'mlruns'}", "--log-tensorboard", root / "tb"]
    for item in TINY_GAUSSIAN:
        args += ["--set", item]
    try:
        assert cli.main([str(a) for a in args]) == 0
    finally:
        mp.undo()
    with open(root / "run" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return root, rows


def _series(rows, cell, seed, metric):
    return sorted((int(r["generation"]), float(r["value"])) for r in rows
                  if r["cell"] == cell and r["seed"] == seed and r["metric"] == metric and r["generation"] != "")


def test_mlflow_gets_the_config_every_metric_per_condition_and_the_artifacts(logged, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    root, rows = logged
    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("loop-digits-gaussian")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1
    params = parents[0].data.params
    assert params["loop.generations"] == "3" and params["loop.seeds"] == "[0, 1]"
    assert params["study"] == "loop" and "generator.train_steps" in params

    conditions = {(r["cell"], r["seed"]) for r in rows}
    assert len(children) == len(conditions)
    cell = next(c for c, _ in sorted(conditions) if c != "reference")
    child = next(r for r in children if r.data.params.get("cell") == cell and r.data.params.get("seed") == "1")
    for metric in ("accuracy", "recall", "fid", "train_size"):
        history = client.get_metric_history(child.info.run_id, metric)
        assert sorted((m.step, m.value) for m in history) == _series(rows, cell, "1", metric)
        assert len(history) == 3  # generations 0, 1, 2
    per_class = client.get_metric_history(child.info.run_id, "accuracy.3")  # accuracy/3
    assert sorted((m.step, m.value) for m in per_class) == _series(rows, cell, "1", "accuracy/3")
    logged_metrics = set(child.data.metrics)
    expected = {r["metric"].replace("/", ".") for r in rows if (r["cell"], r["seed"]) == (cell, "1")}
    assert logged_metrics == expected  # every metric, none invented

    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"report.html", "results.csv", "config.yaml", "plots", "samples"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}
    assert "plots/accuracy.png" in plots


def test_tensorboard_gets_every_metric_per_condition_the_config_and_the_plots(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, rows = logged
    cell = sorted({r["cell"] for r in rows} - {"reference"})[0]
    folders = sorted(p.name for p in (root / "tb").iterdir() if p.is_dir())
    assert len(folders) == len({(r["cell"], r["seed"]) for r in rows})
    folder = next(p for p in folders if p.startswith(cell.replace(" ", "_")) and p.endswith("seed_0"))
    acc = EventAccumulator(str(root / "tb" / folder), size_guidance={"scalars": 0}).Reload()
    assert set(acc.Tags()["scalars"]) == {r["metric"] for r in rows if (r["cell"], r["seed"]) == (cell, "0")}
    for metric in ("accuracy", "coverage", "accuracy/3"):
        want = _series(rows, cell, "0", metric)
        assert [e.step for e in acc.Scalars(metric)] == [step for step, _ in want]
        assert [e.value for e in acc.Scalars(metric)] == pytest.approx([v for _, v in want], rel=1e-6)  # float32

    top = EventAccumulator(str(root / "tb"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert "plots/accuracy" in top.Tags()["images"]
    config_text = top.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "generations: 3" in config_text
    assert (root / "tb" / "report.html").read_bytes() == (root / "run" / "report.html").read_bytes()


@pytest.mark.parametrize("option, module, extra", [("--log-mlflow", "mlflow", "mlflow"),
                                                   ("--log-tensorboard", "tensorboard", "tensorboard")])
def test_an_exporter_that_is_not_installed_is_one_error_line(tmp_path, capsys, monkeypatch, option, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import mlflow` raises ImportError
    value = [f"file:{tmp_path / 'mlruns'}"] if option == "--log-mlflow" else [tmp_path / "tb"]
    proc = _main(capsys, "run", "loop-digits-gaussian", "--out", tmp_path / "run", option, *value)
    assert_user_error(proc, option, f"ouroboros[{extra}]")
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


def test_a_file_in_the_way_of_a_target_is_one_error_line(tmp_path, capsys):
    (tmp_path / "tb").write_text("")
    proc = _main(capsys, "run", "loop-digits-gaussian", "--out", tmp_path / "run", "--log-tensorboard",
                 tmp_path / "tb")
    assert_user_error(proc, "--log-tensorboard", "not a folder")
    (tmp_path / "store").write_text("")
    proc = _main(capsys, "run", "loop-digits-gaussian", "--out", tmp_path / "run", "--log-mlflow",
                 f"file:{tmp_path / 'store'}")
    assert_user_error(proc, "--log-mlflow", "in the way")
    assert not (tmp_path / "run").exists()


def test_conditions_get_distinct_labels_when_cell_and_seed_do_not_tell_them_apart():
    from ouroboros.exporters import conditions

    rows = [{"study": "s", "cell": "a", "seed": "0", "generation": "0", "metric": "m", "value": "1", "scored_on": x}
            for x in ("test", "train")]
    got = conditions(rows)
    assert sorted(got) == ["a, seed 0, scored_on test", "a, seed 0, scored_on train"]
    assert got["a, seed 0, scored_on train"]["series"] == {"m": [(0, 1.0)]}
