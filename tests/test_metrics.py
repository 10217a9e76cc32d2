"""Metrics against reference implementations, invariants, and bad input."""

import numpy as np
import pytest
import scipy.linalg
import torch
from prdc import compute_prdc

from ouroboros.errors import UserError
from ouroboros.metrics import feature_stats, fid, fid_from_stats, kid, prdc, precision_recall


def _random(n, m, d, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) * 1.2 + 0.3


def _clustered(n, m, d, seed=1):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, d)) * 5
    real = centers[rng.integers(0, 8, n)] + rng.normal(size=(n, d)) * 0.5
    fake = centers[rng.integers(0, 5, m)] + rng.normal(size=(m, d)) * 0.7  # misses 3 modes
    return real, fake


def _with_duplicates(seed=2):
    real, fake = _clustered(300, 250, 8, seed)
    real[10:20] = real[0]  # exact duplicates, and fakes sitting exactly on real points
    fake[:30] = real[40:70]
    return real, fake


DATA = {
    "random": lambda: _random(600, 500, 32),
    "clustered": lambda: _clustered(700, 600, 64),
    "duplicates": _with_duplicates,
    "float32-wide": lambda: tuple(a.astype(np.float32) for a in _clustered(400, 400, 512, 3)),
}


@pytest.mark.parametrize("name", sorted(DATA))
def test_prdc_equals_the_prdc_package(name):
    real, fake = DATA[name]()
    ref = compute_prdc(real.astype(np.float64), fake.astype(np.float64), nearest_k=5)
    ours = prdc(real, fake, k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-12), key


def _brute_pr(real, fake, k):
    """Kynkäänniemi precision/recall from full float64 distance matrices, boundary included."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    d_ff = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
    d_rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))
    r_real = np.sort(d_rr, axis=1)[:, k]
    r_fake = np.sort(d_ff, axis=1)[:, k]
    precision = (d_rf <= r_real[:, None]).any(axis=0).mean()
    recall = (d_rf <= r_fake[None, :]).any(axis=1).mean()
    return precision, recall


@pytest.mark.parametrize("name", sorted(DATA))
def test_precision_recall_matches_brute_force(name):
    real, fake = DATA[name]()
    p, r = _brute_pr(real, fake, 3)
    ours = precision_recall(real, fake, k=3)
    assert ours["precision"] == pytest.approx(p, abs=1e-12)
    assert ours["recall"] == pytest.approx(r, abs=1e-12)


def test_boundary_convention_differs_exactly_on_ties():
    # 1-D points: the k-th neighbour distance of every real point is exactly 1.
    real = np.arange(10, dtype=np.float64)[:, None]
    fake = real[2:8] + 1.0  # each fake sits exactly on a real point, at distance 1 from its neighbours
    fake[:, 0] += 0.5  # now every fake is exactly 0.5 from two reals, inside any radius-1 ball
    assert precision_recall(real, fake, k=1)["precision"] == 1.0
    # A fake exactly at distance r from its nearest real: inside with <=, outside with <.
    real = np.array([[0.0], [1.0], [10.0], [11.0]])
    fake = np.array([[-1.0], [-1.0], [12.0], [12.0]])
    assert precision_recall(real, fake, k=1)["precision"] == 1.0
    assert prdc(real, fake, k=1)["precision"] == 0.0


@pytest.mark.parametrize("block, n", [(7, 60), (100, 300), (5000, 300), (1 << 22, 300)])
def test_block_size_never_changes_a_result(block, n):
    """A block smaller than one row of distances (7), a few rows, many, all at once. (The
    7-element blocks walk the matrix a few numbers at a time: 60 points keep that quick.)"""
    real, fake = _clustered(n, n - 20, 16)
    base = prdc(real, fake, k=5)
    assert prdc(real, fake, k=5, block=block) == base
    assert precision_recall(real, fake, k=3, block=block) == precision_recall(real, fake, k=3)


def test_torch_and_numpy_inputs_agree():
    real, fake = _random(200, 150, 16)
    assert prdc(torch.from_numpy(real), torch.from_numpy(fake)) == prdc(real, fake)
    assert fid(torch.from_numpy(real).float(), fake) == pytest.approx(fid(real.astype(np.float32), fake), rel=1e-12)


def test_mode_collapse_gives_high_precision_low_recall():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(1000, 64)) * 3.0
    fake = rng.normal(size=(1000, 64)) * 0.1
    for result in (precision_recall(real, fake, k=3), prdc(real, fake, k=5)):
        assert result["precision"] > 0.8 and result["recall"] < 0.3, result


def _fid_sqrtm(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("d", [8, 64, 256])
def test_fid_matches_sqrtm_on_well_conditioned_data(d):
    rng = np.random.default_rng(d)
    real = rng.normal(size=(4 * d + 200, d))
    mix = np.eye(d) + 0.3 * rng.normal(size=(d, d)) / np.sqrt(d)
    fake = rng.normal(size=(4 * d + 100, d)) @ mix + 0.5
    ours = fid(real, fake)
    ref = _fid_sqrtm(*feature_stats(real), *feature_stats(fake))
    assert ours == pytest.approx(ref, rel=1e-6)
    assert fid_from_stats(*feature_stats(real), *feature_stats(fake)) == ours


def test_fid_is_real_and_finite_when_n_below_d_and_rank_deficient():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 200))  # N < d: singular covariances
    fake = rng.normal(size=(60, 200)) + 0.1
    value = fid(real, fake)
    assert isinstance(value, float) and np.isfinite(value) and value > 0
    low_rank = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 64))  # rank 5 in 64-d
    value = fid(low_rank, low_rank * 1.1)
    assert np.isfinite(value) and value > 0
    constant_cols = real.copy()
    constant_cols[:, :20] = 1.0  # zero-variance features
    assert np.isfinite(fid(constant_cols, fake))


def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(0)
    for n, d in [(2000, 32), (100, 300)]:
        x = rng.normal(size=(n, d))
        scale = np.trace(np.cov(x, rowvar=False))
        assert abs(fid(x, x)) < 1e-6 * scale


def test_kid_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(300, 16)), rng.normal(size=(250, 16)) + 0.2
    mean, std = kid(real, fake, subsets=20, subset_size=100, seed=3)
    draw = np.random.default_rng(3)
    vals = []
    for _ in range(20):
        x = real[draw.choice(300, 100, replace=False)]
        y = fake[draw.choice(250, 100, replace=False)]
        k = lambda a, b: (a @ b.T / 16 + 1) ** 3  # noqa: E731
        m = 100
        kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
        vals.append(sum(kxx[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
                    + sum(kyy[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
                    - 2 * kxy.sum() / (m * m))
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert std == pytest.approx(np.std(vals), rel=1e-8)
    same, _ = kid(real, real, subsets=5, subset_size=100)
    assert abs(same) < 0.05


@pytest.mark.parametrize("fn", [lambda r, f: fid(r, f), lambda r, f: kid(r, f, subsets=2),
                                lambda r, f: prdc(r, f), lambda r, f: precision_recall(r, f)])
def test_bad_inputs_are_user_errors(fn):
    rng = np.random.default_rng(0)
    good = rng.normal(size=(20, 4))
    with pytest.raises(UserError, match="different dimensions"):
        fn(good, rng.normal(size=(20, 5)))
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(UserError, match="NaN or inf"):
        fn(good, bad)
    bad[3, 1] = np.inf
    with pytest.raises(UserError, match="NaN or inf"):
        fn(bad, good)
    with pytest.raises(UserError, match="empty"):
        fn(good, np.zeros((0, 4)))


def test_fewer_samples_than_k_plus_one():
    rng = np.random.default_rng(0)
    with pytest.raises(UserError, match="at least k \\+ 1 = 6"):
        prdc(rng.normal(size=(20, 4)), rng.normal(size=(5, 4)), k=5)
    with pytest.raises(UserError, match="at least k \\+ 1 = 4"):
        precision_recall(rng.normal(size=(3, 4)), rng.normal(size=(20, 4)), k=3)
