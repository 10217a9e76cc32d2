"""Feature extractors: images -> N x D feature arrays for the metrics. A registry by name.

- ``classifier``: penultimate layer of a classifier trained on the real training set
  (the default for small images, where Inception features mean little).
- ``inception``: the standard FID Inception-v3 pool features (2048-d), pure torch.
- ``pixels``: raw pixels scaled to [0, 1].
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError


def _bar(total: int, desc: str, enabled: bool):
    """A bar on a terminal or in a notebook; nothing in a file or pipe (`ouroboros.progress`)."""
    from ouroboros.progress import Lines, bar

    return bar(total, desc=desc, unit="img", leave=False) if enabled else Lines(total)


class FeatureExtractor:
    name = "base"

    def __call__(self, images: ImageSet, progress: bool = False) -> np.ndarray:
        raise NotImplementedError


class PixelFeatures(FeatureExtractor):
    name = "pixels"

    def __call__(self, images: ImageSet, progress: bool = False) -> np.ndarray:
        return images.images.reshape(len(images), -1).astype(np.float64) / 255.0


class ClassifierFeatures(FeatureExtractor):
    """Penultimate features of a `Classifier` (trained on real data or loaded from a folder)."""

    name = "classifier"

    def __init__(self, classifier=None, classifier_dir: str | None = None, real: ImageSet | None = None):
        from ouroboros.features.classifier import Classifier

        if classifier is None and classifier_dir is not None:
            classifier = Classifier.load(classifier_dir)
        if classifier is None:
            if real is None:
                raise UserError("classifier features need a trained classifier (--classifier DIR) "
                                "or a labelled real set")
            import sys

            from ouroboros.features.classifier import ClassifierConfig, check_image_size

            check_image_size(ClassifierConfig(), real.shape)  # before saying it starts
            print(f"training the feature classifier on the {len(real)} real images ...", file=sys.stderr)
            classifier = Classifier.train(real, seed=0)
        self.classifier = classifier

    def __call__(self, images: ImageSet, progress: bool = False) -> np.ndarray:
        if images.class_names != self.classifier.class_names:
            raise UserError(
                f"classes {list(images.class_names)} do not match the classifier's {list(self.classifier.class_names)}"
            )
        with _bar(len(images), "classifier features", progress) as bar:
            return self.classifier.features(images, progress=bar.update)


class InceptionFeatures(FeatureExtractor):
    name = "inception"

    def __init__(self, weights: str | None = None, device: str = "auto", batch_size: int = 64):
        from ouroboros.features.inception import load_inception
        from ouroboros.generators.base import resolve_device

        self.model = load_inception(weights, resolve_device(device))
        self.batch_size = batch_size

    def __call__(self, images: ImageSet, progress: bool = False) -> np.ndarray:
        from ouroboros.features.inception import inception_features

        with _bar(len(images), "inception features", progress) as bar:
            return inception_features(images.images, self.model, self.batch_size, bar.update)


FEATURES: dict[str, Callable[..., FeatureExtractor]] = {
    "classifier": ClassifierFeatures,
    "inception": InceptionFeatures,
    "pixels": PixelFeatures,
}


def get_extractor(name: str, **options) -> FeatureExtractor:
    if name not in FEATURES:
        raise UserError(f"unknown feature extractor {name!r}; choose from {', '.join(sorted(FEATURES))}")
    return FEATURES[name](**options)


def default_features(images: ImageSet) -> str:
    """`classifier` for small images (up to 32 x 32), `inception` for larger ones."""
    _, h, w = images.shape
    return "classifier" if h * w <= 32 * 32 else "inception"
