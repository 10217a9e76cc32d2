"""comparisons.csv and the verdicts the loop study's findings show (ouroboros.report.comparisons,
ouroboros.studies.loop_compare), the compare: config section, the one way intervals are
shown (summary, plots) and benchmarks/findings.py.

Run folders are written directly (results.csv with chosen per-seed values, config.yaml):
every number is checked against scipy. tests/test_runner.py checks a real tiny run."""

import csv
import importlib.util
import math
import types

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from conftest import REPO, TINY
from ouroboros import api, cli
from ouroboros.config import load_config
from ouroboros.errors import UserError
from ouroboros.report.results import write_results

# `acc-sub wm control` is the watermark variant's automatic unfiltered control (loop.curation_controls).
GRID = ("[{scenario: replace}, {scenario: accumulate},"
        " {name: acc-sub wm, scenario: accumulate-subsample, curation: {kind: watermark, recall: 0.5}},"
        " {name: g replace, scenario: replace, generators: [{family: gaussian}]},"
        " {name: g accumulate, scenario: accumulate, generators: [{family: gaussian}]}]")


def write_run(path, values: dict, overrides=(), seeds=3):
    """A loop run folder whose results.csv holds `values`: (cell, generation, metric) ->
    per-seed values (a list), or a callable seed -> value."""
    path.mkdir(parents=True, exist_ok=True)
    config = load_config(None, TINY + list(overrides), base={"name": "syn"})
    (path / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    rows = []
    for (cell, g, metric), v in values.items():
        variant, _, w = cell.rpartition(", guidance=") if ", " in cell else ("", "", cell.split("=")[1])
        for s in range(seeds):
            rows.append({"study": "syn", "cell": cell, "seed": s, "generation": g, "metric": metric,
                         "value": v[s] if isinstance(v, list) else v(s), "guidance": float(w),
                         "scenario": "replace", "curation": "none", "variant": variant})
    write_results(path / "results.csv", rows, ["guidance", "scenario", "curation", "variant"])
    return api.load_run(path)


def grid_run(path, seeds=3, extra=()):
    rng = np.random.default_rng(7)
    names = ["replace", "accumulate", "acc-sub wm", "acc-sub wm control", "g replace", "g accumulate"]
    values = {(f"{n}, guidance=1", g, m): list(rng.normal(5.0, 1.0, seeds))
              for n in names for g in (0, 1, 2) for m in ("accuracy", "fid", "recall")}
    return write_run(path, values, ["loop.guidance=[1.0]", f"loop.variants={GRID}", *extra], seeds)


def read_csv(run):
    api.write_comparisons(run)
    with open(run.path / "comparisons.csv", newline="") as f:
        return list(csv.DictReader(f))


def per_seed(run, cell, generation, metric):
    return {r["seed"]: float(r["value"]) for r in run.rows
            if r["cell"] == cell and int(r["generation"]) == generation and r["metric"] == metric}


def holm_reference(p):
    """Holm (1979) as stated: sort, multiply the i-th smallest by m - i + 1, keep monotone."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def test_grid_comparisons_match_scipy_with_holm_over_every_row(tmp_path):
    run = grid_run(tmp_path / "run")
    rows = read_csv(run)
    pairs = {(r["kind"], r["a"], r["b"]) for r in rows}
    assert pairs == {  # the baselines: each family's first variant; the curated one against its control too
        ("vs generation 0", "replace, guidance=1", "replace, guidance=1"),
        ("vs generation 0", "g replace, guidance=1", "g replace, guidance=1"),
        ("vs baseline", "accumulate, guidance=1", "replace, guidance=1"),
        ("vs baseline", "acc-sub wm, guidance=1", "replace, guidance=1"),
        ("vs baseline", "acc-sub wm control, guidance=1", "replace, guidance=1"),
        ("vs baseline", "g accumulate, guidance=1", "g replace, guidance=1"),
        ("vs control", "acc-sub wm, guidance=1", "acc-sub wm control, guidance=1")}
    assert len(rows) == 7 * 3 and {r["metric"] for r in rows} == {"accuracy", "fid", "recall"}
    assert {(r["kind"], r["a_generation"], r["b_generation"]) for r in rows} == {  # at the last generation
        ("vs generation 0", "2", "0"), ("vs baseline", "2", "2"), ("vs control", "2", "2")}
    assert {r["family"] for r in rows if r["a"].startswith("g ")} == {"gaussian"}
    m = len(rows)
    p = [sps.ttest_rel(*_pair(run, r)).pvalue for r in rows]
    p_eq = []
    for r, p_ in zip(rows, p):
        a, b = _pair(run, r)
        d, delta = a - b, {"accuracy": 0.02, "fid": 1.0, "recall": 0.02}[r["metric"]]
        assert int(r["n"]) == 3 and float(r["delta"]) == delta
        assert float(r["a_mean"]) == pytest.approx(a.mean()) and float(r["b_mean"]) == pytest.approx(b.mean())
        lo, hi = sps.t.interval(0.95, 2, loc=d.mean(), scale=sps.sem(d))
        assert (float(r["diff"]), float(r["diff_lo"]), float(r["diff_hi"])) == pytest.approx((d.mean(), lo, hi))
        assert float(r["p"]) == pytest.approx(p_, rel=1e-9)
        p_eq.append(max(sps.ttest_1samp(d, -delta, alternative="greater").pvalue,
                        sps.ttest_1samp(d, delta, alternative="less").pvalue))
        assert float(r["p_equivalent"]) == pytest.approx(p_eq[-1], rel=1e-9)
        # 80% power at the stated smallest difference, two-sided at alpha / m (noncentral t)
        crit, nc = sps.t.ppf(1 - 0.05 / m / 2, 2), float(r["mde"]) / (np.std(d, ddof=1) / math.sqrt(3))
        assert sps.nct.sf(crit, 2, nc) + sps.nct.cdf(-crit, 2, nc) == pytest.approx(0.8, abs=1e-6)
    for r, ph, peh in zip(rows, holm_reference(p), holm_reference(p_eq)):  # over all 21 rows at once
        assert float(r["p_holm"]) == pytest.approx(ph, rel=1e-9)
        assert float(r["p_equivalent_holm"]) == pytest.approx(peh, rel=1e-9)
        assert r["verdict"] == ("higher" if ph <= 0.05 and float(r["diff"]) > 0 else "lower" if ph <= 0.05
                                else "equivalent" if peh <= 0.05 else "not resolved")
    first = (tmp_path / "run" / "comparisons.csv").read_bytes()
    api.write_comparisons(api.load_run(tmp_path / "run"))
    assert (tmp_path / "run" / "comparisons.csv").read_bytes() == first  # same run, same bytes
    assert list(api.load_run(tmp_path / "run").comparisons["verdict"]) == [r["verdict"] for r in rows]


def _pair(run, r):
    a = per_seed(run, r["a"], int(r["a_generation"]), r["metric"])
    b = per_seed(run, r["b"], int(r["b_generation"]), r["metric"])
    return np.array([a[s] for s in sorted(a)]), np.array([b[s] for s in sorted(a)])


def test_baseline_named_per_family_or_once(tmp_path):
    run = grid_run(tmp_path / "a", extra=["compare.baseline={gaussian: g accumulate}"])
    b = {(r["kind"], r["a"]): r["b"] for r in read_csv(run)}
    assert b[("vs baseline", "g replace, guidance=1")] == "g accumulate, guidance=1"
    assert b[("vs baseline", "accumulate, guidance=1")] == "replace, guidance=1"  # the default stays
    assert ("vs generation 0", "g accumulate, guidance=1") in b
    run = grid_run(tmp_path / "b", extra=["compare.baseline=accumulate", "compare.delta={fid: null}"])
    rows = read_csv(run)
    b = {(r["kind"], r["a"]): r["b"] for r in rows}
    assert b[("vs baseline", "replace, guidance=1")] == "accumulate, guidance=1"
    assert b[("vs baseline", "g accumulate, guidance=1")] == "g replace, guidance=1"
    assert "fid" not in {r["metric"] for r in rows}  # a margin of null leaves the metric out


@pytest.mark.parametrize("overrides, fragment", [
    (["compare.baseline=nope"], "compare.baseline: no variant named 'nope' in loop.variants; the variants are"),
    (["compare.baseline={gmm: replace}"], "no generator family 'gmm' in loop.variants; the families are "
                                          "'diffusion', 'gaussian'"),
    (["compare.baseline={gaussian: replace}"], "compare.baseline.gaussian names 'replace', a variant of the "
                                               "'diffusion' family"),
    (["compare.baseline=[1]"], "compare.baseline must be a string or a mapping"),
    (["compare.delta={fid: -1}"], "compare.delta.fid must be a number > 0, a percentage"),
    (["compare.delta={recall: 2 pc}"], "compare.delta.recall must be a number > 0"),
    (["compare.alpha=0.9"], "compare.alpha must lie in (0, 0.5]"),
    (["compare.level=1"], "unknown key 'compare.level'"),
])
def test_bad_compare_settings_name_the_key(overrides, fragment):
    with pytest.raises(UserError) as err:
        load_config(None, TINY + ["loop.guidance=[1.0]", f"loop.variants={GRID}", *overrides])
    assert fragment in str(err.value)


def test_a_baseline_without_variants_is_one_error_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["demo", "--out", str(out), "--set", "compare.baseline=replace"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: compare.baseline names a baseline variant, but "
                                               "loop.variants is not set")
    assert not out.exists()


def test_relative_margin_and_each_verdict(tmp_path):
    """Without variants: each guidance's generation 2 against its generation 0, and each
    guidance against the first. Per-seed differences chosen so each verdict appears."""
    base = [0.50, 0.60, 0.70]
    values = {
        ("guidance=1", 0, "accuracy"): base, ("guidance=1", 2, "accuracy"): [v + d for v, d in
                                                                           zip(base, [0.20, 0.21, 0.22])],
        ("guidance=0", 0, "accuracy"): base, ("guidance=0", 2, "accuracy"): [v + d for v, d in
                                                                           zip(base, [-0.20, -0.21, -0.22])],
        ("guidance=1", 0, "test_loss"): [100.0, 120.0, 140.0],  # margin 1% of the baseline's mean 120: 1.2
        ("guidance=1", 2, "test_loss"): [100.01, 119.99, 140.0],
        ("guidance=0", 0, "test_loss"): [100.0, 120.0, 140.0], ("guidance=0", 2, "test_loss"): [103.0, 117.0, 141.0],
        # a resolved difference smaller than the margin: higher, though TOST would call it equivalent too
        ("guidance=1", 0, "recall"): base, ("guidance=1", 2, "recall"): [v + d for v, d in
                                                                       zip(base, [0.010, 0.011, 0.012])],
    }
    run = write_run(tmp_path / "run", values, ["loop.guidance=[1.0, 0.0]"])
    rows = read_csv(run)
    verdicts = {(r["kind"], r["a"], r["metric"]): (r["verdict"], float(r["delta"])) for r in rows}
    small = next(r for r in rows if r["metric"] == "recall")
    assert float(small["p_holm"]) <= 0.05 and float(small["p_equivalent_holm"]) <= 0.05
    assert small["verdict"] == "higher"
    assert verdicts[("vs generation 0", "guidance=1", "accuracy")] == ("higher", 0.02)
    assert verdicts[("vs generation 0", "guidance=0", "accuracy")] == ("lower", 0.02)
    assert verdicts[("vs generation 0", "guidance=1", "test_loss")] == ("equivalent", pytest.approx(1.2))
    assert verdicts[("vs generation 0", "guidance=0", "test_loss")][0] == "not resolved"
    assert verdicts[("vs first guidance", "guidance=0", "accuracy")][0] == "lower"
    assert len(verdicts) == 7
    text = {f.verdict: f.text for f in run.findings}
    assert "within ±1.2 by TOST" in text["equivalent"]
    assert "equivalence within ±1.2 not shown either; this run resolves differences of" in text["not resolved"]


def test_one_seed_reads_no_interval_and_resolves_nothing(tmp_path):
    values = {("guidance=1", g, m): [v] for g, v in ((0, 0.6), (1, 0.9)) for m in ("accuracy", "recall")}
    run = write_run(tmp_path / "run", values, ["loop.guidance=[1.0]", "loop.seeds=[0]"], seeds=1)
    rows = read_csv(run)
    assert len(rows) == 2 and all(r["verdict"] == "not resolved" and r["n"] == "1" for r in rows)
    assert all(r[k] == "" for r in rows for k in ("diff_lo", "diff_hi", "p", "p_holm", "p_equivalent", "mde"))
    assert all("no interval (1 seed)" in f.text and "one seed: nothing can be tested" in f.text
               for f in run.findings)
    summary = run.study.summary(run.rows, run.config)
    assert "0.900, no interval (1 seed)" in summary and "2 comparisons: 0 higher" in summary
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    run.plot("accuracy", ax)
    assert all(len(c.get_paths()) == 0 or not np.isfinite(c.get_paths()[0].vertices).all()
               for c in ax.collections)  # no band


def test_summary_and_plot_band_are_the_clipped_t_interval(tmp_path):
    """Recall 0.02, 0.03, 0.10 at generation 1: t-interval [-0.07, 0.17], shown from 0;
    the band of the plot is that interval, not the seeds' min-max."""
    gen1 = [0.02, 0.03, 0.10]
    values = {("guidance=1", 0, "recall"): [0.50, 0.55, 0.60], ("guidance=1", 1, "recall"): gen1}
    run = write_run(tmp_path / "run", values, ["loop.guidance=[1.0]"])
    mean, half = np.mean(gen1), sps.t.ppf(0.975, 2) * sps.sem(gen1)
    assert mean - half < 0  # the raw interval leaves the metric's range
    summary = run.study.summary(run.rows, run.config)
    assert f"{mean:.3f} [0.000, {mean + half:.3f}]" in summary
    assert "accuracy" in summary.splitlines()[1] and "seeds" in summary.splitlines()[1]  # every column named
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    run.plot("recall", ax)
    (band,) = ax.collections
    xy = band.get_paths()[0].vertices
    at1 = xy[np.isclose(xy[:, 0], 1.0), 1]
    assert at1.min() == pytest.approx(0.0) and at1.max() == pytest.approx(mean + half)
    at0 = xy[np.isclose(xy[:, 0], 0.0), 1]
    h0 = sps.t.ppf(0.975, 2) * sps.sem([0.50, 0.55, 0.60])
    assert (at0.min(), at0.max()) == pytest.approx((0.55 - h0, 0.55 + h0))


def _findings_script():
    spec = importlib.util.spec_from_file_location("findings_script", REPO / "benchmarks" / "findings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_findings_script_regenerates_the_same_bytes_and_shows_what_moved(tmp_path, capsys):
    run = grid_run(tmp_path / "run")
    script = _findings_script()
    out = tmp_path / "docs" / "findings" / "run.md"
    assert script.main([str(run.path), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# syn: findings\n") and "config hash" in text
    assert "| comparison | a | b | metric |" in text and "| vs control | acc-sub wm, guidance=1 |" in text
    assert "| variant | generation | seeds | accuracy |" in text  # headline values with intervals
    assert script.main([str(run.path), "--out", str(out)]) == 0
    assert out.read_text() == text and "run.md: unchanged" in capsys.readouterr().err
    assert script.main([str(run.path)]) == 0 and capsys.readouterr().out == text  # printed: the same
    results = (run.path / "results.csv").read_text().splitlines(True)
    first = next(i for i, line in enumerate(results) if line.startswith('syn,"replace, guidance=1",0,2,recall,'))
    results[first] = results[first].replace(",recall,", ",recall,9", 1)  # a value moves
    (run.path / "results.csv").write_text("".join(results))
    assert script.main([str(run.path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "run.md (before)" in err and any(line.startswith("+| vs") for line in err.splitlines())
    assert script.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: run folder not found")


def test_contamination_tables_show_the_clipped_interval(tmp_path):
    from ouroboros.studies.contamination_tables import _acc

    rows = [{"metric": "accuracy", "seed": s, "value": v, "table": "1"} for s, v in enumerate([0.99, 1.0, 0.95])]
    iv = types.SimpleNamespace(mean=np.mean([0.99, 1.0, 0.95]),
                               half=sps.t.ppf(0.975, 2) * sps.sem([0.99, 1.0, 0.95]))
    assert _acc(rows, table="1") == f"{100 * iv.mean:.1f} [{100 * (iv.mean - iv.half):.1f}, 100.0]"
    assert _acc(rows[:1], table="1") == "99.0, no interval (1 seed)"


def test_every_report_table_names_each_column(tmp_path):
    from ouroboros.report.page import Table

    run = grid_run(tmp_path / "run")
    tables = [i for s in run.study.report_sections([run]) for i in s.items if isinstance(i, Table)]
    assert len(tables) >= 4  # comparisons, resolvable differences, values first and last, values over generations
    for t in tables:
        assert all(h.strip() for h in t.header) and all(len(r) == len(t.header) for r in t.rows), t.header


def test_per_class_table_is_each_class_at_first_and_last_generation_with_its_t_interval():
    """The findings' per-class accuracy (Fig. 2c): one row per class, the first and last
    generation of each condition, mean over seeds with the Student-t interval; the family
    rows and the real-data yardstick stay out."""
    from ouroboros.studies.loop_report import class_table

    rows = []
    for seed, (a0, a2) in enumerate([(0.9, 0.2), (0.8, 0.4), (0.7, 0.3)]):
        for gen, value in [(0, a0), (1, 0.5), (2, a2)]:
            rows.append({"cell": "guidance=1", "seed": seed, "generation": gen, "metric": "accuracy/7", "value": value})
        rows.append({"cell": "reference", "seed": seed, "generation": 0, "metric": "accuracy/7", "value": 0.0})
        rows.append({"cell": "guidance=1", "seed": seed, "generation": 2, "metric": "accuracy/7", "value": 0.0,
                     "family": "gaussian"})
    table = class_table(rows)
    assert table.header == ["class", "guidance=1, generation 0", "guidance=1, generation 2",
                            "guidance=1: change 0 → 2"]
    half = sps.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)  # sd of (0.9, 0.8, 0.7) and of (0.2, 0.4, 0.3) is 0.1
    # the change paired by seed: (-0.7, -0.4, -0.4), mean -0.5, sd sqrt(0.03); unpaired it would be wider
    change = sps.t.ppf(0.975, 2) * math.sqrt(0.03) / math.sqrt(3)
    assert table.rows == [["7", f"0.800 [{0.8 - half:.3f}, 1.000]",  # clipped to the accuracy range
                           f"0.300 [{max(0.0, 0.3 - half):.3f}, {0.3 + half:.3f}]",
                           f"-0.500 [{-0.5 - change:+.3f}, {-0.5 + change:+.3f}]"]]
    assert class_table([r for r in rows if r["metric"] != "accuracy/7"]) is None


def test_the_report_states_the_measuring_classifiers_accuracy_on_the_real_test_split(tmp_path):
    """A loop run's reference rows carry instrument_accuracy (the classifier's accuracy on
    the real test split it never trained on); the findings state it, as a range over the
    seeds' classifiers when there are several."""
    from ouroboros.report.markdown import run_markdown

    run = write_run(tmp_path / "run", {("guidance=1", g, "accuracy"): [0.9, 0.8, 0.7] for g in (0, 1)})
    text = run_markdown(run)
    assert "measuring classifier" not in text  # no row, no sentence
    rows = list(run.rows)
    blank = {"study": "syn", "cell": "reference", "generation": "", "guidance": "", "scenario": "", "curation": "",
             "variant": ""}
    for seed, value in enumerate([0.987, 0.9731, 0.99]):
        rows.append({**blank, "seed": seed, "metric": "instrument_accuracy", "value": value})
        rows.append({**blank, "seed": seed, "metric": "accuracy", "value": 0.999})
    write_results(run.path / "results.csv", rows, ["guidance", "scenario", "curation", "variant"])
    text = run_markdown(api.load_run(run.path))
    assert "recognises 97.31% to 99.00% of the real test split (one classifier per seed)" in text


def test_instrument_accuracy_is_the_classifiers_share_correct_on_the_test_split(tmp_path, digits):
    from ouroboros.features.classifier import Classifier, ClassifierConfig
    from ouroboros.studies.loop import instrument_accuracy

    train, test = digits
    classifier = Classifier.train(train, ClassifierConfig(width=4, feature_dim=8, epochs=1, device="cpu"), seed=0)
    classifier.save(tmp_path / "clf")
    test.save(tmp_path / "test.npz")
    predicted = classifier.logits(test).argmax(1)
    assert 0 < (predicted == test.labels).sum() < len(test)  # neither all right nor all wrong: the count matters
    assert instrument_accuracy(tmp_path / "clf", tmp_path / "test.npz") == pytest.approx(
        (predicted == test.labels).sum() / len(test))
