"""Two conventions no other test pins, each of which a one-word change would break without
any run failing: Inception's input resize (FIDs comparable with published ones) and the
per-image seeds of text-to-image sets (no two images share their noise)."""

import numpy as np
import torch

from ouroboros.features.inception import FIDInceptionV3
from ouroboros.generators.prompts import Group, image_seed, work_list


def _bilinear_half_pixel(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of the last axis with half-pixel centres (PyTorch's
    align_corners=False, as pytorch-fid's FID Inception resizes): output pixel i samples
    the input at (i + 1/2) n / size - 1/2, clamped to the first and last pixel."""
    n = x.shape[-1]
    where = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(where).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = where - lo
    return x[..., lo] * (1 - frac) + x[..., hi] * frac


def test_inception_resizes_its_input_as_pytorch_fid_does():
    """uint8 -> [0, 1] -> bilinear resize to 299 x 299 with half-pixel centres -> [-1, 1],
    computed here in numpy independently of torch. Corner-aligned sampling
    (align_corners=True) or a bicubic resize gives other features, and FIDs no longer
    comparable with published ones: such a change fails this test (it moves interior
    pixels by several grey levels)."""
    images = np.random.default_rng(0).integers(0, 256, size=(2, 3, 8, 11), dtype=np.uint8)
    got = FIDInceptionV3.preprocess(torch.from_numpy(images)).double().numpy()
    x = images.astype(np.float64) / 255.0
    rows = _bilinear_half_pixel(x, 299)  # along the width
    expected = 2 * _bilinear_half_pixel(rows.swapaxes(-1, -2), 299).swapaxes(-1, -2) - 1
    assert got.shape == (2, 3, 299, 299)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    corners = torch.nn.functional.interpolate(torch.from_numpy(x), size=(299, 299), mode="bilinear",
                                              align_corners=True).numpy() * 2 - 1
    assert np.abs(corners - expected).max() > 0.05  # the test tells the two apart


def test_each_image_of_a_caption_set_has_its_own_seed_from_the_image():
    """A COCO image's captions each make `per_prompt` images; every image's seed comes from
    (base seed, COCO image id, the image's index within that id: caption k's image j is
    index k x per_prompt + j), so no two images of one COCO image share their noise. A seed
    taken from the position within its caption (j) would give caption 0's and caption 1's
    first images the same starting noise."""
    groups = [Group("9", ("A cat on a mat.", "A sleeping cat.", "A cat.")), Group("5", ("A dog.", "A puppy."))]
    items = work_list(groups, "captions", 2, seed=4)
    assert [it.seed for it in items] == [image_seed(4, it.group, it.index) for it in items]
    assert [(it.group, it.index) for it in items if it.group == "9"] == [("9", i) for i in range(6)]
    assert len({it.seed for it in items}) == len(items)
    # the same image id, caption, index and seed in a longer work list: the seed is the image's own
    assert work_list(groups[:1], "captions", 2, seed=4) == items[:6]
