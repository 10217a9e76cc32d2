"""Downstream classification: train a classifier from scratch on a (possibly contaminated)
training set with a fixed recipe, and score it on clean and shifted test sets."""

from __future__ import annotations

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.features.classifier import Classifier, ClassifierConfig
from ouroboros.metrics.classifier import classification_metrics


def confusion_matrix(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    pred = np.asarray(logits).argmax(axis=1)
    return np.bincount(np.asarray(labels) * num_classes + pred, minlength=num_classes**2).reshape(num_classes, -1)


def train_and_score(train: ImageSet, tests: dict[str, ImageSet], config: ClassifierConfig | None = None,
                    seed: int = 0) -> tuple[Classifier, dict[str, float]]:
    """Train on `train`; return the classifier and ``{<test name>/<metric>: value}`` with
    accuracy and cross-entropy on every test set."""
    for name, test in tests.items():
        if test.class_names != train.class_names:
            raise UserError(f"test set {name!r} has classes {list(test.class_names)}, "
                            f"the training set {list(train.class_names)}")
    classifier = Classifier.train(train, config, seed=seed)
    scores = {}
    for name, test in tests.items():
        m = classification_metrics(classifier.logits(test), test.labels, test.class_names)
        scores[f"{name}/accuracy"] = m["accuracy"]
        scores[f"{name}/cross_entropy"] = m["cross_entropy"]
    return classifier, scores
