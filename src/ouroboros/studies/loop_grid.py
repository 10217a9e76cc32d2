"""The report's heat-maps of a ``loop.grid`` (`ouroboros.config_grid`): each metric at the
last generation, the mean over seeds of the pooled output, over the grid's first two
keys (rows: the first, columns: the second), one panel per combination of the values of
the others. The settings are the grid's keys in its order, then guidance when the grid
does not cross it but loop.guidance holds several values (each variant runs every
guidance): two settings or more make heat-maps.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from ouroboros.config_grid import GUIDANCE, parse, settings
from ouroboros.crosschecks import cell_label
from ouroboros.report.page import Plot, Section, Text

METRICS = ("accuracy", "fid", "recall", "coverage", "tail_unreached", "tail_mass", "core_mass", "test_loss")


def crossed(loop) -> list[tuple[str, list]]:
    """(setting, its values) of each crossed setting, in order (see the module docstring)."""
    if loop.grid is None:
        return []
    out = list(parse(loop.grid).items())
    if GUIDANCE not in loop.grid and len(loop.guidance) > 1:
        out.append((GUIDANCE, list(loop.guidance)))
    return out


def cells(loop) -> dict[str, tuple]:
    """results.csv cell -> its values of the crossed settings (in `crossed`'s order)."""
    order = [key for key, _ in crossed(loop)]
    return {cell_label(name, w): tuple({**point, GUIDANCE: w}[key] for key in order)
            for name, point in (settings(loop) or {"": {}}).items() for w in loop.guidance}


def last_generation_means(rows: list[dict], metric: str) -> dict[str, float]:
    """cell -> the mean over seeds of `metric` at its last generation (the pooled output's)."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["cell"] != "reference" and not r.get("family") and r["metric"] == metric:
            values[r["cell"]][int(r["generation"])].append(float(r["value"]))
    return {cell: float(np.mean(by[max(by)])) for cell, by in values.items()}


def panels(rows: list[dict], loop, metric: str) -> list[tuple[str, np.ndarray]]:
    """(panel title, len(first values) x len(second values) means) per combination of the
    further settings' values; NaN where the run has no value."""
    (_, ys), (_, xs), *rest = crossed(loop)
    means, where = last_generation_means(rows, metric), cells(loop)
    out = []
    for others in itertools.product(*(values for _, values in rest)):
        grid = np.full((len(ys), len(xs)), np.nan)
        for cell, point in where.items():
            if point[2:] == others and cell in means:
                grid[ys.index(point[0]), xs.index(point[1])] = means[cell]
        out.append((", ".join(f"{key}={_text(v)}" for (key, _), v in zip(rest, others)), grid))
    return out


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def section(run, prefix: str = "heatmap") -> Section | None:
    """The run's heat-maps (None without two crossed settings): one plot per metric of
    `METRICS` it has, named ``<prefix>-<metric>``."""
    from ouroboros.report.heatmap import plot_heatmaps
    from ouroboros.report.plots import LABELS

    config = getattr(run, "config", None)
    axes = crossed(config.loop) if config is not None else []
    if len(axes) < 2:
        return None
    (y, ys), (x, xs), *_ = axes
    metrics = [m for m in METRICS if any(r["metric"] == m and r["cell"] != "reference" for r in run.rows)]
    items: list = [Text(f"Each metric at the last generation over {y} (rows) and {x} (columns): the mean over seeds "
                        "of each cell's pooled output" + (", one panel per value of the other settings" if
                                                          len(axes) > 2 else "") + ". Values are in results.csv.")]
    for metric in metrics:
        label = LABELS.get(metric, metric)
        items.append(Plot(f"{prefix}-{metric}", f"{label} at the last generation over {y} and {x}",
                          lambda path, m=metric, lab=label: plot_heatmaps(
                              panels(run.rows, config.loop, m), [_text(v) for v in ys], [_text(v) for v in xs], y, x,
                              lab, path, title=f"{m} at the last generation"), wide=True))
    return Section("plots", f"Grid: {run.label}", items)
