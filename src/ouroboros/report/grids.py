"""Sample grids: one PNG per set of images, one row per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ouroboros.data.imageset import ImageSet
from ouroboros.io import atomic_path


def class_grid(images: ImageSet, per_class: int = 10, scale: int = 4, pad: int = 1) -> np.ndarray:
    """H x W (x 3) uint8 mosaic: row c holds the first `per_class` images of class c."""
    c, h, w = images.shape
    k = images.num_classes
    grid = np.full((k * (h + pad) + pad, per_class * (w + pad) + pad, c), 255, dtype=np.uint8)
    for cls in range(k):
        idx = np.flatnonzero(images.labels == cls)[:per_class]
        for j, i in enumerate(idx):
            y, x = pad + cls * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = images.images[i].transpose(1, 2, 0)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid[..., 0] if c == 1 else grid


def save_grid(images: ImageSet, path: Path, per_class: int = 10, scale: int = 4) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(class_grid(images, per_class, scale)).save(tmp, format="PNG")
    return Path(path)
