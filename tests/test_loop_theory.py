"""The feedback loop's machinery against closed-form answers, over many seeds.

Each chain runs the code a loop run runs, in process: `scenarios.assemble` builds every
generation's training set, the `gaussian` family fits it (MLE covariance, its default
ridge) and samples the next generation as uint8 images, with the seeds `loop.plan`
derives (`run_chain`; the last test checks that the real planner and runner give the
very same images). The data is one pixel: real images are N(mu, s^2) in grey levels,
rounded to uint8 by `quantize` like every generated image.

Units and the two small terms the expectations carry. Everything is in grey levels
(the family works in [-1, 1]; one grey level is 1/127.5 there). Rounding to an integer
grey level adds an error that is uniform on [-1/2, 1/2] and independent of the value
when s >> 1 (Sheppard's correction; exact up to terms of order exp(-2 pi^2 s^2)), so a
real image has variance V = s^2 + q with q = 1/12, and model g, fitted with mean mu_g
and MLE variance s2_g, makes images of mean mu_g and variance
v_g = s2_g + r + q, r = ridge x 127.5^2 (the family adds its ridge to the covariance).
s = 20 keeps clipping at 0 and 255 (more than 6 s away) out of reach.

Notation: N = M = 20 images per generation and per real set, rho' = m / N the realised
real fraction (m = round(rho N)), u = N - m, e_g = mu_g - mu, D_g = E[e_g^2], and
E_v(g) = E[s2_g] + r + q. Each test states its recursion; the recursions are exact
given the quantisation model above, and are evaluated numerically.

Tolerances are Z standard errors of the Monte Carlo mean, estimated from the chains
(`assert_mc_close`), so a wrong expectation, or code that does something else, fails.
"""

import numpy as np
import pytest
from test_theory import assert_mc_close

from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.generators.base import get_family
from ouroboros.runner import Runner
from ouroboros.studies import loop, scenarios
from ouroboros.studies.common import derived_seed

MU, SIGMA = 128.0, 20.0  # grey levels
Q = 1.0 / 12.0  # variance of rounding to integer grey levels
V = SIGMA**2 + Q  # variance of a real image
N = 20  # images per generation (M in the issue) and per real set
G = 8  # generations (models 0 .. 7)
CHAINS = 500
SETTINGS = {}  # the gaussian family's defaults: pixels, MLE covariance, ridge 1e-6
R = get_family("gaussian").make_config(SETTINGS).ridge * 127.5**2  # the ridge in grey levels^2
A = (N - 1) / N


def real_images(rng, n, classes=1):
    """n real one-pixel images N(MU, SIGMA^2), rounded to uint8; labels cycle through the classes."""
    x = (MU + SIGMA * rng.standard_normal(n)) / 127.5 - 1.0
    return ImageSet.create(quantize(x.reshape(n, 1, 1, 1)), np.arange(n) % classes,
                           [f"c{c}" for c in range(classes)], source="real:normal")


def run_chain(scenario, real, seed, generations=G, n=N, rho=0.5):
    """One chain of the loop in process: per generation the training set (what loop.plan's
    `_training_set` feeds the fit stage), the gaussian family's fit and its n samples
    (labels cycling through the classes, as the sample stage draws them), with the seeds
    loop.plan derives for chain seed `seed`. Returns (fitted models, outputs O_g)."""
    family = get_family("gaussian")
    fits, outputs = [], []
    for g in range(generations):
        if g == 0 and scenario != "fresh":
            train = real
        elif scenario == "replace":
            train = outputs[g - 1]
        else:
            window = {k: outputs[k] for k in scenarios.window_of(scenario, None, g)}
            train = scenarios.assemble(scenario, g, real, window, n=n, seed=derived_seed(seed, g, "assemble"),
                                       real_seed=derived_seed(seed, "real order"), rho=rho)
        model = family.fit(train, SETTINGS, seed=derived_seed(seed, g, "fit"), name="gaussian")
        labels = np.arange(n) % real.num_classes
        outputs.append(model.sample(n, labels, seed=derived_seed(seed, g, "sample"), temperature=1.0))
        fits.append(model)
    return fits, outputs


def chains(scenario, n_real=N, rho=0.5, count=CHAINS, data_seed=0):
    """Fitted mean and variance (grey levels) of models 0 .. G-1 for `count` chains, each
    with its own real set of n_real images."""
    rng = np.random.default_rng(data_seed)
    means, variances = np.empty((count, G)), np.empty((count, G))
    for c in range(count):
        fits, _ = run_chain(scenario, real_images(rng, n_real), seed=c, rho=rho)
        means[c] = [(f.means[0, 0, 0] + 1.0) * 127.5 for f in fits]
        variances[c] = [f.covariances[0, 0, 0, 0] * 127.5**2 - R for f in fits]  # the MLE s2_g
    return means, variances


def ev(s2):
    """E_v: the variance of the images a model with expected MLE variance s2 makes."""
    return s2 + R + Q


def test_replace_shrinks_the_variance_and_drifts_the_mean():
    """T_0 = R (N real images), T_g = O_{g-1}. Given model g-1, T_g is N iid draws of
    variance v_{g-1}, so N s2_g / v_{g-1} ~ chi2_{N-1} and mu_g ~ N(mu_{g-1}, v_{g-1} / N):

        E[s2_0] = A V,   E[s2_g] = A E_v(g-1),          A = (N-1)/N
        D_0 = V / N,     D_g = D_{g-1} + E_v(g-1) / N

    i.e. E[s2_g] ~ s^2 A^(g+1) and D_g ~ (s^2/N) sum_{i<=g} A^i (the issue's formulas,
    with t = g + 1) plus the rounding and ridge terms."""
    means, variances = chains("replace")
    s2, d = [A * V], [V / N]
    for _ in range(1, G):
        d.append(d[-1] + ev(s2[-1]) / N)
        s2.append(A * ev(s2[-1]))
    assert_mc_close(variances, np.array(s2), "E[s2_g] under replace")
    assert_mc_close((means - MU) ** 2, np.array(d), "E[(mu_g - mu)^2] under replace")
    assert s2[-1] < 0.7 * SIGMA**2 and d[-1] > 6 * V / N  # collapse and drift, far beyond the tolerance


def test_accumulate_keeps_the_mean_error_bounded():
    """T_g = R + O_0 + ... + O_{g-1}: n_g = (g+1) N images, every batch N.

    Mean. mu_g is the mean of T_g, and O_g has mean mu_g + eta_g with
    eta_g ~ N(0, v_g / N) given the past, so mu_{g+1} = (n_g mu_g + N (mu_g + eta_g)) /
    (n_g + N) = mu_g + eta_g / (g + 2). The steps are uncorrelated, hence

        D_g = V / N + sum_{k<g} E_v(k) / (N (k+2)^2)   (~ (s^2/N) sum_{i<=g+1} 1/i^2 < 1.65 s^2/N)

    Variance. The scatter SS_g = n_g s2_g of T_g grows, when a batch of N points with
    mean b joins n points with mean mu_g, by the batch's own scatter plus
    (n N / (n + N)) (b - mu_g)^2, so with E[batch scatter] = (N-1) E_v(g):

        E[SS_0] = (N-1) V,   E[SS_{g+1}] = E[SS_g] + E_v(g) (N - 1 + n_g / (n_g + N)),
        E[s2_g] = E[SS_g] / n_g."""
    means, variances = chains("accumulate")
    ss, d = [(N - 1) * V], [V / N]
    for g in range(G - 1):
        n_g = (g + 1) * N
        e_v = ev(ss[-1] / n_g)
        d.append(d[-1] + e_v / (N * (g + 2) ** 2))
        ss.append(ss[-1] + e_v * (N - 1 + n_g / (n_g + N)))
    s2 = np.array(ss) / (N * np.arange(1, G + 1))
    assert_mc_close(variances, s2, "E[s2_g] under accumulate")
    assert_mc_close((means - MU) ** 2, np.array(d), "E[(mu_g - mu)^2] under accumulate")
    assert d[-1] < 1.65 * V / N and s2[-1] > 0.9 * SIGMA**2  # bounded error, no collapse


def mixed_expectations(rho_, fixed_real, generations=G):
    """E[s2_g] and D_g when T_g = m real images + u = N - m drawn from O_{g-1} (N images).

    Mean: e_g = rho' eps_g + (1 - rho')(e_{g-1} + eta_{g-1}), with eta_{g-1} ~ N(0, v_{g-1} / u)
    given the past (a uniform subset of iid draws is iid) and eps_g the real part's mean
    error, of variance V / m. With `fresh`, eps_g is new each generation and independent of
    the past. With `mix` it is the same eps every generation (the same m images), a subset
    of T_0 = R, so Cov(e_0, eps) = V / N and c_g = E[e_g eps] = rho' V / m + (1 - rho') c_{g-1}:

        fresh: D_g = rho'^2 V/m + (1-rho')^2 (D_{g-1} + E_v(g-1)/u)
        mix:   D_g = rho'^2 V/m + (1-rho')^2 (D_{g-1} + E_v(g-1)/u) + 2 rho'(1-rho') c_{g-1}

    Variance: SS_g = SS(real part) + SS(generated part) + (m u / N)(rbar - gbar)^2, with
    E[SS(real)] = (m-1) V, E[SS(gen)] = (u-1) E_v(g-1) and
    E[(rbar - gbar)^2] = V/m + D_{g-1} - 2 c_{g-1} + E_v(g-1)/u (c = 0 for fresh);
    E[s2_g] = E[SS_g] / N. Generation 0 fits N real images: E[s2_0] = A V, D_0 = V / N
    (c_0 = V / N). Both recursions are linear and contracting for rho' > 0, so the
    expectations settle at a fixed point instead of growing."""
    m = round(rho_ * N)
    u, p = N - m, m / N
    s2, d, c = [A * V], [V / N], [V / N if fixed_real else 0.0]
    for _ in range(1, generations):
        e_v = ev(s2[-1])
        ss = (m - 1) * V + (u - 1) * e_v + (m * u / N) * (V / m + d[-1] - 2 * c[-1] + e_v / u)
        d.append(p**2 * V / m + (1 - p) ** 2 * (d[-1] + e_v / u) + 2 * p * (1 - p) * c[-1])
        c.append(p * V / m + (1 - p) * c[-1] if fixed_real else 0.0)
        s2.append(ss / N)
    return np.array(s2), np.array(d)


@pytest.mark.parametrize("scenario, rho", [("mix", 0.5), ("fresh", 0.5), ("mix", 0.2), ("fresh", 0.2)])
def test_mix_and_fresh_settle(scenario, rho):
    """Limits (D in units of V/N, E[s2] in grey levels^2): mix 0.5 -> 2.58, 349; fresh 0.5
    -> 1.29, 374; mix 0.2 -> 6.50, 270 (slowly: 5.18 at g = 7); fresh 0.2 -> 2.50, 350."""
    fresh = scenario == "fresh"
    n_real = N + (G - 1) * round(rho * N) if fresh else N  # fresh's reservoir: exactly what it needs
    means, variances = chains(scenario, n_real=n_real, rho=rho, count=400)
    s2, d = mixed_expectations(rho, fixed_real=not fresh)
    assert_mc_close(variances, s2, f"E[s2_g] under {scenario} rho={rho}")
    assert_mc_close((means - MU) ** 2, d, f"E[(mu_g - mu)^2] under {scenario} rho={rho}")
    # The expectations approach finite limits (the recursion's fixed point, here after 500
    # generations) instead of growing or collapsing like replace's; all but mix at
    # rho = 0.2 are within 3% of them by generation 7.
    s2_inf, d_inf = (x[-1] for x in mixed_expectations(rho, fixed_real=not fresh, generations=500))
    assert d_inf < 7 * V / N and s2_inf > 0.65 * SIGMA**2
    if (scenario, rho) != ("mix", 0.2):
        assert abs(d[-1] - d_inf) < 0.03 * d_inf and abs(s2[-1] - s2_inf) < 0.03 * s2_inf


@pytest.mark.parametrize("scenario", ["mix", "accumulate"])
def test_the_planner_and_runner_make_the_same_images_as_run_chain(tmp_path, scenario):
    """The in-process chains above are the loop: through loop.plan and the Runner (the
    gaussian family from loop.generators, two classes, two seeds, three generations) every
    generation's output is image for image the one run_chain makes."""
    rng = np.random.default_rng(5)
    train, test = real_images(rng, 2 * N, classes=2), real_images(rng, 10, classes=2)
    config = load_config(None, ["loop.generations=3", "loop.guidance=[0.0]", "loop.seeds=[0,1]",
                                f"loop.samples_per_generation={N}", f"loop.scenario={scenario}",
                                "loop.real_fraction=0.3", "loop.generators=[{family: gaussian, share: 1}]",
                                "executor.workers=1"], base={"name": "theory"})
    runner = Runner(tmp_path, workers=1, progress=False)
    plan = loop.plan(config, runner.cache, (train, test))
    paths = runner.run([out for chain in plan.chains.values() for (_, out, _) in chain])
    for (_, _, seed), chain in plan.chains.items():
        _, expected = run_chain(scenario, train, seed, generations=3, rho=0.3)
        got = [ImageSet.load(paths[out.key]) for _, out, _ in chain]
        assert [s.content_hash() for s in got] == [s.content_hash() for s in expected]
