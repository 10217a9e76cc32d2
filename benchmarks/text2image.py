"""`ouroboros generate text2image` against calling the same diffusers pipeline directly.

Both make the same images (same prompts, same per-image seeds, one CPU generator per
image) and write them as PNG files; images per second are compared.

- Default (CPU): the tiny random pipeline (``build_tiny_pipeline``), fp32, the same
  batch size on both sides. What differs is ouroboros' bookkeeping: per-image
  verification, PNG text chunks, atomic writes flushed to disk, the manifest.
  Target: the bookkeeping costs under 10% (ratio >= 0.90). The images must be equal.
- ``--real-size`` (CUDA): Stable Diffusion 1.5's configuration with random weights.
  The direct call is the pipeline as ``from_pretrained`` gives it (fp32) at
  ``--batch-size``; ouroboros runs with its defaults on CUDA: fp16, SDPA attention and
  its own batch size (64, halved on out-of-memory). Target: >= 1.3x. Its images are
  compared with a reference run of the direct call at the same settings (fp16, same
  seeds, same batch size as ouroboros chose).

Usage: PYTHONPATH=src python benchmarks/text2image.py [--n 48] [--steps 10] [--size 32] [--batch-size 8]
       PYTHONPATH=src python benchmarks/text2image.py --real-size --n 128 --steps 20 --size 512 --batch-size 8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def direct(model: Path, items, args, out: Path, dtype, batch_size: int) -> tuple[float, dict]:
    """The plain diffusers way: from_pretrained, call per batch, save each image."""
    from diffusers import StableDiffusionPipeline

    with warnings.catch_warnings():  # newer diffusers call it `dtype`
        warnings.simplefilter("ignore", FutureWarning)
        pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, use_safetensors=True)
    pipe = pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True)
    sync()
    start = time.perf_counter()
    images = {}
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        result = pipe([it.prompt for it in chunk], num_inference_steps=args.steps, height=args.size, width=args.size,
                      generator=[torch.Generator("cpu").manual_seed(it.seed) for it in chunk])
        for it, im in zip(chunk, result.images):
            (out / it.group).mkdir(exist_ok=True)
            im.save(out / it.file)
            images[it.file] = np.asarray(im)
    sync()
    seconds = time.perf_counter() - start
    del pipe
    return seconds, images


def ours(model: Path, items, args, out: Path, dtype: str, batch_size: int) -> tuple[float, dict]:
    from PIL import Image

    from ouroboros.generators.text2image import (
        Settings,
        generate_shard,
        load_pipeline,
    )
    from ouroboros.generators.text2image_run import write_manifest

    settings = Settings(str(model), steps=args.steps, size=args.size, dtype=dtype)
    pipe = load_pipeline(settings, args.device, dtype)
    sync()
    start = time.perf_counter()
    generate_shard(items, settings, out, args.device, batch_size, pipe=pipe)
    write_manifest(out, items, settings, dtype, type(pipe.scheduler).__name__)
    sync()
    seconds = time.perf_counter() - start
    del pipe
    return seconds, {it.file: np.asarray(Image.open(out / it.file)) for it in items}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def compare(a: dict, b: dict) -> str:
    diff = np.stack([np.abs(a[f].astype(int) - b[f].astype(int)) for f in a])
    return f"max |diff| {diff.max()}, pixels differing {(diff > 0).mean():.2%}, mean {diff.mean():.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="images")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="the direct call's batch size (and ours on CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings (CPU)")
    parser.add_argument("--real-size", action="store_true", help="SD 1.5-sized random pipeline on CUDA")
    args = parser.parse_args()
    args.device = "cuda" if args.real_size else "cpu"
    if args.real_size and not torch.cuda.is_available():
        print("--real-size needs a CUDA device")
        return 1
    from ouroboros.generators.prompts import Group, work_list
    from ouroboros.generators.text2image import MAX_AUTO_BATCH
    from ouroboros.generators.tiny_pipeline import build_tiny_pipeline

    groups = [Group(f"c{k}", (f"class {k}", f"synonym {k}")) for k in range(8)]
    items = work_list(groups, "complex", -(-args.n // len(groups)), seed=0)[:args.n]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        model = build_tiny_pipeline(tmp / "model", real_size=args.real_size)
        print(f"pipeline built in {time.perf_counter() - t0:.1f}s ({'SD 1.5 sizes' if args.real_size else 'tiny'}, "
              f"random weights); {args.n} images, {args.steps} steps, {args.size} px, device {args.device}")
        rows = []
        if not args.real_size:
            best = {"direct": (float("inf"), None), "ouroboros": (float("inf"), None)}
            for r in range(args.repeats):  # interleaved, so that load on the machine hits both alike
                for name, fn, dtype in (("direct", direct, torch.float32), ("ouroboros", ours, "fp32")):
                    out = tmp / f"{name}{r}"
                    seconds, images = fn(model, items, args, out, dtype, args.batch_size)
                    best[name] = min(best[name], (seconds, images), key=lambda x: x[0])
                    shutil.rmtree(out)
            (td, direct_images), (to, our_images) = best["direct"], best["ouroboros"]
            rows = [("direct diffusers call, fp32", args.batch_size, td), ("ouroboros, fp32", args.batch_size, to)]
            match = compare(direct_images, our_images)
            target, ratio = "bookkeeping under 10%: ratio >= 0.90", td / to
        else:
            td, direct_images = direct(model, items, args, tmp / "direct", torch.float32, args.batch_size)
            batch = min(MAX_AUTO_BATCH, len(items))
            to, our_images = ours(model, items, args, tmp / "ours", "fp16", 0)
            _, ref = direct(model, items, args, tmp / "reference", torch.float16, batch)
            rows = [("direct diffusers call, fp32 (as loaded)", args.batch_size, td),
                    ("ouroboros, fp16 + SDPA + batch sizing", f"auto ({batch} tried first)", to)]
            match = f"vs reference (direct fp16, batch {batch}): {compare(ref, our_images)}; " \
                    f"vs direct fp32: {compare(direct_images, our_images)}"
            target, ratio = "ratio >= 1.3", td / to
    print("\n| run | batch | seconds | images/s |\n|---|---|---|---|")
    for name, batch, seconds in rows:
        print(f"| {name} | {batch} | {seconds:.2f} | {args.n / seconds:.2f} |")
    print(f"\nratio (ouroboros images/s / direct images/s): {ratio:.3f}  (target: {target})")
    print(f"images: {match}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
