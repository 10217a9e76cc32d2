from ouroboros.generators.base import (
    GeneratorFamily, balanced_labels, families, get_family, load_fitted, register_family,
)
from ouroboros.generators.diffusion import DiffusionConfig, DiffusionGenerator, FittedDiffusion
from ouroboros.generators.gaussian import (
    FittedGaussianMixture, GaussianConfig, GaussianGenerator, GMMConfig, GMMGenerator, fit_gaussian, sample_gaussian,
    sample_mixture,
)

__all__ = [
    "DiffusionConfig", "DiffusionGenerator", "FittedDiffusion", "FittedGaussianMixture", "GMMConfig", "GMMGenerator",
    "GaussianConfig", "GaussianGenerator", "GeneratorFamily", "balanced_labels", "families", "fit_gaussian",
    "get_family", "load_fitted", "register_family", "sample_gaussian", "sample_mixture",
]
