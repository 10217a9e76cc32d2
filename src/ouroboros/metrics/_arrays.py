"""Input checks shared by the metrics: 2-D, finite, matching dimensions, enough samples."""

from __future__ import annotations

import numpy as np
import torch

from ouroboros.errors import UserError


def as_features(x, name: str = "features") -> torch.Tensor:
    """numpy or torch N x D -> a torch tensor (dtype kept for floats), checked."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise UserError(f"{name} must be a numeric array; got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if not t.is_floating_point():
        t = t.double()
    if t.ndim != 2:
        raise UserError(f"{name} must be a 2-D array (N samples x D features); got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise UserError(f"{name} is empty (0 samples)")
    if t.shape[1] == 0:
        raise UserError(f"{name} has 0 feature dimensions")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise UserError(f"{name} has NaN or inf values in {bad} of {t.shape[0]} rows; fix or drop those samples")
    return t


def as_pair(real, fake) -> tuple[torch.Tensor, torch.Tensor]:
    r, f = as_features(real, "real features"), as_features(fake, "fake features")
    if r.shape[1] != f.shape[1]:
        raise UserError(
            f"real and fake features have different dimensions ({r.shape[1]} vs {f.shape[1]}); "
            "extract both with the same feature extractor"
        )
    return r, f


def check_k(k: int, *sets: torch.Tensor) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"k must be a positive integer; got {k!r}")
    for s, name in zip(sets, ("real", "fake")):
        if s.shape[0] < k + 1:
            raise UserError(f"{name} set has {s.shape[0]} samples; k = {k} needs at least k + 1 = {k + 1}")
    return int(k)
