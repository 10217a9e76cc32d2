from ouroboros.generators.base import balanced_labels
from ouroboros.generators.diffusion import DiffusionConfig, DiffusionGenerator, FittedDiffusion

__all__ = ["DiffusionConfig", "DiffusionGenerator", "FittedDiffusion", "balanced_labels"]
