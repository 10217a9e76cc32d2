"""Uncertainty over seeds: means with Student-t 95% intervals, paired differences, verdicts.

Every study repeats its cells over seeds that redraw every random choice. A cell's
value is reported as the mean over seeds with a 95% confidence interval from the
Student t distribution with n - 1 degrees of freedom and the sample standard
deviation (ddof = 1). A comparison between two cells that share their draws (the
same seed gives the same real subset, the same generator, the same classifier
initialisation) is made on the per-seed differences, which cancels what the two
cells share.

A claim of the form "a is lower than b" is judged from the interval of the paired
difference a - b: it *holds* when the whole interval lies on the claimed side of 0,
is *reversed* when the whole interval lies on the other side, and is *not resolved*
at this sample size otherwise (including with a single seed, where no interval
exists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

HOLDS, REVERSED, NOT_RESOLVED = "holds", "reversed", "not resolved"


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width of the 95% interval (nan with fewer than 2 values)
    n: int

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def clipped(self, within: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
        """(lo, hi) of the interval within `within`, the range the metric can take
        (`metric_range`): an accuracy's interval never reaches below 0 or above 1."""
        return max(self.lo, within[0]), min(self.hi, within[1])

    def format(self, scale: float = 1.0, digits: int = 1,
               within: tuple[float, float] = (-math.inf, math.inf)) -> str:
        """'mean [lo, hi]', the 95% interval clipped to `within` (in the metric's own units,
        before `scale`); 'mean, no interval (1 seed)' with one value; '-' with none. The one
        way every table, summary and finding shows a value over seeds."""
        if self.n == 0:
            return "-"
        mean = f"{scale * self.mean:.{digits}f}"
        if self.n == 1:
            return f"{mean}, {NO_INTERVAL}"
        if not math.isfinite(self.half):
            return f"{mean} (no interval)"
        lo, hi = self.clipped(within)
        return f"{mean} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"

    def format_range(self, scale: float = 1.0, digits: int = 1) -> str:
        """'mean [lo, hi]', signed, for differences (not clipped: a difference may take
        either sign); 'mean, no interval (1 seed)' with one value."""
        if self.n == 0:
            return "-"
        mean = f"{scale * self.mean:+.{digits}f}"
        if self.n == 1:
            return f"{mean}, {NO_INTERVAL}"
        if not math.isfinite(self.half):
            return f"{mean} (no interval)"
        return f"{mean} [{scale * self.lo:+.{digits}f}, {scale * self.hi:+.{digits}f}]"


NO_INTERVAL = "no interval (1 seed)"

# The range of each metric the studies write; intervals are shown within it. Fractions
# (accuracy, per-class accuracy, precision, recall, coverage, shares of a training set)
# lie in [0, 1]; FID, density, cross-entropy, sizes and counts are >= 0. Unbounded:
# test_loss (a continuous density's negative log-likelihood may be negative), KID (its
# unbiased estimate may be negative) and any metric not named here.
_UNIT = ("accuracy", "precision", "recall", "coverage", "train_real_share", "curation_recall", "curation_fpr",
         "curation_detector_fpr", "class_share", "tail_unreached", "tail_mass", "core_mass", "component_weight")
_NONNEGATIVE = ("fid", "density", "cross_entropy", "train_size", "unique_images", "images", "class_entropy")


def metric_range(metric: str) -> tuple[float, float]:
    """The (lo, hi) a metric's values can take (see above); (-inf, inf) when unknown."""
    base = metric.split("/", 1)[0]
    if base in _UNIT or base.startswith("train_share"):
        return 0.0, 1.0
    if base in _NONNEGATIVE or base.startswith("curation_"):
        return 0.0, math.inf
    return -math.inf, math.inf


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t half-width (sample standard deviation) of `values`."""
    from scipy.stats import t

    v = np.asarray(list(values), dtype=np.float64)
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = float(v.mean())
    if n == 1:
        return Interval(mean, math.nan, 1)
    half = float(t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(mean, half, n)


def paired_difference(a: dict, b: dict, confidence: float = 0.95) -> Interval:
    """Interval of a[s] - b[s] over the seeds s present in both (dicts seed -> value)."""
    seeds = sorted(set(a) & set(b), key=str)
    return t_interval([a[s] - b[s] for s in seeds], confidence)


def verdict(diff: Interval, expected: Literal["<", ">"]) -> str:
    """Whether the claim "difference is `expected` 0" holds, is reversed, or is not resolved."""
    if diff.n < 2 or not math.isfinite(diff.half):
        return NOT_RESOLVED
    below, above = diff.hi < 0, diff.lo > 0
    if (expected == "<" and below) or (expected == ">" and above):
        return HOLDS
    if (expected == "<" and above) or (expected == ">" and below):
        return REVERSED
    return NOT_RESOLVED


# Comparisons decided in code: the paired t-test, Holm's step-down correction over every
# comparison of a run, the two one-sided tests (TOST) of equivalence within +-delta, and
# the smallest difference a paired design of n seeds resolves at a given power.

HIGHER, LOWER, EQUIVALENT = "higher", "lower", "equivalent"


@dataclass(frozen=True)
class PairedTest:
    diff: Interval  # mean of the per-seed differences a - b with its 95% t-interval
    sd: float  # sample standard deviation of the differences (nan with fewer than 2)
    p: float  # two-sided paired-t p-value of "mean difference = 0" (nan when undefined)
    p_equivalent: float  # TOST p-value of "|mean difference| >= delta" (nan when undefined)


def paired_test(a: dict, b: dict, delta: float = math.nan, confidence: float = 0.95) -> PairedTest:
    """Paired t-test of a[s] - b[s] over the seeds in both, and TOST against +-`delta`.

    With identical differences (sd = 0) the t statistic is infinite: p is 0 unless the
    mean is exactly 0 (then 1), and the TOST p-value is 0 when |mean| < delta, else 1."""
    from scipy.stats import t

    seeds = sorted(set(a) & set(b), key=str)
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    diff = t_interval(d, confidence)
    n = len(d)
    if n < 2 or not np.isfinite(d).all():
        return PairedTest(diff, math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
        p_eq = (0.0 if abs(mean) < delta else 1.0) if math.isfinite(delta) else math.nan
        return PairedTest(diff, sd, p, p_eq)
    se = sd / math.sqrt(n)
    p = float(2.0 * t.sf(abs(mean) / se, n - 1))
    p_eq = math.nan
    if math.isfinite(delta) and delta > 0:
        # H0: mean <= -delta (rejected for large t_lo) and H0: mean >= delta (small t_hi)
        p_eq = float(max(t.sf((mean + delta) / se, n - 1), t.cdf((mean - delta) / se, n - 1)))
    return PairedTest(diff, sd, p, p_eq)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (the family-wise error rate is controlled at
    alpha by rejecting where adjusted p <= alpha). NaNs stay NaN and do not count."""
    p = np.asarray(list(pvalues), dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out.tolist()


def decide(mean: float, p_holm: float, p_equivalent_holm: float, alpha: float = 0.05) -> str:
    """The verdict of one comparison: *higher* / *lower* when the paired test rejects "no
    difference" after correction, *equivalent* when TOST rejects "a difference of at least
    delta" after correction, else *not resolved*."""
    if math.isfinite(p_holm) and p_holm <= alpha:
        return HIGHER if mean > 0 else LOWER
    if math.isfinite(p_equivalent_holm) and p_equivalent_holm <= alpha:
        return EQUIVALENT
    return NOT_RESOLVED


def minimum_detectable(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean difference that a two-sided paired t-test at level `alpha` on n
    seeds detects with probability `power`, given the differences' standard deviation
    `sd`: the exact power from the noncentral t distribution, solved for the difference.
    NaN with fewer than 2 seeds."""
    from scipy.optimize import brentq
    from scipy.stats import nct, t

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0.0:
        return 0.0
    df, se = n - 1, sd / math.sqrt(n)
    crit = t.ppf(1 - alpha / 2, df)

    def shortfall(nc: float) -> float:  # the lower tail P(T < -crit) as P(T > crit) at -nc: scipy's
        return nct.sf(crit, df, nc) + nct.sf(crit, df, -nc) - power  # nct.cdf is NaN far out there

    hi = crit + 3.0
    try:
        while shortfall(hi) < 0:
            hi *= 2.0
        return float(brentq(shortfall, 0.0, hi) * se)
    except ValueError:  # scipy's nct gives NaN far out (2 seeds): the usual approximation
        return float((crit + t.ppf(power, df)) * se)
