"""Class-conditional diffusion with classifier-free guidance, or unconditional diffusion.

Training is DDPM's (Ho et al. 2020): predict the noise added by diffusers'
``DDPMScheduler.add_noise`` at a uniformly drawn timestep, with the class label
replaced by the null label with probability ``label_dropout`` so one network learns
both the conditional and the unconditional model (Ho & Salimans 2022).

Sampling uses diffusers' ``DDPMScheduler`` (ancestral) or ``DDIMScheduler``
(deterministic, eta = 0), with guidance in the feedback-loop study's convention::

    eps = (1 + w) * eps_cond - w * eps_uncond,   w >= 0

so w = 0 is plain conditional sampling. (diffusers pipelines call ``1 + w`` the
``guidance_scale``.) A w so small that ``1 + w == 1`` in float32 (w < 6e-8, such as
the feedback-loop paper's 1e-10, its "no guidance") samples as w = 0: the guided noise
would differ from the conditional one by less than float32 rounding, so the
unconditional pass is skipped. Sampling uses the exponential moving average of the weights.

With ``conditional: false`` the model is unconditional (the feedback-loop paper's
second experiment): it trains and samples with every label set to the null label, so
it learns p(x) alone and takes no guidance. Its samples keep the training set's class
names so they mix with real data and later generations, but their labels carry no
information: they are the balanced cycle 0, 1, ..., K-1, and their condition is
``unconditional``.

``precision: bf16`` runs the denoiser under bfloat16 autocast and ``compile: true`` wraps
it in ``torch.compile``, in training and in sampling: speed on GPUs, at the cost of
float32-exact results (both are off by default and part of the cache key).

A fitted model saves as ``model.safetensors`` + ``generator.json``; nothing is pickled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.errors import UserError, check_float, check_int, check_text
from ouroboros.generators.base import (
    GeneratorFamily, balanced_labels, read_fitted, register_family, resolve_device, save_fitted,
)
from ouroboros.generators.denoisers import build_denoiser


FORMAT = "ouroboros.FittedDiffusion"  # the "format" of a saved model's generator.json


@dataclass
class DiffusionConfig:
    """Everything that defines a diffusion generator's training and sampling."""

    denoiser: Literal["mlp", "unet"] = "mlp"
    hidden: int = 128  # MLP width, or U-Net base channels
    depth: int = 2  # MLP residual blocks, or U-Net resolution levels
    train_steps: int = 500  # the demo's: 45 fits (5 seeds x (1 + 2 x 4)); 300 steps draw worse digits
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    label_dropout: float = 0.1
    ema_decay: float = 0.995
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    sample_steps: int = 25  # as good as 50 on 8x8 digits (recognised 96% at w = 1 both), half the time
    sample_batch_size: int = 2048
    device: str = "auto"
    conditional: bool = True  # false: unconditional (no labels, no guidance)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the denoiser runs under bfloat16 autocast
    compile: bool = False  # torch.compile the denoiser (pays a one-off compile per fit and per sampling)

    def validate(self, where: str = "generator") -> None:
        """Every field in range, so a bad value fails here and not inside a worker.

        The upper bounds only stop absurd sizes (a hang or an out-of-memory crash)."""
        for name, options in (("denoiser", ("mlp", "unet")), ("sampler", ("ddpm", "ddim")),
                              ("beta_schedule", ("linear", "scaled_linear", "squaredcos_cap_v2"))):
            if getattr(self, name) not in options:
                raise UserError(f"{where}.{name} must be one of {', '.join(options)}; got {getattr(self, name)!r}")
        if self.denoiser == "mlp":
            check_int(f"{where}.hidden", self.hidden, 2, 4096)
            if self.hidden % 2:  # the sinusoidal timestep embedding has hidden // 2 cos + sin pairs
                raise UserError(f"{where}.hidden must be even for the mlp denoiser; got {self.hidden}")
            check_int(f"{where}.depth", self.depth, 1, 32)
        else:
            check_int(f"{where}.hidden", self.hidden, 8, 512)
            # GroupNorm uses min(32, hidden) groups over hidden, 2 hidden and 4 hidden channels;
            # attention heads have 8 channels.
            if self.hidden % 8 or (self.hidden > 32 and self.hidden % 32):
                raise UserError(f"{where}.hidden (U-Net base channels) must be a multiple of 8, and of 32 "
                                f"above 32 (GroupNorm groups); got {self.hidden}")
            check_int(f"{where}.depth", self.depth, 1, 5)
        check_int(f"{where}.train_steps", self.train_steps, 1, 10**7)
        check_int(f"{where}.batch_size", self.batch_size, 1, 65536)
        check_float(f"{where}.lr", self.lr, 0.0, 1.0, lo_open=True)
        check_float(f"{where}.weight_decay", self.weight_decay, 0.0, 1.0)
        check_int(f"{where}.warmup_steps", self.warmup_steps, 0, 10**7)
        check_int(f"{where}.num_train_timesteps", self.num_train_timesteps, 2, 10_000)
        check_float(f"{where}.label_dropout", self.label_dropout, 0.0, 1.0, hi_open=True)
        check_float(f"{where}.ema_decay", self.ema_decay, 0.0, 1.0, hi_open=True)
        check_int(f"{where}.sample_steps", self.sample_steps, 1, 10_000)
        if self.sample_steps > self.num_train_timesteps:
            raise UserError(f"{where}.sample_steps ({self.sample_steps}) cannot exceed "
                            f"{where}.num_train_timesteps ({self.num_train_timesteps})")
        check_int(f"{where}.sample_batch_size", self.sample_batch_size, 1, 65536)
        check_text(f"{where}.device", self.device, 64)  # resolved by ouroboros.preflight before a run
        for name in ("conditional", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{where}.{name} must be true or false; got {getattr(self, name)!r}")
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"{where}.precision must be fp32 or bf16; got {self.precision!r}")

    def label_count(self, num_classes: int) -> int:
        """Class labels the denoiser embeds besides the null label: none when unconditional."""
        return num_classes if self.conditional else 0


def _scheduler(config: DiffusionConfig, kind: str | None = None, clip: float = 1.0):
    """diffusers' scheduler; its estimate of x0 clipped to [-clip, clip] (images: 1; latent
    codes: the range of the codes the model was trained on)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    kind = kind or config.sampler
    common = dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        clip_sample=True,
        clip_sample_range=float(clip),
        prediction_type="epsilon",
    )
    if kind == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", **common)
    if kind == "ddim":
        return DDIMScheduler(set_alpha_to_one=True, **common)
    raise UserError(f"unknown sampler {kind!r}; use ddpm or ddim")


def _autocast(config: DiffusionConfig, device: torch.device):
    """bfloat16 autocast for the denoiser when `precision: bf16` (weights, optimiser state,
    noise schedule and sampler arithmetic stay float32; bf16 needs no loss scaling)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def _compiled(config: DiffusionConfig, model: torch.nn.Module):
    """`model` itself, or a torch.compile'd view of it that shares its parameters."""
    return torch.compile(model, dynamic=False) if config.compile else model


def check_guidance(guidance: float) -> float:
    guidance = float(guidance)
    if not np.isfinite(guidance) or guidance < 0:
        raise UserError("guidance must be a finite number >= 0 (eps = (1 + w) eps_cond - w eps_uncond); "
                        f"got {guidance}")
    return guidance


def is_unguided(guidance: float) -> bool:
    """True when w is 0 or too small to change float32 noise (1 + w == 1 in float32)."""
    return float(np.float32(1.0) + np.float32(guidance)) == 1.0


class FittedDiffusion:
    """A trained denoiser (EMA weights) that samples class-conditional (or unconditional) images."""

    def __init__(
        self,
        config: DiffusionConfig,
        model: torch.nn.Module,
        class_names: tuple[str, ...],
        image_shape: tuple[int, int, int],
        generation: int,
        name: str = "diffusion",
        info: dict | None = None,
        clip: float = 1.0,
    ):
        self.config = config
        self.clip = clip  # x0 estimates clipped to [-clip, clip] while sampling (images: 1)
        self.model = model.eval()
        self._net = _compiled(config, self.model)  # what sampling calls; saving uses self.model
        self.class_names = tuple(class_names)
        self.image_shape = tuple(image_shape)
        self.generation = generation  # provenance generation of the images it makes
        self.name = name
        self.info = dict(info or {})

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance: float) -> torch.Tensor:
        """Guided noise prediction: (1 + w) * eps_cond - w * eps_uncond (the null label's
        prediction alone when unconditional)."""
        tt = t.expand(x.shape[0]) if t.ndim == 0 else t
        null = torch.full_like(labels, self.config.label_count(len(self.class_names)))
        with _autocast(self.config, x.device):
            if not self.config.conditional:
                return self._net(x, tt, null).float()
            if is_unguided(guidance):
                return self._net(x, tt, labels).float()
            both = self._net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, null])).float()
        eps_cond, eps_uncond = both.chunk(2)
        return (1.0 + guidance) * eps_cond - guidance * eps_uncond

    def sample(
        self,
        n: int,
        labels: np.ndarray | None = None,
        guidance: float = 0.0,
        seed: int = 0,
        sampler: str | None = None,
        sample_steps: int | None = None,
        batch_size: int | None = None,
    ) -> ImageSet:
        """Draw n images (balanced over classes unless `labels` is given), quantised to uint8.
        An unconditional model takes guidance 0 only, and `labels` only as the samples' labels."""
        labels = self.check_labels(n, labels, guidance)
        images = quantize(self.denoise(labels, guidance, seed, sampler, sample_steps, batch_size))
        return ImageSet.create(
            images, labels, self.class_names, source=f"gen:{self.name}", generation=self.generation,
            seed=int(seed), condition=self.conditions(labels, guidance),
        )

    def check_labels(self, n: int, labels: np.ndarray | None, guidance: float) -> np.ndarray:
        """The n labels to sample (balanced unless given), after checking them and the guidance."""
        guidance = check_guidance(guidance)
        if not self.config.conditional and guidance != 0.0:
            raise UserError("an unconditional diffusion model (conditional: false) takes no guidance; "
                            f"got {guidance:g}: use guidance 0")
        labels = balanced_labels(n, len(self.class_names)) if labels is None else np.asarray(labels, dtype=np.int64)
        if len(labels) != n:
            raise UserError(f"got {len(labels)} labels for {n} samples")
        if n and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise UserError(f"labels must lie in [0, {len(self.class_names) - 1}]")
        return labels

    def conditions(self, labels: np.ndarray, guidance: float) -> list[str]:
        """The provenance condition of each sample."""
        return ([f"class={self.class_names[c]};guidance={guidance:g}" for c in labels]
                if self.config.conditional else ["unconditional"] * len(labels))

    @torch.no_grad()
    def denoise(self, labels: np.ndarray, guidance: float, seed: int = 0, sampler: str | None = None,
                sample_steps: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        """One float sample per label (len(labels) x image shape), before quantisation."""
        guidance = check_guidance(guidance)
        scheduler = _scheduler(self.config, sampler, clip=self.clip)
        scheduler.set_timesteps(sample_steps or self.config.sample_steps)
        device = self.device
        gen = torch.Generator(device=device).manual_seed(int(seed))
        out = []
        bs = batch_size or self.config.sample_batch_size
        # DDIM clips its estimate of x0 (to [-1, 1] for images); it must then step with the noise that
        # estimate implies, not the raw guided prediction, or strong guidance (whose eps
        # leaves the data range) pushes samples across to the other side of the data.
        step_options = {"use_clipped_model_output": True} if (sampler or self.config.sampler) == "ddim" else {}
        for start in range(0, len(labels), bs):
            y = torch.as_tensor(labels[start : start + bs], device=device)
            x = torch.randn((len(y), *self.image_shape), generator=gen, device=device)
            for t in scheduler.timesteps:
                eps = self.eps(x, t.to(device), y, guidance)
                x = scheduler.step(eps, t, x, generator=gen, **step_options).prev_sample
            out.append(x.float().cpu())
        return torch.cat(out) if out else torch.zeros((0, *self.image_shape))

    # -- persistence --------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        return save_fitted(self, directory, FORMAT, lambda path: save_file(state, path))

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> "FittedDiffusion":
        meta, weights = read_fitted(directory, FORMAT, "diffusion")
        config = DiffusionConfig(**meta["config"])
        if device is not None:
            config.device = device
        dev = resolve_device(config.device)
        model = build_denoiser(config.denoiser, meta["image_shape"], config.label_count(len(meta["class_names"])),
                               config.hidden, config.depth)
        model.load_state_dict(load_file(weights, device="cpu"))
        return cls(config, model.to(dev), tuple(meta["class_names"]), tuple(meta["image_shape"]),
                   meta["generation"], meta["name"], meta.get("info"))


class DiffusionGenerator:
    """``DiffusionGenerator(config).fit(train, seed) -> FittedDiffusion``."""

    def __init__(self, config: DiffusionConfig | None = None, name: str = "diffusion"):
        self.config = config or DiffusionConfig()
        self.config.validate()
        self.name = name

    def fit(self, train: ImageSet, seed: int, progress: Callable[[int, float], None] | None = None,
            init: FittedDiffusion | None = None, steps: int | None = None) -> FittedDiffusion:
        """`init`, `steps`: a warm start from that model's weights (loop.init: previous; train_denoiser)."""
        if len(train) < 1:
            raise UserError("cannot fit a generator on an empty training set")
        ema, loss = train_denoiser(self.config, train.to_float(), train.labels, train.num_classes, seed, progress,
                                   None if init is None else init.model, steps)
        generation = int(train.generation.max()) + 1
        info = {"train_hash": train.content_hash(), "seed": int(seed), "final_loss": loss}
        return FittedDiffusion(self.config, ema, train.class_names, train.shape, generation, self.name, info)


def train_denoiser(cfg: DiffusionConfig, data: np.ndarray, labels: np.ndarray, num_classes: int, seed: int,
                   progress: Callable[[int, float], None] | None = None, init: torch.nn.Module | None = None,
                   steps: int | None = None) -> tuple[torch.nn.Module, float]:
    """DDPM training of `cfg`'s denoiser on `data` (N x C x H x W floats: images in [-1, 1], or latent
    codes) with labels in [0, num_classes): (EMA model, final loss). Warm-started: network and EMA start
    from `init`'s weights (fresh optimiser and warm-up) for `steps` steps (None: cfg.train_steps; 0: `init`)."""
    device = resolve_device(cfg.device)
    torch.manual_seed(int(seed))  # parameter initialisation
    labels_embedded = cfg.label_count(num_classes)
    model = build_denoiser(cfg.denoiser, data.shape[1:], labels_embedded, cfg.hidden, cfg.depth).to(device)
    if init is not None:
        model.load_state_dict(init.state_dict())
    ema = copy.deepcopy(model).requires_grad_(False)
    net = _compiled(cfg, model)
    opt = _adamw(model.parameters(), cfg.lr, cfg.weight_decay, device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    noise_scheduler = _scheduler(cfg, "ddpm")

    data = torch.as_tensor(data, device=device)
    null = labels_embedded  # the null label; the only one an unconditional model sees
    labels = torch.as_tensor(labels if cfg.conditional else np.full(len(data), null), device=device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    loss = torch.tensor(float("nan"))  # no step, no loss
    for step in range(cfg.train_steps if steps is None else steps):
        idx = torch.randint(len(data), (cfg.batch_size,), generator=gen, device=device)
        x0, y = data[idx], labels[idx]
        drop = torch.rand(cfg.batch_size, generator=gen, device=device) < cfg.label_dropout
        y = torch.where(drop, torch.full_like(y, null), y)
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(cfg.num_train_timesteps, (cfg.batch_size,), generator=gen, device=device)
        xt = noise_scheduler.add_noise(x0, noise, t)
        with _autocast(cfg, device):
            predicted = net(xt, t, y)
        loss = torch.nn.functional.mse_loss(predicted.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            # EMA with a warm-up so early weights do not dominate short runs.
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, model_params, 1.0 - decay)
        if progress is not None and (step + 1) % 100 == 0:
            progress(step + 1, loss.item())
    return ema, float(loss.item())


# The held-out denoising loss (the feedback loop's test_loss): averaged over HELDOUT_TIMESTEPS
# timesteps spread evenly over [0, T), with noise drawn once per image and timestep from a
# CPU generator seeded HELDOUT_SEED in batches of HELDOUT_BATCH images; constants, so every
# model scored on the same images meets the same noisy inputs.
HELDOUT_TIMESTEPS = 20
HELDOUT_SEED = 0
HELDOUT_BATCH = 256


@torch.no_grad()
def heldout_loss(fitted: FittedDiffusion, images: ImageSet) -> float:
    """DDPM's training objective on images the model did not train on: the mean squared
    error between the noise added by the forward process and the noise the model (its EMA
    weights) predicts, per pixel value, averaged over the images and over the timesteps
    t_j = floor((j + 1/2) T / HELDOUT_TIMESTEPS), j = 0 .. HELDOUT_TIMESTEPS - 1 (T =
    num_train_timesteps; uniform t, as in training). Each image is given its own label
    (the null label when the model is unconditional), without label dropout: the
    conditional model the loop samples from. Deterministic: the noise is fixed (see
    HELDOUT_SEED), so the same model and images give the same value."""
    if images.class_names != fitted.class_names or images.shape != fitted.image_shape:
        raise UserError(f"the held-out images ({images.shape}, classes {list(images.class_names)}) do not match the "
                        f"model ({fitted.image_shape}, classes {list(fitted.class_names)})")
    return heldout_loss_of(fitted, images.to_float(), images.labels)


@torch.no_grad()
def heldout_loss_of(fitted: FittedDiffusion, x: np.ndarray, labels: np.ndarray) -> float:
    """`heldout_loss` on arrays: `x` (float, the model's sample shape) with their labels."""
    cfg, device = fitted.config, fitted.device
    scheduler = _scheduler(cfg, "ddpm")
    steps = [int((j + 0.5) * cfg.num_train_timesteps / HELDOUT_TIMESTEPS) for j in range(HELDOUT_TIMESTEPS)]
    null = cfg.label_count(len(fitted.class_names))
    gen = torch.Generator().manual_seed(HELDOUT_SEED)
    data = torch.as_tensor(np.asarray(x, dtype=np.float32))
    labels = torch.as_tensor(labels if cfg.conditional else np.full(len(x), null))
    total = 0.0
    for start in range(0, len(x), HELDOUT_BATCH):
        x0, y = data[start: start + HELDOUT_BATCH].to(device), labels[start: start + HELDOUT_BATCH].to(device)
        for t in steps:
            noise = torch.randn(x0.shape, generator=gen).to(device)
            tt = torch.full((len(x0),), t, dtype=torch.long, device=device)
            with _autocast(cfg, device):
                predicted = fitted._net(scheduler.add_noise(x0, noise, tt), tt, y)
            total += float(((predicted.float() - noise) ** 2).sum(dtype=torch.float64))
    return total / (len(x) * len(steps) * int(np.prod(fitted.image_shape)))


def _adamw(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused where torch supports it: it halves the step time of small CPU models."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


register_family(GeneratorFamily("diffusion", DiffusionConfig, DiffusionGenerator, FittedDiffusion.load, FORMAT,
                                bias="guidance", bias_default=0.0, heldout_loss=heldout_loss, warm_start=lambda _: None,
                                sampling_params={"sampler": "sampler", "sample_steps": "sample_steps",
                                                 "sample_batch_size": "batch_size"}))
