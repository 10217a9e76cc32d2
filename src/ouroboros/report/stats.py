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

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        """'mean ± half' (or just the mean with one value; '-' with none)."""
        if self.n == 0:
            return "-"
        if self.n == 1 or not math.isfinite(self.half):
            return f"{scale * self.mean:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.half:.{digits}f}"

    def format_range(self, scale: float = 1.0, digits: int = 1) -> str:
        """'mean [lo, hi]', signed, for differences."""
        if self.n == 0:
            return "-"
        if self.n == 1 or not math.isfinite(self.half):
            return f"{scale * self.mean:+.{digits}f}"
        return f"{scale * self.mean:+.{digits}f} [{scale * self.lo:+.{digits}f}, {scale * self.hi:+.{digits}f}]"


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
