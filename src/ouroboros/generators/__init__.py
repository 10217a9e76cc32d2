from ouroboros.generators.base import (
    GeneratorFamily, balanced_labels, families, get_family, load_fitted, register_family,
)
from ouroboros.generators.diffusion import DiffusionConfig, DiffusionGenerator, FittedDiffusion
from ouroboros.generators.gaussian import (
    FittedGaussianMixture, GaussianConfig, GaussianGenerator, GMMConfig, GMMGenerator, fit_gaussian, sample_gaussian,
    sample_mixture,
)
from ouroboros.generators.latent import FittedLatent, LatentConfig, LatentGenerator

__all__ = [
    "DiffusionConfig", "DiffusionGenerator", "FittedDiffusion", "FittedGaussianMixture", "FittedLatent", "GMMConfig",
    "GMMGenerator", "GaussianConfig", "GaussianGenerator", "GeneratorFamily", "LatentConfig", "LatentGenerator",
    "balanced_labels", "families", "fit_gaussian", "get_family", "load_fitted", "register_family", "sample_gaussian",
    "sample_mixture",
]
