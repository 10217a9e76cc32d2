"""What the feedback-loop study reports: its findings and the report's sections.

Findings: for every condition (a chain's ``cell``) and headline metric, the value at
the condition's first and last generation (mean ± 95% Student-t half-width over seeds)
and their paired per-seed difference (last - first) with its 95% interval; the change
*rises* or *falls* when the whole interval lies on one side of 0 and is *not resolved*
otherwise (`ouroboros.report.stats`). With several runs, each condition they share is
compared at the last generation both reached, paired by seed.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

from ouroboros.report import plots as P
from ouroboros.report.page import Finding, Findings, Image, ImageGrid, Plot, Section, Table, Text
from ouroboros.report.stats import HOLDS, NOT_RESOLVED, REVERSED, Interval, paired_difference, t_interval, verdict
from ouroboros.safepath import component, components

# Metrics stated as findings, in this order, with the digits they are shown with.
HEADLINE = {"accuracy": 3, "cross_entropy": 2, "fid": 1, "precision": 3, "recall": 3, "coverage": 3}
PLOTTED = ("accuracy", "cross_entropy", "fid", "precision", "recall", "density", "coverage", "test_loss")


@dataclasses.dataclass
class Change:
    """A loop metric at a condition's last generation against its first."""

    condition: str
    metric: str
    first: int
    last: int
    start: Interval  # over seeds, at `first`
    end: Interval  # over seeds, at `last`
    diff: Interval  # paired per seed: end - start

    @property
    def direction(self) -> str:
        v = verdict(self.diff, ">")
        return "rises" if v == HOLDS else "falls" if v == REVERSED else NOT_RESOLVED

    def sentence(self) -> str:
        d = HEADLINE.get(self.metric, 3)
        return (f"{P.LABELS.get(self.metric, self.metric).split(' (')[0]} at generation {self.last} vs {self.first}, "
                f"{self.condition}: {self.start.format(1, d)} → {self.end.format(1, d)}, change "
                f"{self.diff.format_range(1, d)} ({self.direction}; mean and 95% interval over {self.diff.n} "
                f"seed{'s' if self.diff.n != 1 else ''})")


def _per_seed(rows: list[dict], cond: str, metric: str, generation: int) -> dict[str, float]:
    return {r["seed"]: float(r["value"]) for r in rows if r["cell"] != "reference" and P.condition(r) == cond
            and r["metric"] == metric and int(r["generation"]) == generation}


def loop_changes(rows: list[dict]) -> list[Change]:
    """Every headline metric of every condition: last generation against first."""
    out = []
    for cond in P.conditions(rows):
        gens = sorted({int(r["generation"]) for r in rows if r["cell"] != "reference" and P.condition(r) == cond})
        first, last = gens[0], gens[-1]
        if first == last:
            continue
        for metric in HEADLINE:
            a, b = _per_seed(rows, cond, metric, first), _per_seed(rows, cond, metric, last)
            if a and b:
                out.append(Change(cond, metric, first, last, t_interval(list(a.values())),
                                  t_interval(list(b.values())), paired_difference(b, a)))
    return out


def findings(rows: list[dict]) -> list[Finding]:
    """Each headline metric of each condition, last generation against first."""
    return [Finding(c.sentence(), c.direction) for c in loop_changes(rows)]


@dataclasses.dataclass
class RunDifference:
    """A loop metric at a cell's last generation, in another run against the first run."""

    cell: str
    metric: str
    generation: int
    base: Interval  # the first run, over seeds
    other: Interval  # the other run, over seeds
    diff: Interval  # paired by seed: other - base


def run_differences(base_rows: list[dict], other_rows: list[dict]) -> list[RunDifference]:
    """Every headline metric of every cell the two loop runs share, at the last generation
    both reached, paired by seed (the same seed of the same config draws the same real
    data, so a CPU and a GPU run of one config differ only by how they computed)."""
    out = []
    for cell in P.conditions(base_rows):
        if cell not in P.conditions(other_rows):
            continue
        gens = [{int(r["generation"]) for r in rows if r["cell"] == cell} for rows in (base_rows, other_rows)]
        g = max(gens[0] & gens[1], default=None)
        if g is None:
            continue
        for metric in HEADLINE:
            a, b = _per_seed(base_rows, cell, metric, g), _per_seed(other_rows, cell, metric, g)
            if a and b:
                out.append(RunDifference(cell, metric, g, t_interval(list(a.values())), t_interval(list(b.values())),
                                         paired_difference(b, a)))
    return out


def recall_sweeps(rows: list[dict]) -> dict[str, list[dict]]:
    """The watermark-recall sweeps in a grid of variants: for each (scenario, generator
    pool) with watermark variants at two or more recalls, their rows plus those of the
    same scenario and pool without curation (recall 0: nothing removed), keyed by a name
    for the plot's file (e.g. ``accumulate-subsample`` or ``accumulate-subsample-gaussian-1``);
    names read from results.csv become safe, distinct file names or an error."""
    def key(r):
        return r["scenario"], r.get("generators", "")

    marked = [r for r in rows if r.get("variant") and r.get("curation.recall", "") != ""]
    watermark = defaultdict(list)
    for r in marked:
        if r["curation"] == "watermark" and float(r.get("curation.false_positive") or 0) == 0:
            watermark[key(r)].append(r)
    out = {}
    for k, group in watermark.items():
        plain = [{**r, "curation.recall": "0"} for r in marked if r["curation"] == "none" and key(r) == k]
        if len({r["curation.recall"] for r in group + plain}) >= 2:
            name = "-".join(part for part in k if part).replace(" ", "-")
            out[name] = group + plain + [r for r in rows if r["cell"] == "reference"]
    return dict(zip(components(list(out), "results.csv: the sweep named by a scenario and generators value",
                               max_bytes=200), out.values()))


# -- the report's sections ------------------------------------------------------------


def sections(runs: list) -> list[Section]:
    """Findings per run, differences between runs, plots, sample grids."""
    several = len(runs) > 1
    rows = [dict(row, condition=f"{run.label} · {row['cell']}") if several else row
            for run in runs for row in run.rows]
    out = [_findings_section(run, [r for r in rows if not several or r["condition"].startswith(f"{run.label} · ")])
           for run in runs]
    if several:
        out.append(_between_runs(runs))
    out.append(_plots(rows))
    out += [_samples(run) for run in runs]
    return out


def _findings_section(run, rows: list[dict]) -> Section:
    changes = loop_changes(rows)
    if not changes:
        return Section("findings", f"{run.label}: loop", [Text("One generation only: no change to report.")])
    key = [Finding(c.sentence(), c.direction) for c in changes if c.metric in ("accuracy", "fid", "recall")]
    table = Table(["condition", "metric", "generations", "first (mean ± 95%)", "last (mean ± 95%)",
                   "change [95% interval]", "", "seeds"],
                  [[c.condition, P.LABELS.get(c.metric, c.metric), f"{c.first} → {c.last}",
                    c.start.format(1, HEADLINE[c.metric]), c.end.format(1, HEADLINE[c.metric]),
                    c.diff.format_range(1, HEADLINE[c.metric]), Finding(c.direction, c.direction), str(c.diff.n)]
                   for c in changes], left=2)
    items = [Findings(key), table]
    refs = [r for r in rows if r["cell"] == "reference"]
    ref = {m: sum(v) / len(v) for m in HEADLINE if (v := [float(r["value"]) for r in refs if r["metric"] == m])}
    if ref:  # the other real split than the one scored against (per seed unless the instruments are fixed)
        split = "training" if refs[0].get("scored_on") == "test" else "test"
        items.append(Text(f"The real {split} split, scored the same way (mean over seeds): "
                          + ", ".join(f"{m} {ref[m]:.{HEADLINE[m]}f}" for m in HEADLINE if m in ref) + "."))
    items += _generation0(run)
    return Section("findings", f"{run.label}: loop", items)


def _generation0(run) -> list:
    """A note naming the variants whose generation 0 is not the one the others share."""
    from ouroboros.studies.loop_plan import distinct_generation0

    config = getattr(run, "config", None)
    own = distinct_generation0(config) if config is not None and config.loop.variants is not None else {}
    if not own:
        return []
    return [Text("Generation 0 is the same model in every variant of one generator, except in: "
                 + "; ".join(f"{name} ({why})" for name, why in own.items()) + ".")]


def _between_runs(runs: list) -> Section:
    base = runs[0]
    items = [Text("Each condition's metrics at the last generation both runs reached; the difference is paired by "
                  "seed.")]
    for other in runs[1:]:
        diffs = run_differences(base.rows, other.rows)
        if not diffs:
            items.append(Text(f"{other.label} shares no condition with {base.label}."))
            continue
        items.append(Table(["condition", "metric", "generation", f"{base.label} (mean ± 95%)",
                            f"{other.label} (mean ± 95%)", f"{other.label} − {base.label} [95% interval]", "seeds"],
                           [[d.cell, P.LABELS.get(d.metric, d.metric), str(d.generation),
                             d.base.format(1, HEADLINE[d.metric]), d.other.format(1, HEADLINE[d.metric]),
                             d.diff.format_range(1, HEADLINE[d.metric]), str(d.diff.n)] for d in diffs], left=2))
    return Section("findings", f"Between runs: each against {base.label}", items)


def _plots(rows: list[dict]) -> Section:
    colours = P.condition_colours(P.conditions(rows))
    metrics = {r["metric"] for r in rows}
    items: list = [Text("Mean over seeds; band: min-max over seeds; dotted: generation 0 (trained on real data); "
                        "dashed: the real test split. PNG and SVG copies are in plots/.")]
    for metric in PLOTTED:
        if metric in metrics:
            items.append(Plot(metric, P.LABELS.get(metric, metric),
                              lambda path, m=metric: P.plot_metric(rows, m, path, colours=colours)))
    if any(m.startswith("accuracy/") for m in metrics):
        items.append(Plot("class_accuracy", "per-class accuracy, one panel per condition",
                          lambda path: P.plot_class_accuracy(rows, path), wide=True))
    if "train_real_share" in metrics:
        items.append(Plot("makeup", "what each generation trained on (shares of its training set), one panel per "
                                    "condition", lambda path: P.plot_makeup(rows, path), wide=True))
    for name, sweep in recall_sweeps(rows).items():
        for metric in ("accuracy", "fid", "recall", "train_real_share"):
            items.append(Plot(f"sweep-{name}-{metric}",
                              f"{name}: {P.LABELS.get(metric, metric)} at the last generation against the watermark "
                              "filter's recall (mean and 95% interval over seeds)",
                              lambda path, s=sweep, m=metric, n=name: P.plot_sweep(
                                  s, "curation.recall", m, path,
                                  title=f"{n}: {m} at the last generation vs watermark recall"), wide=True))
    return Section("plots", "", items)


def _gen_index(name: str) -> int:
    m = re.fullmatch(r"gen(\d+)\.png", name)
    return int(m.group(1)) if m else -1


def _samples(run) -> Section:
    samples = run.path / "samples"
    items: list = [Image(p, p.stem, "grid") for p in sorted(samples.glob("*.png"))]
    dirs = [d for d in sorted(samples.glob("*")) if d.is_dir()]
    conds = [c for c in dict.fromkeys(r["cell"] for r in run.rows if r["cell"] != "reference") if c]
    named = {component(c, "cell"): c for c in conds}  # folder -> its condition (crosschecks.check_cells)
    order = {folder: i for i, folder in enumerate(named)}
    dirs.sort(key=lambda d: (order.get(d.name, len(order)), d.name))
    gens = sorted({_gen_index(p.name) for d in dirs for p in d.glob("gen*.png")} - {-1})
    if dirs and gens:
        items.append(Text("Rows: conditions; columns: generations (first seed; one row of each grid per class)."))
        items.append(ImageGrid("condition", [f"gen {g}" for g in gens],
                               [(named.get(d.name, d.name), [d / f"gen{g}.png" if (d / f"gen{g}.png").is_file()
                                                             else None for g in gens]) for d in dirs]))
    if not items:
        items.append(Text("No sample grids in this run folder."))
    return Section("samples", f"Samples: {run.label}", items)


def plot(run, metric: str, ax) -> None:
    """`metric` against generation on `ax`, as plots/ draws it."""
    P.draw_metric(ax, run.rows, metric)
