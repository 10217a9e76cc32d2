"""Plots drawn from results.csv: each metric against generation, one line per condition.

A condition is a loop chain's ``cell`` (``guidance=1``, a scenario variant, ...), or
``run · cell`` when a report compares several runs. Lines are the mean over seeds; the
band is the 95% Student-t interval over seeds (`ouroboros.report.stats`), drawn within
the metric's range (`metric_range`), and absent where there is one seed. Generation 0
(the model trained on real data) is marked by a dotted vertical line, and the real test
split scored by the same classifier by a dashed horizontal one. One colour per condition, the same in every plot
of a report (`condition_colours`). Each plot is saved as PNG (screen) and SVG (papers).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ouroboros.io import atomic_path
from ouroboros.safepath import refuse_symlink

LABELS = {
    "accuracy": "classifier accuracy (fraction correct)",
    "cross_entropy": "cross-entropy (nats per image)",
    "fid": "FID (classifier features)",
    "precision": "precision (Naeem, k=5)",
    "recall": "recall (Naeem, k=5)",
    "density": "density (Naeem, k=5)",
    "coverage": "coverage (Naeem, k=5)",
    "class_entropy": "entropy of the training set's class shares (nats)",
    "tail_unreached": "real test images unreached (share beyond the real 95th-percentile NN distance)",
    "tail_mass": "model mass beyond the real 1% density contour",
    "core_mass": "model mass inside the real densest-1% contour",
}


GENERATION_LABEL = "generation (0 = trained on real data)"


def condition(row: dict) -> str:
    """The line a loop row belongs to: its run-qualified condition when a report set one,
    else its cell; a generator family's own rows (several families feeding one pool) are
    a line of their own, "<cell> · <family>"."""
    name = row.get("condition") or row["cell"]
    return f"{name} · {row['family']}" if row.get("family") else name


def conditions(rows: list[dict]) -> list[str]:
    """The loop conditions of `rows`, in order of first appearance (the config's order)."""
    return list(dict.fromkeys(condition(r) for r in rows if r["cell"] != "reference"))


def condition_colours(names: list[str]) -> dict[str, tuple]:
    """One colour per condition name, in the given order (tab10, tab20 beyond 10, evenly
    spaced hues of turbo beyond 20)."""
    from matplotlib import colormaps

    if len(names) > 20:  # a large grid: evenly spaced hues, so that no two lines share one
        cmap = colormaps["turbo"]
        return {name: cmap(0.05 + 0.9 * i / (len(names) - 1)) for i, name in enumerate(names)}
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def text(label) -> str:
    """A label from data (a condition, class, metric or run name) as plain text for
    matplotlib: every '$' escaped, so that mathtext never parses it (a class named
    ``$\\x$`` would crash the plot)."""
    return str(label).replace("$", r"\$")


def _series(rows: list[dict], metric: str) -> dict[str, dict[int, list[float]]]:
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["metric"] == metric and r["cell"] != "reference":
            by[condition(r)][int(r["generation"])].append(float(r["value"]))
    return by


class _Figures:
    """What the plots here use of pyplot, without pyplot: figures are made as
    `matplotlib.figure.Figure` and saved to files, so drawing a report never changes the
    backend of the process (a notebook keeps showing its own plots inline)."""

    @staticmethod
    def subplots(*args, figsize=None, **kw):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*args, **kw)

    @staticmethod
    def close(fig) -> None:
        pass

    @staticmethod
    def get_cmap(name: str):
        from matplotlib import colormaps

        return colormaps[name]

    @property
    def Line2D(self):  # noqa: N802  (pyplot's name)
        from matplotlib.lines import Line2D

        return Line2D


def _pyplot() -> _Figures:
    import matplotlib

    # SVG for papers: text kept as text (searchable, editable), ids from a fixed salt so the
    # same results give the same file.
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "ouroboros"})
    return _Figures()


def _save(fig, path: Path) -> None:
    """`path` as PNG, and beside it the same figure as SVG (no date in it, so the same
    results give the same file)."""
    path = Path(path)
    for p in (path.parent, path, path.with_suffix(".svg")):  # never written through a link
        refuse_symlink(p)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    with atomic_path(path.with_suffix(".svg")) as tmp:
        fig.savefig(tmp, format="svg", bbox_inches="tight", metadata={"Date": None})


def band(intervals: list, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of each 95% Student-t interval (`ouroboros.report.stats.Interval`) within
    the metric's range; NaN (no band there) where there is one seed."""
    from ouroboros.report.stats import metric_range

    within = metric_range(metric)
    lo = np.array([i.clipped(within)[0] if i.n > 1 else np.nan for i in intervals])
    hi = np.array([i.clipped(within)[1] if i.n > 1 else np.nan for i in intervals])
    return lo, hi


def plot_metric(rows: list[dict], metric: str, path: Path, title: str = "", colours: dict | None = None) -> Path:
    """`metric` against generation, one line per condition (see the module docstring)."""
    plt = _pyplot()
    many = len(_series(rows, metric)) > 6  # the legend goes beside the axes
    fig, ax = plt.subplots(figsize=(8.0 if many else 5.6, 3.8))
    draw_metric(ax, rows, metric, title, colours)
    _save(fig, path)
    return path


def draw_metric(ax, rows: list[dict], metric: str, title: str = "", colours: dict | None = None) -> None:
    """`plot_metric` on matplotlib Axes `ax` (what `Run.plot` draws)."""
    from ouroboros.report.stats import t_interval

    series = _series(rows, metric)
    many = len(series) > 6
    colours = colours or condition_colours(conditions(rows))
    for name in conditions(rows):
        if name not in series:
            continue
        gens = sorted(series[name])
        intervals = [t_interval(series[name][g]) for g in gens]
        lo, hi = band(intervals, metric)
        ax.plot(gens, [i.mean for i in intervals], marker="o", ms=3, color=colours[name], label=text(name))
        ax.fill_between(gens, lo, hi, color=colours[name], alpha=0.2, lw=0)
    refs = dict.fromkeys(float(r["value"]) for r in rows if r["metric"] == metric and r["cell"] == "reference")
    for i, ref in enumerate(refs):
        ax.axhline(ref, color="k", ls="--", lw=1, label="real test split" if i == 0 else None)
    if any(0 in s for s in series.values()):
        ax.axvline(0, color="0.4", ls=":", lw=1, label="generation 0 (trained on real)")
    ax.set_xlabel(GENERATION_LABEL)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(text(LABELS.get(metric, metric)))
    ax.set_title(text(title or LABELS.get(metric, metric)))
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(fontsize=8)


def _panels(rows: list[dict], plt, height: float = 3.4):
    """One axis per condition, wrapped at 4 per row; returns (fig, axes, [(condition, ax)])."""
    names = conditions(rows)
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, height * nrows), sharey=True, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    return fig, axes, list(zip(names, axes.flat))


def plot_class_accuracy(rows: list[dict], path: Path, metric: str = "accuracy",
                        ylabel: str = "per-class accuracy (fraction correct)") -> Path:
    """One panel per condition; one line per class (mean over seeds) of the per-class
    rows ``<metric>/<class>`` (accuracy; class_share: each class's share of the training set)."""
    plt = _pyplot()

    classes = sorted({r["metric"].split("/", 1)[1] for r in rows if r["metric"].startswith(f"{metric}/")})
    fig, axes, panels = _panels(rows, plt)
    cmap = plt.get_cmap("tab10")
    for cond, ax in panels:
        sub = [r for r in rows if r["cell"] != "reference" and condition(r) == cond]
        for i, name in enumerate(classes):
            series = _series(sub, f"{metric}/{name}").get(cond, {})
            gens = sorted(series)
            ax.plot(gens, [np.mean(series[g]) for g in gens], color=cmap(i % 10), lw=1.2, label=text(name))
        ax.set_title(text(cond), fontsize=9)
        ax.set_xlabel(GENERATION_LABEL)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel(text(ylabel))
    axes[0][-1].legend(fontsize=7, title="class", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _save(fig, path)
    plt.close(fig)
    return path


def plot_makeup(rows: list[dict], path: Path) -> Path:
    """What each generation trained on: one panel per condition, the shares of real
    images and of each earlier generation's output stacked (mean over seeds, from the
    provenance rows train_real_share and train_share_gen<k>), with the training set's
    size on a second axis."""
    plt = _pyplot()

    gens = {r["metric"] for r in rows if re.fullmatch(r"train_share_gen[0-9]+", r["metric"])}
    parts = ["train_real_share"] + sorted(gens, key=lambda m: int(m.removeprefix("train_share_gen")))
    fig, axes, panels = _panels(rows, plt)
    cmap = plt.get_cmap("viridis")
    for cond, ax in panels:
        sub = [r for r in rows if r["cell"] != "reference" and condition(r) == cond]
        gens = sorted({int(r["generation"]) for r in sub})
        shares = np.array([[np.mean([float(r["value"]) for r in sub if r["metric"] == m
                                     and int(r["generation"]) == g] or [0.0]) for g in gens] for m in parts])
        colors = ["0.55"] + [cmap(k / max(1, len(parts) - 2)) for k in range(len(parts) - 1)]
        names = ["real"] + [f"gen {m.removeprefix('train_share_gen')}" for m in parts[1:]]
        ax.stackplot(gens, shares, colors=colors, labels=names, alpha=0.9)
        size = _series(sub, "train_size").get(cond, {})
        twin = ax.twinx()
        twin.plot(sorted(size), [np.mean(size[g]) for g in sorted(size)], color="k", ls="--", lw=1, label="size")
        twin.set_ylim(bottom=0)
        twin.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(text(cond), fontsize=9)
        ax.set_xlabel(GENERATION_LABEL)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for row in axes:
        row[0].set_ylabel("share of the training set (fraction)")
    handles, names = panels[0][1].get_legend_handles_labels()
    fig.legend(handles + [plt.Line2D([], [], color="k", ls="--")], names + ["size, images (right axis)"],
               fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_shares(curves: dict[str, list[tuple[float, float, float]]], path: Path, ylabel: str, title: str,
                baseline: float | None = None, colours: dict | None = None,
                within: tuple[float, float] = (-np.inf, np.inf)) -> Path:
    """Accuracy (or another metric) against the share of the training set replaced:
    one line per condition, each point (share, mean, 95% half-width) with error bars
    drawn within `within` (the metric's range, in the units plotted; none where the
    half-width is nan: one seed). `baseline`, the clean (0%) value, is a dotted
    horizontal line."""
    fig, ax = _pyplot().subplots(figsize=(5.6, 3.8))
    draw_shares(ax, curves, ylabel, title, baseline, colours, within)
    _save(fig, path)
    return path


def draw_shares(ax, curves: dict[str, list[tuple[float, float, float]]], ylabel: str, title: str,
                baseline: float | None = None, colours: dict | None = None,
                within: tuple[float, float] = (-np.inf, np.inf)) -> None:
    """`plot_shares` on matplotlib Axes `ax`."""
    colours = colours or condition_colours(list(curves))
    for name, points in curves.items():
        x, mean, half = (np.asarray(v, dtype=float) for v in zip(*points))
        half = np.where(np.isfinite(half), half, 0.0)
        below, above = mean - np.maximum(mean - half, within[0]), np.minimum(mean + half, within[1]) - mean
        ax.errorbar(100 * x, mean, yerr=np.vstack([below, above]), marker="o", ms=3, capsize=3,
                    color=colours[name], label=text(name))
    if baseline is not None:
        ax.axhline(baseline, color="0.4", ls=":", lw=1, label="clean baseline (0%)")
    ax.set_xlabel("share of the training set replaced (%)")
    ax.set_ylabel(text(ylabel))
    ax.set_title(text(title), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_spectra(spectra: dict[str, np.ndarray], path: Path) -> Path:
    """Mean ± std of radially averaged log power spectra, one line per image set."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, spec in spectra.items():
        r = np.arange(1, spec.shape[1] + 1)
        mean, std = spec.mean(axis=0), spec.std(axis=0)
        ax.plot(r, mean, marker="o", ms=3, label=text(name))
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
        ax.set_xticks(range(len(labels)), [text(n) for n in labels], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), [text(n) for n in labels], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(text(title), fontsize=9)
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
        lo, hi = band([i for _, i in series[w]], metric)
        ax.fill_between(xs, lo, hi, alpha=0.2)
    ref = [float(r["value"]) for r in rows if r["metric"] == metric and r["cell"] == "reference"]
    if ref:
        ax.axhline(ref[0], color="k", ls="--", lw=1, label="real test split")
    gen = generation if generation is not None else max(
        (int(r["generation"]) for r in rows if r["metric"] == metric and r.get(column, "") != ""), default=0)
    ax.set_xlabel(text(column))
    ax.set_ylabel(text(LABELS.get(metric, metric)))
    ax.set_title(text(title or f"{LABELS.get(metric, metric)} at generation {gen} (mean, 95% interval over seeds)"),
                 fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path
