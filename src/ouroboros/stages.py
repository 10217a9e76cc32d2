"""Stage functions: each reads its inputs from artifact paths and writes one artifact.

They run in worker processes, so they take plain JSON parameters and paths, and
rebuild configs and objects from them.
"""

from __future__ import annotations

from pathlib import Path

from ouroboros.data.imageset import ImageSet
from ouroboros.features.classifier import Classifier, ClassifierConfig
from ouroboros.generators.diffusion import DiffusionConfig, DiffusionGenerator, FittedDiffusion
from ouroboros.io import write_json_atomic
from ouroboros.metrics.classifier import classification_metrics
from ouroboros.metrics.fid import fid
from ouroboros.metrics.prdc import prdc
from ouroboros.runner import stage_kind


@stage_kind("data", ".npz")
def data_stage(params: dict, deps: dict, out: Path) -> None:
    # Data artifacts are written by the planner, which has the loaded set in hand.
    raise RuntimeError(f"data artifact {out} is missing; it is written when the study is planned")


@stage_kind("classifier", "")
def classifier_stage(params: dict, deps: dict, out: Path) -> None:
    train = ImageSet.load(deps["train"])
    Classifier.train(train, ClassifierConfig(**params["config"]), seed=params["seed"]).save(out)


@stage_kind("fit", "")
def fit_stage(params: dict, deps: dict, out: Path) -> None:
    train = ImageSet.load(deps["train"])
    generator = DiffusionGenerator(DiffusionConfig(**params["config"]), name=params["name"])
    generator.fit(train, seed=params["seed"]).save(out)


@stage_kind("sample", ".npz")
def sample_stage(params: dict, deps: dict, out: Path) -> None:
    model = FittedDiffusion.load(deps["model"])
    model.config.sample_batch_size = params["sample_batch_size"]
    images = model.sample(params["n"], guidance=params["guidance"], seed=params["seed"],
                          sampler=params["sampler"], sample_steps=params["sample_steps"])
    images.save(out)


@stage_kind("evaluate", ".json")
def evaluate_stage(params: dict, deps: dict, out: Path) -> None:
    """Classifier accuracy / cross-entropy of the images, and FID + PRDC (k = params["k"])
    of their classifier features against the real training split's."""
    images = ImageSet.load(deps["images"])
    classifier = Classifier.load(deps["classifier"])
    logits, fake = classifier.logits_and_features(images)
    metrics = classification_metrics(logits, images.labels, images.class_names)
    real = classifier.features(ImageSet.load(deps["real"]))
    metrics["fid"] = fid(real, fake)
    metrics.update(prdc(real, fake, k=params["k"]))
    write_json_atomic(out, metrics)
