"""Heat-maps: a metric over two crossed settings, one annotated cell per pair of values
(a phase diagram), with panels for the values of any further settings.

`draw_heatmap` draws one panel into an Axes; `plot_heatmaps` saves several side by side
on one colour scale, as PNG and SVG (`ouroboros.report.plots`). A cell without a value
(NaN) is left blank and marked "n/a".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouroboros.report.plots import _pyplot, _save, text


def _number(value: float, digits: int) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}g}"


def draw_heatmap(ax, values: np.ndarray, rows: list, columns: list, row_label: str, column_label: str,
                 title: str = "", digits: int = 3, vmin: float | None = None, vmax: float | None = None):
    """`values` (len(rows) x len(columns)) as coloured cells, each annotated with its value;
    returns the image (for a colour bar)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (finite.min() if finite.size else 0.0)
    hi = vmax if vmax is not None else (finite.max() if finite.size else 1.0)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-12,
                      aspect="auto", origin="upper")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            dark = np.isfinite(v) and (v - lo) < 0.6 * (hi - lo)  # viridis is dark at its low end
            ax.text(j, i, _number(v, digits), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(columns)), [text(c) for c in columns])
    ax.set_yticks(range(len(rows)), [text(r) for r in rows])
    ax.set_xlabel(text(column_label))
    ax.set_ylabel(text(row_label))
    if title:
        ax.set_title(text(title), fontsize=9)
    return image


def plot_heatmaps(panels: list[tuple[str, np.ndarray]], rows: list, columns: list, row_label: str,
                  column_label: str, value_label: str, path: Path, title: str = "", digits: int = 3) -> Path:
    """One heat-map per (panel title, values), wrapped at 3 per row, on one colour scale
    with one colour bar labelled `value_label`."""
    plt = _pyplot()
    finite = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for _, v in panels])
    finite = finite[np.isfinite(finite)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    width, height = 1.0 + 0.9 * len(columns), 1.0 + 0.55 * len(rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.5, width) * ncols + 1, max(2.5, height) * nrows),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for (name, values), ax in zip(panels, axes.flat):
        image = draw_heatmap(ax, values, rows, columns, row_label, column_label, name, digits, lo, hi)
    fig.colorbar(image, ax=list(axes.flat[: len(panels)]), label=text(value_label))
    if title:
        fig.suptitle(text(title), fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return path
