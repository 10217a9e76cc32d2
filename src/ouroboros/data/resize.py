"""Resizing a whole ImageSet's images (uint8, N x C x H x W) to another height and width.

Each axis is resampled by one matrix (rows: output pixels, columns: input pixels), so an
image becomes ``R_h @ image @ R_w.T``:

- shrinking an axis averages, for each output pixel, the input pixels its box covers,
  each weighted by the length it covers (exact area averaging: OpenCV's INTER_AREA for
  any factor). This is how the scikit-learn digits were made (on-pixels counted in 4 x 4
  blocks of a 32 x 32 bitmap), and it cannot alias: no input pixel is skipped.
- enlarging an axis interpolates linearly between the two nearest input pixel centres
  (``align_corners=False``, edges clamped: torch's and Pillow's bilinear upsampling).

Values are rounded back to uint8.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ouroboros.data.imageset import ImageSet


def resampling_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix that resamples one axis of n_in pixels to n_out; each row sums to 1."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"axis sizes must be positive; got {n_in} -> {n_out}")
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if n_out <= n_in:  # area: output pixel i covers input [i s, (i + 1) s), s = n_in / n_out
        s = n_in / n_out
        edges = np.arange(n_in + 1)
        lo, hi = rows[:, None] * s, (rows[:, None] + 1) * s
        m[:] = np.clip(np.minimum(hi, edges[1:]) - np.maximum(lo, edges[:-1]), 0.0, None) / s
    else:  # linear between input pixel centres; output centre i + 0.5 sits at input (i + 0.5) n_in / n_out
        x = np.clip((rows + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
        left = np.floor(x).astype(int)
        right = np.minimum(left + 1, n_in - 1)
        frac = x - left
        np.add.at(m, (rows, left), 1.0 - frac)
        np.add.at(m, (rows, right), frac)
    return m


def resize_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 N x C x H x W -> uint8 N x C x height x width (see the module docstring)."""
    rh = resampling_matrix(images.shape[2], height)
    rw = resampling_matrix(images.shape[3], width)
    out = np.einsum("ih,nchw,jw->ncij", rh, images.astype(np.float64), rw, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_set(images: ImageSet, height: int, width: int, crop: int = 0, pad: int = 0) -> ImageSet:
    """The same images, labels and provenance at height x width: `crop` pixels cut from
    every edge first, and the rest resized to fit inside a black border `pad` pixels wide."""
    x = images.images[:, :, crop:images.images.shape[2] - crop, crop:images.images.shape[3] - crop]
    inner = (height - 2 * pad, width - 2 * pad)
    if min(x.shape[2:]) < 1 or min(inner) < 1:
        raise ValueError(f"crop {crop} / pad {pad} leave no pixels of {images.shape} -> {height} x {width}")
    out = np.zeros((len(x), x.shape[1], height, width), np.uint8)
    out[:, :, pad:height - pad, pad:width - pad] = x if x.shape[2:] == inner else resize_images(x, *inner)
    # replace() keeps every other field; the content hash cached in `_hash` is the old images'
    return dataclasses.replace(images, images=out, _hash=[])
