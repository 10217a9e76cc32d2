"""The tails of the real distribution that a generator no longer reaches (Shumailov et
al.: under recursive training the tails disappear first).

Two kinds of measure, both pure functions of arrays:

**Every family, on features** (`tail_unreached`). Let R be the real feature rows (the
loop's real test split) and G the generated ones. Each real row's leave-one-out nearest
real neighbour distance d_R(r) = min over r' in R, r' != r, of |r - r'| gives the real
data's own spacing; tau is its 95th percentile (numpy's ``inverted_cdf``: the smallest of
the d_R with at least 95% of them at or below it). ``tail_unreached`` is the share of
real rows whose nearest generated row lies farther than tau: #{r : min_g |r - g| > tau}
/ |R|. Exact (`ouroboros.metrics.knn`: chunked, equal to a float64 brute force; a real
row repeated is its own neighbour at distance 0). For a generated set drawn from the
real distribution with |R| - 1 rows, d_G(r) and d_R(r) have one distribution, so the
share is 5% in expectation; more generated rows bring them nearer (below 5%), and a
generator that lost its tails leaves the real rows there unreached (towards 100% for
one that makes a single point). The loop's ``reference`` rows score the real training
split the same way: the value of a generator that reproduced its training set.

**The analytic families, on densities** (`mixture_tails`). A model per class c that is a
Gaussian mixture with an exact density: p0 = generation 0's model (fitted on the real
training split: "the real (fitted) density") and p the model measured, sampled at its
temperature T (every covariance times T, as the loop samples it). Per class, in the
model's space (pixels in [-1, 1] or the PCA coordinates; before quantisation to uint8):

- the contours are level sets of log p0(.|c): lo and hi, the 1% and 99% quantiles of
  log p0(X|c) for X ~ p0(.|c). {log p0 < lo} is the real distribution's outer 1% (its
  tails), {log p0 > hi} its densest 1% (its core);
- ``tail_mass`` = P_{X ~ p(.|c)}(log p0(X|c) < lo): the model's mass beyond the 1st
  percentile contour (1% for p = p0; towards 0 as the model's variance shrinks);
- ``core_mass`` = P_{X ~ p(.|c)}(log p0(X|c) > hi): its mass inside the 99th percentile
  contour (1% for p = p0; towards 1 as the model collapses onto the real mode);
- ``component_weight/<class>/<k>`` (mixtures of K >= 2 components only): the model's
  mass that real component k of class c claims, E_{X ~ p(.|c)}[r_k(X)] with r_k the
  posterior responsibility of component k under p0(.|c); for p = p0 it is component
  k's weight pi_k, and 0 for a real component the model no longer puts mass near.

Each is a Monte Carlo estimate with `draws` draws per class (and as many from p0 for the
contours), from numpy Generators seeded by [seed, 0] (p0) and [seed, 1] (p): a fixed
seed gives the same draws for every generation of a chain, so its curve is not noise
between generations. ``tail_mass`` and ``core_mass`` are averaged over the classes, each
counted once (the loop samples classes in balance). The exact log-likelihood of the real
test split is the loop's ``test_loss`` (`ouroboros.generators.gaussian.heldout_nll`,
negative, per dimension); it is not repeated here.
"""

from __future__ import annotations

import numpy as np
import torch

from ouroboros.errors import UserError
from ouroboros.metrics._arrays import as_pair
from ouroboros.metrics.knn import DEFAULT_BLOCK, Prepared, ball_membership, distinct_rows, kth_neighbour_sq
from ouroboros.metrics.prdc import _device

TAIL_UNREACHED, TAIL_MASS, CORE_MASS = "tail_unreached", "tail_mass", "core_mass"
REACH_QUANTILE = 0.95  # tau: this quantile of the real rows' own nearest-neighbour distances
CONTOURS = (0.01, 0.99)  # the contours' quantiles of the real log-density
DRAWS = 4_000  # Monte Carlo draws per class (from p0, and as many from the model)


def tail_unreached(real, fake, quantile: float = REACH_QUANTILE, block: int = DEFAULT_BLOCK, device=None) -> float:
    """The share of real rows whose nearest fake row is farther than the `quantile` of the
    real rows' leave-one-out nearest-neighbour distances (see the module docstring)."""
    r, f = as_pair(real, fake)
    if r.shape[0] < 2:
        raise UserError(f"real set has {r.shape[0]} samples; its nearest-neighbour distances need at least 2")
    dev = _device(device)
    (r, r_of, r_weight), (f, _, _) = distinct_rows(r.to(dev)), distinct_rows(f.to(dev))
    pr, pf = Prepared.pair(r, f, dev)
    own = kth_neighbour_sq(pr, 1, block, r_weight)  # squared, per distinct real row
    tau2 = float(np.quantile(own[r_of].cpu().numpy(), quantile, method="inverted_cdf"))  # one of the values
    radius = torch.full((len(pr),), tau2, dtype=torch.float64, device=dev)
    nowhere = torch.full((len(pf),), -1.0, dtype=torch.float64, device=dev)  # the fake rows' balls: unused
    _, reached, _ = ball_membership(pf, pr, radius, nowhere, strict=False, block=block, center_weight=r_weight)
    return float((~reached[r_of]).double().mean())


def contour_masses(real_logp_real: np.ndarray, real_logp_model: np.ndarray,
                   quantiles: tuple[float, float] = CONTOURS) -> tuple[float, float]:
    """(tail, core): the share of `real_logp_model` (log p0 of draws from the model) below
    the `quantiles[0]` quantile of `real_logp_real` (log p0 of draws from p0), and above
    its `quantiles[1]` quantile."""
    lo, hi = np.quantile(np.asarray(real_logp_real, dtype=np.float64), quantiles)
    logp = np.asarray(real_logp_model, dtype=np.float64)
    return float((logp < lo).mean()), float((logp > hi).mean())


def _component_logp(x: np.ndarray, means, covs, weights) -> np.ndarray:
    """log(pi_k N(x; mu_k, Sigma_k)) per component k (K x M)."""
    from ouroboros.generators.gaussian import log_density

    return np.stack([log_density(x, m[None], c[None], np.ones(1)) + np.log(w)
                     for m, c, w in zip(means, covs, weights)])


def mixture_tails(real, model, temperature: float = 1.0, draws: int = DRAWS, seed: int = 0) -> dict[str, float]:
    """``tail_mass``, ``core_mass`` and (K >= 2) ``component_weight/<class>/<k>`` of `model`
    sampled at `temperature`, against the real fitted density `real` (both
    `ouroboros.generators.gaussian.FittedGaussianMixture`, of the same classes and space;
    see the module docstring)."""
    from scipy.special import logsumexp

    from ouroboros.generators.gaussian import sample_mixture

    if real.class_names != model.class_names or real.means.shape[-1] != model.means.shape[-1]:
        raise UserError("the real density and the model must have the same classes and space")
    rng_real, rng_model = np.random.default_rng([int(seed), 0]), np.random.default_rng([int(seed), 1])
    tails, cores, out = [], [], {}
    for c, name in enumerate(real.class_names):
        p0 = real.means[c], real.covariances[c], real.weights[c]
        x0 = sample_mixture(*p0, draws, rng_real)
        x = sample_mixture(model.means[c], model.covariances[c], model.weights[c], draws, rng_model, temperature)
        logp = _component_logp(x, *p0)  # K x draws
        total = logsumexp(logp, axis=0)
        tail, core = contour_masses(logsumexp(_component_logp(x0, *p0), axis=0), total)
        tails.append(tail)
        cores.append(core)
        if len(p0[2]) > 1:
            for k, weight in enumerate(np.exp(logp - total).mean(axis=1)):
                out[f"component_weight/{name}/{k}"] = float(weight)
    return {TAIL_MASS: float(np.mean(tails)), CORE_MASS: float(np.mean(cores)), **out}
