"""Send a finished run to the experiment trackers researchers already use.

Both are optional extras, imported only when asked for, and both read the run folder's own
files (results.csv, config.yaml, plots/, samples/, report.html), so what they show is what
the report shows:

- MLflow (``pip install 'ouroboros[mlflow]'``; ``--log-mlflow [URI]``, default a local
  ``file:`` store in ./mlruns, where ``mlflow ui`` looks): one MLflow run per ouroboros run,
  in the experiment named after the config's ``name`` (MLflow 3 keeps its file store in
  maintenance mode: ouroboros opts in with ``MLFLOW_ALLOW_FILE_STORE=true`` for a ``file:``
  URI, and ``mlflow ui`` needs the same; ``sqlite:///mlflow.db`` needs the full ``mlflow``
  package), with the resolved config as parameters
  (``loop.generations``, ...) and the plots, sample grids, report.html, results.csv and
  comparisons.csv as artifacts; under it one nested run per condition (a cell and a seed, e.g.
  ``guidance=1, seed 0``) with the condition's columns as parameters and every metric as a
  step series over generations (``accuracy/3`` named ``accuracy.3``).
- TensorBoard (``pip install 'ouroboros[tensorboard]'``; ``--log-tensorboard DIR``): one
  TensorBoard run (a sub-folder of DIR) per condition, every metric a scalar over
  generations; DIR itself gets the config and the findings as text and the plots as images,
  and report.html is copied into it.

A condition's rows without a generation (the real split scored as a yardstick) are logged at
step 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ouroboros.errors import UserError

DEFAULT_MLFLOW_URI = "file:mlruns"
_NOT_CONDITION = ("study", "metric", "value", "generation")


def _require(module: str, extra: str, option: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{option} needs {extra}, which is not installed here ({exc}); "
                        f"pip install 'ouroboros[{extra}]'") from None


def mlflow_uri(uri: str) -> str:
    """A ``file:`` store (relative paths from here) as an absolute file URI; others as given."""
    if uri.startswith("file:") and not uri.startswith("file://"):
        return Path(uri[len("file:"):]).resolve().as_uri()
    return uri


def check(mlflow: str | None, tensorboard: str | None) -> None:
    """Before a run writes anything: each exporter asked for is installed, its target usable."""
    if mlflow is not None:
        _require("mlflow", "mlflow", "--log-mlflow")
        uri = mlflow_uri(mlflow)
        if uri.startswith("file://") and Path(uri[len("file://"):]).is_file():
            raise UserError(f"--log-mlflow {mlflow}: a file is in the way of the store's folder; choose another path")
    if tensorboard is not None:
        _require("tensorboard", "tensorboard", "--log-tensorboard")
        if Path(tensorboard).exists() and not Path(tensorboard).is_dir():
            raise UserError(f"--log-tensorboard {tensorboard}: not a folder; choose another path")


def conditions(rows: list[dict]) -> dict[str, dict]:
    """results.csv's rows grouped by condition: {label: {"params": {...}, "series": {metric: [(step, value)]}}}.
    A condition is every column but the metric, its value and the generation; its label is
    the cell and the seed, with the other columns added where two conditions would share one."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple((k, v) for k, v in row.items() if k not in _NOT_CONDITION and v not in ("", None))
        groups.setdefault(key, []).append(row)
    base = {key: _label(dict(key), ("cell", "seed")) for key in groups}
    clash = {label for label in base.values() if list(base.values()).count(label) > 1}
    out = {}
    for key, members in groups.items():
        params = dict(key)
        label = base[key] if base[key] not in clash else _label(params, [k for k in params if k != "study"])
        series: dict[str, list] = {}
        for row in members:
            step = int(row["generation"]) if row.get("generation") not in ("", None) else 0
            series.setdefault(row["metric"], []).append((step, float(row["value"])))
        out[label] = {"params": params, "series": series}
    return out


def _label(params: dict, keys) -> str:
    parts = [params[k] if k == "cell" else f"{k} {params[k]}" for k in keys if k in params]
    return ", ".join(parts) or "run"


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        flat = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    text = value if isinstance(value, str) else json.dumps(value)
    return {prefix: text}


def _key(name: str) -> str:
    """MLflow's names allow letters, digits and `_-. /:`; anything else becomes `_`."""
    return re.sub(r"[^\w.\- /:]", "_", name)


def metric_key(metric: str) -> str:
    """A metric's MLflow name: `accuracy/3` is `accuracy.3`, as a file store cannot hold both
    `accuracy` and `accuracy/3` (one would be a file, the other a folder of that name)."""
    return _key(metric.replace("/", "."))


def _folder(label: str) -> str:
    """A condition's label as one path component (a variant's name is user text)."""
    name = re.sub(r"[^\w.=+-]+", "_", label).strip("._") or "run"
    return name[:120]


def _artifacts(run_dir: Path) -> list[Path]:
    files = [run_dir / n for n in ("report.html", "results.csv", "comparisons.csv", "config.yaml", "tables.md")]
    files = [f for f in files if f.is_file() and not f.is_symlink()]
    for folder in ("plots", "samples"):
        files += sorted(p for p in (run_dir / folder).rglob("*.png") if p.is_file() and not p.is_symlink())
    return files


def log_mlflow(run, uri: str = DEFAULT_MLFLOW_URI) -> str:
    """Log `run` (an ``ouroboros.api.Run``) to the MLflow tracking store at `uri`; returns
    the MLflow run id of the parent run."""
    _require("mlflow", "mlflow", "--log-mlflow")
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = mlflow_uri(uri)
    if uri.startswith("file:"):  # MLflow 3 keeps its file store only for those who say they want it
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    name = run.config.name
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found is not None else client.create_experiment(name)
    tags = {"ouroboros.run_dir": str(run.path.resolve()), "ouroboros.study": run.config.study}
    parent = client.create_run(experiment, run_name=run.label or name, tags=tags).info.run_id
    params = [Param(_key(k), v[:6000]) for k, v in _flatten(run.config.to_dict()).items()]
    for i in range(0, len(params), 100):
        client.log_batch(parent, params=params[i:i + 100])
    for path in _artifacts(run.path):
        folder = path.parent.relative_to(run.path).as_posix()
        client.log_artifact(parent, str(path), None if folder == "." else folder)
    for label, condition in conditions(run.rows).items():
        child_id = client.create_run(experiment, run_name=label, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_batch(child_id, params=[Param(_key(k), str(v)[:6000]) for k, v in condition["params"].items()])
        metrics = [Metric(metric_key(metric), value, 0, step)
                   for metric, points in condition["series"].items() for step, value in points]
        for i in range(0, len(metrics), 1000):
            client.log_batch(child_id, metrics=metrics[i:i + 1000])
        client.set_terminated(child_id)
    client.set_terminated(parent)
    return parent


def log_tensorboard(run, log_dir: str | Path) -> Path:
    """Write `run` as TensorBoard event files under `log_dir`; returns the folder."""
    _require("tensorboard", "tensorboard", "--log-tensorboard")
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    root = Path(log_dir)
    with SummaryWriter(str(root)) as writer:
        writer.add_text("config", "```yaml\n" + run.config_text + "\n```")
        findings = "\n".join(f"- {f.text}" for f in run.findings) if run.findings else "(none)"
        writer.add_text("findings", findings)
        for path in sorted((run.path / "plots").glob("*.png")):
            if path.is_file() and not path.is_symlink():
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                writer.add_image(f"plots/{path.stem}", pixels, 0, dataformats="HWC")
    report = run.path / "report.html"
    if report.is_file() and not report.is_symlink():
        shutil.copyfile(report, root / "report.html")
    for label, condition in conditions(run.rows).items():
        with SummaryWriter(str(root / _folder(label))) as writer:
            for metric, points in condition["series"].items():
                for step, value in sorted(points):
                    writer.add_scalar(metric, value, step)
    return root


def export(run, mlflow: str | None = None, tensorboard: str | None = None, quiet: bool = False) -> None:
    """What `ouroboros run/demo --log-mlflow/--log-tensorboard` do once the run is finished."""
    import sys

    if mlflow is not None:
        from mlflow.exceptions import MlflowException

        try:
            run_id = log_mlflow(run, mlflow)
        except MlflowException as exc:
            raise UserError(f"the run is in {run.path}, but logging it to MLflow at {mlflow} failed: {exc}") from None
        if not quiet:
            print(f"logged to MLflow at {mlflow_uri(mlflow)}: experiment {run.config.name!r}, run {run_id}",
                  file=sys.stderr)
    if tensorboard is not None:
        folder = log_tensorboard(run, tensorboard)
        if not quiet:
            print(f"logged to TensorBoard: tensorboard --logdir {folder}", file=sys.stderr)
