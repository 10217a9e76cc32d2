"""A one-dimensional Gaussian feedback loop, exactly and by simulation: a helper of
tests/test_loop_theory.py and tests/test_theory.py (not a test module itself).

- `parts`: what generation g of a scenario trains on, for one class: sources (slices of
  the real set R, whole outputs O_j) taken whole, and a pool that k images are drawn
  from uniformly without replacement. It restates ouroboros.studies.scenarios' module
  docstring independently of its code (tests/test_loop_theory.py checks the two agree).
- `moments`: the exact expectations of the fitted variance and of the fitted mean's
  squared error per generation, for any such scenario (see its docstring).
- `simulate`: the same loop vectorised over chains in numpy: the MLE fit of
  `fit_gaussian` and the sampler of `sample_gaussian` on float data (tests/test_theory.py
  checks, draw for draw, that they are those functions).
- `gmm_moments`, `simulate_gmm`: the same for a mixture of separated components.
- `acceptance`: the probability that `assert_mc_close` accepts a formula, for the test of
  the tests.

Units: the true mean is 0, real images have variance V; a model outputs images of
variance v = tau (s2 + r) + q given its fitted variance s2 (temperature tau, the family's
ridge r, rounding to grey levels q; r = q = 0 in the float simulation).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom, norm

Z = 4.0  # tolerance in standard errors: a true expectation lies outside with probability 6e-5


# -- scenarios as sources ------------------------------------------------------------------


def outputs_per_generation(scenario: str, n: int, n_real: int, lam: float = 1.0) -> int:
    """Images each model makes: N, or round(lambda |R|) when augment draws more (as loop_plan sizes it)."""
    return max(n, round(lam * n_real)) if scenario == "augment" else n


def parts(scenario: str, g: int, *, n: int, n_real: int, rho: float = 0.5, lam: float = 1.0,
          window: int | None = None) -> tuple[list, list, int]:
    """(whole, pool, k): generation g trains on every image of the `whole` sources plus k
    drawn from the union of the `pool` sources. A source is ("R", start, stop), a slice of
    the chain's fixed real order, or ("O", j), the output of model j. Slices never overlap.

    g = 0: all of R (fresh: its first N; mix: R as two slices, the m it keeps and the rest).
    g >= 1, with W the window's outputs O_{g-K}, ..., O_{g-1} (K = 1 by default; every
    output so far for the accumulate scenarios), m = round(rho N):
    replace: N from W; accumulate: R and every O_j; accumulate-subsample: N from R + W;
    mix: the first m real + N - m from W; augment: R + round(lambda |R|) from W;
    fresh: the next m unseen real + N - m from W."""
    m = round(rho * n)
    whole_r = ("R", 0, n_real)
    if g == 0:
        if scenario == "fresh":
            return [("R", 0, n)], [], 0
        if scenario == "mix":
            return [("R", 0, m), ("R", m, n_real)], [], 0
        return [whole_r], [], 0
    if scenario in ("accumulate", "accumulate-subsample") and window is None:
        first = 0
    else:
        first = max(0, g - (window or 1))
    outs = [("O", j) for j in range(first, g)]
    if scenario == "replace":
        return [], outs, n
    if scenario == "accumulate":
        return [whole_r, *outs], [], 0
    if scenario == "accumulate-subsample":
        return [], [whole_r, *outs], n
    if scenario == "mix":
        return [("R", 0, m)], outs, n - m
    if scenario == "augment":
        return [whole_r], outs, round(lam * n_real)
    if scenario == "fresh":
        return [("R", n + (g - 1) * m, n + g * m)], outs, n - m
    raise ValueError(scenario)


# -- exact moments ---------------------------------------------------------------------------


def moments(scenario: str, generations: int, *, n: int, n_real: int, V: float = 1.0, tau: float = 1.0,
            r: float = 0.0, q: float = 0.0, ddof: int = 0, **setting) -> dict[str, np.ndarray]:
    """Exact E[s2_g] ("S"), D_g = E[e_g^2] ("D") and E[e_g e_h] ("C", G x G) for models
    g = 0 .. G-1, e_g = mu_g - mu the fitted mean's error; "n": the training set sizes.

    Derivation. A real image is mu + xi (xi iid, variance V); an image of O_k is
    mu + e_k + eta, where eta has mean 0 given everything before it and variance v_k. Every
    training set is drawn independently of every value, so each e_g is a linear
    combination of the innovations a (the xi and eta) whose coefficients depend on the draws
    alone:
        e_g = sum_a c_{g,a} a,   c_{g,a} = (1/n_g) sum_{x in T_g} w_{x,a},
        w_{x,a} = [x = a] + c_{k,a}   (x in O_k; the second term is absent for a real x).
    An innovation has mean 0 given everything earlier and every coefficient, so the cross
    terms vanish and E[e_g e_h] = sum_a E[c_{g,a} c_{h,a}] sigma_a^2, sigma_a^2 = V (real)
    or E[v_k] (a in O_k). The images of one source are exchangeable, so one representative
    a per source carries the recursion. With W_S = sum_{x in S} w_{x,a}, F the whole
    sources, P the pool, and p1 = k/|P|, p2 = k(k-1)/(|P|(|P|-1)) the chances that one, and
    that two given distinct pool images are drawn:
        E[c_g c_h] = (sum_F E[W_S c_h] + p1 sum_P E[W_S c_h]) / n_g                (h < g)
        E[c_g^2]   = (sum_FxF E[W W'] + 2 p1 sum_FxP E[W W'] + p2 sum_PxP E[W W']
                      + (p1 - p2) sum_P sum_{x in S} E[w_x^2]) / n_g^2
    where W_S = [a in S] + |S| c_{j,a} for S = O_j, so each term is a first or second
    moment of earlier coefficients. The variance follows from the mean: s2_g is the mean of
    (x - mu)^2 over T_g minus e_g^2, and E[(x - mu)^2] is V for a real image and
    D_k + E[v_k] for one of O_k, so
        E[s2_g] = n_g / (n_g - ddof) * ((sum_F |S| M2_S + p1 sum_P |S| M2_S) / n_g - D_g)
    (ddof = 0: the MLE; 1: a fitter dividing by n_g - 1), and E[v_g] = tau (E[s2_g] + r) + q.
    Nothing is approximated: the recursion is exact for any scenario that `parts` describes."""
    n_out = outputs_per_generation(scenario, n, n_real, setting.get("lam", 1.0))

    def size(s):
        return s[2] - s[1] if s[0] == "R" else n_out

    innovations: dict = {}  # source -> _Innovation (its representative a)
    D, S, sizes = np.zeros(generations), np.zeros(generations), np.zeros(generations, dtype=int)
    C = np.zeros((generations, generations))
    ev = []  # E[v_g]
    for g in range(generations):
        whole, pool, k = parts(scenario, g, n=n, n_real=n_real, **setting)
        for s in whole + pool:
            if s not in innovations:
                innovations[s] = _Innovation(s, size, V if s[0] == "R" else ev[s[1]])
        n_g = sum(size(s) for s in whole) + k
        n_pool = sum(size(s) for s in pool)
        p1 = k / n_pool if k else 0.0
        p2 = k * (k - 1) / (n_pool * (n_pool - 1)) if k > 1 else 0.0
        steps = {a: a.step(g, whole, pool, n_g, p1, p2) for a in innovations.values()}
        for a, step in steps.items():
            a.record(g, *step)
        for h in range(g + 1):
            C[g, h] = C[h, g] = sum(a.count * a.second[(g, h)] * a.sigma2 for a in innovations.values())
        D[g] = C[g, g]

        def second_moment(s):
            return V if s[0] == "R" else D[s[1]] + ev[s[1]]

        raw = sum(size(s) * second_moment(s) for s in whole) + p1 * sum(size(s) * second_moment(s) for s in pool)
        S[g] = n_g / (n_g - ddof) * (raw / n_g - D[g])
        sizes[g] = n_g
        ev.append(tau * (S[g] + r) + q)
    return {"S": S, "D": D, "C": C, "n": sizes}


class _Innovation:
    """A representative innovation a of one source: its coefficients' moments
    first[h] = E[c_{h,a}] and second[(g, h)] = E[c_{g,a} c_{h,a}] (0 before it exists)."""

    def __init__(self, source, size, sigma2: float):
        self.source, self.size, self.sigma2 = source, size, sigma2
        self.count = size(source)  # innovations like it
        self.first: dict = {}
        self.second: dict = {}

    def _c1(self, s):  # E[c_{j,a}] for s = O_j; 0 for a real source
        return self.first.get(s[1], 0.0) if s[0] == "O" else 0.0

    def _c2(self, s, t):  # E[c_{j,a} c_{l,a}] for s = O_j, t = O_l
        return self.second.get((s[1], t[1]), 0.0) if s[0] == t[0] == "O" else 0.0

    def _is(self, s) -> float:  # [a in S]
        return 1.0 if s == self.source else 0.0

    def w(self, s):  # E[W_S]
        return self._is(s) + self.size(s) * self._c1(s)

    def w_c(self, s, h):  # E[W_S c_{h,a}]
        own = self.size(s) * self.second.get((s[1], h), 0.0) if s[0] == "O" else 0.0
        return self._is(s) * self.first.get(h, 0.0) + own

    def ww(self, s, t):  # E[W_S W_T]
        return (self._is(s) * self._is(t) + self._is(s) * self.size(t) * self._c1(t)
                + self._is(t) * self.size(s) * self._c1(s) + self.size(s) * self.size(t) * self._c2(s, t))

    def w2(self, s):  # sum_{x in S} E[w_x^2]
        return self._is(s) * (1.0 + 2.0 * self._c1(s)) + self.size(s) * self._c2(s, s)

    def step(self, g, whole, pool, n_g, p1, p2):
        """(E[c_g], {h: E[c_g c_h]}, E[c_g^2]) from the earlier moments (see `moments`)."""
        mean = (sum(map(self.w, whole)) + p1 * sum(map(self.w, pool))) / n_g
        cross = {h: (sum(self.w_c(s, h) for s in whole) + p1 * sum(self.w_c(s, h) for s in pool)) / n_g
                 for h in range(g)}
        square = (sum(self.ww(s, t) for s in whole for t in whole)
                  + 2 * p1 * sum(self.ww(s, t) for s in whole for t in pool)
                  + p2 * sum(self.ww(s, t) for s in pool for t in pool) + (p1 - p2) * sum(map(self.w2, pool))) / n_g**2
        return mean, cross, square

    def record(self, g, mean, cross, square):
        self.first[g] = mean
        self.second[(g, g)] = square
        for h, value in cross.items():
            self.second[(g, h)] = self.second[(h, g)] = value


# -- simulation --------------------------------------------------------------------------------


def _draw(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k of each row's entries, a uniformly random subset (Floyd's algorithm: for j = P-k
    .. P-1 take a uniform t in [0, j], or j itself when t is taken already)."""
    size = pool.shape[1]
    if k == size:
        return pool
    chosen = np.empty((len(pool), k), dtype=np.int32)
    for i, j in enumerate(range(size - k, size)):
        t = rng.integers(0, j + 1, size=len(pool))
        chosen[:, i] = np.where((chosen[:, :i] == t[:, None]).any(axis=1), j, t)
    return np.take_along_axis(pool, chosen, axis=1)


def fit_rows(train: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`fit_gaussian` of each row (one chain's training set): mean and variance / (n - ddof)."""
    return train.mean(axis=1), train.var(axis=1, ddof=ddof)


def sample_rows(mean: np.ndarray, variance: np.ndarray, z: np.ndarray, tau: float) -> np.ndarray:
    """`sample_gaussian` of each row's model from the standard normals z (chains x n)."""
    return mean[:, None] + np.sqrt(tau) * (z * np.sqrt(variance)[:, None])


def simulate(scenario: str, generations: int, chains: int, *, n: int, n_real: int, V: float = 1.0,
             tau: float = 1.0, ddof: int = 0, seed: int = 0, **setting) -> tuple[np.ndarray, np.ndarray]:
    """Fitted means and variances (chains x G) of `chains` independent loops on float data:
    each model fits mean and variance (divided by n_g - ddof) of its training set (`parts`)
    and makes its outputs as mean + sqrt(tau variance) z, z standard normal. Real data
    N(0, V); the chain's fixed real order is the order of these iid draws."""
    rng = np.random.default_rng(seed)
    n_out = outputs_per_generation(scenario, n, n_real, setting.get("lam", 1.0))
    real = np.sqrt(V) * rng.standard_normal((chains, n_real))
    outputs = {}
    means, variances = np.empty((chains, generations)), np.empty((chains, generations))

    def images(s):
        return real[:, s[1]:s[2]] if s[0] == "R" else outputs[s[1]]

    for g in range(generations):
        whole, pool, k = parts(scenario, g, n=n, n_real=n_real, **setting)
        pieces = [images(s) for s in whole]
        if k:
            pieces.append(_draw(np.concatenate([images(s) for s in pool], axis=1), k, rng))
        train = np.concatenate(pieces, axis=1)
        means[:, g], variances[:, g] = fit_rows(train, ddof)
        outputs[g] = sample_rows(means[:, g], variances[:, g], rng.standard_normal((chains, n_out)), tau)
    return means, variances


# -- a mixture of separated components (the gmm family) --------------------------------------


def gmm_moments(generations: int, *, n: int, w: float, V: float = 1.0, tau: float = 1.0, r: float = 0.0,
                q: float = 0.0, shrink: bool = True, drift_ddof: int = 0) -> dict[str, np.ndarray]:
    """One component of weight w of a mixture whose components are far apart, under
    replace: every model fits, per component, the weight n_k / N, the mean and the MLE
    variance of the images that come from it (what EM converges to when components are
    separated), and samples N images: a component by weight, then its Gaussian.

    The component's count n_g in T_g follows a Wright-Fisher chain: n_0 ~ Bin(N, w) (the
    real data), n_g ~ Bin(N, n_{g-1} / N), so with w_g = n_g / N
        E[w_g (1 - w_g)] = w (1 - w) (1 - 1/N)^(g+1)                           ("H")
    and 0 is absorbing (the component is lost). Given n_g = c >= 1 and the past, its
    images are c iid draws of the previous model's component, so E[s2_g | ...] =
    (c-1)/c v_{g-1} and E[e_g^2 | ...] = e_{g-1}^2 + v_{g-1}/c; as the count and the
    previous variance are dependent, the recursion runs on A_g(c) = E[s2_g 1{n_g = c}] and
    B_g(c) = E[e_g^2 1{n_g = c}] with the transition matrix T(c | c'):
        A_g(c) = (c-1)/c sum_c' T(c|c') E[v_{g-1} 1{n_{g-1} = c'}]
        B_g(c) = sum_c' T(c|c') (B_{g-1}(c') + E[v_{g-1} 1{n_{g-1} = c'}] / c)
    "S" = E[s2_g 1{n_g >= 1}] and "D" = E[e_g^2 1{n_g >= 1}] (a lost component has neither),
    "alive" = P(n_g >= 1). `shrink=False` and `drift_ddof=1` give wrong formulas (the
    factor (c-1)/c dropped; v/(c-1) in the drift) for the test of the test."""
    c = np.arange(n + 1)
    T = binom.pmf(c[None, :], n, c[:, None] / n)  # T[c', c]
    inv = np.divide(1.0, c - drift_ddof, out=np.zeros(n + 1), where=c > drift_ddof)
    keep = (c - 1) / np.maximum(c, 1) if shrink else np.ones(n + 1)
    keep[0] = 0.0
    alive = (c >= 1).astype(float)
    p = binom.pmf(c, n, w)
    A, B = p * keep * V, p * inv * V
    out = {k: np.zeros(generations) for k in ("S", "D", "H", "alive")}
    for g in range(generations):
        if g:
            v = (tau * (A + r * p) + q * p) * alive
            p, A, B = p @ T, keep * (v @ T), ((B @ T) + (v @ T) * inv) * alive
        out["S"][g], out["D"][g] = A.sum(), B.sum()
        out["H"][g] = (p * (c / n) * (1 - c / n)).sum()
        out["alive"][g] = p[1:].sum()
    return out


def simulate_gmm(generations: int, chains: int, *, n: int, weights: tuple[float, ...], V: float = 1.0,
                 tau: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    """The mixture loop of `gmm_moments` vectorised over chains, every component at once
    (components are told apart by their labels, as EM tells separated ones apart). Returns
    per chain, generation and component (chains x G x K): "e" (fitted mean minus the true
    one) and "s2" (MLE variance), both 0 for a lost component, "count" (its images in
    T_g), and "w" the fitted weights."""
    rng = np.random.default_rng(seed)
    k = len(weights)
    shape = (chains, generations, k)
    out = {"e": np.zeros(shape), "s2": np.zeros(shape), "count": np.zeros(shape), "w": np.zeros(shape)}
    cumulative = np.cumsum(weights)[None, :-1]
    label = (rng.random((chains, n))[..., None] >= cumulative).sum(axis=-1)  # component of each real image
    x = np.sqrt(V) * rng.standard_normal((chains, n))  # around each component's true mean, taken as 0
    for g in range(generations):
        mean, s2, count = np.zeros((chains, k)), np.zeros((chains, k)), np.zeros((chains, k))
        for j in range(k):
            mask = label == j
            count[:, j] = mask.sum(axis=1)
            mean[:, j] = np.where(mask, x, 0.0).sum(axis=1) / np.maximum(count[:, j], 1)
            s2[:, j] = np.where(mask, (x - mean[:, j, None]) ** 2, 0.0).sum(axis=1) / np.maximum(count[:, j], 1)
        out["e"][:, g], out["s2"][:, g], out["count"][:, g], out["w"][:, g] = mean, s2, count, count / n
        cumulative = np.cumsum(count / n, axis=1)[:, None, :-1]
        label = (rng.random((chains, n))[..., None] >= cumulative).sum(axis=-1)
        pick = np.take_along_axis
        x = pick(mean, label, axis=1) + np.sqrt(tau * pick(s2, label, axis=1)) * rng.standard_normal((chains, n))
    return out


# -- checking, and the test of the check ------------------------------------------------------


def standard_error(samples: np.ndarray) -> np.ndarray:
    return samples.std(axis=0, ddof=1) / np.sqrt(len(samples))


def assert_mc_close(samples: np.ndarray, expected, what: str) -> None:
    """The mean over chains (axis 0) equals `expected` within Z Monte Carlo standard errors."""
    mean, se = samples.mean(axis=0), standard_error(samples)
    bad = np.abs(mean - expected) > Z * se
    assert not bad.any(), (f"{what}: Monte Carlo mean {mean[bad]} vs closed form {np.asarray(expected)[bad]} "
                           f"(+- {Z} SE = {Z * se[bad]})")


def acceptance(samples: np.ndarray, right, wrong, skip: int = 0) -> float:
    """An upper bound on the probability that `assert_mc_close(samples, wrong)` passes when
    `right` is the truth: the check passes only if every entry passes, so at most the
    smallest chance that one entry passes. The Monte Carlo mean of entry i is normal
    (central limit theorem, thousands of chains) around right_i with standard deviation
    se_i, estimated from the chains; it lands within Z se_i of wrong_i with probability
    Phi(Z - d_i) - Phi(-Z - d_i), d_i = |wrong_i - right_i| / se_i. `skip` leaves out the
    first generations (axis 0 of the entries), so that the power must come from later ones."""
    se = standard_error(samples)[skip:]
    d = np.abs(np.asarray(wrong) - np.asarray(right))[skip:] / se
    return float((norm.cdf(Z - d) - norm.cdf(-Z - d)).min())


def assert_powerful(samples: np.ndarray, right, wrongs: dict, what: str, skip: int = 1, at_most: float = 0.01):
    """The test of the test: each wrong formula passes `assert_mc_close` on samples like
    these with probability at most `at_most` (bounded by `acceptance` from generation
    `skip` on), and does fail on these very samples."""
    for name, wrong in wrongs.items():
        p = acceptance(samples, right, wrong, skip)
        assert p <= at_most, f"{what}: the check accepts the wrong formula ({name}) with probability up to {p:.3f}"
        try:
            assert_mc_close(samples, wrong, what)
        except AssertionError:
            continue
        raise AssertionError(f"{what}: the wrong formula ({name}) passed the check")
