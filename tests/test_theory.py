"""The Gaussian family's math core against closed-form answers for a model trained on
its own output (the feedback loop's `replace` scenario), over many seeds.

Every test runs the code the `gaussian` generator family runs (`fit_gaussian`,
`sample_gaussian`; tests/test_gaussian.py checks that the family and the stages
call exactly these) on float data, so uint8 quantisation does not blur the answer.
Tolerances are Z standard errors of the Monte Carlo mean, estimated from the chains
themselves, so a wrong expectation fails.
"""

import numpy as np
import pytest

from ouroboros.generators.gaussian import fit_gaussian, sample_gaussian

Z = 4.0  # a true expectation lies outside +-4 standard errors with probability 6e-5
M = 20  # samples per generation
T = 8  # generations
CHAINS = 3000


def replace_chains(real_mean, real_cov, temperature, seed, chains=CHAINS):
    """Run `chains` independent loops: generation t's model is fitted (MLE) on only the
    M samples of generation t-1's model (t = 1 fits the real samples) and samples M new
    ones at `temperature`. Returns the fitted means (chains x T x D) and covariances
    (chains x T x D x D) of generations 1..T."""
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


def assert_mc_close(samples, expected, what):
    """The mean over chains (axis 0) equals `expected` within Z Monte Carlo standard errors."""
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    bad = np.abs(mean - expected) > Z * se
    assert not bad.any(), (f"{what}: Monte Carlo mean {mean[bad]} vs closed form {np.asarray(expected)[bad]} "
                           f"(+- {Z} SE = {Z * se[bad]})")


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
                         = (s2/M) (1 + sum_{i=1}^{t-1} tau E[s2_i] / s2)
                         = (s2/M) sum_{i<t} a^i.

    With tau = 1: E[s2_t] = s2 ((M-1)/M)^t and E[(mu_t - mu)^2] = (s2/M) sum_{i<t} ((M-1)/M)^i,
    the variance collapses geometrically while the mean random-walks away from mu.
    """
    mu, s2 = 0.5, 2.0
    means, covs = replace_chains(mu, s2, temperature, seed=123)
    t = np.arange(1, T + 1)
    a = temperature * (M - 1) / M
    expected_var = s2 * ((M - 1) / M) ** t * temperature ** (t - 1)
    expected_drift = s2 / M * np.array([np.sum(a ** np.arange(k)) for k in t])
    assert_mc_close(covs[:, :, 0, 0], expected_var, "E[fitted variance] per generation")
    assert_mc_close((means[:, :, 0] - mu) ** 2, expected_drift, "E[(fitted mean - mu)^2] per generation")
    # The effect is far larger than the tolerance: the test separates collapse from none.
    assert expected_var[-1] < 0.7 * s2


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
