"""Denoising networks: ``forward(sample, timestep, class_labels) -> predicted noise``.

The networks know nothing about noise schedules (diffusers' schedulers own those).
Class label ``num_classes`` is the "null" label used for the unconditional branch of
classifier-free guidance.

- ``mlp``: a residual MLP on flattened pixels with sinusoidal time and learned class
  embeddings. Tiny images (8x8 digits) have 64 pixels; a small MLP trains in seconds
  on a CPU and denoises them as well as a U-Net does.
- ``unet``: diffusers' ``UNet2DModel`` with a class embedding, for larger images.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as used by DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.cond = nn.Linear(hidden, 2 * hidden)  # scale and shift from the (time + class) embedding
        self.fc1 = nn.Linear(hidden, 2 * hidden)
        self.fc2 = nn.Linear(2 * hidden, hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.cond(emb).chunk(2, dim=1)
        x = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(nn.functional.silu(self.fc1(x)))


class MLPDenoiser(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        dim = int(math.prod(image_shape))
        self.hidden = hidden
        self.inp = nn.Linear(dim, hidden)
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label = nn.Embedding(num_classes + 1, hidden)  # +1: the null label
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        n = sample.shape[0]
        emb = nn.functional.silu(self.time(timestep_embedding(timestep, self.hidden)) + self.label(class_labels))
        h = self.inp(sample.reshape(n, -1))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(self.out_norm(h))).reshape(sample.shape)


class UNetDenoiser(nn.Module):
    """diffusers' UNet2DModel behind the same call signature as the MLP."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, base_channels: int = 64, depth: int = 3):
        super().__init__()
        from diffusers import UNet2DModel

        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        channels = tuple(base_channels * min(2**i, 4) for i in range(depth))
        self.net = UNet2DModel(
            sample_size=(h, w),
            in_channels=c,
            out_channels=c,
            block_out_channels=channels,
            down_block_types=("DownBlock2D",) * (depth - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (depth - 1),
            layers_per_block=2,
            num_class_embeds=num_classes + 1,
            norm_num_groups=min(32, base_channels),
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.net(sample, timestep, class_labels=class_labels).sample


def build_denoiser(kind: str, image_shape, num_classes: int, hidden: int, depth: int) -> nn.Module:
    if kind == "mlp":
        return MLPDenoiser(image_shape, num_classes, hidden=hidden, depth=depth)
    if kind == "unet":
        return UNetDenoiser(image_shape, num_classes, base_channels=hidden, depth=depth)
    raise ValueError(f"unknown denoiser {kind!r}; use mlp or unet")
