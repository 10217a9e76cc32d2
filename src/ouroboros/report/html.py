"""report.html: one self-contained page per run folder, or comparing several.

The page holds, for each run: the headline findings computed from results.csv with
their uncertainty, plots of each metric with the spread over seeds, the sample grids
side by side, the contamination study's tables, and the resolved config. Every image
is embedded as a ``data:`` URI and there is no script, stylesheet or font to fetch, so
the one file reads the same when mailed, attached to a supplement or opened offline.
The plots are also saved as PNG and SVG files under ``plots/`` beside the page.

Findings (feedback loop): for every condition (a chain's ``cell``) and headline
metric, the value at the condition's first and last generation (mean ± 95% Student-t
half-width over seeds) and their paired per-seed difference (last - first) with its
95% interval; the change *rises* or *falls* when the whole interval lies on one side
of 0 and is *not resolved* otherwise (`ouroboros.report.stats`). Findings
(contamination): Table 1's accuracy at each generated share against 0% and against the
same share of real control, paired per seed, with the study's verdicts; then its
tables (`tables.md`).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from pathlib import Path

from ouroboros.errors import UserError
from ouroboros.io import read_text_bounded, write_text_atomic
from ouroboros.report import plots as P
from ouroboros.report.stats import HOLDS, NOT_RESOLVED, REVERSED, Interval, paired_difference, t_interval, verdict

# Loop metrics stated as findings, in this order, with the digits they are shown with.
HEADLINE = {"accuracy": 3, "cross_entropy": 2, "fid": 1, "precision": 3, "recall": 3, "coverage": 3}
LOOP_PLOTS = ("accuracy", "cross_entropy", "fid", "precision", "recall", "density", "coverage")


@dataclasses.dataclass
class Run:
    path: Path
    label: str
    study: str  # "loop" or "contamination"
    rows: list[dict]
    config_text: str
    config: object | None  # StudyConfig, when config.yaml is there


def load_run(path: Path, label: str | None = None) -> Run:
    """A run folder's results (checked) and config; UserError when it cannot be reported."""
    from ouroboros.config import load_config
    from ouroboros.report.results import read_results

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run folder not found: {path}; give the --out folder of a study run")
    rows = read_results(path / "results.csv")
    config_path = path / "config.yaml"
    config = load_config(str(config_path)) if config_path.is_file() else None
    text = read_text_bounded(config_path, "config file") if config is not None else ""
    study = config.study if config is not None else ("contamination" if "table" in rows[0] else "loop")
    if study == "contamination" and config is None:
        raise UserError(f"{path} has no config.yaml, which the contamination report needs; run the study again "
                        "with the same --out to rewrite it")
    if study == "loop":
        for line, r in enumerate(rows, start=2):  # every generation's row names its generation and guidance
            if r["cell"] != "reference" and (r["generation"] == "" or r.get("guidance", "") == ""):
                raise UserError(f"{path / 'results.csv'} line {line} has no generation or guidance, so it is not a "
                                "feedback-loop results table; run the study again with the same --out to rewrite it")
    return Run(path, label or path.resolve().name, study, rows, text, config)


# -- findings -----------------------------------------------------------------------


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


@dataclasses.dataclass
class RunDifference:
    """A loop metric at a cell's last generation, in another run against the first run."""

    cell: str
    metric: str
    generation: int
    base: Interval  # the first run, over seeds
    other: Interval  # the other run, over seeds
    diff: Interval  # paired by seed: other - base


def run_differences(base: Run, other: Run) -> list[RunDifference]:
    """Every headline metric of every cell the two loop runs share, at the last generation
    both reached, paired by seed (the same seed of the same config draws the same real
    data, so a CPU and a GPU run of one config differ only by how they computed)."""
    out = []
    for cell in P.conditions(base.rows):
        if cell not in P.conditions(other.rows):
            continue
        gens = [{int(r["generation"]) for r in run.rows if r["cell"] == cell} for run in (base, other)]
        g = max(gens[0] & gens[1], default=None)
        if g is None:
            continue
        for metric in HEADLINE:
            a, b = _per_seed(base.rows, cell, metric, g), _per_seed(other.rows, cell, metric, g)
            if a and b:
                out.append(RunDifference(cell, metric, g, t_interval(list(a.values())), t_interval(list(b.values())),
                                         paired_difference(b, a)))
    return out


def contamination_claims(run: Run) -> list:
    """The contamination study's Claims (`studies.contamination.findings`), Table 1's first."""
    from ouroboros.studies.contamination import findings

    claims = findings(run.rows, run.config)
    return sorted(claims, key=lambda c: c.table != "1")


# -- HTML pieces --------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#111;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #999;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:2px 7px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}
img{max-width:100%;height:auto}img.grid{image-rendering:pixelated}
figure{display:inline-block;margin:4px;vertical-align:top;max-width:100%}
figure.plot{width:calc(50% - 10px);margin:4px 2px}figure.plot img{width:100%}
table.grids{width:100%;table-layout:fixed}table.grids th:first-child{width:8em}table.grids img{width:100%}
figcaption{font-size:.85em;text-align:center}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.8em}
span.rises,span.falls{font-weight:600}.not-resolved{color:#555}.findings li{margin:.2em 0}
@media print{body{max-width:none;margin:0}h2{page-break-after:avoid}figure,table{page-break-inside:avoid}}
"""


def _css(word: str) -> str:
    """A verdict or direction as a CSS class name ('not resolved' -> 'not-resolved')."""
    return word.replace(" ", "-")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _img(path: Path, alt: str, cls: str = "", width: int | None = None) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    attrs = f" class='{cls}'" if cls else ""
    attrs += f" width='{width}'" if width else ""
    return f"<img src='data:image/png;base64,{data}' alt='{_e(alt)}'{attrs}>"


def _figure(path: Path, caption: str, **kw) -> str:
    return f"<figure>{_img(path, caption, **kw)}<figcaption>{_e(caption)}</figcaption></figure>"


def _plot(path: Path, alt: str) -> str:
    """A plot, half the page wide (its title is inside it)."""
    return f"<figure class='plot'>{_img(path, alt)}</figure>"


def _table(header, body, left: int = 1, cls: str = "") -> str:
    """An HTML table; the first `left` columns are left-aligned (names, not numbers)."""
    def cells(tag, row):
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{c}</{tag}>" for i, c in enumerate(row))

    return (f"<table{f' class={cls}' if cls else ''}><tr>" + cells("th", [_e(h) for h in header]) + "</tr>"
            + "".join("<tr>" + cells("td", row) + "</tr>" for row in body) + "</table>")


def markdown_to_html(text: str) -> str:
    """The subset of Markdown `tables.md` uses: #/## headings, pipe tables, paragraphs, **bold**."""
    def inline(s):
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _e(s))

    out, table = [], []

    def flush():
        if table:
            header, body = table[0], [r for r in table[1:] if not set("".join(r)) <= set("-: ")]
            out.append(_table(header, [[inline(c) for c in r] for r in body], left=2))
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h4>{inline(line[3:])}</h4>")
        elif line.startswith("# "):
            out.append(f"<h3>{inline(line[2:])}</h3>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)


# -- sections -----------------------------------------------------------------------


def _loop_findings(rows: list[dict]) -> str:
    changes = loop_changes(rows)
    if not changes:
        return "<p>One generation only: no change to report.</p>"
    key = [c for c in changes if c.metric in ("accuracy", "fid", "recall")]
    parts = ["<ul class='findings'>"]
    parts += [f"<li class='{_css(c.direction)}'>{_e(c.sentence())}</li>" for c in key]
    parts.append("</ul>")
    body = [[_e(c.condition), _e(P.LABELS.get(c.metric, c.metric)), f"{c.first} → {c.last}",
             _e(c.start.format(1, HEADLINE[c.metric])), _e(c.end.format(1, HEADLINE[c.metric])),
             _e(c.diff.format_range(1, HEADLINE[c.metric])), f"<span class='{_css(c.direction)}'>{c.direction}</span>",
             str(c.diff.n)] for c in changes]
    parts.append(_table(["condition", "metric", "generations", "first (mean ± 95%)", "last (mean ± 95%)",
                         "change [95% interval]", "", "seeds"], body, left=2))
    ref = {r["metric"]: float(r["value"]) for r in rows if r["cell"] == "reference"}
    if ref:
        parts.append("<p>The real test split, scored the same way: "
                     + ", ".join(f"{_e(m)} {ref[m]:.{HEADLINE[m]}f}" for m in HEADLINE if m in ref) + ".</p>")
    return "\n".join(parts)


def _contamination_findings(run: Run) -> str:
    claims = contamination_claims(run)
    counts = {v: sum(c.verdict == v for c in claims) for v in (HOLDS, REVERSED, NOT_RESOLVED)}
    n_seeds = len(run.config.contamination.seeds)
    parts = [(f"<p>Of the paper's {len(claims)} directions checked here, {counts[HOLDS]} hold, "
              f"{counts[REVERSED]} are reversed and {counts[NOT_RESOLVED]} are not resolved at {n_seeds} "
              f"seed{'s' if n_seeds != 1 else ''} (paired per-seed differences, 95% intervals).</p>"),
             "<ul class='findings'>"]
    for c in claims:
        if c.table == "1":
            unit = "points" if c.scale == 100 else ""
            parts.append(f"<li class='{_css(c.verdict)}'>Table 1, {_e(c.text)}: difference "
                         f"{_e(c.diff.format_range(c.scale, 1))} {unit} (<b>{_e(c.verdict)}</b>)</li>")
    parts.append("</ul>")
    return "\n".join(parts)


def _between_runs(loop_runs: list[Run]) -> str:
    base, parts = loop_runs[0], []
    for other in loop_runs[1:]:
        diffs = run_differences(base, other)
        if not diffs:
            parts.append(f"<p>{_e(other.label)} shares no condition with {_e(base.label)}.</p>")
            continue
        body = [[_e(d.cell), _e(P.LABELS.get(d.metric, d.metric)), str(d.generation),
                 _e(d.base.format(1, HEADLINE[d.metric])), _e(d.other.format(1, HEADLINE[d.metric])),
                 _e(d.diff.format_range(1, HEADLINE[d.metric])), str(d.diff.n)] for d in diffs]
        parts.append(_table(["condition", "metric", "generation", f"{base.label} (mean ± 95%)",
                             f"{other.label} (mean ± 95%)", f"{other.label} − {base.label} [95% interval]",
                             "seeds"], body, left=2))
    return ("<p>Each condition's metrics at the last generation both runs reached; the difference is paired by "
            "seed.</p>" + "\n".join(parts))


def _loop_plots(rows: list[dict], plot_dir: Path, colours: dict) -> str:
    figures = []
    metrics = {r["metric"] for r in rows}
    for metric in LOOP_PLOTS:
        if metric in metrics:
            path = P.plot_metric(rows, metric, plot_dir / f"{metric}.png", colours=colours)
            figures.append(_plot(path, P.LABELS.get(metric, metric)))
    if any(m.startswith("accuracy/") for m in metrics):
        path = P.plot_class_accuracy(rows, plot_dir / "class_accuracy.png")
        figures.append(_figure(path, "per-class accuracy, one panel per condition"))
    if "train_real_share" in metrics:
        path = P.plot_makeup(rows, plot_dir / "makeup.png")
        figures.append(_figure(path, "what each generation trained on (shares of its training set), one panel per "
                                     "condition"))
    from ouroboros.studies.loop import recall_sweeps

    for name, sweep in recall_sweeps(rows).items():
        for metric in ("accuracy", "fid", "recall", "train_real_share"):
            path = P.plot_sweep(sweep, "curation.recall", metric, plot_dir / f"sweep-{name}-{metric}.png",
                                title=f"{name}: {metric} at the last generation vs watermark recall")
            figures.append(_figure(path, f"{name}: {P.LABELS.get(metric, metric)} at the last generation against "
                                         "the watermark filter's recall (mean and 95% interval over seeds)"))
    return ("<p>Mean over seeds; band: min-max over seeds; dotted: generation 0 (trained on real data); dashed: "
            "the real test split. PNG and SVG copies are in <code>plots/</code>.</p>" + "\n".join(figures))


def _share_curves(runs: list[Run], table: str, metric: str, qualify: bool, **where) -> dict:
    curves = {}
    for run in runs:
        for source in ("generated", "real control"):
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


def _contamination_plots(runs: list[Run], plot_dir: Path, colours: dict, qualify: bool) -> str:
    figures = []
    archs = list(dict.fromkeys(a for run in runs for a in run.config.contamination.archs))
    for arch in archs:
        curves = _share_curves(runs, "1", "accuracy", qualify, arch=arch, test="clean")
        if curves:
            base = next(iter(curves.values()))[0]
            path = P.plot_shares({k: [(x, 100 * m, 100 * h) for x, m, h in v] for k, v in curves.items()},
                                 plot_dir / f"accuracy_by_share_{arch}.png", "test accuracy (%)",
                                 f"Table 1, {arch}: accuracy by share replaced",
                                 baseline=100 * base[1] if base[0] == 0.0 else None, colours=colours)
            figures.append(_plot(path, f"Table 1, {arch}: accuracy by share replaced"))
    curves = _share_curves(runs, "3", "recall", qualify)
    if curves:
        base = next(iter(curves.values()))[0]
        path = P.plot_shares(curves, plot_dir / "generator_recall_by_share.png", "recall@5 (fraction)",
                             "Table 3: a generator trained on each mixture",
                             baseline=base[1] if base[0] == 0.0 else None, colours=colours)
        figures.append(_plot(path, "Table 3: recall by share replaced"))
    for run in runs:
        for name, caption in (("spectra", "power spectra, real vs generated (first seed)"),
                              ("confusion", "confusion matrices (first seed)")):
            if (run.path / "plots" / f"{name}.png").is_file():
                figures.append(_figure(run.path / "plots" / f"{name}.png",
                                       f"{run.label}: {caption}" if qualify else caption))
    return ("<p>Mean and 95% interval over seeds (error bars); dotted: the clean baseline (0% replaced). PNG and "
            "SVG copies are in <code>plots/</code>.</p>" + "\n".join(figures))


def _gen_index(path: Path) -> int:
    m = re.fullmatch(r"gen(\d+)", path.stem)
    return int(m.group(1)) if m else -1


def _samples(run: Run) -> str:
    samples = run.path / "samples"
    parts = []
    loose = sorted(samples.glob("*.png"))
    if loose:
        parts.append("".join(_figure(p, p.stem, cls="grid") for p in loose))
    dirs = [d for d in sorted(samples.glob("*")) if d.is_dir()]
    order = {c: i for i, c in enumerate(P.conditions(run.rows))}
    dirs.sort(key=lambda d: (order.get(d.name, len(order)), d.name))
    gens = sorted({_gen_index(p) for d in dirs for p in d.glob("gen*.png")} - {-1})
    if dirs and gens:
        body = []
        for d in dirs:
            cells = []
            for g in gens:
                png = d / f"gen{g}.png"
                cells.append(_img(png, f"{d.name} generation {g}", cls="grid") if png.is_file() else "")
            body.append([_e(d.name)] + cells)
        parts.append("<p>Rows: conditions; columns: generations (first seed; one row of each grid per "
                     "class).</p>" + _table(["condition"] + [f"gen {g}" for g in gens], body, cls="grids"))
    return "\n".join(parts) or "<p>No sample grids in this run folder.</p>"


def _config_differences(runs: list[Run]) -> str:
    from ouroboros.safe_yaml import load_yaml

    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    configs = [flat(load_yaml(run.config_text, f"{run.path}/config.yaml")) if run.config_text else {}
               for run in runs]
    keys = sorted({k for c in configs for k in c if len({repr(c2.get(k)) for c2 in configs}) > 1})
    if not keys:
        return "<p>The configs are identical.</p>"
    return _table(["setting"] + [run.label for run in runs],
                  [[_e(k)] + [_e(c.get(k, "-")) for c in configs] for k in keys])


def _labels(paths: list[Path]) -> list[str]:
    """Folder names, made unique by their position when two are the same."""
    names = [Path(p).resolve().name for p in paths]
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


def build_page(runs: list[Run], plot_dir: Path) -> str:
    """The report's HTML for `runs` (plots written to `plot_dir` on the way)."""
    from ouroboros.studies.contamination import tables_markdown

    several = len(runs) > 1
    loop_runs = [r for r in runs if r.study == "loop"]
    cont_runs = [r for r in runs if r.study == "contamination"]
    loop_rows = [dict(row, condition=f"{run.label} · {row['cell']}") if several else row
                 for run in loop_runs for row in run.rows]
    names = P.conditions(loop_rows)
    names += [f"{run.label} · {s}" if several else s for run in cont_runs for s in ("generated", "real control")]
    colours = P.condition_colours(list(dict.fromkeys(names)))
    title = "ouroboros report: " + ", ".join(f"{r.label} ({r.study})" for r in runs)
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>", "<link rel='icon' href='data:,'>",
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>"]
    if several:
        parts += ["<h2>Runs compared</h2>",
                  _table(["run", "folder", "study"], [[_e(r.label), _e(r.path), r.study] for r in runs]),
                  "<h3>Settings that differ</h3>", _config_differences(runs)]
    parts.append("<h2 id='findings'>Findings</h2>")
    for run in runs:
        parts.append(f"<h3>{_e(run.label)}: {run.study}</h3>")
        if run.study == "loop":
            own = [row for row in loop_rows if not several or row["condition"].startswith(f"{run.label} · ")]
            parts.append(_loop_findings(own))
        else:
            parts.append(_contamination_findings(run))
    if len(loop_runs) > 1:
        parts += [f"<h3>Between runs: each against {_e(loop_runs[0].label)}</h3>", _between_runs(loop_runs)]
    parts.append("<h2>Plots</h2>")
    if loop_rows:
        parts.append(_loop_plots(loop_rows, plot_dir, colours))
    if cont_runs:
        parts.append(_contamination_plots(cont_runs, plot_dir, colours, several))
    for run in runs:
        parts += [f"<h2>Samples: {_e(run.label)}</h2>", _samples(run)]
    for run in cont_runs:
        parts += [f"<h2>Tables: {_e(run.label)}</h2>", markdown_to_html(tables_markdown(run.rows, run.config))]
    for run in runs:
        parts += [f"<h2>Config: {_e(run.label)}</h2>", "<details open><summary>config.yaml (resolved)</summary>",
                  f"<pre>{_e(run.config_text) or 'no config.yaml in this run folder'}</pre></details>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def report_path(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Where the report goes: `out`, or RUN_DIR/report.html for one run folder and
    ./report.html for several; UserError when it cannot be an .html file."""
    out = Path(out) if out is not None else (Path(run_dirs[0]) / "report.html" if len(run_dirs) == 1
                                             else Path("report.html"))
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out must name an .html file; got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the .html file to write")
    return out


def write_report(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write the report of `run_dirs` to `report_path(run_dirs, out)` and its plots to
    ``plots/`` beside it. Every run folder is read and checked before anything is written."""
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise UserError("give at least one run folder")
    out = report_path(run_dirs, out)
    runs = [load_run(p, label) for p, label in zip(run_dirs, _labels(run_dirs))]
    out.parent.mkdir(parents=True, exist_ok=True)
    page = build_page(runs, out.parent / "plots")
    write_text_atomic(out, page)
    return out
