"""Table 8's claim of no gain ("appending generated data does not raise accuracy") is
decided by tests, not read off an interval: TOST within +-contamination.equivalence_margin
and a paired t-test, Holm-corrected over Table 8's comparisons."""

import numpy as np
import pytest
from scipy.stats import t

from ouroboros.config import load_config
from ouroboros.errors import UserError
from ouroboros.report.stats import EQUIVALENT, HIGHER, HOLDS, LOWER, NOT_RESOLVED, REVERSED
from ouroboros.studies.contamination_tables import findings, no_gain_claims, tables_markdown

SEEDS = range(5)


def pair(differences, base=0.9):
    """(appended, full) per-seed accuracies whose differences are `differences` (fractions)."""
    full = {str(s): base + 0.01 * s for s in SEEDS}
    return {str(s): full[str(s)] + d for s, d in zip(SEEDS, differences)}, full


def shaped(mean, sd):
    """Five differences with exactly this mean and sample standard deviation."""
    z = np.array([-1.2, -0.4, 0.1, 0.5, 1.0])
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


@pytest.mark.parametrize("differences, decision, verdict", [
    (shaped(0.0005, 0.002), EQUIVALENT, HOLDS),  # within +-1 point, shown: no gain
    (shaped(0.0, 0.03), NOT_RESOLVED, NOT_RESOLVED),  # too noisy to say either
    (shaped(-0.03, 0.002), LOWER, HOLDS),  # appending hurts: it does not raise accuracy
    (shaped(0.03, 0.002), HIGHER, REVERSED),  # appending helps: the claim is reversed
])
def test_a_claim_of_no_gain_needs_equivalence_or_a_loss(differences, decision, verdict):
    (claim,) = no_gain_claims(["cnn: appending 20%"], [pair(differences)], margin=0.01)
    assert (claim.decision, claim.verdict) == (decision, verdict)
    assert claim.how.startswith(decision)


def test_an_interval_across_zero_is_not_enough_and_equivalence_is_what_decides():
    """The 95% interval of an equivalent difference straddles 0, so the interval reading
    (holds only when it lies below 0) could never support "no gain"; TOST can."""
    (claim,) = no_gain_claims(["x"], [pair(shaped(0.0005, 0.002))], margin=0.01)
    assert claim.diff.lo < 0 < claim.diff.hi and claim.verdict == HOLDS
    # with a margin smaller than the noise the same data no longer shows equivalence
    (tight,) = no_gain_claims(["x"], [pair(shaped(0.0005, 0.002))], margin=0.001)
    assert tight.decision == NOT_RESOLVED


def test_holm_corrects_over_table_8s_comparisons():
    """A comparison whose TOST p-value is 0.03 is equivalent alone; two of them, Holm-
    corrected (2 x 0.03 = 0.06 > 0.05), are not resolved."""
    se = 0.01 / -t.ppf(0.03, 4)  # p_equivalent = t.cdf(-delta / se, 4) = 0.03 for a mean of 0
    differences = shaped(0.0, se * np.sqrt(5))
    (alone,) = no_gain_claims(["a"], [pair(differences)], margin=0.01)
    assert alone.decision == EQUIVALENT
    both = no_gain_claims(["a", "b"], [pair(differences), pair(differences[::-1])], margin=0.01)
    assert [c.decision for c in both] == [NOT_RESOLVED, NOT_RESOLVED]


def _config(*extra):
    return load_config(None, ["contamination.archs=[cnn]", "contamination.ratios=[0.0,1.0]",
                              "contamination.append_ratios=[0.2,0.4]", "contamination.seeds=[0,1,2,3,4]", *extra],
                       base={"study": "contamination", "name": "t8"})


def _rows(differences_by_ratio):
    rows = []
    for ratio, differences in differences_by_ratio.items():
        appended, full = pair(differences)
        for s in SEEDS:
            common = {"seed": str(s), "metric": "accuracy", "arch": "cnn", "test": "clean"}
            rows.append({**common, "table": "8", "source": "real + generated", "ratio": str(ratio),
                         "value": appended[str(s)]})
            if ratio == 0.2:
                rows.append({**common, "table": "1", "source": "generated", "ratio": "0.0", "value": full[str(s)]})
    return rows


def test_findings_and_tables_decide_table_8_with_the_configured_margin():
    rows = _rows({0.2: shaped(0.001, 0.002), 0.4: shaped(-0.001, 0.002)})
    table8 = [c for c in findings(rows, _config()) if c.table == "8"]
    assert [c.decision for c in table8] == [EQUIVALENT, EQUIVALENT]
    assert all(c.verdict == HOLDS for c in table8)
    text = tables_markdown(rows, _config())
    assert "TOST within ±1 points" in text and "equivalent: paired t p" in text
    strict = [c for c in findings(rows, _config("contamination.equivalence_margin=0.002")) if c.table == "8"]
    assert [c.decision for c in strict] == [NOT_RESOLVED, NOT_RESOLVED]


@pytest.mark.parametrize("margin", [0, -0.01, 1.5, "x"])
def test_a_bad_equivalence_margin_is_a_config_error(margin):
    with pytest.raises(UserError, match="equivalence_margin"):
        _config(f"contamination.equivalence_margin={margin}").validate()
