"""What every generator shares: label layout, device choice and seeding helpers."""

from __future__ import annotations

import numpy as np
import torch

from ouroboros.errors import UserError


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    """n labels cycling through the classes: every class gets n // K or n // K + 1."""
    if n < 1:
        raise UserError(f"number of samples must be at least 1; got {n}")
    return np.arange(n, dtype=np.int64) % num_classes


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r} ({exc}); use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use device: auto or cpu")
    return dev
