"""The Gaussian family's math core against closed-form answers for a model trained on
its own output (the feedback loop's `replace` scenario), over many chains, and a test of
each test: the wrong formulas a reader might write down fail it at least 99% of the time.

The chains run the math core the `gaussian` family runs (`fit_gaussian`,
`sample_gaussian`; tests/test_gaussian.py checks that the family and the stages call
exactly these) vectorised over chains (`gaussian_loop.simulate`; the first test checks,
draw for draw, that its fit and sampler are those two functions), on float data, so
uint8 quantisation does not blur the answer. A check (`assert_mc_close`) accepts a
formula when every generation's Monte Carlo mean lies within Z = 4 standard errors of
it, the standard errors estimated from the chains themselves.

The test of the test (`assert_powerful`): with C chains the Monte Carlo mean of
generation g is normal around the true expectation with standard error se_g, so a wrong
formula passes generation g's check with probability Phi(Z - d_g) - Phi(-Z - d_g),
d_g = |wrong_g - true_g| / se_g, and passes the whole check with at most the smallest of
these. The tests assert that bound is at most 1% for every wrong formula, from
generation 1 on (so the loop's dynamics, not only the fit on real data, give the power),
and that each wrong formula does fail on the chains at hand.
"""

import numpy as np
import pytest
from gaussian_loop import assert_mc_close, assert_powerful, fit_rows, sample_rows, simulate

from ouroboros.generators.gaussian import fit_gaussian, sample_gaussian

M = 20  # samples per generation
T = 8  # generations (fits 1 .. T; fit 1 is on the real data)
CHAINS = 40_000  # enough for 99% power against every wrong formula below (asserted)


class _Normals:
    """A stand-in numpy Generator whose standard normals are given."""

    def __init__(self, z):
        self.z = z

    def standard_normal(self, shape):
        assert shape == self.z.shape
        return self.z


def test_the_vectorised_loop_fits_and_samples_as_the_math_core_does():
    """Row by row, `fit_rows` is `fit_gaussian` (MLE and unbiased) and `sample_rows` is
    `sample_gaussian` fed the same standard normals, to rounding error."""
    rng = np.random.default_rng(3)
    x, z = 2.0 + 1.5 * rng.standard_normal((5, M)), rng.standard_normal((5, M))
    for ddof in (0, 1):
        mean, var = fit_rows(x, ddof)
        out = sample_rows(mean, var, z, 0.8)
        for c in range(5):
            mu, cov = fit_gaussian(x[c], unbiased=ddof == 1)
            np.testing.assert_allclose([mean[c], var[c]], [mu[0], cov[0, 0]], rtol=1e-13)
            np.testing.assert_allclose(out[c], sample_gaussian(mu, cov, M, _Normals(z[c][:, None]), 0.8)[:, 0],
                                       rtol=1e-13)


@pytest.mark.parametrize("temperature", [1.0, 0.8])
def test_replace_loop_shrinks_the_variance_and_drifts_the_mean_as_theory_says(temperature):
    """One dimension, real data N(mu, s2), M samples per generation, MLE fits,
    temperature tau (sampling variance tau * fitted variance); a = tau (M-1)/M.

    Fit t (t = 1, 2, ...) sees M draws from N(mu_{t-1}, v_{t-1}) with (mu_0, v_0) =
    (mu, s2) and v_{t-1} = tau * s2_{t-1} for t >= 2 (the real data is not tempered).
    Given those, M s2_t / v_{t-1} ~ chi2_{M-1} and mu_t ~ N(mu_{t-1}, v_{t-1} / M),
    independently (Cochran). Hence

        E[s2_t]          = (M-1)/M * E[v_{t-1}]          = s2 ((M-1)/M)^t tau^(t-1)
        E[(mu_t - mu)^2] = E[(mu_{t-1} - mu)^2] + E[v_{t-1}] / M
                         = (s2/M) sum_{i<t} a^i.

    With tau = 1 the variance collapses geometrically while the mean random-walks away.
    Wrong formulas the chains must reject (test of the test): no shrink (E[s2_t] = s2
    tau^(t-1)), the exponent of (M-1)/M off by one either way, 1/(M-1) in place of 1/M in
    the drift, and the drift x 0.9."""
    mu, s2 = 0.5, 2.0
    means, variances = simulate("replace", T, CHAINS, n=M, n_real=M, V=s2, tau=temperature, seed=123)
    means = means + mu  # the simulation's true mean is 0
    t = np.arange(1, T + 1)
    a = temperature * (M - 1) / M

    def variance(exponent=t):
        return s2 * ((M - 1) / M) ** exponent * temperature ** (t - 1)

    def drift(m=M):
        return s2 / m * np.array([np.sum((temperature * (m - 1) / m) ** np.arange(k)) for k in t])

    expected_var, expected_drift = variance(), drift()
    assert np.allclose(expected_drift, s2 / M * np.array([np.sum(a ** np.arange(k)) for k in t]))
    drift_sq = (means - mu) ** 2
    assert_mc_close(variances, expected_var, "E[fitted variance] per generation")
    assert_mc_close(drift_sq, expected_drift, "E[(fitted mean - mu)^2] per generation")
    assert_powerful(variances, expected_var, {"no shrink": variance(0 * t), "exponent t - 1": variance(t - 1),
                                              "exponent t + 1": variance(t + 1)}, "E[fitted variance]")
    # 1/(M-1) in the drift: the recursion's step v/M becomes v/(M-1) (the shrink stays (M-1)/M)
    wrong_step = s2 / (M - 1) * np.array([np.sum(a ** np.arange(k)) for k in t])
    assert_powerful(drift_sq, expected_drift, {"1/(M-1)": wrong_step, "x 0.9": 0.9 * expected_drift},
                    "E[(fitted mean - mu)^2]")
    # The effect is far larger than the tolerance: the test separates collapse from none.
    assert expected_var[-1] < 0.7 * s2


def replace_chains(real_mean, real_cov, temperature, seed, chains):
    """`chains` loops through the math core itself, one chain at a time: generation t's
    model is fitted (MLE) on the M samples of generation t-1's model (t = 1 fits the real
    samples). Returns the fitted means (chains x T x D) and covariances (chains x T x D x D)."""
    rng = np.random.default_rng(seed)
    real_mean, real_cov = np.atleast_1d(real_mean), np.atleast_2d(real_cov)
    d = len(real_mean)
    means, covs = np.empty((chains, T, d)), np.empty((chains, T, d, d))
    for c in range(chains):
        x = sample_gaussian(real_mean, real_cov, M, rng)  # the real data
        for t in range(T):
            means[c, t], covs[c, t] = fit_gaussian(x, unbiased=False)
            x = sample_gaussian(means[c, t], covs[c, t], M, rng, temperature)
    return means, covs


def test_replace_loop_shrinks_a_correlated_covariance_as_a_whole():
    """Two correlated dimensions: the MLE scatter matrix S_t of M draws from
    N(m, V) is Wishart with M-1 degrees of freedom, E[S_t / M] = (M-1)/M V, so by the
    same iteration E[Sigma_t] = Sigma ((M-1)/M)^t, every entry including the
    covariance. (A sampler that used L^T instead of L, or dropped the correlation,
    would keep the diagonal and get the off-diagonal wrong.)"""
    cov = np.array([[1.0, 1.2], [1.2, 4.0]])
    _, covs = replace_chains(np.zeros(2), cov, 1.0, seed=7, chains=1500)
    factor = ((M - 1) / M) ** np.arange(1, T + 1)
    assert_mc_close(covs.reshape(len(covs), T, 4), factor[:, None] * cov.reshape(1, 4), "E[fitted covariance]")
