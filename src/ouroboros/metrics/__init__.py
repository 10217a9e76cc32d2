from ouroboros.metrics.classifier import classification_metrics

__all__ = ["classification_metrics"]
