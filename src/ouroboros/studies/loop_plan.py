"""The feedback loop's planner: the config expanded into stages, one `Chain` per
condition (variant x guidance) and seed.

A chain knows its context -- the loop settings of its variant, its guidance and seed,
the real split it draws from, the generator families of its pool, the evaluation -- and
builds its generations one after another (`Chain.build`): each generation's curation,
training set, every family's fit and samples, the pooled output and its evaluation.
Stage keys depend only on what the stages compute (see `ouroboros.studies.loop` for the
study and `ouroboros.studies.scenarios` / `curation` for the data each stage draws).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.generators.base import GeneratorFamily, get_family
from ouroboros.graph import Stage
from ouroboros.studies import curation, scenarios
from ouroboros.studies.scenarios import pool_counts
from ouroboros.studies.common import SAMPLING_FIELDS, data_stage, derived_seed, family_params

Triple = tuple[Stage, Stage, Stage]  # (fit, output or sample, evaluate)


@dataclasses.dataclass
class LoopPlan:
    train: ImageSet
    test: ImageSet
    classifier: Stage
    reference: Stage  # classifier on the real test split
    # (variant, guidance, seed) -> per generation: (fit, output, evaluate); variant is ""
    # without loop.variants. `output` is the generation's pooled output O_g (the one
    # family's samples, or a pool stage), `fit` the first family's fit (its deps["train"]
    # is the training set every family shares).
    chains: dict[tuple[str, float, int], list[Triple]]
    # (variant, guidance, seed) -> per generation: family name -> its (fit, sample, evaluate), when
    # several families feed the pool that generation (empty when one does).
    families: dict[tuple[str, float, int], list[dict[str, Triple]]] = dataclasses.field(default_factory=dict)

    def targets(self) -> list[Stage]:
        return ([self.reference] + [ev for chain in self.chains.values() for (_, _, ev) in chain]
                + [ev for chain in self.families.values() for parts in chain for (_, _, ev) in parts.values()])


@dataclasses.dataclass(frozen=True)
class PoolEntry:
    """A generator family of the pool, resolved to stage parameters."""

    name: str  # provenance name (images carry source gen:<name>)
    family: GeneratorFamily
    share: float
    fit_config: dict  # the family's settings, less those only sampling reads
    sampling: dict  # sample-stage settings (diffusion: sampler, sample_steps, sample_batch_size)
    bias: float | None  # None: the chain's guidance (families whose knob is guidance)

    def sample_stage(self, fit: Stage, n: int, w: float, seed: int, label: str, first_label: int = 0) -> Stage:
        """`n` samples of this family fitted as `fit`, with its bias knob (the chain's
        guidance `w` unless the entry sets one)."""
        params = {"n": n, self.family.bias: w if self.bias is None else self.bias, "seed": seed, **self.sampling}
        params.update(family_params(self.family))
        if first_label:
            params["first_label"] = first_label
        return Stage("sample", params, {"model": fit}, label=label)


def pool_entries(config: StudyConfig, lc=None) -> list[PoolEntry]:
    """The families feeding the loop's pool (`loop.generators` of `lc`, default the loop
    section; by default one diffusion family with the `generator:` settings)."""
    out = []
    for i, entry in enumerate((lc or config.loop).families()):
        family = get_family(entry.family)
        plain = family.config is type(config.generator) and not entry.settings  # the generator: section as is
        settings = dataclasses.asdict(config.generator if plain else
                                      entry.generator_config(config.generator, f"loop.generators[{i}]"))
        sampling = {k: settings.pop(k) for k in SAMPLING_FIELDS if k in settings}
        bias = entry.bias
        if bias is None and family.bias != "guidance":
            bias = family.bias_default
        out.append(PoolEntry(entry.label, family, entry.share, settings, sampling, bias))
    return out


def load_splits(config: StudyConfig) -> tuple[ImageSet, ImageSet]:
    full = load_dataset(config.data.train, config.data.image_size)
    if config.data.test is not None:
        test = load_dataset(config.data.test, config.data.image_size)
        if test.class_names != full.class_names:
            raise UserError(
                f"train and test datasets have different classes: {list(full.class_names)} vs {list(test.class_names)}"
            )
        if test.shape[0] != full.shape[0]:
            kind = {1: "greyscale (1 channel)", 3: "colour (3 channels)"}
            raise UserError(f"data.train is {kind.get(full.shape[0], full.shape[0])} but data.test "
                            f"{kind.get(test.shape[0], test.shape[0])}; use a test set of the same kind of images")
        if test.shape != full.shape:
            raise UserError(f"data.test has images of shape {test.shape} but data.train {full.shape}; "
                            "they must match")
        return full, test
    counts = full.class_counts()
    if (counts < 2).any():
        raise UserError(f"every class needs at least 2 images to split off a test set; counts {counts.tolist()}")
    parts = stratified_split(
        full, {"train": 1.0 - config.data.test_fraction, "test": config.data.test_fraction}, seed=config.data.split_seed
    )
    return parts["train"], parts["test"]


def check_loop(lc, loop_real: ImageSet) -> None:
    """Config errors that need the real split's size or labels, before anything is written:
    a real reservoir too small for the scenario, and a curation certain to empty a class
    (`lc`: the loop settings of one variant)."""
    n = lc.samples_per_generation or len(loop_real)
    scenarios.check_reservoir(lc.scenario, n, lc.generations, lc.real_fraction, len(loop_real))
    real_seeds = [derived_seed(s, "real order") for s in lc.seeds]
    for real_seed in real_seeds:
        labels = []
        for g in range(1, lc.generations):
            index = scenarios.real_candidates(lc.scenario, g, len(loop_real), n, lc.real_fraction, real_seed)
            # mix keeps the first round(rho N) real survivors: exactly the first of the order
            # when no real image is removed
            if index is not None and lc.scenario == "mix" and lc.curation.false_positive == 0:
                index = scenarios.real_order(len(loop_real), real_seed)[: int(round(lc.real_fraction * n))]
            labels.append(None if index is None or len(index) == 0 else loop_real.labels[index])
        curation.certain_empty_class(lc.curation, labels, loop_real.class_names)


def curation_split(lc, split_seed: int, train: ImageSet) -> tuple[ImageSet, ImageSet | None]:
    """(the scenario's real split R, the detector probe's held-out real images or None):
    with detector curation a stratified `probe_fraction` of the real training split
    (seeded by data.split_seed) is held out for the probe; otherwise R is all of it."""
    cur = lc.curation
    if cur.kind != "detector":
        return train, None
    parts = stratified_split(train, {"loop": 1.0 - cur.probe_fraction, "probe": cur.probe_fraction},
                             seed=split_seed)
    return parts["loop"], parts["probe"]


@dataclasses.dataclass
class Condition:
    """What the chains of one variant share: its loop settings, its real split R (and the
    detector probe's held-out real images), its pool and the stages every chain reads."""

    variant: str  # "" without loop.variants
    lc: object  # the variant's LoopConfig
    loop_real: ImageSet  # R
    loop_stage: Stage  # R's data stage
    probe_real: Stage | None  # the detector probe's held-out real images (data stage)
    n_probe: int  # how many
    entries: list[PoolEntry]
    counts: list[int]  # images each family samples per generation (pool_counts of n_sample)
    n: int  # images per generation's training set
    num_classes: int
    train_stage: Stage  # the real training split (a Gaussian family's PCA is fitted on it)
    classifier: Stage
    evaluate: dict  # the evaluate stage's parameters
    scorer: dict  # the evaluate stage's classifier input ({} when it needs none)


@dataclasses.dataclass
class Chain:
    """One chain of the loop: a condition's generations for one guidance and seed."""

    cond: Condition
    w: float  # guidance
    s: int  # seed
    outputs: list[Stage] = dataclasses.field(default_factory=list)  # O_0, O_1, ...
    generations: list[Triple] = dataclasses.field(default_factory=list)
    parts: list[dict[str, Triple]] = dataclasses.field(default_factory=list)
    probe: Stage | None = None

    def label(self, g: int) -> str:
        v = self.cond.variant
        return f"{v + ' ' if v else ''}w={self.w:g} seed={self.s} gen={g}"

    def build(self) -> Chain:
        for g in range(self.cond.lc.generations):
            self._generation(g)
        return self

    def _generation(self, g: int) -> None:
        cond, label = self.cond, self.label(g)
        source = self._training_set(g, self._curate(g))
        parts, first = {}, 0
        for entry, count in zip(cond.entries, cond.counts):
            if count:
                parts[entry.name] = self._family_stages(entry, g, count, first % cond.num_classes, source)
                first += count
        if len(parts) == 1:
            ((fit, output),) = parts.values()
        else:
            fit = next(iter(parts.values()))[0]
            output = Stage("pool", {"families": list(parts)},
                           {f"part{i}": sample for i, (_, sample) in enumerate(parts.values())}, label=label)
        self.generations.append((fit, output, self._evaluate(output, label)))
        self.outputs.append(output)
        self.parts.append({} if len(parts) == 1 else {
            name: (f, sm, self._evaluate(sm, f"{label} {name}")) for name, (f, sm) in parts.items()})
        if g == 0 and cond.probe_real is not None:
            self.probe = self._probe(fit)

    def _evaluate(self, images: Stage, label: str) -> Stage:
        cond = self.cond
        return Stage("evaluate", cond.evaluate, {"images": images, **cond.scorer, "real": cond.train_stage},
                     label=label)

    def _family_stages(self, entry: PoolEntry, g: int, count: int, first_label: int,
                       source: Stage) -> tuple[Stage, Stage]:
        """One family's fit on the generation's training set and its `count` samples. With
        one family the stages keep the keys they had before families existed (no family or
        first_label parameter, seeds not tied to the name); with several, each family's
        seeds are derived from its name too. A family on a PCA space (or a latent family
        with encoder_fit: real) fits it on the real training split, so every generation
        models the same space."""
        several = len(self.cond.entries) > 1
        tag = (entry.name,) if several else ()
        fit_params = {"config": entry.fit_config, "seed": derived_seed(self.s, g, "fit", *tag), "name": entry.name}
        fit_params.update(family_params(entry.family))
        deps = {"train": source}
        if entry.fit_config.get("space") == "pca" or entry.fit_config.get("encoder_fit") == "real":
            deps["reference"] = self.cond.train_stage
        label = f"{self.label(g)} {entry.name}" if several else self.label(g)
        fit = Stage("fit", fit_params, deps, label=label)
        sample = entry.sample_stage(fit, count, self.w, derived_seed(self.s, g, "sample", *tag), label, first_label)
        return fit, sample

    def _probe(self, fit0: Stage) -> Stage:
        """The chain's detector probe: held-out real images against a separate sample (as
        many) from generation 0's model (the pool's first family), never images that enter
        the pool."""
        cond = self.cond
        label = self.label(0).removesuffix(" gen=0")
        sample = cond.entries[0].sample_stage(fit0, cond.n_probe, self.w, derived_seed(self.s, "probe sample"),
                                              f"{label} probe")
        return Stage("probe", {"seed": derived_seed(self.s, "probe")},
                     {"real": cond.probe_real, "generated": sample, "classifier": cond.classifier},
                     label=f"{label} probe")

    def _curate(self, g: int) -> Stage | None:
        """Generation g's curate stage (None without curation, and for generation 0). Its
        real candidates: "all" of R, fresh's new images (indices into R), or none (replace,
        and reward, which curates only generated images)."""
        cond, lc = self.cond, self.cond.lc
        cur = lc.curation
        if cur.kind == "none" or g == 0:
            return None
        index = None if cur.kind == "reward" else scenarios.real_candidates(
            lc.scenario, g, len(cond.loop_real), cond.n, lc.real_fraction, derived_seed(self.s, "real order"))
        deps = {f"out{k}": self.outputs[k] for k in scenarios.window_of(lc.scenario, lc.window, g)}
        if index is not None or cur.kind == "detector":
            deps["real"] = cond.loop_stage
        if cur.kind in ("detector", "reward"):
            deps["classifier"] = cond.classifier
        if cur.kind == "detector":
            deps["probe"] = self.probe
        candidates = None if index is None else "all" if lc.scenario != "fresh" else index.tolist()
        params = {"curation": cur.params(), "generation": g, "seed": derived_seed(self.s, g, "curate"),
                  "real": candidates}
        return Stage("curate", params, deps, label=self.label(g))

    def _training_set(self, g: int, curate: Stage | None) -> Stage:
        """The stage whose artifact generation g trains on. The real split itself for
        generation 0, and O_{g-1} itself under plain replace without curation, so those keep
        the keys they had before scenarios existed; an `assemble` stage otherwise (reading
        the curate stage's decisions when there is one)."""
        cond, lc = self.cond, self.cond.lc
        if g == 0 and lc.scenario != "fresh":
            return cond.loop_stage
        if lc.scenario == "replace" and lc.window in (None, 1) and curate is None:
            return self.outputs[g - 1]
        params = {"scenario": lc.scenario, "generation": g, "n": cond.n, "seed": derived_seed(self.s, g, "assemble"),
                  "real_seed": derived_seed(self.s, "real order")}
        # Only what the scenario reads goes into the key: changing rho does not recompute augment.
        if lc.scenario in ("mix", "fresh"):
            params["real_fraction"] = lc.real_fraction
        if lc.scenario == "augment":
            params["synthetic_ratio"] = lc.synthetic_ratio
        deps = {"real": cond.loop_stage,
                **{f"out{k}": self.outputs[k] for k in scenarios.window_of(lc.scenario, lc.window, g)}}
        if curate is not None:
            deps["curation"] = curate
        return Stage("assemble", params, deps, label=self.label(g))


def plan(config: StudyConfig, cache: Path | None, splits: tuple[ImageSet, ImageSet] | None = None) -> LoopPlan:
    """Expand the config into stages; `splits` (train, test) defaults to loading the data;
    `cache` None plans without writing the data artifacts (a dry run)."""
    train, test = splits or load_splits(config)
    if train.num_classes < 2:
        raise UserError("the feedback loop needs at least 2 classes")
    train_stage, test_stage = data_stage(train, "train", cache), data_stage(test, "test", cache)
    classifier = Stage("classifier", {"config": dataclasses.asdict(config.classifier), "seed": 0},
                       {"train": train_stage}, label="real data")
    evaluate = evaluation(config, train)
    scorer = {"classifier": classifier} if uses_classifier(evaluate) else {}
    reference = Stage("evaluate", evaluate, {"images": test_stage, **scorer, "real": train_stage},
                      label="real test")
    chains, families = {}, {}
    for variant, lc in config.loop.cells():
        loop_real, probe_real = curation_split(lc, config.data.split_seed, train)
        check_loop(lc, loop_real)
        n = lc.samples_per_generation or len(loop_real)
        # Each generation samples N images; augment's window (one generation by default)
        # must also hold round(lambda |R|) of them; reward curation samples K times that.
        n_sample = max(n, scenarios.generated_count(lc.scenario, n, len(loop_real), lc.real_fraction,
                                                    lc.synthetic_ratio) if lc.scenario == "augment" else n)
        if lc.curation.kind == "reward":
            n_sample *= lc.curation.choices
        entries = pool_entries(config, lc)
        cond = Condition(
            variant, lc, loop_real,
            train_stage if probe_real is None else data_stage(loop_real, "loop real", cache),
            None if probe_real is None else data_stage(probe_real, "probe real", cache),
            0 if probe_real is None else len(probe_real),
            entries, pool_counts([e.share for e in entries], n_sample), n, train.num_classes, train_stage,
            classifier, evaluate, scorer)
        for w, s in itertools.product(lc.guidance, lc.seeds):
            chain = Chain(cond, float(w), s).build()
            chains[(variant, float(w), s)] = chain.generations
            if any(chain.parts):
                families[(variant, float(w), s)] = chain.parts
    return LoopPlan(train, test, classifier, reference, chains, families)


def evaluation(config: StudyConfig, train: ImageSet) -> dict:
    """The evaluate stage's parameters for this study and data: ``metrics`` is
    ``classifier+fid+prdc`` for a conditional generator, ``fid+prdc`` otherwise;
    ``features`` (absent: the classifier's) is ``inception`` for colour images of at
    least 32x32 when the weights file is found, with its path and SHA-256 (so other
    weights make other keys)."""
    params = {"metrics": "classifier+fid+prdc" if config.generator.conditional else "fid+prdc", "k": 5}
    c, h, w = train.shape
    if c == 3 and min(h, w) >= 32:
        weights = inception_weights(config.loop.inception_weights)
        if weights is not None:
            params.update(features="inception", weights=str(weights), weights_sha256=_sha256(weights))
    return params


def uses_classifier(evaluate: dict) -> bool:
    """Whether the evaluate stage needs the real-data classifier (for scores or features)."""
    return evaluate["metrics"].startswith("classifier+") or evaluate.get("features", "classifier") == "classifier"


def inception_weights(path: str | None) -> Path | None:
    """The Inception weights file: `path` (an error when it is not there), else
    $OUROBOROS_INCEPTION_WEIGHTS or the cache folders (None when not found there)."""
    from ouroboros.features.inception import find_weights

    if path is not None:
        return find_weights(path).resolve()
    try:
        return find_weights().resolve()
    except UserError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
