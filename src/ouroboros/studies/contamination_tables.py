"""The contamination study's tables (``tables.md``) and findings: means with 95%
Student-t intervals over seeds, and for each of the paper's directions whether it
holds, is reversed or is not resolved, from the paired per-seed difference.

Directions of the form "a is lower (higher) than b" are read from the 95% interval of
the paired difference. Table 8's "appending generated data does not raise accuracy" is a
claim of no gain, which an interval straddling 0 cannot support; it is decided by tests
(`ouroboros.report.stats`): a paired t-test of "no difference" and the two one-sided
tests (TOST) of "a difference of at least delta" (delta = contamination.
equivalence_margin), each Holm-corrected over Table 8's comparisons (every arch and
appended share). It holds when the difference is shown equivalent to 0 within +-delta or
shown negative, is reversed when shown positive, and is not resolved otherwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ouroboros.config import StudyConfig
from ouroboros.report.stats import (
    EQUIVALENT, HIGHER, HOLDS, LOWER, NOT_RESOLVED, REVERSED, Interval, decide, holm, metric_range,
    paired_difference, paired_test, t_interval, verdict,
)
from ouroboros.studies.contamination import CONTROLS, TABLE10, table10_ratio


def _controls(config: StudyConfig) -> list:
    """The run's real controls (`ouroboros.studies.contamination.Control`), in config order."""
    return [CONTROLS[name] for name in config.contamination.controls]


def _per_seed(rows, metric="accuracy", **where) -> dict:
    """{seed: value} of the rows matching `where` (values compared as strings)."""
    out = {}
    for r in rows:
        if r["metric"] == metric and all(str(r[k]) == str(v) for k, v in where.items()):
            out[str(r["seed"])] = float(r["value"])
    return out


def _summary(rows, metric="accuracy", **where) -> Interval:
    return t_interval(list(_per_seed(rows, metric, **where).values()))


def _acc(rows, **where) -> str:
    return _summary(rows, **where).format(100, 1, metric_range("accuracy"))


def _unique(rows, **where) -> str:
    """Distinct images in a training set (mean over seeds), and its size when they differ."""
    uniq = _per_seed(rows, "unique_images", **where)
    size = _per_seed(rows, "images", **where)
    if not uniq:
        return "-"
    u, n = np.mean(list(uniq.values())), np.mean(list(size.values()))
    return f"{u:.0f}" if u == n else f"{u:.0f} of {n:.0f}"


@dataclasses.dataclass
class Claim:
    table: str
    text: str  # the paper's direction, in words
    paper: str  # the paper's numbers
    diff: Interval  # paired per-seed difference (a - b), in the metric's units
    expected: str  # "<" or ">": the paper's sign of the difference
    scale: float = 100.0  # 100 for accuracy (percentage points), 1 for precision/recall
    # A claim of no gain (Table 8) is decided by tests: `decide`'s higher / lower /
    # equivalent / not resolved, and how ("" for claims read from the interval).
    decision: str = ""
    how: str = ""

    @property
    def verdict(self) -> str:
        if self.decision:  # shown equivalent (a claim of no gain), or shown on one side of 0
            agrees, opposes = (LOWER, HIGHER) if self.expected == "<" else (HIGHER, LOWER)
            return {EQUIVALENT: HOLDS, agrees: HOLDS, opposes: REVERSED}.get(self.decision, NOT_RESOLVED)
        return verdict(self.diff, self.expected)


def no_gain_claims(texts: list[str], pairs: list[tuple[dict, dict]], margin: float) -> list[Claim]:
    """Claims "a does not raise accuracy over b" (Table 8), one per (a, b) pair of per-seed
    accuracies: a paired t-test and TOST within +-margin, Holm-corrected over the pairs."""
    tests = [paired_test(a, b, margin) for a, b in pairs]
    p_holm, p_eq_holm = holm([t.p for t in tests]), holm([t.p_equivalent for t in tests])
    claims = []
    for text, test, p, p_eq in zip(texts, tests, p_holm, p_eq_holm):
        decision = decide(test.diff.mean, p, p_eq)
        how = (f"{decision}: paired t p = {p:.2g}, TOST within ±{100 * margin:g} points p = {p_eq:.2g} (Holm)"
               if test.diff.n >= 2 else f"{decision}: fewer than 2 seeds")
        claims.append(Claim("8", text, "75.7 -> 75.7 / 74.9 / 75.0", test.diff, "<", decision=decision, how=how))
    return claims


# Table 10, metric -> (the paper's IN/SD-80%-64 vs ImageNet-64 (20%), its sign of "mixture - real alone")
TABLE10_METRICS = {"fid": ("12.5 vs 16.5", "<"), "precision": ("0.795 vs 0.639", ">"),
                   "recall": ("0.490 vs 0.646", "<")}


@dataclasses.dataclass
class Comparison:
    """One of Table 10's paired comparisons, a - b per seed, tested (Holm over the table)."""
    what: str
    metric: str
    test: object  # ouroboros.report.stats.PairedTest
    p_holm: float
    decision: str


def table10(rows: list[dict], config: StudyConfig) -> list[Comparison]:
    """Table 10: the top mixture's model against the one trained on its real images alone
    (what adding the generated images does), and that one against all the real data (what
    less real data does), per metric: paired t-tests over seeds, Holm over all six."""
    top = table10_ratio(config.contamination.ratios)
    if top is None:
        return []

    def at(metric, **where):
        return _per_seed(rows, metric, table=where.pop("table", "3"), **where)

    pairs = []
    for metric in TABLE10_METRICS:
        alone = at(metric, table="10", source=TABLE10, ratio=top)
        pairs.append((f"{top:.0%} generated mixture - its {1 - top:.0%} real alone", metric,
                      at(metric, source="generated", ratio=top), alone))
        pairs.append((f"{1 - top:.0%} real alone - all real (0%)", metric, alone,
                      at(metric, source="generated", ratio=0.0)))
    tests = [paired_test(a, b) for *_, a, b in pairs]
    p_holm = holm([t.p for t in tests])
    return [Comparison(what, metric, t, p, decide(t.diff.mean, p, float("nan")))
            for (what, metric, _, _), t, p in zip(pairs, tests, p_holm)]


def findings(rows: list[dict], config: StudyConfig) -> list[Claim]:
    """Each of the paper's directions, judged from the paired per-seed differences."""
    c = config.contamination
    claims: list[Claim] = []
    table8: list[tuple[str, tuple[dict, dict]]] = []  # decided together (Holm) after the loop
    ratios = [r for r in c.ratios if r > 0]
    base = 0.0 if 0.0 in c.ratios else None

    def acc(**where):
        return _per_seed(rows, "accuracy", **where)

    def diff(a, b):
        return paired_difference(a, b)

    for arch in c.archs:
        clean = dict(arch=arch, test="clean")
        for r in ratios:
            gen = acc(table="1", source="generated", ratio=r, **clean)
            if base is not None:
                claims.append(Claim("1", f"{arch}: {r:.0%} generated is less accurate than 0%",
                                    "ResNet-50 75.7 -> 74.5 / 72.6 / 65.3 / 15.7",
                                    diff(gen, acc(table="1", source="generated", ratio=base, **clean)), "<"))
            for ctl in _controls(config):
                claims.append(Claim("1", f"{arch}: {r:.0%} generated is less accurate than {r:.0%} {ctl.source}",
                                    "SD vs WebVision: 74.5/75.1, 72.6/73.9, 65.3/68.3, 15.7/61.3",
                                    diff(gen, acc(table="1", source=ctl.source, ratio=r, **clean)), "<"))
            claims.append(Claim("5", f"{arch}: diverse conditioning beats simple at {r:.0%}",
                                "complex vs original prompts at 100%: 18.6 vs 15.7",
                                diff(acc(table="5", source="diverse", ratio=r, **clean), gen), ">"))
        worst = max((r for r in ratios if r < 1.0), default=max(ratios, default=None))
        if worst is not None and base is not None:
            for shift in c.shifts:
                where = dict(table="1", ratio=worst, arch=arch, test=shift)
                claims.append(Claim("6", f"{arch}, {shift}: {worst:.0%} generated is less robust than 0%",
                                    "IN/SD-80% vs ImageNet: ImageNet-A 1.61 vs 1.76, ImageNet-R 30.0 vs 36.7",
                                    diff(acc(source="generated", **where),
                                         acc(table="1", source="generated", ratio=base, arch=arch, test=shift)), "<"))
                for ctl in _controls(config):
                    claims.append(Claim("6", f"{arch}, {shift}: {worst:.0%} generated is less robust than the "
                                             f"{ctl.source}",
                                        "IN/SD-80% vs IN/WV-80%: ImageNet-A 1.61 vs 5.00, ImageNet-R 30.0 vs 40.0",
                                        diff(acc(source="generated", **where), acc(source=ctl.source, **where)), "<"))
        small = f"{c.small_fraction:.0%} real"
        alone, plus_gen = (acc(table="7", source=s, **clean) for s in (small, "+ generated"))
        claims.append(Claim("7", f"{arch}: {small} filled with generated beats {small} alone", "52.1 vs 44.7",
                            diff(plus_gen, alone), ">"))
        for ctl in _controls(config):
            filled = "real" if ctl.fill_source == "+ real" else ctl.fill_source[2:]
            claims.append(Claim("7", f"{arch}: {small} filled with {filled} beats filled with generated",
                                "61.4 vs 52.1", diff(acc(table="7", source=ctl.fill_source, **clean), plus_gen), ">"))
        if base is not None:
            full = acc(table="1", source="generated", ratio=base, **clean)
            for r in c.append_ratios:
                table8.append((f"{arch}: appending {r:.0%} generated does not raise accuracy",
                               (acc(table="8", ratio=r, **clean), full)))
    if table8:
        claims += no_gain_claims([t for t, _ in table8], [pair for _, pair in table8], c.equivalence_margin)
    top = max(ratios, default=None)
    if base is not None and top is not None:
        if "cnn" in c.archs:
            def drop(table, **where):
                hi, lo = acc(table=table, ratio=top, **where), acc(table=table, ratio=base, **where)
                return {s: hi[s] - lo[s] for s in set(hi) & set(lo)}

            claims.append(Claim("11", f"pre-training + linear probe loses less than supervised cnn at {top:.0%}",
                                "MAE 43.9 -> 38.8 while supervised 75.7 -> 15.7",
                                diff(drop("11", source="generated"), drop("1", source="generated", arch="cnn",
                                                                         test="clean")), ">"))
        for r in ratios:
            claims.append(Claim("3", f"a model trained on {r:.0%} generated has lower recall than on 0%",
                                "recall 0.644 -> 0.621 / 0.585 / 0.490 / 0.364",
                                diff(_per_seed(rows, "recall", table="3", source="generated", ratio=r),
                                     _per_seed(rows, "recall", table="3", source="generated", ratio=base)), "<", 1.0))
            claims.append(Claim("3", f"a model trained on {r:.0%} generated has higher precision than on 0%",
                                "precision 0.665 -> 0.699 / 0.730 / 0.795 / 0.831",
                                diff(_per_seed(rows, "precision", table="3", source="generated", ratio=r),
                                     _per_seed(rows, "precision", table="3", source="generated", ratio=base)), ">",
                                1.0))
            for ctl in _controls(config):
                claims.append(Claim("3", f"a model trained on {r:.0%} generated has lower recall than on {r:.0%} "
                                         f"{ctl.source}", "(no control counterpart in the paper)",
                                    diff(_per_seed(rows, "recall", table="3", source="generated", ratio=r),
                                         _per_seed(rows, "recall", table="3", source=ctl.source, ratio=r)), "<", 1.0))
        for metric, sign, paper in (("recall", "<", "0.344 vs 0.791"), ("precision", ">", "0.836 vs 0.757")):
            claims.append(Claim("4", f"the {top:.0%} generated training set has {'lower' if sign == '<' else 'higher'} "
                                     f"{metric} than the real one", paper,
                                diff(_per_seed(rows, metric, table="4", source="generated", ratio=top),
                                     _per_seed(rows, metric, table="4", source="generated", ratio=base)), sign, 1.0))
        claims.append(Claim("4", f"the {top:.0%} diverse pool has higher recall than the simple one",
                            "complex 0.450 vs original 0.344",
                            diff(_per_seed(rows, "recall", table="4", source="diverse", ratio=top),
                                 _per_seed(rows, "recall", table="4", source="generated", ratio=top)), ">", 1.0))
    for comp in table10(rows, config):
        if comp.what.endswith("real alone"):  # the paper's comparison
            paper, sign = TABLE10_METRICS[comp.metric]
            claims.append(Claim("10", f"a model trained on the {comp.what.split(' - ')[0]} has "
                                      f"{'lower' if sign == '<' else 'higher'} {comp.metric} than on its real images "
                                      "alone", paper, comp.test.diff, sign, 1.0, comp.decision,
                                f"{comp.decision}: paired t p = {comp.p_holm:.2g} (Holm over Table 10)"
                                if comp.test.diff.n >= 2 else f"{comp.decision}: fewer than 2 seeds"))
    for pool in ("simple", "diverse"):
        for probe in ("logistic", "mlp"):
            acc_ = _per_seed(rows, "accuracy", table="detection", source=pool, arch=probe)
            claims.append(Claim("detection", f"a {probe} probe tells real from {pool}-pool images above chance",
                                "about 85% (chance 50%)", diff(acc_, {s: 0.5 for s in acc_}), ">"))
    return claims


def _generated_or_different(rows, config, table) -> None:
    """Table 1's paired differences between the generated cells and the two controls: what
    being different costs (other-source - same-source), and what being generated costs
    beyond that (generated - other-source)."""
    same, other = (ctl.source for ctl in _controls(config))
    pairs = [("generated - same-source", "generated", same), ("other-source - same-source", other, same),
             ("generated - other-source", "generated", other)]
    body = []
    for arch in config.contamination.archs:
        for r in (r for r in config.contamination.ratios if r > 0):
            acc = {s: _per_seed(rows, table="1", source=s, ratio=r, arch=arch, test="clean")
                   for s in ("generated", same, other)}
            body.append([arch, f"{r:.0%}"] + [paired_difference(acc[a], acc[b]).format_range(100, 1)
                                              for _, a, b in pairs])
    table("Generated or different? Table 1 against each control", ["arch", "share"] + [p for p, _, _ in pairs], body,
          "Paired per-seed differences in accuracy (percentage points, clean test split) [95% interval]: the same-"
          "source control is more of the training data's own distribution, the other-source control is real but "
          "different, so generated - other-source is what being generated costs beyond being different.")


def _table10(rows, config, table, metric, note) -> None:
    top = table10_ratio(config.contamination.ratios)
    if top is None:
        return
    sets = [("all real (0% replaced)", "3", "generated", 0.0, "1"),
            (f"{1 - top:.0%} real alone (the real images of the {top:.0%} mixture)", "10", TABLE10, top, "10"),
            (f"{top:.0%} generated mixture", "3", "generated", top, "1")]
    table(f"Table 10: a generative model trained on the {top:.0%} generated mixture vs. on its {1 - top:.0%} real "
          "images alone", ["training set", "unique", "FID", "precision", "recall"],
          [[name, _unique(rows, table=sized, source=s, ratio=r)] + [metric(t, s, r, m) for m in TABLE10_METRICS]
           for name, t, s, r, sized in sets],
          note + " The paper (IDDPM, ImageNet-64): 20% subset FID 16.5, precision 0.639, recall 0.646; IN/SD-80% "
          "12.5, 0.795, 0.490. Same real images, fit and sampling seeds in both models of a seed.")
    comps = table10(rows, config)
    table("Table 10: paired comparisons", ["comparison (a - b)", "metric", "difference [95% CI]", "p (paired t, Holm)",
                                           "decision"],
          [[comp.what, comp.metric, comp.test.diff.format_range(1, 2 if comp.metric == "fid" else 3),
            f"{comp.p_holm:.2g}", comp.decision] for comp in comps],
          "Holm over the table's six paired t-tests: higher / lower when the difference is shown, not resolved "
          "otherwise.")


def tables_markdown(rows: list[dict], config: StudyConfig) -> str:
    c = config.contamination
    pct = lambda r: f"{float(r):.0%}"  # noqa: E731
    out = [f"# {config.name}: contamination tables", "",
           f"Mean [95% interval] (Student t, sample standard deviation; within the metric's range) over "
           f"{len(c.seeds)} seeds {list(c.seeds)}; "
           "each seed redraws the generator, the pools, the mixtures and the classifiers. Accuracy in % on the clean "
           "test split unless named. 'unique' is the number of distinct images in the training set (mean over seeds; "
           "'u of n' where the set repeats images).", ""]

    def table(title, header, body, note=""):
        out.extend([f"## {title}", ""] + ([note, ""] if note else []))
        out.extend(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)])
        out.extend("| " + " | ".join(r) + " |" for r in body)
        out.append("")

    def ratio_rows(table_, sources):
        body = []
        for a in c.archs:
            body += [[a, s] + [_acc(rows, table=table_, source=s, ratio=r, arch=a, test="clean") for r in c.ratios]
                     for s in sources]
        body += [["unique", s] + [_unique(rows, table=table_, source=s, ratio=r) for r in c.ratios] for s in sources]
        return body

    controls = [ctl.source for ctl in _controls(config)]
    table("Table 1: replacing real training data", ["arch", "source"] + [pct(r) for r in c.ratios],
          ratio_rows("1", ("generated", *controls)))
    if len(controls) == 2:
        _generated_or_different(rows, config, table)
    table("Table 5: simple vs. diverse conditioning", ["arch", "conditioning"] + [pct(r) for r in c.ratios],
          ratio_rows("5", ("simple", "diverse")))
    tests = ["clean"] + list(c.shifts)
    table("Table 6: shifted test sets", ["arch", "source", "share"] + tests,
          [[a, s, pct(r)] + [_acc(rows, table="1", source=s, ratio=r, arch=a, test=t) for t in tests]
           for a in c.archs for s in ("generated", *controls) for r in c.ratios])
    sources = [f"{c.small_fraction:.0%} real", "+ generated"] + [ctl.fill_source for ctl in _controls(config)]
    table(f"Table 7: {c.small_fraction:.0%} real data, alone or filled up to full size (the same subset per seed)",
          ["arch"] + sources,
          [[a] + [_acc(rows, table="7", source=s, arch=a, test="clean") for s in sources] for a in c.archs]
          + [["unique"] + [_unique(rows, table="7", source=s) for s in sources]])
    table("Table 8: all real data plus appended generated data",
          ["arch", "+0%"] + [f"+{pct(r)}" for r in c.append_ratios],
          [[a, _acc(rows, table="1", source="generated", ratio=0.0, arch=a, test="clean")]
           + [_acc(rows, table="8", ratio=r, arch=a, test="clean") for r in c.append_ratios] for a in c.archs]
          + [["unique", _unique(rows, table="1", source="generated", ratio=0.0)]
             + [_unique(rows, table="8", ratio=r) for r in c.append_ratios]])

    def metric(table_, source, ratio, m):
        return _summary(rows, m, table=table_, source=source, ratio=ratio).format(1, 2 if m == "fid" else 3,
                                                                                  metric_range(m))

    note = ("Scored against the test split, which no model trains on, in the features of a classifier trained on "
            "the generator split, which none of the scored sets contains (FID; precision@5 and recall@5 of "
            "Kynkaanniemi et al.).")
    kind = "a class-conditional" if c.table3_conditional else "an unconditional"
    table(f"Table 3: {kind} diffusion model trained on each mixture, its samples scored against the test split",
          ["training set", "share", "FID", "precision", "recall"],
          [[s, pct(r)] + [metric("3", s, r, m) for m in ("fid", "precision", "recall")]
           for s in ("generated", *controls) for r in c.ratios], note)
    _table10(rows, config, table, metric, note)
    table("Table 4: the training sets themselves scored against the test split",
          ["source", "share", "precision", "recall", "FID", "unique"],
          [[s, pct(r)] + [metric("4", s, r, m) for m in ("precision", "recall", "fid")]
           + [_unique(rows, table="1" if s != "diverse" else "5", source=s, ratio=r)]
           for s in ("generated", "diverse", *controls) for r in c.ratios], note)
    table("Table 11: self-supervised pre-training (masked denoising autoencoder) + linear probe, "
          "vs. supervised training (cnn)", ["generated share", "supervised", "DAE + linear probe"],
          [[pct(r), _acc(rows, table="1", source="generated", ratio=r, arch="cnn", test="clean"),
            _acc(rows, table="11", ratio=r)] for r in c.ratios])
    table(f"Detection (Sec. 6.1): held-out real ({controls[0]}) vs. generated images, probes on frozen features; "
          "accuracy on disjoint halves, % (chance 50)", ["generated pool", "logistic regression", "2-layer MLP"],
          [[name] + [_acc(rows, table="detection", source=name, arch=probe) for probe in ("logistic", "mlp")]
           for name in ("simple", "diverse")])

    claims = findings(rows, config)
    counts = {v: sum(cl.verdict == v for cl in claims) for v in (HOLDS, REVERSED, NOT_RESOLVED)}
    out += ["## Which of the paper's directions hold here", "",
            f"From the 95% interval of each paired per-seed difference (a - b, same seeds): **holds** when the whole "
            f"interval lies on the paper's side of 0, **reversed** when it lies on the other side, **not resolved** "
            f"otherwise; Table 8's claim of no gain holds only when tests show the difference equivalent to 0 "
            f"within ±{100 * c.equivalence_margin:g} points (TOST) or negative, Holm-corrected over Table 8 "
            f"(contamination.equivalence_margin). "
            f"Accuracy differences in percentage points; precision and recall as fractions. "
            f"Of {len(claims)} directions: {counts[HOLDS]} hold, {counts[REVERSED]} reversed, "
            f"{counts[NOT_RESOLVED]} not resolved at {len(c.seeds)} seeds.", ""]
    for title, verdict_ in (("Holds", HOLDS), ("Reversed", REVERSED), ("Not resolved", NOT_RESOLVED)):
        chosen = [cl for cl in claims if cl.verdict == verdict_]
        if chosen:
            table(f"{title} ({len(chosen)})", ["table", "the paper's direction", "paper", "difference here [95% CI]"],
                  [[cl.table, cl.text, cl.paper, cl.diff.format_range(cl.scale, 1 if cl.scale == 100 else 3)
                    + (f"; {cl.how}" if cl.how else "")] for cl in chosen])
    return "\n".join(out) + "\n"


def report(run_dir: Path, config: StudyConfig, rows: list[dict] | None = None) -> Path:
    """(Re)write tables.md from results.csv."""
    from ouroboros.io import write_text_atomic
    from ouroboros.report.results import read_results

    run_dir = Path(run_dir)
    rows = rows if rows is not None else read_results(run_dir / "results.csv")
    write_text_atomic(run_dir / "tables.md", tables_markdown(rows, config))
    return run_dir / "tables.md"
