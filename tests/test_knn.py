"""Exact k-NN at any scale: PRDC and precision/recall against a float64 brute force on
features that are huge, tiny, offset or collapsed, and inputs built so that each
shortcut the k-NN takes (candidate lists, error margins, boundaries, symmetry) would
change an answer if it were wrong."""

import numpy as np
import pytest
import torch
from prdc import compute_prdc

import ouroboros.metrics.knn as knn
from ouroboros.cli import main
from ouroboros.errors import UserError
from ouroboros.metrics import fid, kid, prdc, precision_recall

KEYS = ("precision", "recall", "density", "coverage")


def _sq(a, b):
    """Float64 squared distances, computed as the brute force does: sum((x - y)^2)."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _kth_sq(x, k):
    """Brute-force k-th neighbour squared distance, self counted at 0 (as the prdc package)."""
    return np.sort(_sq(x, x), axis=1)[:, k]


def _brute(real, fake, k, strict):
    """Precision, recall, density, coverage from full float64 matrices, compared as squares."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_real, r_fake, rf = _kth_sq(real, k), _kth_sq(fake, k), _sq(real, fake)
    inside = np.less if strict else np.less_equal
    in_real, in_fake = inside(rf, r_real[:, None]), inside(rf, r_fake[None, :])
    return {"precision": in_real.any(0).mean(), "recall": in_fake.any(1).mean(),
            "density": in_real.sum(0).mean() / k, "coverage": in_real.any(1).mean()}


def _check(real, fake, block):
    """Both metrics equal the brute force exactly (each is a fraction of a few hundred)."""
    ours, ref = prdc(real, fake, k=5, block=block), _brute(real, fake, 5, strict=True)
    assert {k: ours[k] for k in KEYS} == pytest.approx(ref, abs=1e-12)
    ours, ref = precision_recall(real, fake, k=3, block=block), _brute(real, fake, 3, strict=False)
    assert ours == pytest.approx({k: ref[k] for k in ("precision", "recall")}, abs=1e-12)


def _base(n=180, m=160, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, d)) * 3
    real = centers[rng.integers(0, 6, n)] + rng.normal(size=(n, d))
    fake = centers[rng.integers(0, 4, m)] + rng.normal(size=(m, d)) * 1.3
    # On a grid of 2^-20 (|x| < 2^5), so adding 1e6 (< 2^20) is exact in float64: the
    # offset sets have exactly the distances of the plain ones.
    return np.round(real * 2**20) / 2**20, np.round(fake * 2**20) / 2**20


TRANSFORMS = {
    "x 2^66": lambda a: a * 2.0**66,  # squares overflow float32
    "x 2^-80": lambda a: a * 2.0**-80,  # squares underflow float32
    "+ 1e6": lambda a: a + 1e6,  # the offset swamps float32's precision
    "float32 x 2^66": lambda a: (a * 2.0**66).astype(np.float32),
    "float32 x 2^-80": lambda a: (a * 2.0**-80).astype(np.float32),
    "float32 + 1e6": lambda a: (a + 1e6).astype(np.float32),  # rounded: many exact ties
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_scaled_and_offset_features_match_brute_force(name):
    real, fake = (TRANSFORMS[name](a) for a in _base())
    for block in (400, knn.DEFAULT_BLOCK):  # 20 x 20 blocks: several on each side of the diagonal
        _check(real, fake, block)


def test_power_of_two_scaling_and_exact_offsets_change_nothing():
    real, fake = _base()
    plain = compute_prdc(real, fake, nearest_k=5)  # the reference package, on the plain features
    for name in ("x 2^66", "x 2^-80", "+ 1e6"):
        ours = prdc(TRANSFORMS[name](real), TRANSFORMS[name](fake), k=5, block=400)
        assert ours == pytest.approx({k: float(plain[k]) for k in KEYS}, abs=1e-12), name


def _collapsed(seed=0, d=12):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(20, d))
    real = points[rng.integers(0, 20, 300)]  # 300 rows, 20 distinct points
    fake = points[rng.integers(0, 8, 250)] + 0.0  # collapsed onto 8 of them, exactly
    fake[:40] = rng.normal(size=(40, d))  # and some elsewhere
    return real, fake


def _half_one_point(seed=1, d=12):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(240, d)), rng.normal(size=(220, d)) * 0.8
    real[:120] = real[0]  # half the real set is one point
    fake[100:] = real[0]  # and so is part of the fake set
    fake[:3] = real[150]  # a duplicate of a point of weight 1: fewer copies than k + 1
    real[200:203] = real[130]  # a point of weight 4 < k + 1,
    fake[3:6] = real[130] + 1e-3  # inside its ball: 4 balls each for density
    return real, fake


@pytest.mark.parametrize("make", [_collapsed, _half_one_point])
def test_duplicate_heavy_sets_match_brute_force(make):
    real, fake = make()
    for block in (400, knn.DEFAULT_BLOCK):
        _check(real, fake, block)


def _count_exact_pairs(monkeypatch):
    """Counts the pairs recomputed in float64."""
    seen = [0]
    real_exact_pairs = knn._exact_pairs

    def counting(a, ia, b, ib, block=knn.DEFAULT_BLOCK):
        seen[0] += len(ia)
        return real_exact_pairs(a, ia, b, ib, block)

    monkeypatch.setattr(knn, "_exact_pairs", counting)
    return seen


@pytest.mark.parametrize("case", ["collapsed", "half one point", "+ 1e6", "x 2^66"])
def test_hard_cases_recompute_few_pairs(case, monkeypatch):
    """No performance cliff: duplicates and offsets recompute about as few pairs as plain data."""
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(1500, 32)), rng.normal(size=(1500, 32)) * 1.1
    seen = _count_exact_pairs(monkeypatch)
    prdc(real, fake)
    plain = seen[0]
    seen[0] = 0
    if case == "collapsed":
        real, fake = real[rng.integers(0, 20, 1500)], real[rng.integers(0, 20, 1500)]
    elif case == "half one point":
        real[:750], fake[:750] = real[0], real[0]
    else:
        real, fake = TRANSFORMS[case](real), TRANSFORMS[case](fake)
    prdc(real, fake)
    assert seen[0] <= 2 * plain + 1000, (seen[0], plain)  # out of 6.75 million pairs


def _shells(n_centres=4, shell=60, d=12, seed=0):
    """Points in shells around centres, all at distances within 1e-9 (relative) of one
    another: float32 cannot order them, so a centre's k-th neighbour needs a candidate
    list longer than k + 17 and an honest error margin."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_centres):
        centre = rng.normal(size=d) * 10
        u = rng.normal(size=(shell, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        radius = 1.0 + 1e-9 * rng.permutation(shell)  # all distinct, in float64
        out += [centre[None], centre + radius[:, None] * u]
    return np.concatenate(out)


def _kth(x, k, block):
    (p, _) = knn.Prepared.pair(torch.from_numpy(x), torch.from_numpy(x[:2]))
    return knn.kth_neighbour_sq(p, k, block).numpy()


def _same(a, b):
    """Equal up to the order of float64 summation (numpy and torch add D terms in different
    orders: a few ulps); a wrong neighbour in these tests is off by 1e-9 or more."""
    return np.allclose(a, b, rtol=1e-13, atol=0)


@pytest.mark.parametrize("block", [900, knn.DEFAULT_BLOCK])
def test_kth_neighbour_with_near_ties_equals_brute_force(block):
    x = _shells()
    assert _same(_kth(x, 5, block), _kth_sq(x, 5))


def test_kth_neighbour_over_many_blocks_equals_brute_force():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 8))
    # 300 rows in 30 x 30 blocks: most neighbours of later rows sit in earlier blocks,
    # reached only through the mirrored update.
    for k in (1, 5):
        assert _same(_kth(x, k, 900), _kth_sq(x, k))


def test_kth_neighbour_of_exact_duplicates_needs_no_second_pass(monkeypatch):
    """Without merging (kth_neighbour_sq called directly), a row with k or more exact
    copies is finished from its first, short candidate list: its k-th distance is 0."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 8))[rng.integers(0, 20, 600)]
    passes = []
    real_row_pass = knn._row_pass
    monkeypatch.setattr(knn, "_row_pass", lambda *a: passes.append(len(a[1])) or real_row_pass(*a))
    assert _same(_kth(x, 5, 900), _kth_sq(x, 5))
    assert passes == []


def test_ball_membership_on_near_ties_equals_brute_force():
    """Fakes at 1 +- 1e-9 times a real point's k-NN radius from it: float32 cannot tell
    inside from outside, the float64 recomputation must."""
    rng = np.random.default_rng(7)
    real = rng.normal(size=(150, 10)) * 4
    radius = np.sqrt(_kth_sq(real, 5))
    u = rng.normal(size=(150, 10))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sign = rng.choice([-1.0, 1.0], size=(150, 1))
    fake = real + radius[:, None] * (1 + sign * 1e-9) * u
    _check(real, fake, 900)


def test_ties_on_an_integer_lattice():
    """Exact distance ties everywhere: strict (prdc) and inclusive (precision_recall)
    boundaries give different, brute-force-exact answers."""
    grid = np.stack(np.meshgrid(np.arange(7), np.arange(7)), -1).reshape(-1, 2).astype(np.float64)
    fake = grid[::2] + np.array([1.0, 0.0])
    _check(grid, fake, 400)
    assert prdc(grid, fake, k=4)["density"] != precision_recall(grid, fake, k=4)["precision"]


def test_distinct_rows_groups_identical_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))[rng.integers(0, 12, 200)]
    rows, inverse, counts = knn.distinct_rows(torch.from_numpy(x))
    assert torch.equal(rows[inverse], torch.from_numpy(x))
    assert len(rows) == len(np.unique(x, axis=0)) and int(counts.sum()) == 200
    assert torch.equal(counts, torch.bincount(inverse))
    for t in (torch.from_numpy(x).float(), torch.from_numpy(x).bfloat16()):  # any dtype, compared as bytes
        rows, inverse, _ = knn.distinct_rows(t)
        assert torch.equal(rows[inverse], t) and len(rows) == len(np.unique(x, axis=0))
    y = torch.from_numpy(rng.normal(size=(30, 6)))
    same, identity, ones = knn.distinct_rows(y)
    assert same is y and torch.equal(identity, torch.arange(30)) and torch.equal(ones, torch.ones(30, dtype=int))


@pytest.mark.parametrize("scale, fragment", [(1e200, "too large"), (1e-200, "too small")])
def test_features_float64_cannot_compare_are_refused(scale, fragment):
    real, fake = (a * scale for a in _base(40, 40))
    for fn in (prdc, precision_recall):
        with pytest.raises(UserError, match=fragment):
            fn(real, fake)


def test_fid_and_kid_on_scaled_and_offset_features():
    real, fake = _base(300, 300, 8)
    plain = fid(real, fake)
    assert fid(real * 2.0**66, fake * 2.0**66) == pytest.approx(plain * 2.0**132, rel=1e-9)
    assert fid(real * 2.0**-80, fake * 2.0**-80) == pytest.approx(plain * 2.0**-160, rel=1e-9)
    assert fid(real + 1e6, fake + 1e6) == pytest.approx(plain, rel=1e-6)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    assert fid(f32(real * 2.0**66), f32(fake * 2.0**66)) == pytest.approx(plain * 2.0**132, rel=1e-5)
    # KID's cubic kernel is not scale invariant; it must still give finite numbers.
    for r, f in [(real * 2.0**66, fake * 2.0**66), (real * 2.0**-80, fake * 2.0**-80), (real + 1e6, fake + 1e6),
                 (f32(real * 2.0**66), f32(fake * 2.0**66))]:
        assert np.isfinite(kid(r, f, subsets=3, subset_size=100)).all()


@pytest.mark.parametrize("fn, fragment", [(fid, "FID overflows"), (lambda r, f: kid(r, f, subsets=2), "KID overflows")])
def test_fid_and_kid_refuse_to_overflow(fn, fragment):
    real, fake = _base(40, 40)
    with pytest.raises(UserError, match=fragment):
        fn(real * 1e200, fake * 1e200)


def test_cli_refuses_features_too_large_in_one_line(tmp_path, capsys):
    real, fake = (a * 1e200 for a in _base(40, 40))
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    assert main(["metrics", str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
