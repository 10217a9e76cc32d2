"""The real-data classifier: scores generated images and provides features for metrics.

A small CNN trained once on the real training split. Its logits give accuracy and
cross-entropy of generated images (the feedback-loop study's fidelity measures for
small greyscale images, where Inception features do not apply); its penultimate
layer is the ``classifier`` feature extractor. Saved as safetensors + JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError, check_float, check_int, check_text
from ouroboros.generators.base import resolve_device
from ouroboros.io import atomic_path


@dataclass
class ClassifierConfig:
    arch: Literal["cnn", "resnet"] = "cnn"
    width: int = 32
    feature_dim: int = 128
    epochs: int = 10  # 99.4% on the digits' test split (seeds 0 and 1); 20 epochs: 99.8% and 98.5%
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift: int = 1  # random translation (pixels) as augmentation
    # random rotation (up to this many degrees either way) and zoom (a factor within 1 +- scale)
    # of each image, with the translation, as one affine warp; both 0: whole-pixel shifts only
    rotation: float = 0.0
    scale: float = 0.0
    device: str = "auto"

    def inert(self) -> tuple[str, ...]:
        """Options without effect here (`ouroboros.graph.settings_params` leaves them out of keys)."""
        return () if self.rotation or self.scale else ("rotation", "scale")

    def validate(self, where: str = "classifier") -> None:
        """Every field in range; the upper bounds only stop absurd sizes."""
        if self.arch not in ("cnn", "resnet"):
            raise UserError(f"{where}.arch: unknown classifier arch {self.arch!r}; use one of cnn, resnet")
        check_int(f"{where}.width", self.width, 1, 512)
        check_int(f"{where}.feature_dim", self.feature_dim, 1, 8192)
        check_int(f"{where}.epochs", self.epochs, 1, 10_000)
        # BatchNorm needs two images per batch; batches of one would all be skipped.
        check_int(f"{where}.batch_size", self.batch_size, 2, 65536)
        check_float(f"{where}.lr", self.lr, 0.0, 1.0, lo_open=True)
        check_float(f"{where}.weight_decay", self.weight_decay, 0.0, 1.0)
        check_int(f"{where}.shift", self.shift, 0, 16)  # and below the image size (ouroboros.preflight)
        check_float(f"{where}.rotation", self.rotation, 0.0, 180.0)
        check_float(f"{where}.scale", self.scale, 0.0, 0.5)
        check_text(f"{where}.device", self.device, 64)


class BodyAndHead(nn.Module):
    """A classifier whose `body` ends in the feature layer and whose `head` gives logits."""

    body: nn.Module
    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallCNN(BodyAndHead):
    """conv-conv-pool-conv, global average pool, one hidden layer (the features), logits."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(8 * width, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)


class BasicBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016b)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.skip = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        h = nn.functional.relu(self.bn1(x))
        shortcut = x if self.skip is None else self.skip(h)
        h = self.conv1(h)
        return shortcut + self.conv2(nn.functional.relu(self.bn2(h)))


class SmallResNet(BodyAndHead):
    """A ResNet for small images: three stages of two blocks (width, 2 width, 4 width),
    global average pool, one hidden layer (the features), logits."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, feature_dim: int = 128):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False),
            BasicBlock(w, w, 1), BasicBlock(w, w, 1),
            BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1),
            BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 1),
            nn.BatchNorm2d(4 * w), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * w, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)


ARCHS = {"cnn": SmallCNN, "resnet": SmallResNet}


def build_classifier(config: "ClassifierConfig", in_channels: int, num_classes: int) -> nn.Module:
    if config.arch not in ARCHS:
        raise UserError(f"unknown classifier arch {config.arch!r}; use one of {', '.join(ARCHS)}")
    return ARCHS[config.arch](in_channels, num_classes, config.width, config.feature_dim)


def _head_and_body(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    feats = model.features(x)
    return torch.cat([model.head(feats), feats], dim=1)


def _random_shift(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    pad = nn.functional.pad(x, (shift,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=gen).tolist()
    return pad[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def _random_affine(x: torch.Tensor, config: "ClassifierConfig", gen: torch.Generator) -> torch.Tensor:
    """Each image rotated by an angle within +-rotation degrees, zoomed by a factor within
    1 +- scale and translated by up to `shift` pixels each way, all drawn uniformly per
    image (bilinear, the border pixels extended)."""
    n, h = x.shape[0], x.shape[-1]
    angle = (2 * torch.rand(n, generator=gen) - 1) * math.radians(config.rotation)
    zoom = 1 + (2 * torch.rand(n, generator=gen) - 1) * config.scale
    move = (2 * torch.rand(n, 2, generator=gen) - 1) * (2 * config.shift / h)  # in affine_grid's [-1, 1] units
    cos, sin = zoom * torch.cos(angle), zoom * torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)


def augment(x: torch.Tensor, config: "ClassifierConfig", gen: torch.Generator) -> torch.Tensor:
    """A training batch augmented: whole-pixel shifts of the batch (`shift`), or, with a
    rotation or scale, a random affine warp of each image."""
    if config.rotation or config.scale:
        return _random_affine(x, config, gen)
    return _random_shift(x, config.shift, gen)


def check_image_size(config: ClassifierConfig, image_shape) -> None:
    """The cnn's 2 x 2 max-pool needs images of at least two pixels a side."""
    if config.arch == "cnn" and min(image_shape[1:]) < 2:
        raise UserError(f"the cnn classifier needs images of at least 2 x 2 pixels; got {image_shape[1]} x "
                        f"{image_shape[2]} (use pixel features or larger images)")


class Classifier:
    """``Classifier.train(imageset, config, seed)``; ``logits(images)``; ``features(images)``."""

    def __init__(self, model: nn.Module, config: ClassifierConfig, class_names: tuple[str, ...], image_shape):
        self.model = model.eval()
        self.config = config
        self.class_names = tuple(class_names)
        self.image_shape = tuple(image_shape)

    @classmethod
    def train(cls, train: ImageSet, config: ClassifierConfig | None = None, seed: int = 0) -> "Classifier":
        config = config or ClassifierConfig()
        config.validate()
        check_image_size(config, train.shape)
        device = resolve_device(config.device)
        torch.manual_seed(int(seed))
        model = build_classifier(config, train.shape[0], train.num_classes).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = max(1, int(np.ceil(len(train) / config.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * steps_per_epoch)
        x_all = torch.as_tensor(train.to_float(), device=device)
        y_all = torch.as_tensor(train.labels, device=device)
        gen = torch.Generator().manual_seed(int(seed))
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(len(train), generator=gen).to(device)
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size : (i + 1) * config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                x = augment(x_all[idx], config, gen)
                loss = nn.functional.cross_entropy(model(x), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        return cls(model.eval(), config, train.class_names, train.shape)

    def _check(self, images: ImageSet) -> None:
        if images.shape != self.image_shape:
            raise UserError(f"classifier expects images of shape {self.image_shape}; got {images.shape}")

    @torch.no_grad()
    def _apply(self, images: ImageSet, fn, batch_size: int = 1024, progress=None) -> np.ndarray:
        self._check(images)
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            x = images.images[i : i + batch_size].astype(np.float32) / 127.5 - 1.0
            out.append(fn(torch.as_tensor(x, device=device)).cpu())
            if progress is not None:
                progress(len(x))
        return torch.cat(out).double().numpy() if out else np.zeros((0, 0))

    def logits(self, images: ImageSet) -> np.ndarray:
        return self._apply(images, self.model)

    def logits_and_features(self, images: ImageSet) -> tuple[np.ndarray, np.ndarray]:
        """Both from one forward pass."""
        both = self._apply(images, lambda x: _head_and_body(self.model, x))
        k = len(self.class_names)
        return both[:, :k], both[:, k:]

    def features(self, images: ImageSet, progress=None) -> np.ndarray:
        return self._apply(images, self.model.features, progress=progress)

    def save(self, directory: str | Path) -> Path:
        with atomic_path(directory, is_dir=True) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, tmp / "model.safetensors")
            meta = {"format": "ouroboros.Classifier", "config": asdict(self.config),
                    "class_names": list(self.class_names), "image_shape": list(self.image_shape)}
            (tmp / "classifier.json").write_text(json.dumps(meta, indent=2))
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "Classifier":
        directory = Path(directory)
        meta_path = directory / "classifier.json"
        if not meta_path.is_file() or not (directory / "model.safetensors").is_file():
            raise UserError(f"{directory} is not a saved classifier (needs classifier.json and model.safetensors)")
        meta = json.loads(meta_path.read_text())
        config = ClassifierConfig(**meta["config"])
        model = build_classifier(config, meta["image_shape"][0], len(meta["class_names"]))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return cls(model.to(resolve_device(config.device)), config, tuple(meta["class_names"]), meta["image_shape"])
