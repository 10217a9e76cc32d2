"""What the feedback-loop study reports: its findings and the report's sections.

Findings are the run's comparisons (`ouroboros.studies.loop_compare`: each variant
against its baseline, or each guidance against its generation 0 and the first guidance),
decided in code with Holm's correction over all of them (`ouroboros.report.comparisons`):
each sentence states both means with their 95% intervals, the paired per-seed
difference with its interval, and the verdict *higher*, *lower*, *equivalent* (within
the metric's margin, TOST) or *not resolved*. The values at each condition's first and
last generation are shown as they are, with their 95% intervals, and claim nothing.
With several runs, each condition they share is compared at the last generation both
reached, paired by seed (intervals only).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict

from ouroboros.report import plots as P
from ouroboros.report.comparisons import Comparison, counts
from ouroboros.report.page import Finding, Findings, Image, ImageGrid, Plot, Section, Table, Text
from ouroboros.report.stats import (
    EQUIVALENT, HIGHER, LOWER, Interval, metric_range, paired_difference, t_interval,
)
from ouroboros.safepath import component, components
from ouroboros.studies import loop_compare, loop_grid

# Metrics stated as values, in this order, with the digits they are shown with; the
# digits of every metric a comparison may name.
HEADLINE = {"accuracy": 3, "cross_entropy": 2, "fid": 1, "precision": 3, "recall": 3, "coverage": 3}
DIGITS = {**HEADLINE, "density": 3, "test_loss": 4}
KEY = ("accuracy", "fid", "recall")  # the metrics whose comparisons the report lists as sentences
PLOTTED = ("accuracy", "cross_entropy", "fid", "precision", "recall", "density", "coverage", "test_loss",
           "tail_unreached", "tail_mass", "core_mass")


def _name(metric: str) -> str:
    return P.LABELS.get(metric, metric).split(" (")[0]


def _value(iv: Interval, metric: str) -> str:
    return iv.format(1, DIGITS.get(metric, 3), metric_range(metric))


def _p(p: float) -> str:
    return "-" if not math.isfinite(p) else f"{p:.2g}"


def verdict_detail(c: Comparison) -> str:
    """Why the verdict: the corrected p-value that decided it, or what the run cannot tell."""
    d = DIGITS.get(c.pair.metric, 3)
    if c.verdict in (HIGHER, LOWER):
        return f"Holm-adjusted p {_p(c.p_holm)}"
    if c.verdict == EQUIVALENT:
        return f"within ±{c.delta:.{d}g} by TOST, Holm-adjusted p {_p(c.p_equivalent_holm)}"
    if c.n < 2:
        return "one seed: nothing can be tested"
    return (f"Holm-adjusted p {_p(c.p_holm)}; equivalence within ±{c.delta:.{d}g} not shown either; this run "
            f"resolves differences of {c.mde:.{d}g} or more at 80% power")


def _generation(c: Comparison, side: str) -> str:
    return f"generation {c.pair.labels.get(f'{side}_generation', '?')}"


def sentence(c: Comparison) -> str:
    """One comparison in words, with its numbers and its verdict."""
    m, d = c.pair.metric, DIGITS.get(c.pair.metric, 3)
    a, b = f"{c.pair.a} ({_generation(c, 'a')})", f"{c.pair.b} ({_generation(c, 'b')})"
    return (f"{_name(m)}, {a} vs {b}: {_value(c.a, m)} vs {_value(c.b, m)}; difference "
            f"{c.diff.format_range(1, d)}: {c.verdict} ({verdict_detail(c)}"
            + (f"; {c.n} seeds)" if c.n > 1 else ")"))


def findings(rows: list[dict], config) -> list[Finding]:
    """Every comparison of the run (`loop_compare.comparisons`), as a sentence with its verdict."""
    return [Finding(sentence(c), c.verdict) for c in loop_compare.comparisons(rows, config)]


def comparisons_table(comparisons: list[Comparison]) -> Table:
    """Every comparison: what, both means, the difference, the verdict and its numbers."""
    header = ["comparison", "a", "b", "metric", "generations (a, b)", "a: mean [95% interval]",
              "b: mean [95% interval]", "a − b [95% interval]", "verdict", "Holm-adjusted p", "margin δ",
              "TOST Holm-adjusted p", "resolvable at 80% power", "seeds"]
    body = []
    for c in comparisons:
        m, d = c.pair.metric, DIGITS.get(c.pair.metric, 3)
        gens = f"{c.pair.labels.get('a_generation', '?')}, {c.pair.labels.get('b_generation', '?')}"
        body.append([c.pair.kind, c.pair.a, c.pair.b, _name(m), gens, _value(c.a, m), _value(c.b, m),
                     c.diff.format_range(1, d), Finding(c.verdict, c.verdict), _p(c.p_holm),
                     f"±{c.delta:.{d}g}" if math.isfinite(c.delta) else "-", _p(c.p_equivalent_holm),
                     f"{c.mde:.{d}g}" if math.isfinite(c.mde) else "none (1 seed)" if c.n == 1 else "-", str(c.n)])
    return Table(header, body, left=4)


def resolvable_table(comparisons: list[Comparison]) -> Table:
    """Per metric, the smallest difference this run resolves at 80% power (the median over
    its comparisons, and their range), beside the metric's margin."""
    import numpy as np

    body = []
    for m in dict.fromkeys(c.pair.metric for c in comparisons):
        d = DIGITS.get(m, 3)
        mde = [c.mde for c in comparisons if c.pair.metric == m and math.isfinite(c.mde)]
        deltas = sorted({f"±{c.delta:.{d}g}" for c in comparisons if c.pair.metric == m and math.isfinite(c.delta)})
        body.append([_name(m), " to ".join(deltas[:: max(1, len(deltas) - 1)]) or "-",
                     f"{np.median(mde):.{d}g}" if mde else "-",
                     f"{min(mde):.{d}g} to {max(mde):.{d}g}" if mde else "-", str(len(mde))])
    return Table(["metric", "margin δ", "resolvable at 80% power: median", "range over comparisons",
                  "comparisons"], body)


def method_text(comparisons: list[Comparison], alpha: float) -> str:
    return (f"{counts(comparisons)}. Each is a paired t-test over seeds (the same seed draws the same real data "
            f"for both sides), Holm-corrected over all {len(comparisons)} comparisons of the run at alpha {alpha:g}: "
            "higher or lower when the corrected p-value is at most alpha; else equivalent when the two one-sided "
            "tests put the difference within ±δ (compare.delta; their p-values Holm-corrected over all comparisons "
            "too); else not resolved. A claim of no effect needs equivalent. The last column is the smallest "
            "difference this run would resolve with 80% power (at alpha / the number of comparisons). Every "
            "number is in comparisons.csv.")


@dataclasses.dataclass
class Change:
    """A loop metric at a condition's last generation against its first (values only)."""

    condition: str
    metric: str
    first: int
    last: int
    start: Interval  # over seeds, at `first`
    end: Interval  # over seeds, at `last`
    diff: Interval  # paired per seed: end - start


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
    out += [s for i, run in enumerate(runs) if (s := loop_grid.section(run, f"heatmap-{i}" if several else "heatmap"))]
    out += [_samples(run) for run in runs]
    out += [_values(run) for run in runs]
    return out


def _values(run) -> Section:
    """The headline metrics at the first, middle and last generation (the command line's summary)."""
    from ouroboros.studies.loop import summary_table

    header, body = summary_table(run.rows)
    items = [Text("Mean over seeds [95% Student-t interval, within the metric's range] of the pooled output "
                  "(and of each family's own samples where several feed the pool)."),
             Table(list(header), [list(r) for r in body], left=2)]
    per_class = class_table(run.rows)
    if per_class is not None:
        items += [Text("Per-class accuracy (the share of each class's samples the real-data classifier recognises; "
                       "Martinez et al.'s Fig. 2c) at each condition's first and last generation, mean over seeds "
                       "[95% Student-t interval], and its change between them (paired by seed, [95% interval]; "
                       "not Holm-corrected: read it to see which digits go first, not as a test):"), per_class]
    return Section("tables", f"Values: {run.label}", items)


def class_table(rows: list[dict]) -> Table | None:
    """Per-class accuracy (`accuracy/<class>` rows of the pooled output) at each condition's
    first and last generation: one row per class, one column per condition and generation."""
    per: dict = defaultdict(dict)  # (cell, generation, class) -> {seed: value}
    for r in rows:
        if r["metric"].startswith("accuracy/") and r["cell"] != "reference" and not r.get("family"):
            per[(r["cell"], int(float(r["generation"])), r["metric"][len("accuracy/"):])][r["seed"]] = float(r["value"])
    if not per:
        return None
    cells = list(dict.fromkeys(k[0] for k in per))
    ends = {c: sorted({min(g), max(g)}) for c in cells if (g := [k[1] for k in per if k[0] == c])}
    columns = [(c, g) for c in cells for g in ends[c]] + [(c, None) for c in cells if len(ends[c]) == 2]

    def cell(c, g, name) -> str:
        if g is None:  # the change from the first to the last generation, paired by seed
            first, last = ((c, end, name) for end in ends[c])
            return (paired_difference(per[last], per[first]).format_range(1, 3)
                    if first in per and last in per else "-")
        return _value(t_interval(list(per[(c, g, name)].values())), "accuracy") if (c, g, name) in per else "-"

    body = [[name] + [cell(c, g, name) for c, g in columns] for name in dict.fromkeys(k[2] for k in per)]
    return Table(["class"] + [f"{c}, generation {g}" if g is not None
                              else f"{c}: change {ends[c][0]} → {ends[c][1]}" for c, g in columns], body, left=1)


ENCODER_FIT_REAL = ("Warning: the latent generator's encoder was fitted once on the real training split "
                    "(encoder_fit: real), so its decoder pulls every generation back towards the real images and "
                    "can hide part of the collapse; encoder_fit: own refits it on each generation's training set.")


def _findings_section(run, rows: list[dict]) -> Section:
    comparisons = loop_compare.comparisons(run.rows, run.config)
    changes = loop_changes(rows)
    warn = [Text(ENCODER_FIT_REAL)] if any("real" in str(r.get("encoder_fit", "")) for r in rows) else []
    if not changes and not comparisons:
        return Section("findings", f"{run.label}: loop", [*warn, Text("One generation only: nothing to compare.")])
    items: list = [*warn]
    if comparisons:
        items += [Text(method_text(comparisons, run.config.compare.alpha)),
                  Findings([Finding(sentence(c), c.verdict) for c in comparisons if c.pair.metric in KEY]),
                  comparisons_table(comparisons),
                  Text("The smallest difference this run resolves with 80% power, per metric (from each "
                       "comparison's spread over seeds, at alpha / the number of comparisons):"),
                  resolvable_table(comparisons)]
    if changes:
        items += [Text("Values at each condition's first and last generation, as measured (mean over seeds with "
                       "its 95% Student-t interval; the change is the paired per-seed difference). These state "
                       "values; the verdicts are the comparisons above."),
                  Table(["condition", "metric", "generations", "first: mean [95% interval]",
                         "last: mean [95% interval]", "change [95% interval]", "seeds"],
                        [[c.condition, P.LABELS.get(c.metric, c.metric), f"{c.first} → {c.last}",
                          _value(c.start, c.metric), _value(c.end, c.metric),
                          c.diff.format_range(1, HEADLINE[c.metric]), str(c.diff.n)] for c in changes], left=2)]
    refs = [r for r in rows if r["cell"] == "reference"]
    ref = {m: sum(v) / len(v) for m in HEADLINE if (v := [float(r["value"]) for r in refs if r["metric"] == m])}
    if ref:  # the other real split than the one scored against (per seed unless the instruments are fixed)
        split = "training" if refs[0].get("scored_on") == "test" else "test"
        items.append(Text(f"The real {split} split, scored the same way (mean over seeds): "
                          + ", ".join(f"{m} {ref[m]:.{HEADLINE[m]}f}" for m in HEADLINE if m in ref) + "."))
    own = [float(r["value"]) for r in refs if r["metric"] == "instrument_accuracy"]
    if own:  # the measuring classifier's own accuracy on real images it never trained on
        items.append(Text(f"The measuring classifier (trained on the real training split) recognises "
                          f"{100 * min(own):.2f}%" + (f" to {100 * max(own):.2f}%" if max(own) > min(own) else "")
                          + " of the real test split" + (" (one classifier per seed)" if len(own) > 1 else "") + "."))
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
        items.append(Table(["condition", "metric", "generation", f"{base.label}: mean [95% interval]",
                            f"{other.label}: mean [95% interval]", f"{other.label} − {base.label} [95% interval]",
                            "seeds"],
                           [[d.cell, P.LABELS.get(d.metric, d.metric), str(d.generation), _value(d.base, d.metric),
                             _value(d.other, d.metric), d.diff.format_range(1, HEADLINE[d.metric]), str(d.diff.n)]
                            for d in diffs], left=2))
    return Section("findings", f"Between runs: each against {base.label}", items)


def _plots(rows: list[dict]) -> Section:
    colours = P.condition_colours(P.conditions(rows))
    metrics = {r["metric"] for r in rows}
    items: list = [Text("Mean over seeds; band: the 95% Student-t interval over seeds, within the metric's range "
                        "(none with one seed); dotted: generation 0 (trained on real data); dashed: the real test "
                        "split. PNG and SVG copies are in plots/.")]
    for metric in PLOTTED:
        if metric in metrics:
            items.append(Plot(metric, P.LABELS.get(metric, metric),
                              lambda path, m=metric: P.plot_metric(rows, m, path, colours=colours)))
    if any(m.startswith("accuracy/") for m in metrics):
        items.append(Plot("class_accuracy", "per-class accuracy, one panel per condition",
                          lambda path: P.plot_class_accuracy(rows, path), wide=True))
    shares = [float(r["value"]) for r in rows if r["metric"].startswith("class_share/")]
    classes = {r["metric"] for r in rows if r["metric"].startswith("class_share/")}
    if shares and max(abs(v - 1 / len(classes)) for v in shares) > 0.01:  # the classes are not balanced
        items.append(Plot("class_shares", "each class's share of what each generation trained on, one panel per "
                          "condition", lambda path: P.plot_class_accuracy(rows, path, "class_share", "share of the "
                                                                          "training set (fraction)"), wide=True))
        items.append(Plot("class_entropy", P.LABELS["class_entropy"],
                          lambda path: P.plot_metric(rows, "class_entropy", path, colours=colours)))
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
