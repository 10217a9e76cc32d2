"""Metrics: pure functions of feature arrays (numpy or torch, N x D), and of captions.

Fidelity and diversity: `fid`, `fid_from_stats`, `kid`, `precision_recall` (k = 3,
Kynkäänniemi), `prdc` (k = 5, Naeem). Classifier-based: `classification_metrics`.
Captions (equal to pycocoevalcap's): `bleu`, `meteor`, `rouge_l`, `cider_d`, all of them
keyed like pycocoevalcap by `caption_metrics`, and the tokenizer `ptb_tokenize`.
"""

from ouroboros.metrics.captions import bleu, caption_metrics, cider_d, meteor, rouge_l
from ouroboros.metrics.classifier import classification_metrics
from ouroboros.metrics.fid import feature_stats, fid, fid_from_stats
from ouroboros.metrics.kid import kid
from ouroboros.metrics.prdc import prdc, precision_recall
from ouroboros.metrics.ptb_tokenizer import tokenize as ptb_tokenize

__all__ = ["bleu", "caption_metrics", "cider_d", "classification_metrics", "feature_stats", "fid", "fid_from_stats",
           "kid", "meteor", "prdc", "precision_recall", "ptb_tokenize", "rouge_l"]
