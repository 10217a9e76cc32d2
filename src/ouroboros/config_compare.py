"""The ``compare:`` section of a study config: how a run's comparisons are decided
(`ouroboros.report.comparisons`; the loop study's in `ouroboros.studies.loop_compare`).

Every comparison is a paired t-test over seeds, Holm-corrected over all comparisons of
the run, with the verdict *higher* / *lower* (resolved after correction), *equivalent*
(the two one-sided tests put the difference within +-delta, Holm-corrected too) or *not
resolved*. A claim of "no effect" needs *equivalent*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from ouroboros.errors import UserError, check_float, check_text

# The equivalence margin delta of each metric the loop writes: differences within +-delta
# are too small to matter. Absolute, in the metric's units, or "N%" of the baseline's
# mean (for a metric whose scale depends on the model or data). Why these values:
# - accuracy 0.02 (two percentage points): the digits classifier's spread between seeds
#   on real data is under one point, and the feedback-loop paper's effects are tens of points;
# - cross_entropy 0.1 nats per image: a fully recognised set scores about 0.05, a
#   collapsing one several nats;
# - fid 1.0: the real test split scores about 0.5 against the real training split (the
#   measure's own floor), and published FIDs are not read closer than about 1;
# - precision, recall, coverage 0.02: fractions estimated from k-NN balls over a few
#   hundred images, whose sampling spread is about 0.01-0.02;
# - density 0.05: about 1 for real data and unbounded above, so a wider absolute margin;
# - test_loss 1%: its scale depends on the family (a denoising loss, a negative
#   log-likelihood per image), so relative to the baseline's mean.
DEFAULT_DELTA = {"accuracy": 0.02, "cross_entropy": 0.1, "fid": 1.0, "precision": 0.02, "recall": 0.02,
                 "density": 0.05, "coverage": 0.02, "test_loss": "1%"}
POWER = 0.8  # the power at which comparisons.csv states the smallest difference a run resolves


@dataclass
class CompareConfig:
    # Loop grids (loop.variants): the variant every other variant of the same generator
    # family is compared against, at the same guidance. A generator family is a variant's
    # pool of loop.generators, named "diffusion", "gaussian", or "diffusion:0.7+gaussian:0.3"
    # for several. A mapping family -> variant name, or one variant name (its own family's
    # baseline). null, and families not named: the first variant of each family as listed.
    baseline: Optional[Union[str, dict]] = None
    # The equivalence margin per metric (see DEFAULT_DELTA): a number, "N%" of the
    # baseline's mean, or null to leave the metric out. A mapping given here changes the
    # metrics it names; the others keep their defaults. Comparisons cover the metrics
    # with a margin.
    delta: dict = field(default_factory=lambda: dict(DEFAULT_DELTA))
    alpha: float = 0.05  # the family-wise error rate of all of a run's comparisons (Holm)
    # Loop: the earlier generations each last generation is compared with ("vs generation N"),
    # and whose: the baselines' (and, without variants, every guidance's) or all variants'.
    generations: list[int] = field(default_factory=lambda: [0])
    generations_of: Literal["baselines", "all"] = "baselines"

    def __post_init__(self) -> None:
        if isinstance(self.delta, dict):  # a mapping given changes the metrics it names
            self.delta = {**DEFAULT_DELTA, **self.delta}

    def validate(self, where: str = "compare") -> None:
        check_float(f"{where}.alpha", self.alpha, 0.0, 0.5, lo_open=True)
        if isinstance(self.baseline, str):
            check_text(f"{where}.baseline", self.baseline, 100)
        elif isinstance(self.baseline, dict):
            for family, name in self.baseline.items():
                check_text(f"{where}.baseline (a family's name)", family, 100)
                check_text(f"{where}.baseline.{family}", name, 100)
        if self.generations_of not in ("baselines", "all"):
            raise UserError(f"{where}.generations_of must be baselines or all (whose last generation is compared "
                            f"with {where}.generations); got {self.generations_of!r}")
        if not isinstance(self.generations, list) or not self.generations or any(
                isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= 1000 for g in self.generations):
            raise UserError(f"{where}.generations must be a non-empty list of generation numbers from 0 to 1000 "
                            f"(e.g. [0]); "
                            f"got {self.generations!r}")
        for metric, value in self.delta.items():
            check_text(f"{where}.delta (a metric's name)", metric, 100)
            margin(f"{where}.delta.{metric}", value)

    def metrics(self) -> list[str]:
        """The metrics compared: those with a margin, in the mapping's order."""
        return [m for m, v in self.delta.items() if v is not None]

    def delta_of(self, metric: str, baseline_mean: float) -> float:
        """The absolute margin of `metric` (a relative one taken of |baseline_mean|)."""
        value = self.delta[metric]
        if isinstance(value, str):
            return margin(f"compare.delta.{metric}", value) * abs(baseline_mean)
        return float(value)


def margin(where: str, value) -> float | None:
    """A margin as given: a number > 0 (returned), "N%" with 0 < N <= 100 (returned as the
    fraction N / 100), or None. UserError otherwise."""
    if value is None:
        return None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") and float(text[:-1]) <= 100 else math.nan
        except ValueError:
            pass
    if not (0 < number < math.inf):  # also NaN
        raise UserError(f"{where} must be a number > 0, a percentage of the baseline's mean such as '1%', or "
                        f"null (leave the metric out); got {value!r}")
    return float(number)
