"""What the contamination study reports: Table 1's findings (accuracy at each generated
share against 0% and against the same share of real control, paired per seed, with the
study's verdicts), accuracy and recall by share, its figures, and its tables."""

from __future__ import annotations

from ouroboros.report import plots as P
from ouroboros.report.page import Finding, Findings, Image, Markdown, Plot, Section, Text
from ouroboros.report.stats import HOLDS, NOT_RESOLVED, REVERSED, metric_range, t_interval
from ouroboros.studies.contamination import CONTROLS
from ouroboros.studies.contamination_tables import findings as claims_of
from ouroboros.studies.contamination_tables import tables_markdown


def claims(rows: list[dict], config) -> list:
    """The study's Claims, Table 1's first."""
    return sorted(claims_of(rows, config), key=lambda c: c.table != "1")


def findings(rows: list[dict], config) -> list[Finding]:
    out = []
    for c in claims(rows, config):
        unit, digits = (" points", 1) if c.scale == 100 else ("", 3)  # accuracy in points; fid, precision, recall
        how = f"; {c.how}" if c.how else ""  # a claim of no gain: decided by tests (Table 8)
        out.append(Finding(f"Table {c.table}, {c.text}: difference {c.diff.format_range(c.scale, digits)}{unit} "
                           f"({c.verdict}{how})", c.verdict))
    return out


def sections(runs: list) -> list[Section]:
    several = len(runs) > 1
    out = [_findings_section(run) for run in runs]
    out.append(_plots(runs, several))
    out += [Section("samples", f"Samples: {run.label}",
                    [Image(p, p.stem, "grid") for p in sorted((run.path / "samples").glob("*.png"))]
                    or [Text("No sample grids in this run folder.")]) for run in runs]
    out += [Section("tables", f"Tables: {run.label}", [Markdown(tables_markdown(run.rows, run.config))])
            for run in runs]
    return out


def _findings_section(run) -> Section:
    all_claims = claims(run.rows, run.config)
    counts = {v: sum(c.verdict == v for c in all_claims) for v in (HOLDS, REVERSED, NOT_RESOLVED)}
    n_seeds = len(run.config.contamination.seeds)
    intro = Text(f"Of the paper's {len(all_claims)} directions checked here, {counts[HOLDS]} hold, "
                 f"{counts[REVERSED]} are reversed and {counts[NOT_RESOLVED]} are not resolved at {n_seeds} "
                 f"seed{'s' if n_seeds != 1 else ''} (paired per-seed differences, 95% intervals).")
    table1 = [f for f, c in zip(findings(run.rows, run.config), all_claims) if c.table in ("1", "10")]
    return Section("findings", f"{run.label}: contamination", [intro, Findings(table1)])


def _sources(run) -> list[str]:
    """Table 1's sources in a run: generated, then each real control."""
    return ["generated"] + [CONTROLS[name].source for name in run.config.contamination.controls]


def _share_curves(runs: list, table: str, metric: str, qualify: bool, **where) -> dict:
    curves = {}
    for run in runs:
        for source in _sources(run):
            points = []
            for ratio in run.config.contamination.ratios:
                values = [float(r["value"]) for r in run.rows if r["metric"] == metric and r["table"] == table
                          and r["source"] == source and float(r["ratio"]) == ratio
                          and all(r[k] == v for k, v in where.items())]
                if values:
                    iv = t_interval(values)
                    points.append((ratio, iv.mean, iv.half))
            if points:
                curves[f"{run.label} · {source}" if qualify else source] = points
    return curves


def _plots(runs: list, qualify: bool) -> Section:
    names = [f"{run.label} · {s}" if qualify else s for run in runs for s in _sources(run)]
    colours = P.condition_colours(list(dict.fromkeys(names)))
    items: list = [Text("Mean and 95% interval over seeds (error bars); dotted: the clean baseline (0% replaced). "
                        "PNG and SVG copies are in plots/.")]
    archs = list(dict.fromkeys(a for run in runs for a in run.config.contamination.archs))
    for arch in archs:
        curves = _share_curves(runs, "1", "accuracy", qualify, arch=arch, test="clean")
        if curves:
            base = next(iter(curves.values()))[0]
            title = f"Table 1, {arch}: accuracy by share replaced"
            scaled = {k: [(x, 100 * m, 100 * h) for x, m, h in v] for k, v in curves.items()}
            items.append(Plot(f"accuracy_by_share_{arch}", title, lambda path, c=scaled, t=title, b=base: P.plot_shares(
                c, path, "test accuracy (%)", t, baseline=100 * b[1] if b[0] == 0.0 else None, colours=colours,
                within=(0.0, 100.0))))
    curves = _share_curves(runs, "3", "recall", qualify)
    if curves:
        base = next(iter(curves.values()))[0]
        items.append(Plot("generator_recall_by_share", "Table 3: recall by share replaced",
                          lambda path: P.plot_shares(curves, path, "recall@5 (fraction)",
                                                     "Table 3: a generator trained on each mixture",
                                                     baseline=base[1] if base[0] == 0.0 else None, colours=colours,
                                                     within=(0.0, 1.0))))
    for run in runs:
        for name, caption in (("spectra", "power spectra, real vs generated (first seed)"),
                              ("confusion", "confusion matrices (first seed)")):
            if (run.path / "plots" / f"{name}.png").is_file():
                items.append(Image(run.path / "plots" / f"{name}.png", f"{run.label}: {caption}" if qualify
                                   else caption))
    return Section("plots", "", items)


def plot(run, metric: str, ax) -> None:
    """`metric` against the share replaced (generated and each real control), from the first
    table that scores it (Table 1 on the clean test set for classifier metrics)."""
    tables = sorted({r["table"] for r in run.rows if r["metric"] == metric}, key=lambda t: (t != "1", t))
    where = {"test": "clean", "arch": run.config.contamination.archs[0]} if tables and tables[0] == "1" else {}
    curves = _share_curves([run], tables[0], metric, False, **where) if tables else {}
    P.draw_shares(ax, curves, metric, f"Table {tables[0] if tables else '?'}: {metric} by share replaced",
                  within=metric_range(metric))
