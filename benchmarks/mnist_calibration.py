"""Which generator draws real 28x28 MNIST digits fast enough for the feedback loop on a CPU.

Fits each candidate generator on mnist5k's training split (class-conditional, with
classifier-free guidance; the loop config's split: 70% train, 30% test, split seed 0)
and prints, per candidate: CPU seconds per fit and per 1,000 samples, and at guidance 1
and 0 the share of samples the real-data classifier recognises (its label is the one
asked for) and FID against the real test split in the classifier's features (as the
loop's evaluate stage computes it). The classifier is the loop-mnist config's; its
accuracy on the real test split heads the table.

Usage: python benchmarks/mnist_calibration.py [--candidates latent,mlp,unet] [--samples 1000]
       [--train-steps N] [--fit-images N] [--classifier-epochs N] [--threads 2] [--classifier-cache DIR]
(--train-steps, --fit-images and --classifier-epochs shorten everything, for smoke tests.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ouroboros.config import load_config  # noqa: E402
from ouroboros.data.imageset import stratified_split  # noqa: E402
from ouroboros.data.loaders import load_mnist5k  # noqa: E402
from ouroboros.features.classifier import Classifier  # noqa: E402
from ouroboros.generators import get_family  # noqa: E402
from ouroboros.metrics import fid  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# name -> (family, settings, what it is). Budgets: about what the loop's 75 fits can afford
# on 2 cores (the U-Net's is far below what it needs: README "Real MNIST").
CANDIDATES = {
    "latent": ("latent", None,  # None: configs/loop-mnist.yaml's settings
               "MLP 128 x 2 on a 64-number PCA code, 1,500 steps x 128 (loop-mnist)"),
    "mlp": ("diffusion", {"denoiser": "mlp", "hidden": 256, "depth": 2, "train_steps": 1500, "batch_size": 128,
                          "lr": 2e-3, "beta_schedule": "linear", "ema_decay": 0.995, "sampler": "ddpm",
                          "sample_steps": 50},
            "MLP 256 x 2 on the 784 pixels, 1,500 steps x 128"),
    "unet": ("diffusion", {"denoiser": "unet", "hidden": 8, "depth": 2, "train_steps": 400, "batch_size": 64,
                           "lr": 2e-3, "beta_schedule": "linear", "ema_decay": 0.995, "sampler": "ddpm",
                           "sample_steps": 50},
             "U-Net 8/16 channels, 400 steps x 64"),
}


def cpu_seconds(fn):
    """(result, CPU seconds of this process, all threads) of fn()."""
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated, of: " + ", ".join(CANDIDATES))
    parser.add_argument("--samples", type=int, default=1000, help="samples per candidate and guidance (default 1000)")
    parser.add_argument("--train-steps", type=int, help="override every candidate's training steps")
    parser.add_argument("--fit-images", type=int, help="fit on the first N training images only")
    parser.add_argument("--classifier-epochs", type=int, help="override the classifier's epochs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier-cache", help="a folder: load the classifier from it, or train and save it there")
    args = parser.parse_args()
    names = [c for c in args.candidates.split(",") if c]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown or not names:
        print(f"error: unknown candidate(s) {unknown}; use some of {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)

    config = load_config(REPO / "configs" / "loop-mnist.yaml")
    parts = stratified_split(load_mnist5k(), {"train": 0.7, "test": 0.3}, seed=config.data.split_seed)
    train, test = parts["train"], parts["test"]
    if args.fit_images:
        train = train.subset(np.arange(min(args.fit_images, len(train))))
    clf_config = config.classifier
    clf_config.device = "cpu"
    if args.classifier_epochs:
        clf_config.epochs = args.classifier_epochs
    cache = Path(args.classifier_cache) if args.classifier_cache else None
    if cache is not None and cache.is_dir():
        classifier, clf_cpu = Classifier.load(cache), float("nan")
    else:
        classifier, clf_cpu = cpu_seconds(lambda: Classifier.train(train, clf_config, seed=args.seed))
        if cache is not None:
            classifier.save(cache)
    test_logits, test_features = classifier.logits_and_features(test)
    print(f"classifier ({clf_config.arch}, width {clf_config.width}, {clf_config.epochs} epochs, shift "
          f"{clf_config.shift}): {np.mean(test_logits.argmax(1) == test.labels):.1%} on the {len(test)} real test "
          f"digits; {clf_cpu:.0f} CPU s to train; {len(train)} training images, {args.samples} samples per "
          f"guidance, {args.threads} threads")
    print(f"real test split against itself: FID 0 by definition; "
          f"{len(train)} real training digits: FID {fid(test_features, classifier.features(train)):.2f}")

    header = "| candidate | CPU s / fit | CPU s / 1,000 samples | recognised w=1 | recognised w=0 | FID w=1 | FID w=0 |"
    rows = []
    for name in names:
        family_name, settings, what = CANDIDATES[name]
        settings = {**(config.loop.generators[0].settings if settings is None else settings), "device": "cpu"}
        if args.train_steps:
            settings["train_steps"] = args.train_steps
        family = get_family(family_name)
        fitted, fit_cpu = cpu_seconds(lambda: family.fit(train, settings, seed=args.seed))
        scores, sample_cpu = {}, 0.0
        for w in (1.0, 0.0):
            images, cpu = cpu_seconds(lambda: fitted.sample(args.samples, seed=args.seed + 1, guidance=w))
            sample_cpu += cpu
            logits, features = classifier.logits_and_features(images)
            scores[w] = (np.mean(logits.argmax(1) == images.labels), fid(test_features, features))
        per_1000 = sample_cpu / 2 / args.samples * 1000
        rows.append(f"| {name}: {what} | {fit_cpu:.0f} | {per_1000:.0f} | {scores[1.0][0]:.1%} | "
                    f"{scores[0.0][0]:.1%} | {scores[1.0][1]:.2f} | {scores[0.0][1]:.2f} |")
        print(f"  {rows[-1]}", flush=True)
    print()
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
