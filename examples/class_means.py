"""A generator family of one's own, worked end to end: each class's mean image plus
Gaussian pixel noise.

A family is four small pieces and one call:

- a settings dataclass with `validate()` (here: the noise level);
- a generator, ``Generator(config, name=...)``, whose ``fit(train, seed)`` returns a
  fitted model;
- the fitted model: ``sample(n, labels, seed, <bias knob>=...) -> ImageSet`` and
  ``save(dir)``, plus a loader ``load(dir)`` (safetensors + JSON, never pickle:
  `ouroboros.generators.base.save_fitted` writes both);
- ``ouroboros.register_family(GeneratorFamily(...))``.

Use it in a loop by importing this module before the run and naming the family in the
config (``loop.generators: [{family: class-means}]``)::

    import ouroboros
    import class_means  # noqa: F401  (registers the family)

    run = ouroboros.run("loop-digits-gaussian", out="runs/means",
                        overrides=["loop.generators=[{family: class-means, settings: {noise: 30}}]"])
    print(run.results.query("metric == 'accuracy'"))

The family's code is part of the keys of the stages that fit and sample it (the
source of this module, or the `version` given to `GeneratorFamily`): edit this file and
the next run recomputes what the family made, and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import ouroboros
from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.generators.base import balanced_labels, save_fitted

FORMAT = "example.ClassMeans"  # what saved models of this family write as their format


@dataclass
class ClassMeansConfig:
    noise: float = 0.1  # standard deviation of the pixel noise, images scaled to [-1, 1]

    def validate(self) -> None:
        if not 0.0 <= self.noise <= 2.0:
            raise ouroboros.UserError(f"class-means: noise must lie in [0, 2]; got {self.noise}")


@dataclass
class FittedClassMeans:
    config: ClassMeansConfig
    means: np.ndarray  # classes x C x H x W, in [-1, 1]
    class_names: tuple[str, ...]
    generation: int  # of the images it makes (its training set's newest + 1)
    name: str  # provenance: its images carry source gen:<name>
    info: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    def sample(self, n: int, labels=None, seed: int = 0, temperature: float = 1.0) -> ImageSet:
        labels = balanced_labels(n, len(self.class_names)) if labels is None else np.asarray(labels, dtype=np.int64)
        rng = np.random.default_rng(seed)
        x = self.means[labels] + temperature * self.config.noise * rng.standard_normal((n, *self.image_shape))
        return ImageSet.create(quantize(x), labels, self.class_names, source=f"gen:{self.name}",
                               generation=self.generation, seed=seed)

    def save(self, directory) -> Path:
        from safetensors.numpy import save_file

        means = np.ascontiguousarray(self.means, dtype=np.float32)
        return save_fitted(self, directory, FORMAT, lambda path: save_file({"means": means}, path))

    @classmethod
    def load(cls, directory) -> "FittedClassMeans":
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta = json.loads((directory / "generator.json").read_text())
        means = load_file(directory / "model.safetensors")["means"]
        return cls(ClassMeansConfig(**meta["config"]), means, tuple(meta["class_names"]), meta["generation"],
                   meta["name"], meta["info"])


class ClassMeans:
    def __init__(self, config: ClassMeansConfig | None = None, name: str = "class-means"):
        self.config = config or ClassMeansConfig()
        self.config.validate()
        self.name = name

    def fit(self, train: ImageSet, seed: int) -> FittedClassMeans:
        x = train.images.astype(np.float32) / 127.5 - 1.0
        means = np.stack([x[train.labels == c].mean(axis=0) for c in range(train.num_classes)])
        return FittedClassMeans(self.config, means, tuple(train.class_names), int(train.generation.max()) + 1,
                                self.name, {"seed": int(seed), "train_hash": train.content_hash()})


FAMILY = ouroboros.register_family(ouroboros.GeneratorFamily(
    "class-means", ClassMeansConfig, ClassMeans, FittedClassMeans.load, FORMAT,
    bias="temperature", bias_default=1.0))
