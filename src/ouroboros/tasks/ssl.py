"""Self-supervised pre-training as a remedy (Hataya et al. Table 11), scaled to small images.

A masked denoising autoencoder: the encoder is the downstream classifier's body (no
labels seen), trained to reconstruct each image from a copy with a random share of
its pixels masked and Gaussian noise added. A linear probe (logistic regression on the
frozen features) then reads the labels; its test accuracy is the score.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from ouroboros.data.imageset import ImageSet
from ouroboros.features.classifier import ClassifierConfig, build_classifier
from ouroboros.generators.base import resolve_device


class DenoisingAutoencoder(nn.Module):
    def __init__(self, config: ClassifierConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = image_shape
        self.encoder = build_classifier(config, c, 2)  # its head is unused
        self.decoder = nn.Sequential(nn.Linear(config.feature_dim, 256), nn.ReLU(), nn.Linear(256, c * h * w))
        self.image_shape = image_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder.features(x)).view(-1, *self.image_shape)


def pretrain_and_probe(train: ImageSet, test: ImageSet, config: ClassifierConfig, seed: int = 0,
                       epochs: int = 20, mask: float = 0.5, noise: float = 0.2) -> dict[str, float]:
    device = resolve_device(config.device)
    torch.manual_seed(seed)
    model = DenoisingAutoencoder(config, train.shape).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x_all = torch.as_tensor(train.to_float(), device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen, device=device)
        for i in range(0, len(order), config.batch_size):
            x = x_all[order[i : i + config.batch_size]]
            if len(x) < 2:
                continue
            keep = (torch.rand(x.shape, generator=gen, device=device) >= mask).float()
            corrupted = x * keep - (1 - keep) + noise * torch.randn(x.shape, generator=gen, device=device)
            loss = nn.functional.mse_loss(model(corrupted), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()

    @torch.no_grad()
    def features(s: ImageSet) -> np.ndarray:
        x = torch.as_tensor(s.to_float(), device=device)
        return torch.cat([model.encoder.features(b) for b in x.split(1024)]).cpu().double().numpy()

    scaler = StandardScaler().fit(features(train))
    probe = LogisticRegression(max_iter=3000).fit(scaler.transform(features(train)), train.labels)
    return {"accuracy": float(probe.score(scaler.transform(features(test)), test.labels)),
            "reconstruction_mse": float(loss.item())}
