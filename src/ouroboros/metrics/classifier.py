"""Classifier-based fidelity: accuracy, cross-entropy and per-class accuracy of labelled images.

Pure functions of logits and intended labels. Cross-entropy is the mean negative
log-likelihood of the intended class (natural log), as in the feedback-loop study.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def classification_metrics(logits: np.ndarray, labels: np.ndarray, class_names) -> dict[str, float]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    logp = log_softmax(logits, axis=1)
    pred = logits.argmax(axis=1)
    correct = pred == labels
    out = {
        "accuracy": float(correct.mean()),
        "cross_entropy": float(-logp[np.arange(len(labels)), labels].mean()),
    }
    for c, name in enumerate(class_names):
        mask = labels == c
        if mask.any():
            out[f"accuracy/{name}"] = float(correct[mask].mean())
    return out
