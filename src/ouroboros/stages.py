"""Stage functions: each reads its inputs from artifact paths and writes one artifact.

They run in worker processes, so they take plain JSON parameters and paths, and
rebuild configs and objects from them.

Each registration carries the version of its output (`version=`): bump it in the same
change that alters what a stage writes, so existing caches recompute that kind (and all
that depends on it) instead of mixing old and new artifacts.
"""

from __future__ import annotations

from pathlib import Path

from ouroboros.data.imageset import ImageSet
from ouroboros.features.classifier import Classifier, ClassifierConfig
from ouroboros.errors import UserError
from ouroboros.generators.base import get_family, load_fitted
from ouroboros.generators.diffusion import FittedDiffusion
from ouroboros.io import write_json_atomic
from ouroboros.metrics.classifier import classification_metrics
from ouroboros.metrics.fid import fid
from ouroboros.metrics.prdc import prdc
from ouroboros.runner import stage_kind


@stage_kind("data", ".npz", version=1)
def data_stage(params: dict, deps: dict, out: Path) -> None:
    # Data artifacts are written by the planner, which has the loaded set in hand.
    raise RuntimeError(f"data artifact {out} is missing; it is written when the study is planned")


@stage_kind("classifier", "", version=1)
def classifier_stage(params: dict, deps: dict, out: Path) -> None:
    train = ImageSet.load(deps["train"])
    Classifier.train(train, ClassifierConfig(**params["config"]), seed=params["seed"]).save(out)


@stage_kind("fit", "", version=1)
def fit_stage(params: dict, deps: dict, out: Path) -> None:
    """Fit the generator family `params["family"]` (diffusion when absent, so plans made
    before families existed keep their keys) with settings `params["config"]`;
    `params["name"]` is the provenance name of the images it will make (default: the family's)."""
    family = get_family(params.get("family", "diffusion"))
    fitted = family.fit(ImageSet.load(deps["train"]), params["config"], seed=params["seed"], name=params.get("name"))
    fitted.save(out)


@stage_kind("sample", ".npz", version=1)
def sample_stage(params: dict, deps: dict, out: Path) -> None:
    """Sample `params["n"]` images with `params["seed"]` from a fitted model of any family.
    The family's sampling-bias knob is read under its own name (`guidance` for diffusion,
    `temperature` for the Gaussians; the family's neutral value when absent), plus any
    sampling settings the family has (diffusion: sampler, sample_steps, sample_batch_size)."""
    family, model = load_fitted(deps["model"])
    if params.get("family", family.name) != family.name:
        raise UserError(f"sample stage expects a {params['family']} generator but {deps['model']} holds a "
                        f"{family.name} one")
    known = {"n", "seed", "family", family.bias, *family.sampling_params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UserError(f"the {family.name} generator does not take sampling parameter(s) {unknown}; "
                        f"it takes {sorted(known)} (its sampling-bias knob is {family.bias!r})")
    options = {kw: params[p] for p, kw in family.sampling_params.items() if p in params}
    options[family.bias] = params.get(family.bias, family.bias_default)
    model.sample(params["n"], seed=params["seed"], **options).save(out)


@stage_kind("evaluate", ".json", version=1)
def evaluate_stage(params: dict, deps: dict, out: Path) -> None:
    """Scores of the images against the real training split (`deps["real"]`).

    ``params["metrics"]``: ``classifier+fid+prdc`` adds the real-data classifier's
    accuracy / cross-entropy / per-class accuracy (the images' labels are their classes);
    ``fid+prdc`` is FID and PRDC (k = params["k"]) alone. ``params["features"]``: the
    classifier's penultimate features (``classifier``, the default) or Inception's
    (``inception``, from the weights file ``params["weights"]``)."""
    images = ImageSet.load(deps["images"])
    real_set = ImageSet.load(deps["real"])
    metrics, fake = {}, None
    if params["metrics"].startswith("classifier+"):
        logits, fake = Classifier.load(deps["classifier"]).logits_and_features(images)
        metrics = classification_metrics(logits, images.labels, images.class_names)
    if params.get("features", "classifier") == "inception":
        from ouroboros.features.inception import inception_features, load_inception
        from ouroboros.generators.base import resolve_device

        model = load_inception(params["weights"], resolve_device("auto"))
        real, fake = inception_features(real_set.images, model), inception_features(images.images, model)
    else:
        classifier = Classifier.load(deps["classifier"])
        fake = classifier.features(images) if fake is None else fake
        real = classifier.features(real_set)
    metrics["fid"] = fid(real, fake)
    metrics.update(prdc(real, fake, k=params["k"]))
    write_json_atomic(out, metrics)


@stage_kind("sample_diverse", ".npz", version=1)
def sample_diverse_stage(params: dict, deps: dict, out: Path) -> None:
    """Samples whose guidance and number of sampling steps are drawn per image (the
    contamination study's "diverse conditioning", in place of its complex prompts),
    with the configured sampler."""
    import numpy as np

    from ouroboros.generators.base import balanced_labels

    model = FittedDiffusion.load(deps["model"])
    n = params["n"]
    labels = balanced_labels(n, len(model.class_names))
    rng = np.random.default_rng(params["seed"])
    guidance = rng.choice(np.asarray(params["guidance"], dtype=np.float64), n)
    steps = rng.choice(np.asarray(params["sample_steps"], dtype=np.int64), n)
    parts, order = [], []
    for g_i, w in enumerate(sorted(set(guidance.tolist()))):
        for s_i, st in enumerate(sorted(set(steps.tolist()))):
            idx = np.flatnonzero((guidance == w) & (steps == st))
            if len(idx):
                part = model.sample(len(idx), labels[idx], guidance=w, seed=params["seed"] + 1000 * g_i + s_i,
                                    sampler=params["sampler"], sample_steps=int(st),
                                    batch_size=params["sample_batch_size"])
                parts.append(part.with_provenance(condition=[f"{c};steps={st}" for c in part.condition]))
                order.append(idx)
    merged = ImageSet.concat(parts)
    merged.subset(np.argsort(np.concatenate(order), kind="stable")).save(out)


@stage_kind("mix", ".npz", version=1)
def mix_stage(params: dict, deps: dict, out: Path) -> None:
    """A mixture (ouroboros.data.mixtures); mode `fill` tops `real` up to the class counts
    of `target`."""
    from ouroboros.data.mixtures import fill, mix

    real = ImageSet.load(deps["real"])
    other = ImageSet.load(deps["other"]) if "other" in deps else None
    if params["mode"] == "fill":
        mixed = fill(real, other, ImageSet.load(deps["target"]).class_counts(), seed=params["seed"],
                     allow_repeats=params["allow_repeats"])
    else:
        mixed = mix(params["mode"], real, other, params["ratio"], seed=params["seed"],
                    allow_repeats=params["allow_repeats"])
    mixed.save(out)


@stage_kind("classify", ".json", version=1)
def classify_stage(params: dict, deps: dict, out: Path) -> None:
    """Train a classifier from scratch on the mixture; score it on the clean test split
    and on each shifted copy of it."""
    from ouroboros.data.shifts import apply_shift
    from ouroboros.tasks.classification import train_and_score

    from ouroboros.tasks.classification import confusion_matrix

    train = ImageSet.load(deps["train"])
    test = ImageSet.load(deps["test"])
    tests = {"clean": test, **{name: apply_shift(name, test, seed=0) for name in params["shifts"]}}
    classifier, scores = train_and_score(train, tests, ClassifierConfig(**params["config"]), seed=params["seed"])
    confusion = confusion_matrix(classifier.logits(test), test.labels, test.num_classes)
    write_json_atomic(out, {"scores": scores, "confusion": confusion.tolist()})


@stage_kind("score_set", ".json", version=1)
def score_set_stage(params: dict, deps: dict, out: Path) -> None:
    """FID and precision/recall (Kynkäänniemi, k = params["k"]) of a set of images against
    a reference set, in the features of a classifier trained on real data."""
    from ouroboros.metrics.prdc import precision_recall

    classifier = Classifier.load(deps["classifier"])
    images = classifier.features(ImageSet.load(deps["images"]))
    reference = classifier.features(ImageSet.load(deps["reference"]))
    write_json_atomic(out, {"fid": fid(reference, images), **precision_recall(reference, images, k=params["k"])})


@stage_kind("detect", ".json", version=1)
def detect_stage(params: dict, deps: dict, out: Path) -> None:
    """Real-vs-generated detection probes on frozen classifier features (Hataya et al.
    Sec. 6.1): logistic regression and a 2-layer MLP, trained on one half of each set
    and tested on the other (disjoint) half; test accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    classifier = Classifier.load(deps["classifier"])
    real = classifier.features(ImageSet.load(deps["real"]))
    gen = classifier.features(ImageSet.load(deps["generated"]))
    n = min(len(real), len(gen))  # balanced: chance is 50%
    rng = np.random.default_rng(params["seed"])
    real, gen = real[rng.permutation(len(real))[:n]], gen[rng.permutation(len(gen))[:n]]
    half = n // 2
    x_train = np.concatenate([real[:half], gen[:half]])
    y_train = np.r_[np.zeros(half), np.ones(half)]
    x_test = np.concatenate([real[half:], gen[half:]])
    y_test = np.r_[np.zeros(n - half), np.ones(n - half)]
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    probes = {
        "logistic": LogisticRegression(max_iter=2000),
        "mlp": MLPClassifier(hidden_layer_sizes=(256,), max_iter=500, early_stopping=True,
                             random_state=params["seed"]),
    }
    write_json_atomic(out, {name: float(p.fit(x_train, y_train).score(x_test, y_test)) for name, p in probes.items()})


@stage_kind("ssl", ".json", version=1)
def ssl_stage(params: dict, deps: dict, out: Path) -> None:
    """Denoising-autoencoder pre-training on the mixture, then a linear probe."""
    from ouroboros.tasks.ssl import pretrain_and_probe

    result = pretrain_and_probe(ImageSet.load(deps["train"]), ImageSet.load(deps["test"]),
                                ClassifierConfig(**params["config"]), seed=params["seed"], epochs=params["epochs"])
    write_json_atomic(out, result)


@stage_kind("assemble", ".npz", version=1)
def assemble_stage(params: dict, deps: dict, out: Path) -> None:
    """A feedback-loop generation's training set (ouroboros.studies.scenarios.assemble)
    from the real split (`deps["real"]`) and the outputs O_k of earlier generations
    (`deps["out<k>"]`), each image keeping its provenance."""
    from ouroboros.studies.scenarios import assemble

    outputs = {int(name[3:]): ImageSet.load(path) for name, path in deps.items() if name.startswith("out")}
    assemble(params["scenario"], params["generation"], ImageSet.load(deps["real"]), outputs, n=params["n"],
             seed=params["seed"], real_seed=params["real_seed"], rho=params.get("real_fraction", 0.5),
             lam=params.get("synthetic_ratio", 1.0)).save(out)
