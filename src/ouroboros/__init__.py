"""ouroboros: simulate generated images flowing back into training data, and measure the damage.

The Python API (each name is imported on first use, so ``import ouroboros.errors`` stays light):

- ``ouroboros.run(config, out=None, overrides=(), executor=None, progress=True) -> Run``
- ``ouroboros.load_run(run_dir) -> Run``
- ``ouroboros.register_family(...)``, ``ouroboros.register_study(...)``
- ``ouroboros.metrics``: FID, KID, precision/recall, PRDC on feature arrays
"""

from ouroboros.version import __version__

_API = {"run": "ouroboros.api", "load_run": "ouroboros.api", "Run": "ouroboros.api",
        "register_family": "ouroboros.generators.base", "GeneratorFamily": "ouroboros.generators.base",
        "register_study": "ouroboros.study", "Study": "ouroboros.study",
        "ImageSet": "ouroboros.data.imageset", "UserError": "ouroboros.errors"}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name == "metrics":
        return importlib.import_module("ouroboros.metrics")
    raise AttributeError(f"module 'ouroboros' has no attribute {name!r}")
