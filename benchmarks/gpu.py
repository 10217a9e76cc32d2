"""GPU throughput of the feedback loop's U-Nets, printing a table.

Usage (on a machine with CUDA):  PYTHONPATH=src python benchmarks/gpu.py [--full]

Measures, with the generator settings of the shipped configs:
- training images per second (``DiffusionGenerator.fit``) and sampling images per second
  (``FittedDiffusion.sample``, the config's sampler and steps) of the MNIST U-Net
  (configs/loop-mnist-unet.yaml, 1 x 28 x 28, guidance 1) and of the 64 x 64 U-Net
  (configs/loop-flowers.yaml, unconditional, 3 x 64 x 64 random images);
  Each model runs three ways: the config as shipped in float32 (the reference), with
  ``precision: bf16`` (bfloat16 autocast), and bf16 with ``compile: true``
  (torch.compile); the ratio columns are against the float32 reference of the same run.
- with ``--full`` (``--full-only``: nothing else): the wall time of one whole generation at the paper's MNIST scale:
  fit on 60,000 images (the 5,000 embedded mnist5k digits repeated 12 times) for
  ``--full-epochs`` epochs (default 20), then sample 60,000 images at guidance 1, with
  ``--full-precision`` (default bf16) and torch.compile unless ``--no-compile``. Nine
  such generations are one chain of the paper's Fig. 2.

Times include the device synchronisation; a short untimed warm-up precedes each
measurement. ``--device cpu`` with tiny settings checks that the script runs:
python benchmarks/gpu.py --device cpu --variants fp32 --train-steps 1 --sample 2 \
    --full --full-images 100 --full-epochs 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def _random_set(n: int, shape: tuple[int, int, int], classes: int):
    from ouroboros.data.imageset import ImageSet

    rng = np.random.default_rng(0)
    return ImageSet.create(rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % classes,
                           [str(c) for c in range(classes)], source="real:random")


VARIANTS = {"fp32": {}, "bf16": {"precision": "bf16"}, "bf16+compile": {"precision": "bf16", "compile": True}}


def throughput(name: str, gen_config, train, guidance: float, steps: int, n_sample: int, device,
               variant: str = "fp32") -> dict:
    """Training and sampling images per second of one generator config on `train`."""
    from ouroboros.generators.diffusion import DiffusionGenerator

    cfg = dataclasses.replace(gen_config, device=str(device), train_steps=steps, **VARIANTS[variant])
    DiffusionGenerator(dataclasses.replace(cfg, train_steps=2)).fit(train, seed=0)  # warm-up (kernels, allocator)
    fitted, fit_s = _timed(device, lambda: DiffusionGenerator(cfg).fit(train, seed=0))
    fitted.sample(min(n_sample, cfg.sample_batch_size), guidance=guidance, seed=0)  # warm-up
    _, sample_s = _timed(device, lambda: fitted.sample(n_sample, guidance=guidance, seed=1))
    params = sum(p.numel() for p in fitted.model.parameters())
    return {"model": name, "variant": variant, "params (M)": f"{params / 1e6:.2f}",
            "shape": "x".join(map(str, train.shape)), "train img/s": steps * cfg.batch_size / fit_s,
            "sample img/s": n_sample / sample_s, "sampler": f"{cfg.sampler} {cfg.sample_steps} steps",
            "guidance": f"{guidance:g}"}


def with_ratios(rows: list[dict]) -> list[dict]:
    """Format the rates and add each one's ratio to the fp32 row of the same model."""
    ref = {r["model"]: r for r in rows if r["variant"] == "fp32"}
    out = []
    for r in rows:
        base = ref[r["model"]]
        out.append({**r, "train img/s": f"{r['train img/s']:,.0f}",
                    "train x": f"{r['train img/s'] / base['train img/s']:.2f}",
                    "sample img/s": f"{r['sample img/s']:,.1f}",
                    "sample x": f"{r['sample img/s'] / base['sample img/s']:.2f}"})
    return out


def full_generation(gen_config, images: int, epochs: float, device) -> dict:
    """Wall time of fitting on `images` MNIST digits (mnist5k repeated) for `epochs` and
    sampling as many."""
    from ouroboros.data.imageset import ImageSet
    from ouroboros.data.loaders import load_dataset
    from ouroboros.generators.diffusion import DiffusionGenerator

    digits = load_dataset("mnist5k")
    train = ImageSet.concat([digits] * math.ceil(images / len(digits))).subset(np.arange(images))
    steps = max(1, round(epochs * images / gen_config.batch_size))
    cfg = dataclasses.replace(gen_config, device=str(device), train_steps=steps)
    fitted, fit_s = _timed(device, lambda: DiffusionGenerator(cfg).fit(train, seed=0))
    print(f"full generation: fit {fit_s:.1f} s ({steps:,} steps of {cfg.batch_size}); sampling {images:,}", flush=True)
    _, sample_s = _timed(device, lambda: fitted.sample(images, guidance=1.0, seed=1))
    return {"images": f"{images:,}", "train steps": f"{steps:,} ({epochs:.1f} epochs)", "fit s": f"{fit_s:.1f}",
            "precision": cfg.precision, "compile": cfg.compile, "sample s": f"{sample_s:.1f}",
            "generation s": f"{fit_s + sample_s:.1f}",
            "9 generations (min)": f"{9 * (fit_s + sample_s) / 60:.1f}"}


def _table(rows: list[dict]) -> None:
    header = list(rows[0])
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(header, widths)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke check")
    parser.add_argument("--train-steps", type=int, default=200, help="timed training steps per model (default 200)")
    parser.add_argument("--sample", type=int, default=4096, help="images sampled per model (default 4096)")
    parser.add_argument("--full", action="store_true", help="also time one full generation at 60,000 images")
    parser.add_argument("--full-only", action="store_true", help="time the full generation alone (implies --full)")
    parser.add_argument("--full-images", type=int, default=60_000, help="images of the full generation")
    parser.add_argument("--full-epochs", type=float, default=20.0, help="training epochs of the full generation")
    parser.add_argument("--full-precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--no-compile", action="store_true", help="full generation without torch.compile")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here; benchmarks/gpu.py measures GPU throughput (use --device cpu with tiny "
              "settings only to check that it runs)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO / "src"))
    from ouroboros.config import load_config

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    mnist = load_config(REPO / "configs" / "loop-mnist.yaml").generator
    flowers = load_config(REPO / "configs" / "loop-flowers.yaml").generator
    from ouroboros.data.loaders import load_dataset

    variants = args.variants.split(",")
    if "fp32" not in variants or not set(variants) <= set(VARIANTS):
        print(f"error: --variants must include fp32 (the reference) and only {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    if not args.full_only:
        digits, colour = load_dataset("mnist5k"), _random_set(2048, (3, 64, 64), 102)
        rows = []
        for variant in variants:
            rows.append(throughput("MNIST U-Net (loop-mnist-unet)", mnist, digits, 1.0, args.train_steps, args.sample,
                                   device, variant))
            rows.append(throughput("64x64 U-Net (loop-flowers)", flowers, colour, 0.0, args.train_steps, args.sample,
                                   device, variant))
            print(f"\nmeasured {variant}; the table so far:", flush=True)
            _table(with_ratios(rows))  # a run stopped by a time limit keeps what it measured
    if args.full or args.full_only:
        print()
        full = dataclasses.replace(mnist, precision=args.full_precision, compile=not args.no_compile)
        _table([full_generation(full, args.full_images, args.full_epochs, device)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
