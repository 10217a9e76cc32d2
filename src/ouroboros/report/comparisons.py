"""Comparisons decided in code, as ``comparisons.csv`` holds them.

A study names the pairs it compares (`Pair`: two cells' per-seed values of one metric,
paired by seed); `decide_all` decides them together:

- the paired t-test of the per-seed differences a - b (mean, 95% Student-t interval,
  two-sided p-value);
- Holm's step-down correction of those p-values over *every* comparison of the run
  (``p_holm``): the chance of any false *higher* / *lower* in the whole table is at most
  alpha;
- the two one-sided tests (TOST) of equivalence within +-delta (the metric's margin,
  ``compare.delta``), whose p-values are Holm-corrected over every comparison too
  (``p_equivalent_holm``): the chance of any false *equivalent* is at most alpha;
- the verdict (`ouroboros.report.stats.decide`): *higher* or *lower* when ``p_holm <=
  alpha``, else *equivalent* when ``p_equivalent_holm <= alpha``, else *not resolved*
  (always with one seed, where nothing can be tested);
- ``mde``: the smallest |a - b| this run would resolve with 80% power, from the pair's
  standard deviation of differences and number of seeds, at the level alpha / m (m the
  number of comparisons tested): Holm's first and strictest threshold, the one a
  difference must pass when it is the only real one among nulls.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
from pathlib import Path

from ouroboros.report.stats import Interval, decide, holm, minimum_detectable, paired_test, t_interval

STATS_COLUMNS = ["metric", "n", "a_mean", "b_mean", "diff", "diff_lo", "diff_hi", "p", "p_holm", "p_equivalent",
                 "p_equivalent_holm", "delta", "verdict", "mde", "alpha"]


@dataclasses.dataclass
class Pair:
    """One comparison to decide: cell `a` against cell `b` in `metric`, per seed."""

    kind: str  # what is compared, e.g. "vs baseline", "vs generation 0"
    a: str  # a's name (e.g. a results.csv cell)
    b: str
    metric: str
    a_values: dict  # seed -> value
    b_values: dict
    labels: dict = dataclasses.field(default_factory=dict)  # more columns naming the pair (e.g. generations)


@dataclasses.dataclass
class Comparison:
    pair: Pair
    diff: Interval  # a - b per seed: mean and 95% interval
    p: float
    p_holm: float
    p_equivalent: float
    p_equivalent_holm: float
    delta: float
    verdict: str
    mde: float
    alpha: float

    @property
    def n(self) -> int:
        return self.diff.n

    def seeds(self) -> list:
        return sorted(set(self.pair.a_values) & set(self.pair.b_values), key=str)

    @functools.cached_property
    def a(self) -> Interval:
        """a over the paired seeds: mean and 95% interval."""
        return t_interval([self.pair.a_values[s] for s in self.seeds()])

    @functools.cached_property
    def b(self) -> Interval:
        return t_interval([self.pair.b_values[s] for s in self.seeds()])

    def row(self) -> dict:
        p = self.pair
        return {"kind": p.kind, "a": p.a, "b": p.b, **p.labels, "metric": p.metric, "n": self.n,
                "a_mean": self.a.mean, "b_mean": self.b.mean, "diff": self.diff.mean, "diff_lo": self.diff.lo,
                "diff_hi": self.diff.hi, "p": self.p, "p_holm": self.p_holm, "p_equivalent": self.p_equivalent,
                "p_equivalent_holm": self.p_equivalent_holm, "delta": self.delta, "verdict": self.verdict,
                "mde": self.mde, "alpha": self.alpha}


def decide_all(pairs: list[Pair], delta_of, alpha: float = 0.05, power: float = 0.8) -> list[Comparison]:
    """Every pair tested and decided together (see the module docstring). `delta_of(metric,
    b_mean)` gives a metric's equivalence margin (`CompareConfig.delta_of`)."""
    tests, deltas = [], []
    for pair in pairs:
        seeds = set(pair.a_values) & set(pair.b_values)
        delta = delta_of(pair.metric, sum(pair.b_values[s] for s in seeds) / len(seeds)) if seeds else math.nan
        deltas.append(delta)
        tests.append(paired_test(pair.a_values, pair.b_values, delta))
    p_holm = holm([t.p for t in tests])
    p_eq_holm = holm([t.p_equivalent for t in tests])
    m = sum(math.isfinite(t.p) for t in tests)
    unit: dict[int, float] = {}  # n -> the smallest difference at sd 1 (it scales with sd): one root per n
    out = []
    for pair, t, delta, ph, peh in zip(pairs, tests, deltas, p_holm, p_eq_holm):
        if m and t.diff.n not in unit:
            unit[t.diff.n] = minimum_detectable(1.0, t.diff.n, alpha / m, power)
        mde = unit[t.diff.n] * t.sd if m else math.nan
        out.append(Comparison(pair, t.diff, t.p, ph, t.p_equivalent, peh, delta,
                              decide(t.diff.mean, ph, peh, alpha), mde, alpha))
    return out


def _cell(value) -> str:
    """A CSV cell: numbers in full (repr, so the same run gives the same bytes), NaN empty."""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def comparisons_csv(comparisons: list[Comparison], label_columns: list[str] = ()) -> str:
    """The text of comparisons.csv: kind, a, b, the pairs' label columns, then the stats."""
    labels = list(label_columns) or list(dict.fromkeys(k for c in comparisons for k in c.pair.labels))
    columns = ["kind", "a", "b", *labels, *STATS_COLUMNS]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for c in comparisons:
        row = c.row()
        writer.writerow([_cell(row.get(k, "")) for k in columns])
    return buf.getvalue()


def write_comparisons(path: Path, comparisons: list[Comparison], label_columns: list[str] = ()) -> Path:
    from ouroboros.io import write_text_atomic

    write_text_atomic(path, comparisons_csv(comparisons, label_columns))
    return Path(path)


def counts(comparisons: list[Comparison]) -> str:
    """'12 comparisons: 3 higher, 4 lower, 1 equivalent, 4 not resolved'."""
    from ouroboros.report.stats import EQUIVALENT, HIGHER, LOWER, NOT_RESOLVED

    n = {v: sum(c.verdict == v for c in comparisons) for v in (HIGHER, LOWER, EQUIVALENT, NOT_RESOLVED)}
    return (f"{len(comparisons)} comparison{'s' if len(comparisons) != 1 else ''}: "
            + ", ".join(f"{k} {v}" for v, k in n.items()))
