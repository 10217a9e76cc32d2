"""The FID Inception-v3 in pure torch (no torchvision), loading the standard weights.

This is the network of TensorFlow's original FID code, as ported in pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth``: torchvision-style Inception-v3 layer names,
a 1008-way ``fc`` (unused here), and three differences from torchvision's Inception:
average pools inside the A, C and first E blocks exclude padding
(``count_include_pad=False``, as TensorFlow does), and the last E block pools with a
max instead of an average. Features are the 2048-d output of the final average pool.

Input handling, as in pytorch-fid: uint8 images -> [0, 1] -> bilinear resize to
299 x 299 (``align_corners=False``) -> [-1, 1]; greyscale is repeated to 3 channels.

Weights are never downloaded: pass a path, set ``OUROBOROS_INCEPTION_WEIGHTS``, or put
the file in ``$TORCH_HOME/hub/checkpoints/`` (where torch.hub would have cached it)
or ``~/.cache/ouroboros/``. A ``.safetensors`` copy is read directly; the original
``.pth`` is read with ``torch.load(weights_only=True)``, which only rebuilds tensors
and never runs pickled code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ouroboros.errors import UserError
from ouroboros.io import check_regular_file, open_bounded, read_bytes_bounded

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_tf(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # the FID network's last block pools with a max
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # kept so the standard state dict loads strictly

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0, 255] float) N x C x H x W -> the network's input."""
        x = images.float() / 255.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[1] != 3:
            raise UserError(f"Inception features need 1 or 3 channels; got {x.shape[1]}")
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return 2.0 * x - 1.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = getattr(self, name)(x)
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights file: `path`, $OUROBOROS_INCEPTION_WEIGHTS, or a cache directory."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / WEIGHTS_NAME
        if not p.exists():
            raise UserError(f"Inception weights not found at {p}; give the path to {WEIGHTS_NAME}")
        check_regular_file(p, "Inception weights", "data")  # no FIFO or device, no 1 TiB file (hashed, then read)
        return p
    env = os.environ.get("OUROBOROS_INCEPTION_WEIGHTS")
    if env:
        return find_weights(env)
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    candidates = [torch_home / "hub" / "checkpoints" / WEIGHTS_NAME,
                  Path.home() / ".cache" / "ouroboros" / WEIGHTS_NAME]
    for c in candidates:
        if c.exists():
            return find_weights(c)
    raise UserError(
        f"Inception weights not found (looked in {', '.join(str(c.parent) for c in candidates)}); "
        f"download {WEIGHTS_NAME} once and pass its path (--inception-weights PATH) or set OUROBOROS_INCEPTION_WEIGHTS"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load

            state = load(read_bytes_bounded(path, "Inception weights", "data"))
        else:  # weights_only=True: torch's restricted unpickler (tensors and containers only, no code)
            with open_bounded(path, "Inception weights", "data") as f:
                state = torch.load(f, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as exc:  # a corrupt or foreign file: say which and why
        raise UserError(f"cannot read Inception weights {path}: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict")
    return state


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FIDInceptionV3:
    weights = find_weights(path)
    model = FIDInceptionV3()
    state = load_state_dict(weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise UserError(
            f"{weights} is not the FID Inception-v3 state dict: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def inception_features(images: np.ndarray, model: FIDInceptionV3, batch_size: int = 64, progress=None) -> np.ndarray:
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model(torch.as_tensor(images[i : i + batch_size], device=device)).double().cpu().numpy())
        if progress is not None:
            progress(min(batch_size, len(images) - i))
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))
