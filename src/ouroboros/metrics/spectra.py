"""Radially averaged power spectra of images (Hataya et al. Fig. 6; Durall et al. 2020).

For each image (channels averaged, mean removed), the power |FFT|^2 is averaged over
rings of equal integer radius |k| around the zero frequency, for radii 1 .. min(H, W)//2
(radius 0, the mean, is removed and so left out).
"""

from __future__ import annotations

import numpy as np


def radial_power_spectra(images: np.ndarray) -> np.ndarray:
    """uint8 or float N x C x H x W -> N x R log10 power spectra for radii 1 .. R = min(H, W) // 2."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be N x C x H x W; got shape {x.shape}")
    x = x.mean(axis=1)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(1, 2))) ** 2
    h, w = x.shape[1:]
    yy, xx = np.indices((h, w))
    radius = np.round(np.hypot(yy - h // 2, xx - w // 2)).astype(np.int64)
    r_max = min(h, w) // 2
    out = np.empty((len(x), r_max))
    for r in range(1, r_max + 1):
        out[:, r - 1] = power[:, radius == r].mean(axis=1)
    return np.log10(out + 1e-12)
