"""Latent diffusion: class-conditional diffusion on a PCA or autoencoder code of the images.

``encoder: pca`` (the default): each image (flattened, in [-1, 1]) becomes its ``components``
coordinates on the training set's principal axes, scaled (``whiten: true``: each by its
standard deviation, unit variance per coordinate like the scaled latents of Stable
Diffusion; ``false``: all by one number, their root mean square, so the code keeps the
pixels' geometry and the denoiser's loss weighs most the leading directions, where the
digits' shapes are). While sampling, the estimate of a code is clipped to the range of
the training codes (as an image's is clipped to [-1, 1]): unclipped, a weak denoiser's
errors compound and the codes diverge. ``encoder: autoencoder``: a small MLP autoencoder
(`ouroboros.generators.autoencoder`; ``encoder_hidden`` units, ``encoder_epochs`` passes),
its code centred and scaled the same way; its decoder draws sharper digits than PCA's
linear one, for a few more CPU seconds a fit. The diffusion model of `ouroboros.generators.diffusion` (an MLP denoiser,
classifier-free guidance with ``guidance`` as its knob, DDPM or DDIM sampling, the same
settings) learns the codes; a sample's code is decoded back through the same axes and
quantised. On 28x28 digits the MLP denoises 64 numbers, not 784 pixels with a U-Net,
and trains in a minute on a CPU (benchmarks/mnist_calibration.py measures the choice).

``encoder_fit`` says which images the encoder is fitted on:

- ``own`` (the default): the model's own training set, so in the feedback loop each
  generation's axes come from its predecessor's samples. Directions the previous
  generation lost are lost for good, as in a pixel-space model.
- ``real``: the real training split (the fit stage's ``reference``), once for all
  generations. A decoder fitted on real digits projects every generation back onto
  the real digits' principal subspace and can hide part of the collapse the loop
  study measures: the loop's results record the choice (an ``encoder_fit`` column) and
  its report flags it.

Saved as ``model.safetensors`` (the denoiser's weights under ``denoiser.``, the encoder's
under ``encoder.``: PCA's mean, axes and scales, or the autoencoder's weights, mean and
scales; the codes' range as ``code_range``) + ``generator.json``; nothing is pickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.errors import UserError, check_int
from ouroboros.generators.autoencoder import AutoencoderCode
from ouroboros.generators.base import GeneratorFamily, read_fitted, register_family, resolve_device, save_fitted
from ouroboros.generators.denoisers import build_denoiser
from ouroboros.generators.diffusion import DiffusionConfig, FittedDiffusion, heldout_loss_of, train_denoiser

FORMAT = "ouroboros.FittedLatentDiffusion"  # the "format" of a saved model's generator.json


@dataclass
class LatentConfig(DiffusionConfig):
    """The diffusion settings (for the denoiser on the codes) plus the encoder's."""

    encoder: Literal["pca", "autoencoder"] = "pca"
    components: int = 64  # length of the code
    encoder_hidden: int = 256  # the autoencoder's hidden units (pca: unused)
    encoder_epochs: int = 30  # the autoencoder's passes over its images (pca: unused)
    encoder_fit: Literal["own", "real"] = "own"  # which images the encoder is fitted on (module docstring)
    whiten: bool = True  # each coordinate divided by its own std; false: all by one (their RMS)
    ema_decay: float = 0.999
    train_steps: int = 6000
    hidden: int = 512
    depth: int = 3
    lr: float = 1e-3
    batch_size: int = 256
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"

    def inert(self) -> tuple[str, ...]:
        """Options without effect here (`ouroboros.graph.settings_params` leaves them out of keys)."""
        return ("encoder", "encoder_hidden", "encoder_epochs") if self.encoder == "pca" else ()

    def validate(self, where: str = "generator") -> None:
        super().validate(where)
        if self.denoiser != "mlp":
            raise UserError(f"{where}.denoiser must be mlp for the latent family (a code has no pixels "
                            f"for a U-Net); got {self.denoiser!r}")
        if self.encoder not in CODES:
            raise UserError(f"{where}.encoder must be one of {', '.join(CODES)}; got {self.encoder!r}")
        if self.encoder_fit not in ("own", "real"):
            raise UserError(f"{where}.encoder_fit must be own (each training set's own images) or real "
                            f"(the real training split); got {self.encoder_fit!r}")
        check_int(f"{where}.components", self.components, 1, 4096)
        check_int(f"{where}.encoder_hidden", self.encoder_hidden, 1, 8192)
        check_int(f"{where}.encoder_epochs", self.encoder_epochs, 1, 10_000)
        if not isinstance(self.whiten, bool):
            raise UserError(f"{where}.whiten must be true or false; got {self.whiten!r}")


@dataclass(frozen=True)
class PCACode:
    """Whitened PCA: code = ((x - mean) @ axes.T) / scales; x = mean + (code * scales) @ axes."""

    mean: np.ndarray  # D
    axes: np.ndarray  # k x D, orthonormal rows
    scales: np.ndarray  # k, each axis's standard deviation

    @classmethod
    def fit(cls, x: np.ndarray, components: int, whiten: bool = True) -> "PCACode":
        x = x.reshape(len(x), -1).astype(np.float64)
        if components > min(x.shape):
            raise UserError(f"the latent family's components ({components}) cannot exceed the number of training "
                            f"images ({len(x)}) or of pixels ({x.shape[1]}); lower components")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        axes = vt[:components]
        # fixed signs (largest |entry| positive), so the code does not depend on the SVD routine
        axes *= np.where(axes[np.arange(components), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
        scales = np.maximum(s[:components] / np.sqrt(max(1, len(x) - 1)), 1e-6)
        if not whiten:  # one scale for all: the code keeps the pixels' geometry
            scales = np.full_like(scales, np.sqrt(np.mean(scales**2)))
        return cls(mean.astype(np.float32), axes.astype(np.float32), scales.astype(np.float32))

    def encode(self, x: np.ndarray) -> np.ndarray:
        return ((x.reshape(len(x), -1) - self.mean) @ self.axes.T) / self.scales

    def decode(self, code: np.ndarray) -> np.ndarray:
        return self.mean + (code * self.scales) @ self.axes

    def state(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], pixels: int, components: int, hidden: int) -> "PCACode":
        return cls(**{f.name: state[f.name].numpy() for f in fields(cls)})


CODES = {"pca": PCACode, "autoencoder": AutoencoderCode}  # LatentConfig.encoder -> its code


def fit_code(config: LatentConfig, images: ImageSet, seed: int) -> PCACode | AutoencoderCode:
    """The encoder `config` asks for, fitted on `images` (the autoencoder with `seed`)."""
    if config.encoder == "autoencoder":
        if config.components > int(np.prod(images.shape)):
            raise UserError(f"the latent family's components ({config.components}) cannot exceed the number of "
                            f"pixel values per image ({int(np.prod(images.shape))}); lower components")
        return AutoencoderCode.fit(images.to_float(), config.components, config.whiten, config.encoder_hidden,
                                   config.encoder_epochs, seed)
    return PCACode.fit(images.to_float(), config.components, config.whiten)


def _same_code(a: PCACode | AutoencoderCode, b: PCACode | AutoencoderCode) -> bool:
    """Whether two fitted codes are the same map (a warm start needs its predecessor's code)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, PCACode):
        return np.array_equal(a.axes, b.axes)
    sa, sb = a.state(), b.state()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class FittedLatent:
    """A PCA code and a diffusion model of the codes; samples images."""

    def __init__(self, config: LatentConfig, diffusion: FittedDiffusion, code: PCACode | AutoencoderCode,
                 image_shape, name: str,
                 info: dict | None = None):
        self.config = config
        self.diffusion = diffusion  # on codes shaped components x 1 x 1, clipped to its .clip
        self.code = code
        self.image_shape = tuple(image_shape)
        self.class_names = diffusion.class_names
        self.generation = diffusion.generation
        self.name = name
        self.info = dict(info or {})

    def sample(self, n: int, labels: np.ndarray | None = None, guidance: float = 0.0, seed: int = 0,
               sampler: str | None = None, sample_steps: int | None = None,
               batch_size: int | None = None) -> ImageSet:
        """n images (balanced over classes unless `labels` is given), quantised to uint8."""
        labels = self.diffusion.check_labels(n, labels, guidance)
        codes = self.diffusion.denoise(labels, guidance, seed, sampler, sample_steps, batch_size)
        x = self.code.decode(codes.reshape(n, -1).numpy())
        return ImageSet.create(quantize(x.reshape(n, *self.image_shape)), labels, self.class_names,
                               source=f"gen:{self.name}", generation=self.generation, seed=int(seed),
                               condition=self.diffusion.conditions(labels, guidance))

    def save(self, directory: str | Path) -> Path:
        state = {f"denoiser.{k}": v.detach().cpu().contiguous() for k, v in self.diffusion.model.state_dict().items()}
        state.update({f"encoder.{k}": v for k, v in self.code.state().items()})
        state["code_range"] = torch.tensor([self.diffusion.clip], dtype=torch.float64)
        return save_fitted(self, directory, FORMAT, lambda path: save_file(state, path))

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> "FittedLatent":
        meta, weights = read_fitted(directory, FORMAT, "latent")
        config = LatentConfig(**meta["config"])
        if device is not None:
            config.device = device
        state = load_file(weights, device="cpu")
        code = CODES[config.encoder].from_state({k.removeprefix("encoder."): v for k, v in state.items()
                                                 if k.startswith("encoder.")},
                                                int(np.prod(meta["image_shape"])), config.components,
                                                config.encoder_hidden)
        model = build_denoiser("mlp", (config.components, 1, 1), config.label_count(len(meta["class_names"])),
                               config.hidden, config.depth)
        model.load_state_dict({k.removeprefix("denoiser."): v for k, v in state.items() if k.startswith("denoiser.")})
        diffusion = FittedDiffusion(config, model.to(resolve_device(config.device)), tuple(meta["class_names"]),
                                    (config.components, 1, 1), meta["generation"], meta["name"],
                                    clip=float(state["code_range"][0]))
        return cls(config, diffusion, code, meta["image_shape"], meta["name"], meta.get("info"))


class LatentGenerator:
    """``LatentGenerator(config).fit(train, seed, reference=None) -> FittedLatent``;
    `reference` (the real training split) is where ``encoder_fit: real`` fits the encoder."""

    def __init__(self, config: LatentConfig | None = None, name: str = "latent"):
        self.config = config or LatentConfig()
        self.config.validate()
        self.name = name

    def fit(self, train: ImageSet, seed: int, reference: ImageSet | None = None, progress=None,
            init: FittedLatent | None = None, steps: int | None = None) -> FittedLatent:
        """`init`, `steps` (loop.init: previous, encoder_fit: real only): the denoiser starts from
        `init`'s weights and trains `steps` steps (diffusion's train_denoiser); the code is the
        one fitted on the real split, which must be `init`'s (`warm_start`)."""
        cfg = self.config
        if len(train) < 1:
            raise UserError("cannot fit a generator on an empty training set")
        if cfg.encoder_fit == "real":
            if reference is None:
                raise UserError("latent generator with encoder_fit: real needs the real training images "
                                "(reference) to fit its encoder on; use encoder_fit: own")
            encoder_images = reference
        else:
            encoder_images = train
        if encoder_images.shape != train.shape:
            raise UserError(f"the encoder's images have shape {encoder_images.shape}, the training set {train.shape}")
        code = fit_code(cfg, encoder_images, seed)
        if init is not None and (cfg.encoder_fit != "real" or not _same_code(init.code, code)):
            raise UserError("a latent model warm-starts only from one with the same code (encoder_fit: real)")
        codes = code.encode(train.to_float()).astype(np.float32)[:, :, None, None]
        ema, loss = train_denoiser(cfg, codes, train.labels, train.num_classes, seed, progress,
                                   None if init is None else init.diffusion.model, steps)
        generation = int(train.generation.max()) + 1
        clip = float(np.abs(codes).max())  # the training codes' range
        diffusion = FittedDiffusion(cfg, ema, train.class_names, codes.shape[1:], generation, self.name, clip=clip)
        info = {"train_hash": train.content_hash(), "seed": int(seed), "final_loss": loss,
                "encoder_hash": encoder_images.content_hash()}
        return FittedLatent(cfg, diffusion, code, train.shape, self.name, info)


def heldout_loss(fitted: FittedLatent, images: ImageSet) -> float:
    """The denoising loss (diffusion's `heldout_loss`, fixed timesteps and noise) of the
    model's code diffusion on the held-out images' codes in the model's own PCA code: with
    encoder_fit own, each generation's code is its own, so the value measures the code and
    the denoiser together."""
    if images.class_names != fitted.class_names or images.shape != fitted.image_shape:
        raise UserError(f"the held-out images ({images.shape}, classes {list(images.class_names)}) do not match the "
                        f"model ({fitted.image_shape}, classes {list(fitted.class_names)})")
    codes = fitted.code.encode(images.to_float()).astype(np.float32)[:, :, None, None]
    return heldout_loss_of(fitted.diffusion, codes, images.labels)


def warm_start(config: LatentConfig) -> str | None:
    """Whether a latent model can start from its predecessor's (loop.init: previous): only
    when every generation shares one code, the one fitted on the real split."""
    if config.encoder_fit != "real":
        return ("with encoder_fit: own each generation refits its PCA code on its own training set, so the "
                "previous denoiser's weights would act on other coordinates (set encoder_fit: real)")
    return None


register_family(GeneratorFamily("latent", LatentConfig, LatentGenerator, FittedLatent.load, FORMAT,
                                bias="guidance", bias_default=0.0, heldout_loss=heldout_loss, warm_start=warm_start,
                                sampling_params={"sampler": "sampler", "sample_steps": "sample_steps",
                                                 "sample_batch_size": "batch_size"}))
