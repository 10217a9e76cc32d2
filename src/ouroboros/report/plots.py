"""Plots drawn from results.csv: each metric against generation, one line per guidance
(or per condition, the ``cell`` column, for a grid of loop variants).

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


def _series(rows: list[dict], metric: str, by: str = "guidance") -> dict[str, dict[int, list[float]]]:
    """line (the value of column `by`) -> generation -> the values over seeds, in the
    order lines first appear."""
    out = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["metric"] == metric and r["cell"] != "reference":
            out[r[by]][int(r["generation"])].append(float(r["value"]))
    return out


def _lines(series: dict, by: str) -> list[tuple[str, str]]:
    """(key, legend label) of each line: guidance descending as "w = 1", or cells as listed."""
    if by == "guidance":
        return [(g, f"w = {float(g):g}") for g in sorted(series, key=lambda g: -float(g))]
    return [(c, c) for c in series]


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_metric(rows: list[dict], metric: str, path: Path, title: str = "", by: str = "guidance") -> Path:
    plt = _pyplot()

    series = _series(rows, metric, by)
    many = len(series) > 6
    fig, ax = plt.subplots(figsize=(7.6 if many else 5.2, 3.6))
    colors = plt.get_cmap("tab20" if many else "tab10")
    for i, (key, label) in enumerate(_lines(series, by)):
        gens = sorted(series[key])
        vals = [np.asarray(series[key][g]) for g in gens]
        mean = np.array([v.mean() for v in vals])
        ax.plot(gens, mean, marker="o", ms=3, label=label, color=colors(i % colors.N))
        ax.fill_between(gens, [v.min() for v in vals], [v.max() for v in vals], alpha=0.2)
    ref = [float(r["value"]) for r in rows if r["metric"] == metric and r["cell"] == "reference"]
    if ref:
        ax.axhline(ref[0], color="k", ls="--", lw=1, label="real test split")
    ax.set_xlabel("generation")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(title or LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path


def _panels(rows: list[dict], by: str, plt, height: float = 3.4):
    """One axis per line of `_lines` (a guidance or a cell), wrapped at 4 per row."""
    keys = _lines({r[by]: None for r in rows if r["cell"] != "reference"}, by)
    ncols = min(4, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, height * nrows), sharey=True, squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    return fig, axes, list(zip(keys, axes.flat))


def plot_class_accuracy(rows: list[dict], path: Path, by: str = "guidance") -> Path:
    """One panel per guidance (or cell); one line per class (mean over seeds)."""
    plt = _pyplot()

    classes = sorted({r["metric"].split("/", 1)[1] for r in rows if r["metric"].startswith("accuracy/")})
    fig, axes, panels = _panels(rows, by, plt)
    cmap = plt.get_cmap("tab10")
    for (key, label), ax in panels:
        sub = [r for r in rows if r[by] == key]
        for i, name in enumerate(classes):
            series = _series(sub, f"accuracy/{name}", by).get(key, {})
            gens = sorted(series)
            ax.plot(gens, [np.mean(series[g]) for g in gens], color=cmap(i % 10), lw=1.2, label=name)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("per-class accuracy")
    axes[0][-1].legend(fontsize=7, title="class", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _save(fig, path)
    plt.close(fig)
    return path


def plot_makeup(rows: list[dict], path: Path, by: str = "guidance") -> Path:
    """What each generation trained on: one panel per guidance (or cell), the shares of
    real images and of each earlier generation's output stacked (mean over seeds, from
    the provenance rows train_real_share and train_share_gen<k>), with the training
    set's size on a second axis."""
    plt = _pyplot()

    parts = ["train_real_share"] + sorted({r["metric"] for r in rows if r["metric"].startswith("train_share_gen")},
                                          key=lambda m: int(m.removeprefix("train_share_gen")))
    fig, axes, panels = _panels(rows, by, plt)
    cmap = plt.get_cmap("viridis")
    for (key, label), ax in panels:
        sub = [r for r in rows if r[by] == key]
        gens = sorted({int(r["generation"]) for r in sub if r["cell"] != "reference"})
        shares = np.array([[np.mean([float(r["value"]) for r in sub if r["metric"] == m
                                     and int(r["generation"]) == g] or [0.0]) for g in gens] for m in parts])
        colors = ["0.55"] + [cmap(k / max(1, len(parts) - 2)) for k in range(len(parts) - 1)]
        names = ["real"] + [f"gen {m.removeprefix('train_share_gen')}" for m in parts[1:]]
        ax.stackplot(gens, shares, colors=colors, labels=names, alpha=0.9)
        size = _series(sub, "train_size", by).get(key, {})
        twin = ax.twinx()
        twin.plot(sorted(size), [np.mean(size[g]) for g in sorted(size)], color="k", ls="--", lw=1, label="size")
        twin.set_ylim(bottom=0)
        twin.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("generation")
    for row in axes:
        row[0].set_ylabel("share of the training set")
    handles, names = panels[0][1].get_legend_handles_labels()
    fig.legend(handles + [plt.Line2D([], [], color="k", ls="--")], names + ["size (right axis)"], fontsize=7,
               loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.tight_layout()
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
