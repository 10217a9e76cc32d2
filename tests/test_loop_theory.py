"""The feedback loop's scenarios against exact expectations, with a test of each test.

Three layers, each checked separately:

1. The closed forms. For one-pixel Gaussian data and the gaussian family's fit (MLE mean
   and variance), `gaussian_loop.moments` gives the exact E[s2_g] (fitted variance) and
   D_g = E[(mu_g - mu)^2] (the fitted mean's squared error) of every scenario, window
   and temperature (its docstring derives the recursion). Where the recursion has a
   short explicit form (replace, accumulate, mix, fresh, augment) the explicit form is
   written out below and the general recursion must equal it to rounding error; the
   limits (fixed points) are derived and checked too.
2. The closed forms against the loop, with power. `gaussian_loop.simulate` runs the loop
   vectorised over 40,000 chains (the fit and sampler of the math core, see
   tests/test_theory.py) and every generation's Monte Carlo mean must lie within 4
   standard errors of the closed form. The test of the test (`assert_powerful`, see
   tests/test_theory.py): wrong formulas pass with probability at most 1%, bounded from
   the chains' own standard errors, from generation 1 on. Wrong formulas, N = 20 images
   per generation: no variance shrink (a fitter dividing by n_g - 1: under replace,
   E[s2] = s^2 for ever), the variance exponent off by one either way (x (N-1)/N or
   x N/(N-1)), 1/(N-1) in the drift (x N/(N-1)) and the drift x 0.9.
3. The machinery builds exactly those training sets. `run_chain` runs the loop's own
   code in process (`scenarios.assemble`, the family's fit and sample on uint8 images,
   the planner's seeds); each generation's training set has the make-up `parts` states,
   the real planner and runner give image for image the same chains, and a few hundred
   such chains agree with the closed forms including rounding to grey levels.
"""

import numpy as np
import pytest
from gaussian_loop import (
    Z, assert_mc_close, assert_powerful, gmm_moments, moments, outputs_per_generation, parts, simulate, simulate_gmm,
)

from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.generators.base import get_family
from ouroboros.runner import Runner
from ouroboros.studies import loop, scenarios
from ouroboros.studies.common import derived_seed

N = 20  # images per generation, and |R| (as the papers keep N = |R|)
A = (N - 1) / N
G = 8  # generations (models 0 .. 7)
CHAINS = 40_000

# (id, scenario, settings, temperature): every scenario, a window, tau != 1 under mix and fresh
CASES = [
    ("replace K=3", "replace", {"window": 3}, 1.0),
    ("accumulate", "accumulate", {}, 1.0),
    ("accumulate-subsample", "accumulate-subsample", {}, 1.0),
    ("accumulate-subsample K=2", "accumulate-subsample", {"window": 2}, 1.0),
    ("mix rho=0.5", "mix", {"rho": 0.5}, 1.0),
    ("mix rho=0.2", "mix", {"rho": 0.2}, 1.0),
    ("fresh rho=0.5", "fresh", {"rho": 0.5}, 1.0),
    ("fresh rho=0.2", "fresh", {"rho": 0.2}, 1.0),
    ("mix rho=0.5 tau=0.7", "mix", {"rho": 0.5}, 0.7),
    ("fresh rho=0.2 tau=1.3", "fresh", {"rho": 0.2}, 1.3),
    ("augment lambda=0.5", "augment", {"lam": 0.5}, 1.0),
    ("augment lambda=2", "augment", {"lam": 2.0}, 1.0),
]


def n_real_for(scenario, setting, generations=G, n=N):
    """|R|: N, except fresh's reservoir, exactly what it needs."""
    return n + (generations - 1) * round(setting.get("rho", 0.5) * n) if scenario == "fresh" else n


# -- 1. explicit closed forms ------------------------------------------------------------------


def accumulate_explicit(V, generations=G, n=N):
    """T_g = R + O_0 + ... + O_{g-1}: n_g = (g+1) N images, every batch N.

    Mean. mu_g is the mean of T_g, and O_g has mean mu_g + eta_g with eta_g of variance
    v_g / N given the past, so mu_{g+1} = mu_g + eta_g / (g + 2): uncorrelated steps,
        D_g = V / N + sum_{k<g} E[v_k] / (N (k+2)^2)    (< 1.65 V / N for ever).
    Variance. The scatter SS_g = n_g s2_g grows, when a batch of N points with mean b
    joins n points with mean mu_g, by the batch's own scatter plus (n N / (n + N))
    (b - mu_g)^2, so E[SS_0] = (N-1) V, E[SS_{g+1}] = E[SS_g] + E[v_g] (N - 1 + n_g / (n_g + N))."""
    ss, d = [(n - 1) * V], [V / n]
    for g in range(generations - 1):
        n_g = (g + 1) * n
        e_v = ss[-1] / n_g
        d.append(d[-1] + e_v / (n * (g + 2) ** 2))
        ss.append(ss[-1] + e_v * (n - 1 + n_g / (n_g + n)))
    return np.array(ss) / (n * np.arange(1, generations + 1)), np.array(d)


def mixed_explicit(V, m, u, same_real, n0, tau=1.0, generations=G):
    """E[s2_g], D_g and c_g when T_g = m real images + u drawn from O_{g-1} (p = m / (m + u)):
    mix (m = round(rho N), the same images each generation, T_0 = R of n0 = N images),
    fresh (m new real images each generation, T_0 = N images) and augment (m = |R| = n0, the
    same R each generation, u = round(lambda |R|)).

    Mean: e_g = p eps + (1 - p)(e_{g-1} + eta), eta of variance E[v_{g-1}] / u given the
    past (a uniform subset of iid draws is iid), eps the real part's mean error, variance
    V / m. With fresh eps is new each generation and independent of the past; with mix
    and augment it is the same each generation and c_g = E[e_g eps] = p V/m + (1-p) c_{g-1},
    c_0 = V / n0 (the real part is a subset of T_0 = R):
        D_g = p^2 V/m + (1-p)^2 (D_{g-1} + E[v_{g-1}]/u) + 2 p (1-p) c_{g-1}
    Variance: SS_g = SS(real) + SS(generated) + (m u / (m + u)) (rbar - gbar)^2, with
    E[SS(real)] = (m-1) V, E[SS(gen)] = (u-1) E[v_{g-1}] and E[(rbar - gbar)^2] =
    V/m + D_{g-1} - 2 c_{g-1} + E[v_{g-1}]/u; E[s2_g] = E[SS_g] / (m + u); E[v] = tau E[s2].
    Both recursions are linear and contracting, so the expectations settle."""
    p = m / (m + u)
    s2, d, c = [(n0 - 1) / n0 * V], [V / n0], [V / n0 if same_real else 0.0]
    for _ in range(1, generations):
        e_v = tau * s2[-1]
        ss = (m - 1) * V + (u - 1) * e_v + (m * u / (m + u)) * (V / m + d[-1] - 2 * c[-1] + e_v / u)
        d.append(p**2 * V / m + (1 - p) ** 2 * (d[-1] + e_v / u) + 2 * p * (1 - p) * c[-1])
        c.append(p * V / m + (1 - p) * c[-1] if same_real else 0.0)
        s2.append(ss / (m + u))
    return np.array(s2), np.array(d)


def test_the_general_recursion_equals_every_explicit_closed_form():
    """`moments` (one recursion for every scenario) equals, to rounding error, replace's
    E[s2_g] = V A^(g+1) tau^g and D_g = (V/N) sum_{i<=g} (tau A)^i, accumulate's and the
    mixed scenarios' explicit recursions above, and a window of 1 is replace."""
    g = np.arange(G)
    for tau in (1.0, 0.8):
        exact = moments("replace", G, n=N, n_real=N, tau=tau)
        np.testing.assert_allclose(exact["S"], A ** (g + 1) * tau**g, rtol=1e-12)
        np.testing.assert_allclose(exact["D"], [np.sum((tau * A) ** np.arange(k + 1)) / N for k in g], rtol=1e-12)
        np.testing.assert_allclose(moments("replace", G, n=N, n_real=N, tau=tau, window=1)["D"], exact["D"])
    np.testing.assert_allclose(np.vstack(accumulate_explicit(1.0)),
                               np.vstack([moments("accumulate", G, n=N, n_real=N)[k] for k in "SD"]), rtol=1e-12)
    for scenario, rho, tau in [("mix", 0.5, 1.0), ("mix", 0.2, 0.7), ("fresh", 0.5, 1.0), ("fresh", 0.2, 1.3)]:
        m = round(rho * N)
        explicit = mixed_explicit(1.0, m, N - m, scenario == "mix", N, tau)
        exact = moments(scenario, G, n=N, n_real=n_real_for(scenario, {"rho": rho}), rho=rho, tau=tau)
        np.testing.assert_allclose(np.vstack(explicit), np.vstack([exact["S"], exact["D"]]), rtol=1e-12)
    for lam in (0.5, 2.0):
        explicit = mixed_explicit(1.0, N, round(lam * N), True, N)
        exact = moments("augment", G, n=N, n_real=N, lam=lam)
        np.testing.assert_allclose(np.vstack(explicit), np.vstack([exact["S"], exact["D"]]), rtol=1e-12)


@pytest.mark.parametrize("scenario, rho, tau, limits", [
    ("mix", 0.5, 1.0, (2.581, 0.871)), ("fresh", 0.5, 1.0, (1.290, 0.935)), ("mix", 0.2, 1.0, (6.500, 0.675)),
    ("fresh", 0.2, 1.0, (2.500, 0.875)), ("mix", 0.5, 0.7, (2.317, 0.680)), ("fresh", 0.2, 1.2, (8.333, 2.917))])
def test_mix_and_fresh_settle_at_a_fixed_point(scenario, rho, tau, limits):
    """With a real share the recursions contract to a fixed point (D in units of V/N,
    E[s2] in units of V, reached after 500 generations) instead of growing or collapsing
    like replace's; all but mix at rho = 0.2 and fresh at tau = 1.2 are within 3% of it by
    generation 7.
    Temperature moves the fixed point, and above 1 it can remove it: the pair (E[s2], D)
    evolves by a linear map whose largest eigenvalue passes 1 for fresh at rho = 0.2
    between tau = 1.2 (settles) and tau = 1.3 (grows by 1% a generation for ever)."""
    m = round(rho * N)
    s2, d = mixed_explicit(1.0, m, N - m, scenario == "mix", N, tau, generations=500)
    assert abs(d[-1] * N - limits[0]) < 0.001 and abs(s2[-1] - limits[1]) < 0.001
    assert abs(d[-2] - d[-1]) < 1e-12 and abs(s2[-2] - s2[-1]) < 1e-12
    s2_7, d_7 = mixed_explicit(1.0, m, N - m, scenario == "mix", N, tau)
    if (scenario, rho) != ("mix", 0.2) and tau <= 1:
        assert abs(d_7[-1] - d[-1]) < 0.03 * d[-1] and abs(s2_7[-1] - s2[-1]) < 0.03 * s2[-1]
    if (scenario, rho, tau) == ("fresh", 0.2, 1.2):
        s2, _ = mixed_explicit(1.0, m, N - m, False, N, 1.3, generations=2000)
        assert 1.01 < s2[-1] / s2[-2] < 1.011


def test_augment_approaches_bertrands_fixed_point():
    """Bertrand et al. ("On the Stability of Iterative Retraining of Generative Models on
    their own Data", ICLR 2024) retrain on the real data plus lambda times as many generated
    images (lambda: the ratio of generated to real data; their released code takes all
    real images and int(lambda x |generated|) of the latest model's |R| samples), which is
    `augment` with synthetic_ratio lambda. Their update maximises E_data[log p] + lambda
    E_{model t}[log p]; its fixed point is theta*, the model fitted on the real data alone.

    For the Gaussian MLE the fitted mean's distance from theta*'s, f_g = mu_g - mean(R),
    obeys f_g = (1 - p)(f_{g-1} + eta), p = 1/(1 + lambda), f_0 = 0: the retraining map
    contracts towards theta* by lambda/(1 + lambda) per generation, and the samples'
    noise keeps it at
        E[f_g^2] = (lambda/(1+lambda))^2 (E[f_{g-1}^2] + E[v_{g-1}] / (lambda |R|))
        -> F = lambda E[v] / ((1 + 2 lambda) |R|).
    With tau = 1 the variance recursion's fixed point is E[s2] = V - D and
    D = V/|R| + F, hence D = V (1 + 3 lambda) / ((1 + 2 lambda) |R| + lambda)."""
    for lam in (0.5, 1.0, 2.0):
        q = lam / (1 + lam)
        exact = moments("augment", G, n=N, n_real=N, lam=lam)
        f, ev = [0.0], exact["S"]
        for g in range(1, G):
            f.append(q**2 * (f[-1] + ev[g - 1] / (lam * N)))
        np.testing.assert_allclose(exact["D"] - 2 * exact["C"][:, 0] + exact["D"][0], f, rtol=1e-10, atol=1e-15)
        s2, d = mixed_explicit(1.0, N, round(lam * N), True, N, generations=400)
        d_inf = (1 + 3 * lam) / ((1 + 2 * lam) * N + lam)
        assert abs(d[-1] - d_inf) < 1e-12 and abs(s2[-1] - (1 - d_inf)) < 1e-12
        assert abs((d_inf - 1 / N) - lam * (1 - d_inf) / ((1 + 2 * lam) * N)) < 1e-15
    # and the chains: E[f_g^2] per generation, with power against the contraction factor
    # lambda (in place of lambda/(1+lambda)) and against F x 0.9
    lam = 1.0
    means, _ = simulate("augment", G, CHAINS, n=N, n_real=N, lam=lam, seed=11)
    exact = moments("augment", G, n=N, n_real=N, lam=lam)
    f2 = ((means - means[:, :1]) ** 2)[:, 1:]
    right = (exact["D"] - 2 * exact["C"][:, 0] + exact["D"][0])[1:]
    assert_mc_close(f2, right, "E[(mu_g - mean(R))^2] under augment")
    wrong_rate = [0.0]
    for g in range(1, G):
        wrong_rate.append(lam**2 * (wrong_rate[-1] + exact["S"][g - 1] / (lam * N)))
    assert_powerful(f2, right, {"rate lambda": wrong_rate[1:], "x 0.9": 0.9 * right}, "augment's f_g", skip=0)


# -- 2. closed forms against 40,000 chains, with power --------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_scenario_matches_its_closed_form_and_no_wrong_formula_passes(case):
    """E[s2_g] and D_g of `moments` against 40,000 simulated chains (N = |R| = 20, 8
    generations), and the test of the test: the wrong formulas of the module docstring
    pass with probability at most 1% (bounded from generation 1 on), and fail here."""
    name, scenario, setting, tau = case
    kw = dict(n=N, n_real=n_real_for(scenario, setting), tau=tau, **setting)
    exact = moments(scenario, G, **kw)
    means, variances = simulate(scenario, G, CHAINS, seed=7, **kw)
    drift = means**2
    assert_mc_close(variances, exact["S"], f"E[s2_g] under {name}")
    assert_mc_close(drift, exact["D"], f"E[(mu_g - mu)^2] under {name}")
    assert_powerful(variances, exact["S"], {"no shrink": moments(scenario, G, ddof=1, **kw)["S"],
                                            "exponent + 1": exact["S"] * A, "exponent - 1": exact["S"] / A},
                    f"E[s2_g] under {name}")
    assert_powerful(drift, exact["D"], {"1/(N-1)": exact["D"] / A, "x 0.9": exact["D"] * 0.9},
                    f"E[(mu_g - mu)^2] under {name}")


def test_gmm_weights_drift_as_wright_fisher_and_components_shrink_with_their_counts():
    """The gmm family on separated components (`gaussian_loop.gmm_moments` derives the
    closed forms): each component's weight performs Wright-Fisher drift, E[w(1 - w)] =
    w (1 - w) (1 - 1/N)^(g+1), and its variance and mean follow the Gaussian recursions
    with the component's random count in place of N. Wrong formulas: weights without
    drift, the weights' exponent off by one, no variance shrink, the variance exponent off
    by one, 1/(n-1) in the drift, the drift x 0.9."""
    n, gens, weights, chains = 40, 6, (0.35, 0.65), 20_000
    out = simulate_gmm(gens, chains, n=n, weights=weights, seed=5)
    g = np.arange(gens)
    for k, w in enumerate(weights):
        exact = gmm_moments(gens, n=n, w=w)
        np.testing.assert_allclose(exact["H"], w * (1 - w) * (1 - 1 / n) ** (g + 1), rtol=1e-10)
        het = out["w"][:, :, k] * (1 - out["w"][:, :, k])
        s2, e2, alive = out["s2"][:, :, k], out["e"][:, :, k] ** 2, (out["count"][:, :, k] >= 1).astype(float)
        assert_mc_close(het, exact["H"], f"E[w(1-w)] of component {k}")
        # a share of chains: its standard error is the binomial one (the chains' may be 0)
        p_alive = exact["alive"]
        binomial = np.sqrt(np.clip(p_alive * (1 - p_alive), 0, None) / chains)
        assert (np.abs(alive.mean(axis=0) - p_alive) <= Z * binomial + 1 / chains).all()
        assert_mc_close(s2, exact["S"], f"E[s2] of component {k}")
        assert_mc_close(e2, exact["D"], f"E[e^2] of component {k}")
        a = (w * n - 1) / (w * n)
        assert_powerful(het, exact["H"], {"no drift": np.full(gens, exact["H"][0]),
                                          "exponent g": exact["H"] / (1 - 1 / n),
                                          "exponent g+2": exact["H"] * (1 - 1 / n)}, f"component {k}'s weight")
        assert_powerful(s2, exact["S"], {"no shrink": gmm_moments(gens, n=n, w=w, shrink=False)["S"],
                                         "exponent + 1": exact["S"] * a, "exponent - 1": exact["S"] / a},
                        f"component {k}'s variance")
        if k == 0:  # ~14 images: 1/(n-1) is a 7% error; the larger component's 3.8% needs 3x the chains
            assert_powerful(e2, exact["D"], {"1/(n-1)": gmm_moments(gens, n=n, w=w, drift_ddof=1)["D"],
                                             "x 0.9": 0.9 * exact["D"]}, f"component {k}'s drift")
    assert exact["alive"][-1] < 1  # the loop can lose a component, and the closed form knows how often


# -- 3. the machinery builds those training sets ---------------------------------------------------

MU, SIGMA = 128.0, 20.0  # grey levels; 6 sigma from 0 and 255, so clipping is out of reach
Q = 1.0 / 12.0  # variance of rounding to integer grey levels (Sheppard; exact up to exp(-2 pi^2 s^2))
R = get_family("gaussian").make_config({}).ridge * 127.5**2  # the default ridge in grey levels^2


def real_images(rng, n, classes=1, centres=(MU,), sigma=SIGMA):
    """n real one-pixel images N(centre, sigma^2), rounded to uint8; labels cycle through the
    classes; with several centres each image picks one at random (a mixture)."""
    centre = np.asarray(centres)[rng.integers(len(centres), size=n)]
    x = (centre + sigma * rng.standard_normal(n)) / 127.5 - 1.0
    return ImageSet.create(quantize(x.reshape(n, 1, 1, 1)), np.arange(n) % classes,
                           [f"c{c}" for c in range(classes)], source="real:normal")


def run_chain(scenario, real, seed, generations=G, n=N, *, rho=0.5, lam=1.0, window=None, tau=1.0,
              family="gaussian", settings=None):
    """One chain of the loop in process: per generation the training set (what loop_plan's
    `_training_set` feeds the fit stage), the family's fit and its samples (labels cycling
    through the classes, as the sample stage draws them), with the seeds loop_plan derives
    for chain seed `seed`. Returns (fitted models, outputs O_g, training sets T_g)."""
    fam = get_family(family)
    n_out = outputs_per_generation(scenario, n, len(real), lam)
    fits, outputs, trains = [], [], []
    for g in range(generations):
        if g == 0 and scenario != "fresh":
            train = real
        elif scenario == "replace" and window in (None, 1):
            train = outputs[g - 1]
        else:
            pool = {k: outputs[k] for k in scenarios.window_of(scenario, window, g)}
            train = scenarios.assemble(scenario, g, real, pool, n=n, seed=derived_seed(seed, g, "assemble"),
                                       real_seed=derived_seed(seed, "real order"), rho=rho, lam=lam)
        model = fam.fit(train, settings or {}, seed=derived_seed(seed, g, "fit"), name=family)
        labels = np.arange(n_out) % real.num_classes
        outputs.append(model.sample(n_out, labels, seed=derived_seed(seed, g, "sample"), temperature=tau))
        fits.append(model)
        trains.append(train)
    return fits, outputs, trains


def _values(images: ImageSet) -> list[int]:
    return sorted(images.images.ravel().tolist())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_loops_training_sets_are_made_as_the_closed_forms_assume(case):
    """Every training set of `run_chain` (8 chains, 5 generations) holds exactly what `parts`
    says: all images of the whole sources (the real ones the very images of that slice of
    the chain's fixed real order) and k images from the pool's sources, none from
    elsewhere; and the pool's sources share the k as a uniform draw does (hypergeometric:
    every source's count within 5 standard deviations of k |S| / |P|)."""
    _, scenario, setting, tau = case
    n_real = n_real_for(scenario, setting, generations=5)
    n_out = outputs_per_generation(scenario, N, n_real, setting.get("lam", 1.0))
    z = [0.0]
    for seed in range(8):
        real = real_images(np.random.default_rng(seed), n_real)
        order = scenarios.real_order(n_real, derived_seed(seed, "real order"))
        _, _, trains = run_chain(scenario, real, seed, generations=5, rho=setting.get("rho", 0.5),
                                 lam=setting.get("lam", 1.0), window=setting.get("window"), tau=tau)
        for g, train in enumerate(trains):
            whole, pool, k = parts(scenario, g, n=N, n_real=n_real, **setting)
            counts = dict(zip(*np.unique(train.generation, return_counts=True)))  # provenance: O_j is j + 1
            for s in whole:
                if s[0] == "O":
                    assert counts.pop(s[1] + 1) == n_out
            real_part = train.subset(np.flatnonzero(train.generation == 0))
            whole_real = [i for s in whole if s[0] == "R" for i in order[s[1]:s[2]]]
            drawn = {s: counts.pop(s[1] + 1, 0) for s in pool if s[0] == "O"}
            if any(s[0] == "R" for s in pool):  # accumulate-subsample draws real and generated together
                drawn[("R", 0, n_real)] = len(real_part)
                assert set(_values(real_part)) <= set(_values(real))
            else:
                assert _values(real_part) == _values(real.subset(np.sort(np.array(whole_real, dtype=int))))
            counts.pop(0, None)
            assert sum(drawn.values()) == k and not counts, (g, counts)
            assert len(train) == len(whole_real) + n_out * sum(s[0] == "O" for s in whole) + k
            size = {s: (s[2] - s[1] if s[0] == "R" else n_out) for s in drawn}
            total = sum(size.values())
            for s, got in drawn.items():
                share = size[s] / total
                sd = np.sqrt(k * share * (1 - share) * (total - k) / max(total - 1, 1))
                z.append(0.0 if sd == 0 else abs(got - k * share) / sd)
    assert max(z) < 5, max(z)


PLANNER_CASES = [  # (scenario, loop overrides, run_chain settings)
    ("replace", ["loop.window=2"], {"window": 2}),
    ("accumulate", [], {}),
    ("accumulate-subsample", [], {}),
    ("mix", ["loop.real_fraction=0.3"], {"rho": 0.3}),
    ("fresh", ["loop.real_fraction=0.3"], {"rho": 0.3}),
    ("augment", ["loop.synthetic_ratio=1.5"], {"lam": 1.5}),
    ("mix", ["loop.real_fraction=0.3", "loop.generators=[{family: gaussian, share: 1, bias: 0.7}]"],
     {"rho": 0.3, "tau": 0.7}),
    ("replace", ["loop.generators=[{family: gmm, share: 1, settings: {mixture_components: 2}}]", "loop.seeds=[3]"],
     {"family": "gmm", "settings": {"mixture_components": 2}}),
]


@pytest.mark.parametrize("scenario, overrides, setting", PLANNER_CASES,
                         ids=[f"{c[0]} {' '.join(c[1])}"[:60] for c in PLANNER_CASES])
def test_the_planner_and_runner_make_the_same_images_as_run_chain(tmp_path, scenario, overrides, setting):
    """The in-process chains are the loop: through loop.plan and the Runner (two classes,
    two seeds, three generations) every generation's output is image for image the one
    run_chain makes, for every scenario, a window, a temperature and the gmm family."""
    rng = np.random.default_rng(5)
    train = real_images(rng, 2 * N, classes=2, centres=(70.0, 190.0))
    test = real_images(rng, 10, classes=2)
    family = setting.get("family", "gaussian")
    pool = [] if any("generators" in o for o in overrides) else [f"loop.generators=[{{family: {family}, share: 1}}]"]
    config = load_config(None, ["loop.generations=3", "loop.guidance=[0.0]", "loop.seeds=[0,1]",
                                f"loop.samples_per_generation={N}", f"loop.scenario={scenario}",
                                "executor.workers=1", *pool, *overrides], base={"name": "theory"})
    runner = Runner(tmp_path, workers=1, progress=False)
    plan = loop.plan(config, runner.cache, (train, test))
    paths = runner.run([out for chain in plan.chains.values() for (_, out, _) in chain])
    for (_, _, seed), chain in plan.chains.items():
        _, expected, _ = run_chain(scenario, train, seed, generations=3, **setting)
        got = [ImageSet.load(paths[out.key]) for _, out, _ in chain]
        assert [s.content_hash() for s in got] == [s.content_hash() for s in expected]


def test_the_real_loop_on_uint8_images_agrees_with_the_closed_form():
    """150 chains of the loop's own code (mix at rho = 0.2 and temperature 0.8; uint8
    images, the family's ridge) agree with the closed form in grey levels: real images have
    variance V = s^2 + q (q = 1/12, rounding), a model with fitted variance s2 makes images
    of variance tau (s2 + r) + q. (This checks the machinery end to end at modest power:
    the tests above pin the formulas and the training sets.)"""
    rng, chains, tau = np.random.default_rng(0), 150, 0.8
    means, variances = np.empty((chains, G)), np.empty((chains, G))
    for c in range(chains):
        fits, _, _ = run_chain("mix", real_images(rng, N), seed=c, rho=0.2, tau=tau)
        means[c] = [(f.means[0, 0, 0] + 1.0) * 127.5 for f in fits]
        variances[c] = [f.covariances[0, 0, 0, 0] * 127.5**2 - R for f in fits]  # the MLE s2_g
    exact = moments("mix", G, n=N, n_real=N, V=SIGMA**2 + Q, tau=tau, r=R, q=Q, rho=0.2)
    assert_mc_close(variances, exact["S"], "E[s2_g] under mix, uint8")
    assert_mc_close((means - MU) ** 2, exact["D"], "E[(mu_g - mu)^2] under mix, uint8")
    assert exact["S"][-1] < 0.7 * SIGMA**2  # a visible effect (tau = 0.8 shrinks), far beyond the tolerance


def test_the_gmm_family_fits_separated_components_as_the_closed_form_assumes():
    """On separated components the gmm family's EM fit is the per-component MLE the GMM
    closed form assumes: weights n_k / N, each component's mean and MLE variance (plus the
    ridge), in [-1, 1] units. (Components 15 standard deviations apart: EM's
    responsibilities are then 0 or 1 to 1e-12.)"""
    train = real_images(np.random.default_rng(2), 60, centres=(70.0, 190.0), sigma=8.0)
    x = train.to_float().ravel().astype(np.float64)
    fitted = get_family("gmm").fit(train, {"mixture_components": 2}, seed=0)
    order = np.argsort(fitted.means[0, :, 0])
    ridge = get_family("gmm").make_config({}).ridge
    for k, part in enumerate([x[x < 0], x[x >= 0]]):
        j = order[k]
        np.testing.assert_allclose(fitted.weights[0, j], len(part) / len(x), atol=1e-9)
        np.testing.assert_allclose(fitted.means[0, j, 0], part.mean(), atol=1e-9)
        np.testing.assert_allclose(fitted.covariances[0, j, 0, 0], part.var() + ridge, rtol=1e-7)
