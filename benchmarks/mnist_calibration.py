"""Which generator draws real 28x28 MNIST digits fast enough for the feedback loop on a CPU.

Fits each candidate generator on mnist5k's training split (class-conditional, with
classifier-free guidance; the loop config's split: 70% train, 30% test, split seed 0)
and prints, per candidate: CPU seconds per fit and per 1,000 samples, for a latent model
the share of the real test digits recognised after a trip through its code (what its
samples can reach at best), and at guidance 1 and 0 the share of samples the real-data
classifier recognises (its label is the one asked for) and FID against the real test
split in the classifier's features (as the loop's evaluate stage computes it). The
classifier is the loop-mnist config's; its accuracy on the real test split heads the
table. --classifiers first prints candidate classifiers: CPU seconds to train and to
score, accuracy on the real test split.

Usage: python benchmarks/mnist_calibration.py [--candidates latent,latent-pca64,mlp]
       [--classifiers cnn16,cnn16-affine] [--samples 1000] [--train-steps N] [--fit-images N]
       [--classifier-epochs N] [--threads 1] [--classifier-cache DIR]
(--train-steps, --fit-images and --classifier-epochs shorten everything, for smoke tests.)
CPU seconds are time.process_time() of this process with --threads torch threads.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ouroboros.config import load_config  # noqa: E402
from ouroboros.data.imageset import ImageSet, quantize, stratified_split  # noqa: E402
from ouroboros.data.loaders import load_mnist5k  # noqa: E402
from ouroboros.features.classifier import Classifier  # noqa: E402
from ouroboros.generators import get_family  # noqa: E402
from ouroboros.metrics import fid  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# name -> (family, settings, what it is). Budgets: about what the loop's 75 fits can afford
# on 2 cores (the U-Net's is far below what it needs: README "Real MNIST"). A latent
# candidate's settings are changes to configs/loop-mnist.yaml's (None: the config's own).
CANDIDATES = {
    "latent": ("latent", None, "the loop-mnist config's"),
    "latent-pca64": ("latent", {"encoder": "pca", "components": 64},
                     "MLP 128 x 2 on a 64-number PCA code, 1,500 steps x 128"),
    "latent-pca128": ("latent", {"encoder": "pca", "components": 128},
                      "MLP 128 x 2 on a 128-number PCA code, 1,500 steps x 128"),
    "latent-ae16": ("latent", {"encoder": "autoencoder", "components": 16},
                    "MLP 128 x 2 on a 16-number autoencoder code (784-256-16, 30 epochs), 1,500 steps x 128"),
    "latent-ae32": ("latent", {"encoder": "autoencoder", "components": 32},
                    "MLP 128 x 2 on a 32-number autoencoder code (784-256-32, 30 epochs), 1,500 steps x 128"),
    "mlp": ("diffusion", {"denoiser": "mlp", "hidden": 256, "depth": 2, "train_steps": 1500, "batch_size": 128,
                          "lr": 2e-3, "beta_schedule": "linear", "ema_decay": 0.995, "sampler": "ddpm",
                          "sample_steps": 50},
            "MLP 256 x 2 on the 784 pixels, 1,500 steps x 128"),
    "unet": ("diffusion", {"denoiser": "unet", "hidden": 8, "depth": 2, "train_steps": 400, "batch_size": 64,
                           "lr": 2e-3, "beta_schedule": "linear", "ema_decay": 0.995, "sampler": "ddpm",
                           "sample_steps": 50},
             "U-Net 8/16 channels, 400 steps x 64"),
}

def classifier_changes(arch: str = "cnn", width: int = 16, epochs: int = 20, warp: bool = True) -> dict:
    """Changes to configs/loop-mnist.yaml's classifier: shifts of up to 2 pixels, and with
    `warp` a rotation within 10 degrees and a zoom within 1 +- 0.1 too."""
    return {"arch": arch, "width": width, "epochs": epochs, "shift": 2, "rotation": 10.0 if warp else 0.0,
            "scale": 0.1 if warp else 0.0}


def describe_classifier(changes: dict) -> str:
    """A candidate classifier in words, e.g. 'resnet width 8, 20 epochs, affine warp: ...'."""
    c = changes
    augment = (f"affine warp: shift {c['shift']}, rotation {c['rotation']:g} degrees, zoom {c['scale']:g}"
               if c["rotation"] or c["scale"] else f"shifts of {c['shift']} pixels")
    return f"{c['arch']} width {c['width']}, {c['epochs']} epochs, {augment}"


# name -> changes to configs/loop-mnist.yaml's classifier (whose own is resnet8-affine)
CLASSIFIERS = {
    "cnn16": classifier_changes(warp=False),
    "cnn16-affine": classifier_changes(),
    "cnn24-affine": classifier_changes(width=24),
    "cnn32-affine-40": classifier_changes(width=32, epochs=40),
    "resnet16-affine": classifier_changes("resnet"),
    "resnet16-affine-10": classifier_changes("resnet", epochs=10),
    "resnet8-affine": classifier_changes("resnet", width=8),
}


def cpu_seconds(fn):
    """(result, CPU seconds of this process, all threads) of fn()."""
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def describe(settings: dict) -> str:
    """A latent model's settings in words."""
    code = (f"autoencoder code (784-{settings.get('encoder_hidden', 256)}-{settings['components']}, "
            f"{settings.get('encoder_epochs', 30)} epochs)" if settings.get("encoder") == "autoencoder"
            else "PCA code")
    return (f"MLP {settings['hidden']} x {settings['depth']} on a {settings['components']}-number {code}, "
            f"{settings['train_steps']:,} steps x {settings['batch_size']} (loop-mnist)")


def code_recognised(fitted, classifier, test) -> str:
    """The share of the real test digits the classifier recognises after a trip through a latent
    model's code (encode, decode, quantise): what its samples can reach at best."""
    if not hasattr(fitted, "code"):
        return "-"
    x = fitted.code.decode(fitted.code.encode(test.to_float())).reshape(len(test), *test.shape)
    trip = ImageSet.create(quantize(x), test.labels, test.class_names, source="gen:code")
    return f"{np.mean(classifier.logits(trip).argmax(1) == test.labels):.1%}"


def classifier_rows(names, config, train, test, seed) -> list[str]:
    """One row per candidate classifier: CPU seconds to train, to score 1,000 images, and its
    accuracy on the real test split."""
    rows = []
    for name in names:
        changes = CLASSIFIERS[name]
        what = describe_classifier(changes)
        clf_config = replace(config.classifier, device="cpu", **changes)
        classifier, train_cpu = cpu_seconds(lambda: Classifier.train(train, clf_config, seed=seed))
        logits, score_cpu = cpu_seconds(lambda: classifier.logits_and_features(test)[0])
        rows.append(f"| {name}: {what} | {train_cpu:.0f} | {score_cpu / len(test) * 1000:.1f} | "
                    f"{np.mean(logits.argmax(1) == test.labels):.2%} |")
        print(f"  {rows[-1]}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="latent,latent-pca64,mlp",
                        help="comma-separated, of: " + ", ".join(CANDIDATES) + " (default latent,latent-pca64,mlp)")
    parser.add_argument("--classifiers", default="",
                        help="also train and score these classifiers, comma-separated, of: " + ", ".join(CLASSIFIERS))
    parser.add_argument("--samples", type=int, default=1000, help="samples per candidate and guidance (default 1000)")
    parser.add_argument("--train-steps", type=int, help="override every candidate's training steps")
    parser.add_argument("--fit-images", type=int, help="fit on the first N training images only")
    parser.add_argument("--classifier-epochs", type=int, help="override the classifier's epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier-cache", help="a folder: load the classifier from it, or train and save it there")
    args = parser.parse_args()
    names = [c for c in args.candidates.split(",") if c]
    clf_names = [c for c in args.classifiers.split(",") if c]
    unknown = sorted(set(names) - set(CANDIDATES)) + sorted(set(clf_names) - set(CLASSIFIERS))
    if unknown or not (names or clf_names):
        print(f"error: unknown candidate(s) {unknown}; use some of {', '.join(CANDIDATES)} (--candidates) or "
              f"{', '.join(CLASSIFIERS)} (--classifiers)", file=sys.stderr)
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
        for changes in CLASSIFIERS.values():
            changes["epochs"] = args.classifier_epochs
    clf_rows = classifier_rows(clf_names, config, train, test, args.seed)
    if clf_rows:
        print()
        print("| classifier | CPU s to train | CPU s / 1,000 scored | real test split |")
        print("|---|---:|---:|---:|")
        print("\n".join(clf_rows))
        print()
    if not names:
        return 0
    cache = Path(args.classifier_cache) if args.classifier_cache else None
    if cache is not None and cache.is_dir():
        classifier, clf_cpu = Classifier.load(cache), float("nan")
    else:
        classifier, clf_cpu = cpu_seconds(lambda: Classifier.train(train, clf_config, seed=args.seed))
        if cache is not None:
            classifier.save(cache)
    test_logits, test_features = classifier.logits_and_features(test)
    print(f"classifier (the config's: {clf_config.arch}, width {clf_config.width}, {clf_config.epochs} epochs, shift "
          f"{clf_config.shift}, rotation {clf_config.rotation:g}, zoom {clf_config.scale:g}): "
          f"{np.mean(test_logits.argmax(1) == test.labels):.2%} on the {len(test)} real test digits; {clf_cpu:.0f} "
          f"CPU s to train; {len(train)} training images, {args.samples} samples per guidance, {args.threads} threads")
    print(f"real test split against itself: FID 0 by definition; "
          f"{len(train)} real training digits: FID {fid(test_features, classifier.features(train)):.2f}")

    header = ("| candidate | CPU s / fit | CPU s / 1,000 samples | code: test recognised | recognised w=1 | "
              "recognised w=0 | FID w=1 | FID w=0 |")
    rows = []
    for name in names:
        family_name, settings, what = CANDIDATES[name]
        base = config.loop.generators[0].settings
        fit_settings = {**(base if family_name == "latent" else {}), **(settings or {}), "device": "cpu"}
        if args.train_steps:
            fit_settings["train_steps"] = args.train_steps
        family = get_family(family_name)
        fitted, fit_cpu = cpu_seconds(lambda: family.fit(train, fit_settings, seed=args.seed))
        scores, sample_cpu = {}, 0.0
        for w in (1.0, 0.0):
            images, cpu = cpu_seconds(lambda: fitted.sample(args.samples, seed=args.seed + 1, guidance=w))
            sample_cpu += cpu
            logits, features = classifier.logits_and_features(images)
            scores[w] = (np.mean(logits.argmax(1) == images.labels), fid(test_features, features))
        per_1000 = sample_cpu / 2 / args.samples * 1000
        if settings is None:
            what = describe(base)
        trip = code_recognised(fitted, classifier, test)
        rows.append(f"| {name}: {what} | {fit_cpu:.0f} | {per_1000:.0f} | {trip} | "
                    f"{scores[1.0][0]:.1%} | {scores[0.0][0]:.1%} | {scores[1.0][1]:.2f} | {scores[0.0][1]:.2f} |")
        print(f"  {rows[-1]}", flush=True)
    print()
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
