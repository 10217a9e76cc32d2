"""Means with Student-t intervals, paired differences and verdicts (ouroboros.report.stats)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from ouroboros.report.stats import (
    HOLDS, NOT_RESOLVED, REVERSED, metric_range, paired_difference, t_interval, verdict,
)


def test_interval_matches_the_closed_form_and_scipy():
    # [1, 2, 3]: mean 2, sample sd 1, half-width t(0.975, 2) / sqrt(3) = 4.30265273 / sqrt(3), from tables
    iv = t_interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.n == 3
    assert iv.half == pytest.approx(4.30265273 / math.sqrt(3), rel=1e-8)
    rng = np.random.default_rng(0)
    for n in (2, 5, 17):
        v = rng.normal(3.0, 2.0, n)
        lo, hi = sps.t.interval(0.95, n - 1, loc=v.mean(), scale=sps.sem(v))
        iv = t_interval(v)
        assert (iv.lo, iv.hi) == pytest.approx((lo, hi), rel=1e-12)


def test_interval_of_one_or_no_value():
    one = t_interval([0.7])
    assert one.mean == 0.7 and math.isnan(one.half) and one.format(100) == "70.0, no interval (1 seed)"
    assert one.format_range(1, 2) == "+0.70, no interval (1 seed)"
    assert t_interval([]).n == 0 and t_interval([]).format() == "-"
    half = 100 * 12.706204736174698 * 0.1
    assert t_interval([0.5, 0.7]).format(100) == f"60.0 [{60 - half:.1f}, {60 + half:.1f}]"  # [-67.1, 187.1]


def test_intervals_are_shown_within_the_metric_range():
    """Two seeds at accuracy 0.5 and 0.7 give a t-interval of [-0.67, 1.87]: shown as [0, 1];
    FID's is cut at 0 only, a difference's and an unknown metric's not at all."""
    iv = t_interval([0.5, 0.7])
    assert iv.format(100, 1, metric_range("accuracy")) == "60.0 [0.0, 100.0]"
    assert iv.format(1, 2, metric_range("accuracy/3")) == "0.60 [0.00, 1.00]"
    assert iv.format(1, 2, metric_range("fid")) == f"0.60 [0.00, {0.6 + iv.half:.2f}]"
    assert iv.format(1, 2, metric_range("test_loss")) == f"0.60 [{0.6 - iv.half:.2f}, {0.6 + iv.half:.2f}]"
    assert iv.clipped(metric_range("recall")) == (0.0, 1.0)
    narrow = t_interval([0.5, 0.51, 0.52])  # inside the range: as it is
    assert narrow.clipped(metric_range("coverage")) == (narrow.lo, narrow.hi)
    for metric in ("precision", "recall", "coverage", "train_real_share", "train_share_gen3"):
        assert metric_range(metric) == (0.0, 1.0)
    for metric in ("cross_entropy", "density", "curation_removed"):
        assert metric_range(metric) == (0.0, math.inf)


def test_paired_difference_cancels_what_the_cells_share():
    # Seed effects of +-10 are shared by both cells; the paired difference is exactly 1.
    a = {0: 11.0, 1: -9.0, 2: 21.0}
    b = {2: 20.0, 3: 99.0, 0: 10.0, 1: -10.0}  # another order; seed 3 has no partner and is left out
    d = paired_difference(a, b)
    assert d.n == 3 and d.mean == pytest.approx(1.0) and d.half == pytest.approx(0.0, abs=1e-12)
    unpaired = t_interval(list(a.values()))
    assert unpaired.half > 10  # the same data unpaired resolve nothing


def test_paired_difference_pairs_by_seed_not_by_rank():
    a = {"0": 10.5, "1": 10.0, "2": 30.0}
    b = {"0": 10.0, "1": 11.0, "2": 29.0}
    d = paired_difference(a, b)  # per seed: +0.5, -1.0, +1.0
    assert d.mean == pytest.approx(0.5 / 3) and d.half == pytest.approx(t_interval([0.5, -1.0, 1.0]).half)


@pytest.mark.parametrize("values, expected, result", [
    ([-3.0, -2.0, -2.5], "<", HOLDS),
    ([-3.0, -2.0, -2.5], ">", REVERSED),
    ([3.0, 2.0, 2.5], ">", HOLDS),
    ([3.0, 2.0, 2.5], "<", REVERSED),
    ([-1.0, 1.0, 0.5], "<", NOT_RESOLVED),
    ([-1.0, 1.0, 0.5], ">", NOT_RESOLVED),
    ([-5.0], "<", NOT_RESOLVED),  # one seed: no interval, nothing is resolved
])
def test_verdicts(values, expected, result):
    assert verdict(t_interval(values), expected) == result


# ---- comparisons decided in code: paired t, TOST, Holm, minimum detectable difference

from ouroboros.report.stats import (  # noqa: E402
    EQUIVALENT, HIGHER, LOWER, decide, holm, minimum_detectable, paired_test)


def test_paired_test_matches_scipy_ttest_rel_and_two_one_sided_tests():
    rng = np.random.default_rng(3)
    a = {s: v for s, v in enumerate(rng.normal(1.0, 1.0, 7))}
    b = {s: a[s] - rng.normal(0.3, 0.5) for s in a}
    res = paired_test(a, b, delta=0.8)
    x, y = np.array([a[s] for s in a]), np.array([b[s] for s in a])
    assert res.p == pytest.approx(sps.ttest_rel(x, y).pvalue, rel=1e-10)
    lower = sps.ttest_1samp(x - y, -0.8, alternative="greater").pvalue
    upper = sps.ttest_1samp(x - y, 0.8, alternative="less").pvalue
    assert res.p_equivalent == pytest.approx(max(lower, upper), rel=1e-10)
    assert res.sd == pytest.approx(np.std(x - y, ddof=1))
    assert res.diff.mean == pytest.approx(np.mean(x - y))


def test_paired_test_pairs_by_seed_and_handles_degenerate_cases():
    a, b = {0: 1.0, 1: 2.0, 2: 3.0}, {2: 2.0, 0: 0.0, 1: 1.0, 9: 50.0}
    res = paired_test(a, b, delta=2.0)  # differences exactly 1, 1, 1: sd 0
    assert res.sd == 0 and res.p == 0.0 and res.p_equivalent == 0.0
    assert paired_test(a, b, delta=0.5).p_equivalent == 1.0
    assert paired_test(a, a).p == 1.0
    one = paired_test({0: 1.0}, {0: 0.0}, delta=1.0)
    assert math.isnan(one.p) and math.isnan(one.p_equivalent) and one.diff.n == 1


def test_holm_adjusts_step_down_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, math.nan, 0.02])  # a NaN neither counts nor changes the others
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    # monotone in the raw p-values, never below them
    p = np.random.default_rng(0).uniform(size=50)
    adj = np.array(holm(p))
    assert (adj >= p).all() and (np.diff(adj[np.argsort(p)]) >= 0).all()


@pytest.mark.parametrize("mean, p, p_eq, expected", [
    (0.3, 0.01, 0.9, HIGHER), (-0.3, 0.01, 0.9, LOWER), (0.01, 0.6, 0.01, EQUIVALENT),
    (0.01, 0.6, 0.2, NOT_RESOLVED), (0.01, math.nan, math.nan, NOT_RESOLVED), (0.3, 0.05, 1.0, HIGHER),
    (0.3, 0.0501, 1.0, NOT_RESOLVED)])
def test_decide(mean, p, p_eq, expected):
    assert decide(mean, p, p_eq, alpha=0.05) == expected


@pytest.mark.parametrize("n", [3, 5, 10])
def test_minimum_detectable_difference_has_the_stated_power(n):
    """Simulated paired experiments with a true difference equal to the minimum detectable
    one are rejected by the two-sided paired t-test 80% of the time (+- 4 standard errors
    of 20,000 draws); at half of it, far less often."""
    sd, alpha = 2.0, 0.05
    d = minimum_detectable(sd, n, alpha, 0.8)
    crit = sps.t.ppf(1 - alpha / 2, n - 1)
    rng = np.random.default_rng(n)

    def rejected(delta):
        x = rng.normal(delta, sd, size=(20000, n))
        tstat = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
        return np.mean(np.abs(tstat) > crit)

    assert abs(rejected(d) - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 20000)
    assert rejected(d / 2) < 0.5
    assert math.isnan(minimum_detectable(sd, 1)) and minimum_detectable(0.0, 5) == 0.0
