"""Plots drawn from results.csv: each metric against generation, one line per guidance.

Lines are the mean over seeds; the band is the min-max spread over seeds. The real
test split scored by the same classifier is a dashed reference line.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ouroboros.io import atomic_path

LABELS = {
    "accuracy": "classifier accuracy",
    "cross_entropy": "cross-entropy (nats)",
    "fid": "FID (classifier features)",
    "precision": "precision (Naeem, k=5)",
    "recall": "recall (Naeem, k=5)",
    "density": "density (Naeem, k=5)",
    "coverage": "coverage (Naeem, k=5)",
}


def _series(rows: list[dict], metric: str) -> dict[str, dict[int, list[float]]]:
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["metric"] == metric and r["cell"] != "reference":
            by[r["guidance"]][int(r["generation"])].append(float(r["value"]))
    return by


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_metric(rows: list[dict], metric: str, path: Path, title: str = "") -> Path:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    series = _series(rows, metric)
    for guidance in sorted(series, key=lambda g: -float(g)):
        gens = sorted(series[guidance])
        vals = [np.asarray(series[guidance][g]) for g in gens]
        mean = np.array([v.mean() for v in vals])
        ax.plot(gens, mean, marker="o", ms=3, label=f"w = {float(guidance):g}")
        ax.fill_between(gens, [v.min() for v in vals], [v.max() for v in vals], alpha=0.2)
    ref = [float(r["value"]) for r in rows if r["metric"] == metric and r["cell"] == "reference"]
    if ref:
        ax.axhline(ref[0], color="k", ls="--", lw=1, label="real test split")
    ax.set_xlabel("generation")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(title or LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_class_accuracy(rows: list[dict], path: Path) -> Path:
    """One panel per guidance; one line per class (mean over seeds)."""
    plt = _pyplot()

    classes = sorted({r["metric"].split("/", 1)[1] for r in rows if r["metric"].startswith("accuracy/")})
    guidances = sorted({r["guidance"] for r in rows if r["cell"] != "reference"}, key=lambda g: -float(g))
    fig, axes = plt.subplots(1, len(guidances), figsize=(4 * len(guidances), 3.4), sharey=True, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, guidance in zip(axes[0], guidances):
        sub = [r for r in rows if r["guidance"] == guidance]
        for i, name in enumerate(classes):
            series = _series(sub, f"accuracy/{name}").get(guidance, {})
            gens = sorted(series)
            ax.plot(gens, [np.mean(series[g]) for g in gens], color=cmap(i % 10), lw=1.2, label=name)
        ax.set_title(f"w = {float(guidance):g}")
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("per-class accuracy")
    axes[0][-1].legend(fontsize=7, title="class", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _save(fig, path)
    plt.close(fig)
    return path


def plot_spectra(spectra: dict[str, np.ndarray], path: Path) -> Path:
    """Mean ± std of radially averaged log power spectra, one line per image set."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, spec in spectra.items():
        r = np.arange(1, spec.shape[1] + 1)
        mean, std = spec.mean(axis=0), spec.std(axis=0)
        ax.plot(r, mean, marker="o", ms=3, label=name)
        ax.fill_between(r, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("spatial frequency (radius, cycles per image)")
    ax.set_ylabel("log10 power")
    ax.set_title("radially averaged power spectra (mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_confusions(matrices: dict[str, np.ndarray], labels: list[str], path: Path) -> Path:
    """Row-normalised confusion matrices side by side (rows: true, columns: predicted)."""
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(matrices), figsize=(4 * len(matrices), 3.8), squeeze=False)
    for ax, (title, m) in zip(axes[0], matrices.items()):
        norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        im = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(title, fontsize=9)
    axes[0][0].set_ylabel("true")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    _save(fig, path)
    plt.close(fig)
    return path


def sweep_series(rows: list[dict], column: str, metric: str, generation: int | None = None) -> dict:
    """The points of a sweep plot: for each guidance, sorted by the swept setting `column`
    (e.g. ``curation.recall``), the Student-t 95% interval over seeds
    (ouroboros.report.stats.t_interval) of `metric` at `generation` (default: each
    chain's last generation). Rows without a value in `column` are left out."""
    from ouroboros.report.stats import t_interval

    sel = [r for r in rows if r["metric"] == metric and r["cell"] != "reference" and r.get(column, "") != ""]
    if generation is None and sel:
        generation = max(int(r["generation"]) for r in sel)
    by = defaultdict(lambda: defaultdict(list))
    for r in sel:
        if int(r["generation"]) == generation:
            by[r.get("guidance", "")][float(r[column])].append(float(r["value"]))
    return {w: [(x, t_interval(v)) for x, v in sorted(xs.items())] for w, xs in by.items()}


def plot_sweep(rows: list[dict], column: str, metric: str, path: Path, generation: int | None = None,
               title: str = "") -> Path:
    """`metric` at one generation (default: the last) against the swept setting `column`
    (e.g. ``curation.recall``: how good must detection be to stop the collapse), one
    line per guidance: the mean over seeds with its 95% interval (a band; no band with
    one seed). The real test split scored by the same classifier is a dashed line."""
    plt = _pyplot()

    series = sweep_series(rows, column, metric, generation)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for w in sorted(series, key=lambda g: -float(g) if g != "" else 0.0):
        xs = [x for x, _ in series[w]]
        ax.plot(xs, [i.mean for _, i in series[w]], marker="o", ms=3, label=f"w = {float(w):g}" if w != "" else None)
        if all(i.n > 1 for _, i in series[w]):
            ax.fill_between(xs, [i.lo for _, i in series[w]], [i.hi for _, i in series[w]], alpha=0.2)
    ref = [float(r["value"]) for r in rows if r["metric"] == metric and r["cell"] == "reference"]
    if ref:
        ax.axhline(ref[0], color="k", ls="--", lw=1, label="real test split")
    gen = generation if generation is not None else max(
        (int(r["generation"]) for r in rows if r["metric"] == metric and r.get(column, "") != ""), default=0)
    ax.set_xlabel(column)
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(title or f"{LABELS.get(metric, metric)} at generation {gen} (mean, 95% interval over seeds)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path
