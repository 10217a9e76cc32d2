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
from ouroboros.graph import stage_kind


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
    `params["name"]` is the provenance name of the images it will make (default: the family's);
    `deps["reference"]`, when present, the images a Gaussian family's PCA space is fitted on;
    `deps["init"]` (loop.init: previous), the previous generation's model to warm-start from
    for `params["warm_steps"]` steps (null: the family's own number); `params["labels"]`
    "sampled" lets classes be small or absent (loop.labels: sampled)."""
    family = get_family(params.get("family", "diffusion"), params.get("module"))
    reference = ImageSet.load(deps["reference"]) if "reference" in deps else None
    init = load_fitted(deps["init"], params.get("module"))[1] if "init" in deps else None
    fitted = family.fit(ImageSet.load(deps["train"]), params["config"], seed=params["seed"], name=params.get("name"),
                        reference=reference, init=init, steps=params.get("warm_steps"),
                        small_classes=params.get("labels") == "sampled")
    fitted.save(out)


@stage_kind("sample", ".npz", version=1)
def sample_stage(params: dict, deps: dict, out: Path) -> None:
    """Sample `params["n"]` images with `params["seed"]` from a fitted model of any family.
    The family's sampling-bias knob is read under its own name (`guidance` for diffusion,
    `temperature` for the Gaussians; the family's neutral value when absent), plus any
    sampling settings the family has (diffusion: sampler, sample_steps, sample_batch_size).
    Labels cycle through the classes starting at class `params["first_label"]` (default 0),
    so that families sharing one pool continue each other's cycle and the pool stays balanced;
    with `params["labels"]` "sampled" they are drawn (`params["label_seed"]`) from the class
    proportions of the model's training set `deps["train"]` (generators.base.sampled_labels)."""
    import numpy as np

    from ouroboros.generators.base import sampled_labels

    family, model = load_fitted(deps["model"], params.get("module"))
    if params.get("family", family.name) != family.name:
        raise UserError(f"sample stage expects a {params['family']} generator but {deps['model']} holds a "
                        f"{family.name} one")
    known = {"n", "seed", "family", "code", "module", "first_label", "labels", "label_seed", family.bias,
             *family.sampling_params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UserError(f"the {family.name} generator does not take sampling parameter(s) {unknown}; "
                        f"it takes {sorted(known)} (its sampling-bias knob is {family.bias!r})")
    options = {kw: params[p] for p, kw in family.sampling_params.items() if p in params}
    options[family.bias] = params.get(family.bias, family.bias_default)
    if params.get("labels") == "sampled":
        labels = sampled_labels(ImageSet.load(deps["train"]).class_counts(), params["n"], params["label_seed"])
    else:
        labels = (params.get("first_label", 0) + np.arange(params["n"])) % len(model.class_names)
    model.sample(params["n"], labels, seed=params["seed"], **options).save(out)


@stage_kind("evaluate", ".json", version=1)
def evaluate_stage(params: dict, deps: dict, out: Path) -> None:
    """Scores of the images against a real reference split (`deps["real"]`: the loop's
    real test split by default, its training split with evaluate.reference: train).

    ``params["metrics"]``: ``classifier+fid+prdc`` adds the real-data classifier's
    accuracy / cross-entropy / per-class accuracy (the images' labels are their classes);
    ``fid+prdc`` is FID and PRDC (k = params["k"]) alone. ``params["features"]``: the
    classifier's penultimate features (``classifier``, the default) or Inception's
    (``inception``, from the weights file ``params["weights"]``)."""
    images = ImageSet.load(deps["images"])
    metrics, fake = {}, None
    if params.get("metrics", "classifier+fid+prdc").startswith("classifier+"):
        logits, fake = Classifier.load(deps["classifier"]).logits_and_features(images)
        metrics = classification_metrics(logits, images.labels, images.class_names)
        if "reward" in params:  # E_{p_g}[r(x)] of a reward curation's classifier reward
            from ouroboros.studies.curation import reward_values

            metrics["expected_reward"] = float(reward_values(params["reward"], logits, images.labels,
                                                             images.class_names).mean())
    real, fake = _features(params, deps, images, fake)
    metrics["fid"] = fid(real, fake)
    metrics.update(prdc(real, fake, k=params["k"]))
    write_json_atomic(out, metrics)


def _features(params: dict, deps: dict, images: ImageSet, fake=None):
    """(real, fake) feature rows of the real reference split (`deps["real"]`) and of
    `images`: the classifier's penultimate features (`fake` when already computed), or
    Inception's with ``params["features"]`` inception."""
    real_set = ImageSet.load(deps["real"])
    if params.get("features", "classifier") == "inception":
        from ouroboros.features.inception import inception_features, load_inception
        from ouroboros.generators.base import resolve_device

        model = load_inception(params["weights"], resolve_device("auto"))
        return inception_features(real_set.images, model), inception_features(images.images, model)
    classifier = Classifier.load(deps["classifier"])
    return classifier.features(real_set), classifier.features(images) if fake is None else fake


@stage_kind("tails", ".json", version=1)
def tails_stage(params: dict, deps: dict, out: Path) -> None:
    """The tails of the real reference split that the images no longer reach
    (`ouroboros.metrics.tails`): ``tail_unreached`` on the evaluate stage's features
    (``params["features"]``, as there); with ``params["density"]`` ({temperature, draws,
    seed}) also the model's (`deps["model"]`) density tails against the real fitted
    density (`deps["real_model"]`, generation 0's): tail_mass, core_mass and each real
    mixture component's weight."""
    from ouroboros.metrics.tails import mixture_tails, tail_unreached

    real, fake = _features(params, deps, ImageSet.load(deps["images"]))
    metrics = {"tail_unreached": tail_unreached(real, fake)}
    if "density" in params:
        _, real_model = load_fitted(deps["real_model"], params.get("module"))
        _, model = load_fitted(deps["model"], params.get("module"))
        metrics.update(mixture_tails(real_model, model, **params["density"]))
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
    of `target`, mode `keep` is the real part alone of a `replace` mixture, mode `substitute`
    swaps each dropped image for its own stand-in in `other` (the same caption id)."""
    from ouroboros.data.mixtures import fill, keep, mix, substitute

    real = ImageSet.load(deps["real"])
    other = ImageSet.load(deps["other"]) if "other" in deps else None
    if params["mode"] == "fill":
        mixed = fill(real, other, ImageSet.load(deps["target"]).class_counts(), seed=params["seed"],
                     allow_repeats=params["allow_repeats"])
    elif params["mode"] == "keep":
        mixed = keep(real, params["ratio"], seed=params["seed"])
    elif params["mode"] == "substitute":
        mixed = substitute(real, other, params["ratio"], seed=params["seed"])
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
    (`deps["out<k>"]`), each image keeping its provenance. With `deps["match"]` (a curated
    variant's training set of the same generation), its unfiltered control
    (scenarios.matched): as many images, as many of them real. With `params["labels"]`
    "sampled" (loop.labels) draws from pools are uniform, not class by class, and a class
    that curation empties has died out (no error)."""
    from ouroboros.studies.scenarios import assemble, matched

    balanced = params.get("labels") != "sampled"
    outputs = {int(name[3:]): ImageSet.load(path) for name, path in deps.items() if name.startswith("out")}
    real = ImageSet.load(deps["real"])
    if "match" in deps:
        target = ImageSet.load(deps["match"])
        matched(params["scenario"], params["generation"], real, outputs, size=len(target),
                n_real=int((target.generation == 0).sum()), n=params["n"], seed=params["seed"],
                real_seed=params["real_seed"], rho=params.get("real_fraction", 0.5), balanced=balanced).save(out)
        return
    real_keep = None
    if "curation" in deps:  # keep only what the curate stage left
        import json

        import numpy as np

        from ouroboros.studies.curation import check_class_left

        curated = json.loads(Path(deps["curation"]).read_text())
        removed = curated["removed"]
        real_keep = np.ones(len(real), dtype=bool)
        real_keep[removed.get("real", [])] = False
        outputs = {k: o.subset(np.setdiff1d(np.arange(len(o)), removed.get(f"out{k}", []))) for k, o in outputs.items()}
    train = assemble(params["scenario"], params["generation"], real, outputs, n=params["n"], seed=params["seed"],
                     real_seed=params["real_seed"], rho=params.get("real_fraction", 0.5),
                     lam=params.get("synthetic_ratio", 1.0), real_keep=real_keep, balanced=balanced)
    if real_keep is not None and balanced:
        check_class_left(train, params["generation"], curated["curation"], curated["stats"])
    train.save(out)


@stage_kind("probe", ".json", version=1)
def probe_stage(params: dict, deps: dict, out: Path) -> None:
    """The detector curation's real-vs-generated probe (ouroboros.studies.curation.Probe)
    on the real-data classifier's features of held-out real images (`deps["real"]`) and
    of generation 0's probe sample (`deps["generated"]`)."""
    from ouroboros.studies.curation import Probe

    classifier = Classifier.load(deps["classifier"])
    real = classifier.features(ImageSet.load(deps["real"]))
    generated = classifier.features(ImageSet.load(deps["generated"]))
    write_json_atomic(out, Probe.fit(real, generated, seed=params["seed"]).to_json())


@stage_kind("curate", ".json", version=2)
def curate_stage(params: dict, deps: dict, out: Path) -> None:
    """Generation `params["generation"]`'s curation (ouroboros.studies.curation): which
    candidates it removes, by index into the real split (`real`, the candidates
    `params["real"]`: null for none, else indices) and into each window output
    (`out<k>`), and the removal counts from the candidates' provenance. A watermark's
    verdicts are fixed per image by `params["verdict_seed"]` (the chain's)."""
    import numpy as np

    from ouroboros.studies import curation

    cfg = params["curation"]
    rng = np.random.default_rng(params["seed"])
    extra = {}
    parts = []  # (name, candidate indices, images, the per-image uniforms of a watermark)
    verdict = params.get("verdict_seed", 0)
    if params["real"] is not None:
        real = ImageSet.load(deps["real"])
        index = np.arange(len(real)) if params["real"] == "all" else np.asarray(params["real"], dtype=np.int64)
        parts.append(("real", index, real.subset(index), curation.image_uniforms(verdict, -1, len(real), index)))
    for name in sorted((d for d in deps if d.startswith("out")), key=lambda d: int(d[3:])):
        o = ImageSet.load(deps[name])
        parts.append((name, np.arange(len(o)), o, curation.image_uniforms(verdict, int(name[3:]), len(o))))
    candidates = ImageSet.concat([images for _, _, images, _ in parts])
    if cfg["kind"] == "watermark":
        removed = curation.watermark(candidates.generation, cfg["recall"], cfg["false_positive"],
                                     np.concatenate([u for *_, u in parts]))
    elif cfg["kind"] == "detector":
        probe, classifier = curation.Probe.load(deps["probe"]), Classifier.load(deps["classifier"])
        removed = probe.prob_generated(classifier.features(candidates)) > cfg["threshold"]
        flagged = probe.prob_generated(classifier.features(ImageSet.load(deps["real"]))) > cfg["threshold"]
        extra = {"curation_detector_fpr": float(flagged.mean())}
    elif cfg["kind"] == "reward":  # per output: its groups of K share a model (and, reward label, a class)
        rewards = curation.reward_values(cfg, Classifier.load(deps["classifier"]).logits(candidates),
                                         candidates.labels, candidates.class_names)
        removed, start = np.zeros(len(candidates), dtype=bool), 0
        for _, _, images, _ in parts:
            stop = start + len(images)
            r = rewards[start:stop]
            removed[start:stop] = (curation.k_choice(images.labels, r, cfg["choices"], rng)
                                   if cfg.get("reward", "label") == "label" else
                                   curation.k_choice_any(r, cfg["choices"], rng))
            start = stop
    else:
        raise UserError(f"unknown curation {cfg['kind']!r}; use one of {', '.join(curation.KINDS)}")
    result, start = {}, 0
    for name, index, images, _ in parts:
        result[name] = index[removed[start: start + len(images)]].tolist()
        start += len(images)
    write_json_atomic(out, {"curation": cfg, "removed": result,
                            "stats": {**curation.removal_stats(candidates.generation, removed), **extra}})


@stage_kind("heldout", ".json", version=1)
def heldout_stage(params: dict, deps: dict, out: Path) -> None:
    """A fitted model's held-out loss, its family's `heldout_loss` (diffusion: the denoising
    loss at fixed timesteps and noise; gaussian, gmm: the exact negative log-likelihood in
    nats per dimension), on real images no generation trained on (`deps["images"]`, the
    loop's real test split): {"test_loss": value}."""
    family, model = load_fitted(deps["model"], params.get("module"))
    if family.heldout_loss is None:
        raise UserError(f"the {family.name} generator family has no held-out loss")
    write_json_atomic(out, {"test_loss": float(family.heldout_loss(model, ImageSet.load(deps["images"])))})


@stage_kind("pool", ".npz", version=1)
def pool_stage(params: dict, deps: dict, out: Path) -> None:
    """One generation's output when several generator families feed the loop: the
    families' samples (`deps["part<i>"]`, in entry order i) concatenated, each image
    keeping its provenance (source gen:<family name>)."""
    parts = sorted((int(name[4:]), path) for name, path in deps.items() if name.startswith("part"))
    ImageSet.concat([ImageSet.load(path) for _, path in parts]).save(out)
