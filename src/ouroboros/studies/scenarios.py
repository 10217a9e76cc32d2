"""Interaction scenarios of the feedback loop: how generation g's training set is drawn.

Notation. ``R`` is the real training split (|R| images), ``O_k`` the output of the
model of generation k (its images carry provenance generation k + 1), ``N`` the
samples per generation (``loop.samples_per_generation``, default |R|), ``K`` the
window (``loop.window``). Two conventions, since papers use one letter for both:
``rho`` (``loop.real_fraction``) is a real FRACTION of a fixed-size set, in [0, 1];
``lambda`` (``loop.synthetic_ratio``) is a synthetic-to-REAL RATIO, >= 0 (Bertrand et
al.), so a set with lambda = 1 is half generated.

The window's pool ``W_g`` is O_{g-K} + ... + O_{g-1} (those that exist, g - K >= 0).
Every draw from a pool below is without replacement and balanced over classes (k // C
images of each class, uniform within it; see `_draw`), seeded per (chain seed,
generation), so one chain's draws are reproducible and other generations' independent.
The real images of `mix` and `fresh` come from the chain's fixed real order instead.

Generation 0 trains on all of R, except under `fresh` (see there). For g >= 1:

- `replace`: N images from W_g (K = 1: exactly O_{g-1}, the whole of it).
- `accumulate`: R + O_0 + ... + O_{g-1}, everything (grows by N each generation).
- `accumulate-subsample`: N images from R + W_g, where K defaults to every generation
  so far (the accumulated pool, R + O_0 + ... + O_{g-1}).
- `mix`: round(rho N) real images, the SAME ones every generation (the first of the
  chain's fixed real order), plus N - round(rho N) from W_g.
- `augment`: all of R plus round(lambda |R|) images from W_g; the set has
  |R| + round(lambda |R|) images (each generation then samples at least that many).
- `fresh` (Alemohammad et al.'s fresh-data loop): the real reservoir is R in the
  chain's fixed real order (a seeded permutation; the same for every guidance of one
  seed). Generation 0 trains on its first N images; generation g >= 1 on the next
  m = round(rho N) unseen ones (positions N + (g-1)m ... N + g m - 1) plus N - m from
  W_g. No real image is used twice, so G generations need N + (G-1)m real images.

The real parts of `mix` and `fresh` are uniform (not balanced) prefixes of the real
order, so they keep the real split's class proportions in expectation. With
``loop.labels: sampled`` (labels that can drift) every draw from a pool is uniform too
(`balanced=False`), so a drawn set keeps its pool's class proportions in expectation
instead of restoring balance.

N by default (``loop.samples_per_generation: null``) is the papers' N = |R|: the size of
the real training split generation 0 trains on (`samples_per_generation`). Under
`fresh`, R is a reservoir of which generation 0 uses only the first N, so N = |R_0|
there: the largest N whose reservoir lasts, N + (G - 1) round(rho N) <= |R|
(`fresh_size`).

A curated variant's unfiltered control (``loop.curation_controls``) draws its training
sets with `matched` instead: the size and real count of the curated variant's set.

When several generator families feed the loop (``loop.generators``), O_k is their
pooled output (each family's images with source ``gen:<name>``), and every draw above
takes from it without regard to family: the families' shares of a drawn set follow
their shares of the pool only in expectation, and `makeup` reports the realised ones.
"""

from __future__ import annotations

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError

SCENARIOS = ("replace", "accumulate", "accumulate-subsample", "mix", "augment", "fresh")


def window_of(scenario: str, window: int | None, g: int) -> list[int]:
    """Indices k of the outputs O_k that generation g's generated part is drawn from."""
    if scenario in ("accumulate", "accumulate-subsample") and window is None:
        return list(range(g))
    k = 1 if window is None else window
    return list(range(max(0, g - k), g))


def real_order(n_real: int, real_seed: int) -> np.ndarray:
    """The chain's fixed order of the real training split (mix and fresh take from it)."""
    return np.random.default_rng([int(real_seed), 0]).permutation(n_real)


def generated_count(scenario: str, n: int, n_real: int, rho: float, lam: float) -> int:
    """How many generated images generation g >= 1 draws from its window's pool."""
    if scenario in ("mix", "fresh"):
        return n - int(round(rho * n))
    if scenario == "augment":
        return int(round(lam * n_real))
    return n  # replace (accumulate-subsample draws from real and generated together)


def reals_needed(scenario: str, n: int, generations: int, rho: float) -> int:
    """Real images the scenario's draws need from the real training split."""
    if scenario == "fresh":
        return n + (generations - 1) * int(round(rho * n))
    if scenario == "mix":
        return int(round(rho * n))
    return 0  # the others take all of R, or draw from pools they know are large enough


def fresh_size(n_real: int, generations: int, rho: float) -> int:
    """The largest N (at least 1) with N + (G - 1) round(rho N) <= n_real: fresh's N when
    loop.samples_per_generation is null (generation 0's real set R_0 is then as large as
    the reservoir allows)."""
    n = min(n_real, int(n_real / (1 + (generations - 1) * rho)) + 2)
    while n > 1 and reals_needed("fresh", n, generations, rho) > n_real:
        n -= 1
    return max(n, 1)


def samples_per_generation(lc, n_train: int, n_real: int) -> int:
    """N for the loop settings `lc`: loop.samples_per_generation, else the size of the real
    training split (`n_train`, what generation 0 trains on), else under fresh the largest
    N its real split R (`n_real` images) lasts for (`fresh_size`)."""
    if lc.samples_per_generation is not None:
        return lc.samples_per_generation
    if lc.scenario == "fresh":
        return fresh_size(n_real, lc.generations, lc.real_fraction)
    return n_train


def check_reservoir(scenario: str, n: int, generations: int, rho: float, n_real: int) -> None:
    """A config error, before anything is written, when the real split is too small."""
    need = reals_needed(scenario, n, generations, rho)
    if need > n_real:
        if scenario == "fresh":
            raise UserError(
                f"scenario fresh needs {need} unseen real images (N = {n} for generation 0 plus "
                f"round({rho:g} x {n}) = {int(round(rho * n))} new ones for each of {generations - 1} later "
                f"generations) but the real training split has {n_real}; lower loop.generations, "
                "loop.real_fraction or loop.samples_per_generation, or use more data")
        raise UserError(f"scenario {scenario} needs {need} real images (round({rho:g} x {n})) but the real training "
                        f"split has {n_real}; lower loop.real_fraction or loop.samples_per_generation")


def _draw(pool: ImageSet, k: int, rng: np.random.Generator, balanced: bool = True) -> ImageSet:
    """k images of the pool without replacement, balanced over classes: each class gets
    k // C images (the first k % C classes in a seeded order one more), uniform within
    the class; when a class of the pool is short, all of it, and the places it leaves
    are drawn uniformly from the rest of the pool. Not `balanced`: uniformly from it."""
    if k > len(pool):  # the planner sizes every pool; this guards the invariant
        raise RuntimeError(f"cannot draw {k} images from a pool of {len(pool)}")
    if not balanced:
        return pool.subset(np.sort(rng.choice(len(pool), k, replace=False)))
    classes = pool.num_classes
    quota = np.full(classes, k // classes)
    quota[rng.permutation(classes)[: k % classes]] += 1
    chosen = []
    for c in range(classes):
        members = np.flatnonzero(pool.labels == c)
        chosen.append(rng.choice(members, min(quota[c], len(members)), replace=False))
    chosen = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(len(pool)), chosen)
    chosen = np.concatenate([chosen, rng.choice(rest, k - len(chosen), replace=False)])
    return pool.subset(np.sort(chosen))


def real_candidates(scenario: str, g: int, n_real: int, n: int, rho: float, real_seed: int) -> np.ndarray | None:
    """Indices into R of the real images generation g >= 1 may draw (None: the scenario
    uses no real data): all of R, except fresh's m new reservoir images."""
    if scenario == "replace":
        return None
    if scenario == "fresh":
        m = int(round(rho * n))
        return np.sort(real_order(n_real, real_seed)[n + (g - 1) * m: n + g * m])
    return np.arange(n_real)


def assemble(scenario: str, g: int, real: ImageSet, outputs: dict[int, ImageSet], *, n: int, seed: int,
             real_seed: int, rho: float = 0.5, lam: float = 1.0, real_keep: np.ndarray | None = None,
             balanced: bool = True) -> ImageSet:
    """Generation g's training set. `outputs` maps k -> O_k for exactly the window's k
    (every k < g for accumulate); `seed` seeds this generation's draws, `real_seed` the
    chain's fixed real order.

    After curation (ouroboros.studies.curation), `outputs` hold only the survivors and
    `real_keep` (a boolean mask over R) marks the real survivors; every size is then
    clipped to what survived: a draw takes at most its pool, mix's real part is the
    first round(rho N) survivors of the real order, fresh's removed new images are
    used up. `balanced` False: every draw uniform (`_draw`; loop.labels sampled)."""
    if scenario not in SCENARIOS:
        raise UserError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    rng = np.random.default_rng(int(seed))
    order = real_order(len(real), real_seed)
    m = int(round(rho * n))
    if g == 0:
        return real.subset(np.sort(order[:n])) if scenario == "fresh" else real
    curated = real_keep is not None
    keep = np.ones(len(real), dtype=bool) if real_keep is None else np.asarray(real_keep, dtype=bool)
    kept_real = real if not curated else real.subset(np.flatnonzero(keep))

    def draw(pool: ImageSet, k: int) -> ImageSet:
        return _draw(pool, min(k, len(pool)) if curated else k, rng, balanced)

    pool = ImageSet.concat([outputs[k] for k in sorted(outputs)])
    if scenario == "accumulate":
        return ImageSet.concat([kept_real, pool])
    if scenario == "accumulate-subsample":
        return draw(ImageSet.concat([kept_real, pool]), n)
    generated = draw(pool, generated_count(scenario, n, len(real), rho, lam))
    if scenario == "replace":
        return generated
    if scenario == "augment":
        return ImageSet.concat([kept_real, generated])
    if scenario == "mix":
        reals = order[keep[order]][:m]
    else:  # fresh: the next m unseen images of the reservoir (those curation left)
        reals = order[n + (g - 1) * m: n + g * m]
        reals = reals[keep[reals]]
    return ImageSet.concat([real.subset(np.sort(reals)), generated])


def matched(scenario: str, g: int, real: ImageSet, outputs: dict[int, ImageSet], *, size: int, n_real: int,
            n: int, seed: int, real_seed: int, rho: float = 0.5, balanced: bool = True) -> ImageSet:
    """Generation g's training set of a curated variant's unfiltered control: `size` images,
    `n_real` of them real (what the curated variant's set of the same seed and generation
    holds), each part drawn without a filter from the kind of candidates the filter chose
    from: the real part from the real images the scenario uses (mix: the first n_real of
    the chain's real order, the same every generation; fresh: the first n_real of
    generation g's new ones; otherwise a balanced draw from R), the generated part a
    balanced draw (`_draw`; uniform when not `balanced`) from the window's outputs O_k (`outputs`)."""
    rng = np.random.default_rng(int(seed))
    order = real_order(len(real), real_seed)
    if scenario == "mix":
        reals = real.subset(np.sort(order[:n_real]))
    elif scenario == "fresh":
        start = n + (g - 1) * int(round(rho * n))
        reals = real.subset(np.sort(order[start: start + n_real]))
    else:
        reals = _draw(real, n_real, rng, balanced)
    generated = _draw(ImageSet.concat([outputs[k] for k in sorted(outputs)]), size - n_real, rng, balanced)
    return ImageSet.concat([reals, generated])


def makeup(train: ImageSet, by_family: bool = False) -> dict[str, float]:
    """Size and make-up of a training set, from its provenance: `train_real_share` (the
    share of provenance generation 0) and `train_share_gen<k>` for the output of the
    model of generation k (provenance generation k + 1), for each k present; with
    `by_family` (several families feed the loop), also `train_share_family_<name>` for
    the images of each generator family present (source ``gen:<name>``, any generation)."""
    out = {"train_size": float(len(train))}
    if len(train) == 0:
        return out
    gens, counts = np.unique(train.generation, return_counts=True)
    share = dict(zip(gens.tolist(), (counts / len(train)).tolist()))
    out["train_real_share"] = share.get(0, 0.0)
    for p in sorted(share):
        if p > 0:
            out[f"train_share_gen{p - 1}"] = share[p]
    sources, counts = np.unique(train.source, return_counts=True)
    for source, count in zip(sources.tolist(), counts.tolist()):
        if by_family and source.startswith("gen:"):
            out[f"train_share_family_{source[4:]}"] = count / len(train)
    return out


def pool_counts(shares: list[float], n: int) -> list[int]:
    """Images each family makes of a generation's n: share x n rounded by largest
    remainders (shares normalised to sum to 1; ties to the earlier entry), so that the
    counts sum to n exactly and each is floor or ceil of share x n."""
    import numpy as np

    exact = np.asarray(shares, dtype=np.float64) / sum(shares) * n
    counts = np.floor(exact).astype(int)
    remainders = np.round(exact - counts, 9)  # equal up to rounding error is a tie
    extra = np.argsort(-remainders, kind="stable")[: n - counts.sum()]
    counts[extra] += 1
    return counts.tolist()
