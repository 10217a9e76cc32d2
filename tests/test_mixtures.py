"""Mixture recipes: property tests (sizes, class balance, no duplicated real image, exact fractions)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_user_error, run_cli
from ouroboros.data.imageset import ImageSet
from ouroboros.data.mixtures import append, counts_for, mix, replace, subsample
from ouroboros.errors import UserError


def _set(counts, source, generation, seed):
    """A set with `counts[c]` images of class c; every image unique (its index is in its pixels)."""
    labels = np.repeat(np.arange(len(counts)), counts)
    n = len(labels)
    images = np.zeros((n, 1, 4, 4), np.uint8)
    ids = np.arange(n) + seed * 10_000
    images[:, 0, 0, :3] = np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], 1)
    images[:, 0, 1, 0] = generation
    return ImageSet.create(images, labels, [f"c{i}" for i in range(len(counts))], source, generation=generation)


counts_st = st.lists(st.integers(1, 30), min_size=2, max_size=5)
ratio_st = st.floats(0.0, 1.0)


def _real_ids(s):
    return [bytes(im) for im, g in zip(s.images, s.generation) if g == 0]


@settings(max_examples=60, deadline=None)
@given(counts=counts_st, ratio=ratio_st, seed=st.integers(0, 1000))
def test_replace_properties(counts, ratio, seed):
    real = _set(counts, "real:a", 0, 1)
    gen = _set([c + 3 for c in counts], "gen:diffusion", 1, 2)
    out = replace(real, gen, ratio, seed=seed)
    assert len(out) == len(real)
    assert out.class_counts().tolist() == real.class_counts().tolist()
    ids = _real_ids(out)
    assert len(ids) == len(set(ids))  # no real image twice
    assert set(ids) <= set(_real_ids(real))
    for c, n in enumerate(counts):
        n_gen = int(((out.labels == c) & (out.generation == 1)).sum())
        assert n_gen == round(ratio * n)  # exact up to rounding one image
    generated = out.images[out.generation == 1]
    assert len({bytes(im) for im in generated}) == len(generated)  # drawn without replacement
    assert set(out.source[out.generation == 1]) <= {"gen:diffusion"}  # provenance survives


@settings(max_examples=40, deadline=None)
@given(counts=counts_st, ratio=ratio_st, seed=st.integers(0, 1000))
def test_control_with_a_short_source_repeats_but_stays_balanced(counts, ratio, seed):
    real = _set(counts, "real:a", 0, 1)
    short = _set([max(1, c // 3) for c in counts], "real:b", 0, 3)
    out = replace(real, short, ratio, seed=seed, allow_repeats=True)
    assert len(out) == len(real)
    assert out.class_counts().tolist() == real.class_counts().tolist()
    from_b = out.source == "real:b"
    for c, n in enumerate(counts):
        assert int(((out.labels == c) & from_b).sum()) == round(ratio * n)


@settings(max_examples=40, deadline=None)
@given(counts=counts_st, ratio=st.floats(0.05, 1.0), seed=st.integers(0, 1000))
def test_subsample_and_append(counts, ratio, seed):
    real = _set(counts, "real:a", 0, 1)
    want = counts_for(real, ratio)
    if want.sum() > 0:
        sub = subsample(real, ratio, seed)
        assert sub.class_counts().tolist() == want.tolist()
        assert set(sub.source) == {"real:a"}
        assert len(set(_real_ids(sub))) == len(sub)
    gen = _set(counts, "gen:d", 1, 2)
    app = append(real, gen, ratio, seed)
    assert len(app) == len(real) + want.sum()
    assert sorted(_real_ids(app)) == sorted(_real_ids(real))  # every real image, once
    assert ((app.generation == 1).sum()) == want.sum()


def test_same_seed_same_mixture():
    real, gen = _set([20, 20], "real:a", 0, 1), _set([25, 25], "gen:d", 1, 2)
    assert replace(real, gen, 0.4, seed=3).content_hash() == replace(real, gen, 0.4, seed=3).content_hash()
    assert replace(real, gen, 0.4, seed=3).content_hash() != replace(real, gen, 0.4, seed=4).content_hash()


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_ratio_outside_unit_interval(ratio):
    real, gen = _set([5, 5], "real:a", 0, 1), _set([5, 5], "gen:d", 1, 2)
    with pytest.raises(UserError, match="ratio must lie in"):
        replace(real, gen, ratio)


def test_mismatched_classes_and_short_pool():
    real = _set([5, 5], "real:a", 0, 1)
    with pytest.raises(UserError, match="classes differ"):
        replace(real, _set([5, 5, 5], "gen:d", 1, 2), 0.5)
    with pytest.raises(UserError, match="needs 4 images but the pool has 2"):
        replace(_set([10, 10], "real:a", 0, 1), _set([2, 9], "gen:d", 1, 2), 0.4)
    with pytest.raises(UserError, match="unknown mixture mode"):
        mix("blend", real, real, 0.5)


def test_mix_cli(tmp_path):
    real, gen = _set([10, 10], "real:a", 0, 1), _set([10, 10], "gen:d", 1, 2)
    real.save(tmp_path / "real.npz")
    gen.save(tmp_path / "gen.npz")
    out = tmp_path / "mix.npz"
    proc = run_cli("mix", "--real", tmp_path / "real.npz", "--generated", tmp_path / "gen.npz", "--ratio", "0.4",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    mixed = ImageSet.load(out)
    assert len(mixed) == 20 and int((mixed.generation == 1).sum()) == 8
    bad = run_cli("mix", "--real", tmp_path / "real.npz", "--generated", tmp_path / "gen.npz", "--ratio", "1.4",
                  "--out", tmp_path / "bad.npz")
    assert_user_error(bad, "ratio must lie in [0, 1]")
    assert not (tmp_path / "bad.npz").exists()
