"""What every generator shares: label layout, device choice, and the registry of
generator families that the fit and sample stages dispatch on."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ouroboros.errors import UserError


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    """n labels cycling through the classes: every class gets n // K or n // K + 1."""
    if n < 1:
        raise UserError(f"number of samples must be at least 1; got {n}")
    return np.arange(n, dtype=np.int64) % num_classes


def sampled_labels(counts, n: int, seed: int) -> np.ndarray:
    """n labels drawn from the class proportions counts / sum(counts) (loop.labels:
    sampled): class counts ~ Multinomial(n, p), seeded, laid out class by class. A class
    with count 0 is never drawn."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        raise UserError("cannot draw labels from a training set without images")
    drawn = np.random.default_rng(int(seed)).multinomial(n, counts / counts.sum())
    return np.repeat(np.arange(len(counts), dtype=np.int64), drawn)


def save_fitted(fitted, directory: str | Path, fmt: str, write_weights: Callable[[Path], None], **extra) -> Path:
    """Save a fitted generator as one folder, atomically: ``model.safetensors`` (written by
    `write_weights`) and ``generator.json`` with what every family records (format,
    config, classes, image shape, generation, provenance name, info) plus `extra`."""
    from ouroboros.io import atomic_path

    directory = Path(directory)
    with atomic_path(directory, is_dir=True) as tmp:
        write_weights(tmp / "model.safetensors")
        meta = {"format": fmt, **extra, "config": dataclasses.asdict(fitted.config),
                "class_names": list(fitted.class_names), "image_shape": list(fitted.image_shape),
                "generation": fitted.generation, "name": fitted.name, "info": fitted.info}
        (tmp / "generator.json").write_text(json.dumps(meta, indent=2))
    return directory


def read_fitted(directory: str | Path, fmt: str, what: str) -> tuple[dict, Path]:
    """(generator.json's contents, the weights file) of a folder `save_fitted` wrote in
    format `fmt`; a folder without both files, or of another format, is an error naming
    `what` (e.g. "diffusion") the folder was expected to hold."""
    directory = Path(directory)
    meta_path, weights = directory / "generator.json", directory / "model.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise UserError(f"{directory} is not a saved {what} generator (needs generator.json and model.safetensors)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != fmt:
        raise UserError(f"{meta_path} is not an ouroboros {what} generator")
    return meta, weights


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r} ({exc}); use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use device: auto or cpu")
    return dev


# -- the registry of generator families ------------------------------------------------
#
# A family is a config dataclass plus a generator class built as ``Generator(config,
# name=...)`` whose ``fit(train: ImageSet, seed) -> fitted``. The fitted object has
# ``sample(n, labels=None, seed=0, <bias>=...) -> ImageSet`` (uint8, provenance
# ``gen:<name>``, generation = the training data's highest + 1), ``save(dir)`` and a
# class method ``load(dir)``: safetensors + ``generator.json``, never pickle.
# Each family has one sampling-bias knob, a keyword of ``sample()``: ``guidance`` for
# diffusion, ``temperature`` for the Gaussians.


@dataclass(frozen=True)
class GeneratorFamily:
    name: str
    config: type  # dataclass of the family's settings (with a validate() method)
    generator: type  # generator(config, name=...).fit(train, seed) -> fitted
    load: Callable[[Path], Any]  # directory -> fitted
    format: str  # the "format" a saved fitted model writes in its generator.json
    bias: str  # the sample() keyword of the sampling-bias knob
    bias_default: float  # the knob's neutral value (sampling the fit as it is)
    # Sample-stage parameters the family also understands: stage param -> sample() keyword.
    sampling_params: dict = field(default_factory=dict)
    # The version of a plug-in family's code (raise it on every change that alters what it
    # makes); None: the source of the module that defines `generator` identifies it.
    version: int | str | None = None
    # heldout_loss(fitted, images: ImageSet) -> float: the fitted model's loss on real images
    # it did not train on (the feedback loop's `test_loss` per generation, on the real test
    # split), deterministic: the same model and images give the same value. None: the
    # family has none, and the loop records no test_loss for it.
    heldout_loss: Callable[[Any, Any], float] | None = None
    # warm_start(settings) -> None when a model with these settings (the family's config) can
    # start from its predecessor's (loop.init: previous: its generator's fit takes `init`, the
    # previous fitted model, and `steps`), else why not, for the error line. None: the family
    # cannot warm-start.
    warm_start: Callable[[Any], str | None] | None = None

    @functools.cached_property  # every fit and sample stage of a plan asks: read the source once
    def code(self) -> str:
        """What identifies this family's code in stage keys: "" for ouroboros' own families
        (the package version covers them), else `version`, or a hash of its module's source
        (of its compiled code where no source can be read; `ouroboros.graph.code_identity`)."""
        from ouroboros.graph import code_identity

        return code_identity(self.generator, self.version)

    @property
    def module(self) -> str:
        """The module that defines the family (a worker process imports it to find it)."""
        return self.generator.__module__

    def make_config(self, settings: dict | None = None):
        """The config dataclass from a dict; an unknown key is an error, not ignored."""
        settings = dict(settings or {})
        known = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise UserError(f"unknown {self.name} generator setting(s) {unknown}; known: {sorted(known)}")
        config = self.config(**settings)
        config.validate()
        return config

    def fit(self, train, settings: dict | None, seed: int, name: str | None = None, reference=None, init=None,
            steps: int | None = None, small_classes: bool = False):
        """Fit the family on an ImageSet; `name` is the provenance name (default: the family's);
        `reference`, for families that fit a feature space (the Gaussians' PCA), the images
        to fit it on; `init`, the previous generation's fitted model to warm-start from
        (`warm_start`), trained `steps` more steps (None: the family's own number);
        `small_classes`, that classes may be small or absent (loop.labels: sampled), to a fit
        that takes the keyword (the Gaussian families; diffusion needs no telling)."""
        import inspect

        generator = self.generator(self.make_config(settings), name=name or self.name)
        options = {} if reference is None else {"reference": reference}
        if init is not None:
            options.update(init=init, steps=steps)
        if small_classes and "small_classes" in inspect.signature(generator.fit).parameters:
            options["small_classes"] = True
        return generator.fit(train, seed=seed, **options)


_FAMILIES: dict[str, GeneratorFamily] = {}


def register_family(family: GeneratorFamily) -> GeneratorFamily:
    """Add a generator family to the registry, under its name (see `GeneratorFamily`).

    The built-in families (diffusion, gaussian, gmm) register themselves when
    ``ouroboros.generators`` is imported, which happens before this module is usable, so a
    plug-in cannot shadow them. A family's code identity (`GeneratorFamily.code`) is part
    of the keys of the stages that fit and sample it: editing a plug-in family's module
    (or raising the `version` it declares) recomputes what it made.
    """
    if not isinstance(family, GeneratorFamily):
        raise TypeError(f"register_family takes a GeneratorFamily; got {family!r}")
    if family.name in _FAMILIES:
        raise ValueError(f"generator family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def families() -> dict[str, GeneratorFamily]:
    """name -> family: the built-in ones and any registered since."""
    return _FAMILIES


def get_family(name: str, module: str | None = None) -> GeneratorFamily:
    """The registered family `name`; `module` (where a plug-in family is defined) is
    imported first when the family is not registered in this process yet (a worker)."""
    if name not in _FAMILIES:
        _import_plugin(module)
    known = families()
    if name not in known:
        raise UserError(f"unknown generator family {name!r}; use one of {', '.join(sorted(known))}")
    return known[name]


def _import_plugin(module: str | None) -> None:
    """Import the module that registers a plug-in family (a no-op when it is imported)."""
    if module:
        import importlib

        importlib.import_module(module)


def load_fitted(directory: str | Path, module: str | None = None) -> tuple[GeneratorFamily, Any]:
    """(family, fitted model) of a saved fitted generator, found from its generator.json
    (`module`: a plug-in family's module, imported first as in `get_family`)."""
    _import_plugin(module)
    meta_path = Path(directory) / "generator.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{directory} is not a saved generator: cannot read {meta_path} ({exc})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path} is not a saved generator's description")
    # Families that share a fitted class (gaussian, gmm) tell themselves apart by "family".
    matches = [f for f in families().values()
               if f.format == meta.get("format") and meta.get("family", f.name) == f.name]
    if not matches:
        raise UserError(f"{meta_path} has format {meta.get('format')!r}, which no generator family reads")
    return matches[0], matches[0].load(directory)
