"""Paired and nested mixture draws: for one seed, cells differ only by their recipe."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ouroboros.data.imageset import ImageSet
from ouroboros.data.mixtures import append, fill, replace, subsample
from ouroboros.errors import UserError


def _set(counts, source, generation, offset):
    """`counts[c]` images of class c, each unique (its index is written in its pixels)."""
    labels = np.repeat(np.arange(len(counts)), counts)
    ids = np.arange(len(labels)) + offset
    images = np.zeros((len(labels), 1, 2, 2), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1], images[:, 0, 1, 0] = ids % 256, ids // 256, generation
    return ImageSet.create(images, labels, [f"c{i}" for i in range(len(counts))], source, generation=generation)


def _keys(s, generation=None):
    return {bytes(im) for im, g in zip(s.images, s.generation) if generation is None or g == generation}


counts_st = st.lists(st.integers(1, 25), min_size=2, max_size=4)


@settings(max_examples=40, deadline=None)
@given(counts=counts_st, r1=st.floats(0, 1), r2=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_replace_is_nested_over_ratios_and_paired_over_sources(counts, r1, r2, seed):
    lo, hi = sorted((r1, r2))
    real = _set(counts, "real:a", 0, 0)
    gen = _set([c + 2 for c in counts], "gen:x", 1, 1000)
    control = _set([max(1, c // 2) for c in counts], "real:b", 0, 2000)
    kept = lambda s: _keys(s) & _keys(real)  # noqa: E731
    assert kept(replace(real, gen, hi, seed)) <= kept(replace(real, gen, lo, seed))  # more replaced: a subset kept
    # The same real images survive whatever fills the gap (generated, or a short control with repeats).
    assert kept(replace(real, gen, lo, seed)) == kept(replace(real, control, lo, seed, allow_repeats=True))
    # The generated images taken at a lower ratio are among those taken at a higher one.
    assert _keys(replace(real, gen, lo, seed), 1) <= _keys(replace(real, gen, hi, seed), 1)
    # append adds exactly the generated images that replace swaps in at the same ratio.
    assert _keys(append(real, gen, lo, seed), 1) == _keys(replace(real, gen, lo, seed), 1)


def test_another_seed_draws_other_images():
    real = _set([40, 40], "real:a", 0, 0)
    gen = _set([40, 40], "gen:x", 1, 1000)
    a, b = replace(real, gen, 0.5, seed=1), replace(real, gen, 0.5, seed=2)
    assert _keys(a, 0) != _keys(b, 0) and _keys(a, 1) != _keys(b, 1)


def test_fill_tops_a_subset_up_to_the_full_class_counts():
    real = _set([20, 30], "real:a", 0, 0)
    gen = _set([30, 30], "gen:x", 1, 1000)
    small = subsample(real, 0.1, seed=3)
    filled = fill(small, gen, real.class_counts(), seed=3)
    assert filled.class_counts().tolist() == [20, 30]
    assert _keys(filled, 0) == _keys(small)  # every real image of the subset, and no other
    assert len(_keys(filled, 1)) == 50 - len(small)  # the rest generated, none repeated
    with pytest.raises(UserError, match="must not be below"):
        fill(real, gen, [5, 5], seed=0)
    with pytest.raises(UserError, match="needs 45 images but the pool has 30"):
        fill(small, gen, [20, 48], seed=0)  # 48 - 3 = 45 from a pool of 30, no repeats allowed
