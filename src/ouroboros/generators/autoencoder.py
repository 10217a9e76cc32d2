"""A small autoencoder code for the latent family (``encoder: autoencoder``).

An MLP encoder (pixels -> ``hidden`` -> ``components``) and decoder (``components`` ->
``hidden`` -> pixels), trained together to reconstruct the images (binary cross-entropy on
pixel intensities in [0, 1], Adam with a one-cycle learning rate, ``epochs`` passes in
batches of ``BATCH``). Unlike PCA's linear decoder, which blurs a code it cannot represent
exactly, the decoder draws strokes. The code is centred and scaled like PCA's (``whiten``:
each coordinate by its own standard deviation, or all by their root mean square), so the
same diffusion settings learn either code.

Saved by the latent family into its ``model.safetensors`` (the networks' weights and the
code's mean and scales); nothing is pickled.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BATCH = 128  # images per training step


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of `sizes`, SiLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.SiLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class AutoencoderCode:
    """code = (encoder(x) - mean) / scales; x = 2 sigmoid(decoder(code * scales + mean)) - 1."""

    def __init__(self, pixels: int, components: int, hidden: int):
        self.encoder = _mlp([pixels, hidden, components])
        self.decoder = _mlp([components, hidden, pixels])
        self.mean = np.zeros(components, np.float32)
        self.scales = np.ones(components, np.float32)

    @classmethod
    def fit(cls, x: np.ndarray, components: int, whiten: bool, hidden: int, epochs: int,
            seed: int) -> "AutoencoderCode":
        """Train on images `x` (N x ..., floats in [-1, 1]); the same seed gives the same weights."""
        x = torch.as_tensor(x.reshape(len(x), -1), dtype=torch.float32)
        torch.manual_seed(int(seed))
        code = cls(x.shape[1], components, hidden)
        params = [*code.encoder.parameters(), *code.decoder.parameters()]
        steps_per_epoch = -(-len(x) // BATCH)
        opt = torch.optim.Adam(params, lr=2e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(int(seed))
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(steps_per_epoch):
                batch = x[order[i * BATCH : (i + 1) * BATCH]]
                logits = code.decoder(code.encoder(batch))
                loss = nn.functional.binary_cross_entropy_with_logits(logits, (batch + 1) / 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        code.encoder.eval().requires_grad_(False)
        code.decoder.eval().requires_grad_(False)
        raw = code._encode_raw(x)
        code.mean = raw.mean(axis=0)
        spread = np.maximum(raw.std(axis=0), 1e-6)
        code.scales = (spread if whiten else np.full_like(spread, np.sqrt(np.mean(spread**2)))).astype(np.float32)
        return code

    @torch.no_grad()
    def _encode_raw(self, x) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        return self.encoder(x).numpy()

    def encode(self, x: np.ndarray) -> np.ndarray:
        return (self._encode_raw(x) - self.mean) / self.scales

    @torch.no_grad()
    def decode(self, code: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(np.asarray(code, dtype=np.float32) * self.scales + self.mean)
        return (2 * torch.sigmoid(self.decoder(z)) - 1).numpy()

    def state(self) -> dict[str, torch.Tensor]:
        """Everything `from_state` needs besides the sizes (tensors, for safetensors)."""
        state = {f"encoder_net.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update({f"decoder_net.{k}": v for k, v in self.decoder.state_dict().items()})
        state.update(mean=torch.from_numpy(self.mean), scales=torch.from_numpy(self.scales))
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], pixels: int, components: int,
                   hidden: int) -> "AutoencoderCode":
        code = cls(pixels, components, hidden)
        for name, net in (("encoder_net.", code.encoder), ("decoder_net.", code.decoder)):
            net.load_state_dict({k.removeprefix(name): v for k, v in state.items() if k.startswith(name)})
            net.eval().requires_grad_(False)
        code.mean, code.scales = state["mean"].numpy(), state["scales"].numpy()
        return code
