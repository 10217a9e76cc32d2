"""Distribution shifts for robustness test sets (the role ImageNet-A/R play in Hataya et
al.'s Table 6): noise, blur, rotation, elastic deformation, contrast.

Each shift maps an `ImageSet` to a new one with the same labels and provenance, the
images transformed in float, then quantised back to uint8. Random shifts take a seed,
so a shifted test set is reproducible. Written in plain torch (no torchvision).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.errors import UserError


def _float(images: ImageSet) -> torch.Tensor:
    return torch.as_tensor(images.to_float(), dtype=torch.float32)


def _with_images(images: ImageSet, x: torch.Tensor, tag: str) -> ImageSet:
    conditions = [f"{c};shift={tag}" if c else f"shift={tag}" for c in images.condition]
    shifted = ImageSet(quantize(x), images.labels, images.class_names, images.source, images.generation,
                       images.seed, images.condition, images.captions)
    return shifted.with_provenance(condition=conditions)


def gaussian_noise(images: ImageSet, sigma: float = 0.2, seed: int = 0) -> ImageSet:
    """Add N(0, sigma^2) noise in the [-1, 1] pixel range."""
    if sigma < 0:
        raise UserError(f"noise sigma must be >= 0; got {sigma}")
    gen = torch.Generator().manual_seed(seed)
    x = _float(images)
    return _with_images(images, x + sigma * torch.randn(x.shape, generator=gen), f"noise:{sigma:g}")


def _gaussian_filter(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter over the last two axes, reflect padding."""
    radius = min(max(1, int(math.ceil(3 * sigma))), min(x.shape[2:]) - 1)  # reflect needs radius < size
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def gaussian_blur(images: ImageSet, sigma: float = 0.6, seed: int = 0) -> ImageSet:
    """Gaussian blur with standard deviation `sigma` pixels."""
    if sigma < 0:
        raise UserError(f"blur sigma must be >= 0; got {sigma}")
    x = _float(images)
    return _with_images(images, _gaussian_filter(x, sigma) if sigma > 0 else x, f"blur:{sigma:g}")


def _warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    # Outside the image is background: the darkest value, -1.
    return F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0


def rotation(images: ImageSet, degrees: float = 20.0, seed: int = 0) -> ImageSet:
    """Rotate each image about its centre by a fixed angle (counter-clockwise)."""
    x = _float(images)
    a = math.radians(degrees)
    h, w = x.shape[2:]
    # Normalised coordinates are scaled per axis; correct for non-square images.
    theta = torch.tensor([[math.cos(a), -math.sin(a) * h / w, 0.0],
                          [math.sin(a) * w / h, math.cos(a), 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return _with_images(images, _warp(x, grid), f"rotation:{degrees:g}")


def elastic(images: ImageSet, alpha: float = 1.5, sigma: float = 1.5, seed: int = 0) -> ImageSet:
    """Elastic deformation (Simard et al. 2003): a random displacement field, smoothed with
    a Gaussian of `sigma` pixels and scaled to at most about `alpha` pixels."""
    if alpha < 0 or sigma <= 0:
        raise UserError(f"elastic needs alpha >= 0 and sigma > 0; got {alpha}, {sigma}")
    x = _float(images)
    n, _, h, w = x.shape
    gen = torch.Generator().manual_seed(seed)
    field = torch.rand((n, 2, h, w), generator=gen) * 2 - 1
    smooth = _gaussian_filter(field, sigma)
    smooth = smooth / smooth.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(x.shape), align_corners=False)
    offset = torch.stack([smooth[:, 0] * alpha * 2 / w, smooth[:, 1] * alpha * 2 / h], dim=-1)
    return _with_images(images, _warp(x, base + offset), f"elastic:{alpha:g},{sigma:g}")


def contrast(images: ImageSet, factor: float = 0.5, seed: int = 0) -> ImageSet:
    """Scale each image's deviation from its own mean by `factor` (< 1 lowers contrast)."""
    if factor < 0:
        raise UserError(f"contrast factor must be >= 0; got {factor}")
    x = _float(images)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return _with_images(images, mean + factor * (x - mean), f"contrast:{factor:g}")


SHIFTS: dict[str, Callable[..., ImageSet]] = {
    "noise": gaussian_noise,
    "blur": gaussian_blur,
    "rotation": rotation,
    "elastic": elastic,
    "contrast": contrast,
}


def apply_shift(name: str, images: ImageSet, seed: int = 0, **params) -> ImageSet:
    if name not in SHIFTS:
        raise UserError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    return SHIFTS[name](images, seed=seed, **params)
