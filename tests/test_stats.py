"""Means with Student-t intervals, paired differences and verdicts (ouroboros.report.stats)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from ouroboros.report.stats import HOLDS, NOT_RESOLVED, REVERSED, paired_difference, t_interval, verdict


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
    assert one.mean == 0.7 and math.isnan(one.half) and one.format(100) == "70.0"
    assert t_interval([]).n == 0 and t_interval([]).format() == "-"
    assert t_interval([0.5, 0.7]).format(100) == f"60.0 ± {100 * 12.706204736174698 * 0.1:.1f}"


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
