"""The tails of the real distribution a generator no longer reaches
(`ouroboros.metrics.tails`): against a float64 brute force, and against cases whose
answer is known (a generator of the real distribution, a shrunk one, a Gaussian model
whose tail mass is a chi-square tail, a mixture missing a component), then in the loop's
results."""

import csv

import numpy as np
import pytest
from scipy.stats import chi2

from ouroboros import cli
from ouroboros.errors import UserError
from ouroboros.generators.gaussian import FittedGaussianMixture, GMMConfig
from ouroboros.metrics.tails import contour_masses, mixture_tails, tail_unreached


def _brute_unreached(real, fake, quantile=0.95):
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    np.fill_diagonal(d_rr, np.inf)
    tau = np.quantile(d_rr.min(1), quantile, method="inverted_cdf")
    d_rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1)).min(1)
    return float((d_rf > tau).mean())


# -- tail_unreached -------------------------------------------------------------------------


@pytest.mark.parametrize("block", [64, 1 << 22])
def test_tail_unreached_equals_a_brute_force_with_duplicates_and_small_blocks(block):
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 6))
    real[:20] = real[20:40]  # repeated real rows: each other's neighbour at distance 0
    fake = np.concatenate([0.5 * rng.standard_normal((250, 6)), real[:5]])
    assert tail_unreached(real, fake, block=block) == _brute_unreached(real, fake)
    assert tail_unreached(real, np.repeat(fake[:3], 40, axis=0), block=block) == _brute_unreached(real, fake[:3])


def test_a_real_row_exactly_at_the_threshold_is_reached():
    """1-D reals 0, 1, ..., 19: every leave-one-out neighbour is 1 away, so tau = 1. A fake
    at -1 is exactly tau from real 0 (reached: not farther) and farther from the rest."""
    real = np.arange(20.0)[:, None]
    assert tail_unreached(real, np.array([[-1.0]])) == 19 / 20
    assert tail_unreached(real, real) == 0.0  # every real row has itself among the fakes


def test_the_threshold_is_one_of_the_real_distances_not_an_interpolation():
    """1-D reals with gaps 1, 2, ..., 19: the leave-one-out distances are 1, 1, 2, ..., 19;
    their 95th percentile (inverted_cdf) is 18, where interpolating would give 18.05. A
    fake 18.03 left of the first real reaches none of them."""
    real = np.cumsum(np.arange(20.0))[:, None]
    assert tail_unreached(real, np.array([[-18.03]])) == 1.0
    assert tail_unreached(real, np.array([[-17.99]])) == 19 / 20


def test_a_generator_of_the_real_distribution_leaves_about_five_percent_unreached():
    """|G| = |R| - 1 draws of the real distribution: d_G(r) is distributed as d_R(r)."""
    rng = np.random.default_rng(1)
    shares = [tail_unreached(rng.standard_normal((1500, 8)), rng.standard_normal((1499, 8))) for _ in range(4)]
    assert 0.04 < np.mean(shares) < 0.065, shares


def test_a_shrunk_generator_leaves_the_tails_unreached():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((1000, 8))
    shares = [tail_unreached(real, scale * rng.standard_normal((999, 8))) for scale in (1.0, 0.7, 0.4, 0.1, 0.0)]
    assert shares[0] < 0.1 and np.all(np.diff(shares) > 0), shares
    # collapsed onto the mean: only the real rows within tau of it are reached
    tau = np.quantile(np.sort(((real[:, None] - real[None]) ** 2).sum(-1), 1)[:, 1] ** 0.5, 0.95, method="inverted_cdf")
    assert shares[-1] == np.mean(np.linalg.norm(real, axis=1) > tau) > 0.8


def test_tail_unreached_needs_two_real_rows():
    with pytest.raises(UserError, match="at least 2"):
        tail_unreached(np.zeros((1, 3)), np.zeros((4, 3)))


# -- the analytic families' density tails --------------------------------------------------------


def _mixture(means, covs, weights) -> FittedGaussianMixture:
    """One class ("a") whose model is the given mixture."""
    means = np.asarray(means, dtype=np.float64)[None]
    return FittedGaussianMixture(means, np.asarray(covs, dtype=np.float64)[None], np.asarray(weights)[None], ("a",),
                                 (1, 1, means.shape[-1]), 1, "m", "gmm", GMMConfig())


D = 5
STANDARD = _mixture(np.zeros((1, D)), np.eye(D)[None], [1.0])


def test_the_real_density_itself_puts_one_percent_beyond_each_contour():
    out = mixture_tails(STANDARD, STANDARD, draws=40_000)
    assert out == pytest.approx({"tail_mass": 0.01, "core_mass": 0.01}, abs=0.002)
    assert mixture_tails(STANDARD, STANDARD, draws=40_000) == out  # a fixed seed: the same draws


@pytest.mark.parametrize("temperature", [0.6, 1.5])
def test_a_gaussian_models_tail_and_core_mass_are_chi_square_tails(temperature):
    """log p0 is a function of |x|^2, which is chi-square(D) under p0 and T chi-square(D)
    under the model sampled at temperature T: tail = P(chi2 > ppf(0.99) / T), core =
    P(chi2 < ppf(0.01) / T)."""
    out = mixture_tails(STANDARD, STANDARD, temperature=temperature, draws=40_000)
    assert out["tail_mass"] == pytest.approx(chi2.sf(chi2.ppf(0.99, D) / temperature, D), abs=0.004)
    assert out["core_mass"] == pytest.approx(chi2.cdf(chi2.ppf(0.01, D) / temperature, D), abs=0.004)


def test_a_model_shrunk_towards_its_mean_has_no_tail_and_all_core():
    out = mixture_tails(STANDARD, STANDARD, temperature=0.02)
    assert out["tail_mass"] == 0.0 and out["core_mass"] > 0.99


def test_contour_masses_count_strictly_beyond_the_quantiles():
    real = np.arange(101.0)  # quantiles 1 and 99
    assert contour_masses(real, [0.5, 1.0, 50, 99, 99.5, 100]) == (1 / 6, 2 / 6)


SEPARATED = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
GMM = _mixture(SEPARATED, np.stack([np.eye(2)] * 3), [0.5, 0.3, 0.2])


def test_each_real_component_keeps_its_weight_under_the_real_model_and_a_lost_one_gets_none():
    same = mixture_tails(GMM, GMM, draws=20_000)
    weights = [same[f"component_weight/a/{k}"] for k in range(3)]
    assert weights == pytest.approx([0.5, 0.3, 0.2], abs=0.01)
    lost = mixture_tails(GMM, _mixture(SEPARATED[:2], np.stack([np.eye(2)] * 2), [0.625, 0.375]), draws=20_000)
    assert [lost[f"component_weight/a/{k}"] for k in range(3)] == pytest.approx([0.625, 0.375, 0.0], abs=0.01)
    assert lost["component_weight/a/2"] < 1e-6


def test_a_single_gaussian_has_no_component_weights_and_the_classes_must_match():
    assert set(mixture_tails(STANDARD, STANDARD, draws=100)) == {"tail_mass", "core_mass"}
    other = _mixture(np.zeros((1, D + 1)), np.eye(D + 1)[None], [1.0])
    with pytest.raises(UserError, match="same classes and space"):
        mixture_tails(STANDARD, other)


# -- in the loop ---------------------------------------------------------------------------


LOOP = ["loop.generations=2", "loop.seeds=[0]", "loop.samples_per_generation=200", "classifier.epochs=1",
        "executor.workers=1", "evaluate.tails=true"]


def _rows(tmp_path, *extra) -> list[dict]:
    args = ["run", "loop-digits-gaussian", "--out", str(tmp_path), "--quiet"]
    assert cli.main(args + [a for s in [*LOOP, *extra] for a in ("--set", s)]) == 0
    with open(tmp_path / "results.csv") as f:
        return list(csv.DictReader(f))


def test_every_generation_reports_its_tails_and_the_reference_its_unreached_share(tmp_path):
    """One gaussian and one gmm family feeding the pool: the pooled rows get tail_unreached;
    each family's rows its own, and its density tails against its generation 0 model."""
    rows = _rows(tmp_path, "loop.generators=[{family: gaussian, share: 0.5}, "
                           "{family: gmm, share: 0.5, settings: {space: pca, components: 8, mixture_components: 2}}]")
    got = {(r["cell"], r["generation"], r["family"], r["metric"]): float(r["value"]) for r in rows}
    assert 0 <= got[("reference", "", "", "tail_unreached")] < 0.2
    for g in ("0", "1"):
        for family in ("", "gaussian", "gmm"):
            assert 0 <= got[("guidance=0", g, family, "tail_unreached")] <= 1
        assert ("guidance=0", g, "", "tail_mass") not in got  # a pool is no one density
        for family in ("gaussian", "gmm"):
            assert 0 <= got[("guidance=0", g, family, "tail_mass")] <= 1
            assert 0 <= got[("guidance=0", g, family, "core_mass")] <= 1
        weights = [got[("guidance=0", g, "gmm", f"component_weight/{c}/{k}")] for c in "0123456789" for k in (0, 1)]
        assert np.allclose(np.add.reduceat(weights, range(0, 20, 2)), 1.0)  # per class, they share its mass
    for family in ("gaussian", "gmm"):  # generation 0's model is the real fitted density
        assert got[("guidance=0", "0", family, "tail_mass")] == pytest.approx(0.01, abs=0.003)
        assert got[("guidance=0", "0", family, "core_mass")] == pytest.approx(0.01, abs=0.003)


def test_tails_are_off_unless_asked_for(tmp_path):
    rows = _rows(tmp_path, "evaluate.tails=false")
    assert not {r["metric"] for r in rows} & {"tail_unreached", "tail_mass", "core_mass"}


def test_each_generations_density_tails_measure_its_model_at_its_bias_against_generation_0s(digits):
    """Planned, not run: a cold gmm (temperature 0.5) and a diffusion family share the pool."""
    from ouroboros.config import load_config
    from ouroboros.studies import loop

    pool = ("loop.generators=[{family: diffusion, share: 0.5}, {family: gmm, share: 0.5, bias: 0.5, "
            "settings: {space: pca, components: 4}}]")
    config = load_config(None, ["evaluate.tails=true", "loop.generations=3", "loop.guidance=[1]", "loop.seeds=[0]",
                                "loop.samples_per_generation=40", pool], base={"name": "t"})
    plan = loop.plan(config, None, digits)
    ((key, tails),) = plan.tails.items()
    parts, (inst,) = plan.families[key], plan.instruments.values()
    for g, (stages, fams) in enumerate(zip(tails, parts)):
        assert set(stages) == {"", "diffusion", "gmm"}
        assert stages[""].deps["images"] is plan.chains[key][g][1]  # the pooled output
        assert "density" not in stages[""].params and "density" not in stages["diffusion"].params
        gmm = stages["gmm"]
        assert gmm.deps["images"] is fams["gmm"][1] and gmm.deps["model"] is fams["gmm"][0]
        assert gmm.deps["real_model"] is parts[0]["gmm"][0]  # generation 0's model: the real fitted density
        assert gmm.params["density"]["temperature"] == 0.5
        for st in stages.values():
            assert st.deps["real"] is inst.test_stage and st.deps["classifier"] is inst.classifier
    assert inst.yardstick_tails.deps["images"] is inst.train_stage  # the reference rows' unreached share
