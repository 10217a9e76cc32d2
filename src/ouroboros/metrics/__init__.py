"""Metrics: pure functions of feature arrays (numpy or torch, N x D).

Fidelity and diversity: `fid`, `fid_from_stats`, `kid`, `precision_recall` (k = 3,
Kynkäänniemi), `prdc` (k = 5, Naeem). Classifier-based: `classification_metrics`.
"""

from ouroboros.metrics.classifier import classification_metrics
from ouroboros.metrics.fid import feature_stats, fid, fid_from_stats
from ouroboros.metrics.kid import kid
from ouroboros.metrics.prdc import prdc, precision_recall

__all__ = ["classification_metrics", "feature_stats", "fid", "fid_from_stats", "kid", "prdc", "precision_recall"]
