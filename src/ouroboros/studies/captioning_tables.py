"""The captioning study's comparisons, tables (``tables.md``) and findings.

Every comparison is the contamination paper's direction "a scores lower than b", per
caption metric (``captioning.compare_metrics``), paired by seed
(`ouroboros.report.comparisons.decide_all`): a paired t-test, Holm-corrected over every
comparison of the run, and TOST within ``captioning.equivalence_margin`` (Holm too) for
"no effect". A direction *holds* when a is shown lower, is *reversed* when a is shown
higher, shows *no effect* when the difference is shown within the margin, and is *not
resolved* otherwise. The pairs:

- Table 2, generated r% against 0% (the paper: every metric falls as the share grows);
- Table 2, generated r% against each real control at r% (the paper: SD-COCO below
  Flickr-30k, CO/SD-20% "comparable or inferior" to CO/FL-40%);
- Table 9, the f% real subset filled up with generated stand-ins against the subset alone
  (the paper: "adding generated data affects negatively, even when only 5% of real data
  are available").
"""

from __future__ import annotations

import math
from pathlib import Path

from ouroboros.metrics.captions import KEYS, SPICE_REASON, not_computed
from ouroboros.report.comparisons import Pair, decide_all
from ouroboros.report.page import Finding, Findings, Markdown, Section, Text
from ouroboros.report.stats import EQUIVALENT, HIGHER, LOWER, t_interval
from ouroboros.studies.captioning import FILLED, subset_source
from ouroboros.studies.contamination import CONTROLS

HOLDS, REVERSED, NO_EFFECT, NOT_RESOLVED = "holds", "reversed", "no effect", "not resolved"
VERDICT = {LOWER: HOLDS, HIGHER: REVERSED, EQUIVALENT: NO_EFFECT}
LABELS = ("table", "ratio")  # comparisons.csv's columns naming a pair, after kind, a, b
# The paper's numbers (BLIP on COCO's test split), for the docs and the tables' notes.
PAPER_TABLE2 = {"COCO": (0.791, 0.641, 0.508, 0.400, 0.240, 0.310, 0.602, 1.335),
                "CO/SD-20%": (0.787, 0.634, 0.500, 0.391, 0.235, 0.306, 0.596, 1.320),
                "CO/SD-40%": (0.786, 0.632, 0.499, 0.390, 0.236, 0.307, 0.596, 1.319),
                "CO/SD-80%": (0.780, 0.623, 0.486, 0.377, 0.233, 0.300, 0.588, 1.279),
                "SD-COCO": (0.711, 0.534, 0.394, 0.287, 0.191, 0.252, 0.514, 1.000),
                "CO/FL-40%": (0.787, 0.634, 0.501, 0.393, 0.238, 0.308, 0.598, 1.326),
                "Flickr 30k": (0.754, 0.587, 0.439, 0.321, 0.215, 0.275, 0.554, 1.092)}
PAPER_TABLE2_COLUMNS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "SPICE", "METEOR", "ROUGE_L", "CIDEr")


def _range(metric: str) -> tuple[float, float]:
    return (0.0, math.inf) if metric == "CIDEr" else (0.0, 1.0)


def _per_seed(rows, metric, **where) -> dict:
    return {str(r["seed"]): float(r["value"]) for r in rows
            if r["metric"] == metric and all(str(r[k]) == str(v) for k, v in where.items())}


def _pct(r) -> str:
    return f"{float(r):.0%}"


def _controls(config) -> list:
    return [CONTROLS[name] for name in config.captioning.controls]


def pairs(rows, config) -> list[Pair]:
    c = config.captioning
    out = []
    for metric in c.compare_metrics:
        def at(table, source, ratio):
            return _per_seed(rows, metric, table=table, source=source, ratio=float(ratio))

        for r in (r for r in c.ratios if r > 0):
            gen = at("2", "generated", r)
            if 0.0 in c.ratios:
                out.append(Pair("generated vs real", f"generated {_pct(r)}", "generated 0%", metric, gen,
                                at("2", "generated", 0.0), {"table": "2", "ratio": r}))
            for ctl in _controls(config):
                out.append(Pair(f"generated vs {ctl.source}", f"generated {_pct(r)}", f"{ctl.source} {_pct(r)}",
                                metric, gen, at("2", ctl.source, r), {"table": "2", "ratio": r}))
        for f in c.subsets:
            out.append(Pair("filled vs subset", f"{subset_source(f)} {FILLED}", subset_source(f), metric,
                            at("9", FILLED, f), at("9", subset_source(f), f), {"table": "9", "ratio": f}))
    return out


def comparisons(rows, config) -> list:
    c = config.captioning
    return decide_all(pairs(rows, config), c.delta_of, alpha=config.compare.alpha)


def _metrics(rows) -> list[str]:
    present = {r["metric"] for r in rows}
    return [m for m in KEYS if m in present]


def _value(rows, metric, **where) -> str:
    return t_interval(list(_per_seed(rows, metric, **where).values())).format(1, 3, _range(metric))


def directions(rows, config) -> list[tuple[str, object]]:
    """(the paper's direction as a sentence, its comparison) for every comparison."""
    out = []
    for comp in comparisons(rows, config):
        p = comp.pair
        out.append((f"Table {p.labels['table']}: {p.a} scores lower {p.metric} than {p.b}", comp))
    return out


def _verdict(comp) -> str:
    return VERDICT.get(comp.verdict, NOT_RESOLVED)


def _notes() -> list[str]:
    reasons = not_computed()
    return [f"{name}: {reason}" for name, reason in reasons.items()] or [SPICE_REASON]


def tables_markdown(rows, config) -> str:
    c = config.captioning
    metrics = _metrics(rows)
    out = [f"# {config.name}: captioning tables", "",
           f"Mean [95% interval] (Student t) over {len(c.seeds)} seeds {list(c.seeds)} of a captioner "
           f"({c.captioner.arch}, beam {c.captioner.beam}, {c.captioner.min_length}-{c.captioner.max_length} tokens) "
           "trained on each mixture, its captions of the test split scored against the test split's references "
           "(pycocoevalcap's scorers; CIDEr is CIDEr-D). Each seed redraws the generator, its stand-ins, the "
           "mixtures and the captioner.", ""]
    out += [f"Not reported: {note}" for note in _notes()] + [""]

    def table(title, header, body, note=""):
        out.extend([f"## {title}", ""] + ([note, ""] if note else []))
        out.extend(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)])
        out.extend("| " + " | ".join(r) + " |" for r in body)
        out.append("")

    sources = ["generated"] + [ctl.source for ctl in _controls(config)]
    table("Table 2: replacing captioned training images", ["source", "share"] + metrics,
          [[s, _pct(r)] + [_value(rows, m, table="2", source=s, ratio=float(r)) for m in metrics]
           for s in sources for r in c.ratios],
          "generated: each replaced image's stand-in, made from one of its own captions (its captions kept); "
          "controls: real captioned images of the same classes (same-source: more of the training data's "
          "distribution; other-source: a second real dataset).")
    if c.subsets:
        table("Table 9: real subsets alone and filled up with generated stand-ins", ["training set"] + metrics,
              [[f"{subset_source(f)}{' ' + FILLED if s == FILLED else ''}"]
               + [_value(rows, m, table="9", source=s, ratio=float(f)) for m in metrics]
               for f in c.subsets for s in (subset_source(f), FILLED)],
              "f% real: the real images the (1 - f) mixture keeps, alone; + generated: that mixture, the same "
              "real images with the stand-ins of the rest (at 20% it is Table 2's 80% generated set).")
    found = directions(rows, config)
    counts = {v: sum(_verdict(comp) == v for _, comp in found) for v in (HOLDS, REVERSED, NO_EFFECT, NOT_RESOLVED)}
    out += ["## Which of the paper's directions hold here", "",
            f"Each direction \"a scores lower than b\" is a paired comparison over seeds (a - b per seed, 95% "
            f"interval): a paired t-test Holm-corrected over all {len(found)} comparisons (alpha "
            f"{config.compare.alpha:g}) and TOST within ±{c.equivalence_margin} of b's mean (Holm too; "
            "captioning.equivalence_margin). **holds**: a shown lower; **reversed**: a shown higher; **no effect**: "
            "shown within the margin; **not resolved** otherwise. Of " + ", ".join(
                f"{n} {v}" for v, n in counts.items()) + ". The same comparisons are in comparisons.csv.", ""]
    table("Directions", ["table", "a", "b", "metric", "a - b [95% CI]", "p (Holm)", "p equivalent (Holm)", "verdict"],
          [[comp.pair.labels["table"], comp.pair.a, comp.pair.b, comp.pair.metric, comp.diff.format_range(1, 3),
            f"{comp.p_holm:.2g}", f"{comp.p_equivalent_holm:.2g}", _verdict(comp)] for _, comp in found])
    return "\n".join(out) + "\n"


def findings(rows, config) -> list[Finding]:
    return [Finding(f"{text}: difference {comp.diff.format_range(1, 3)} ({_verdict(comp)}; paired t p = "
                    f"{comp.p_holm:.2g}, TOST p = {comp.p_equivalent_holm:.2g}, Holm)", _verdict(comp))
            for text, comp in directions(rows, config)]


def sections(runs) -> list[Section]:
    out = []
    for run in runs:
        found = findings(run.rows, run.config)
        counts = {v: sum(f.verdict == v for f in found) for v in (HOLDS, REVERSED, NO_EFFECT, NOT_RESOLVED)}
        out.append(Section("findings", f"{run.label}: captioning", [
            Text(f"Of the paper's {len(found)} directions checked here: "
                 + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."), Findings(found)]))
        out.append(Section("tables", f"Tables: {run.label}", [Markdown(tables_markdown(run.rows, run.config))]))
    return out


def report(run_dir: Path, config, rows=None) -> Path:
    """(Re)write tables.md from results.csv."""
    from ouroboros.io import write_text_atomic
    from ouroboros.report.results import read_results

    run_dir = Path(run_dir)
    rows = rows if rows is not None else read_results(run_dir / "results.csv")
    write_text_atomic(run_dir / "tables.md", tables_markdown(rows, config))
    return run_dir / "tables.md"
