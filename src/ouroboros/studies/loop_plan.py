"""The feedback loop's planner: the config expanded into stages, one `Chain` per
condition (variant x guidance) and seed.

A chain knows its context -- the loop settings of its variant, its guidance and seed,
the real split it draws from, the generator families of its pool, the instruments that
measure it (`ouroboros.studies.loop_data`) -- and builds its generations one after
another (`Chain.build`): each generation's curation, training set, every family's fit,
samples and held-out loss, the pooled output and its evaluation. A curated variant's
control chain (`loop.curation_controls`) draws each training set to match the curated
chain's of the same seed and generation. Stage keys depend only on what the stages
compute (see `ouroboros.studies.loop` for the study and `ouroboros.studies.scenarios` /
`curation` for the data each stage draws).

Generation 0 trains on the whole real training split in every variant (so variants of
one generator pool share its model, stage for stage) except under `fresh`, whose
generation 0 trains on the first N images of the chain's real order
(`distinct_generation0` names those variants).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.generators.base import GeneratorFamily, get_family
from ouroboros.graph import Stage, settings_params
from ouroboros.studies import loop_data, scenarios
from ouroboros.studies.loop_data import Instruments, curation_split, evaluation
from ouroboros.studies.scenarios import pool_counts
from ouroboros.studies.common import SAMPLING_FIELDS, data_stage, derived_seed, family_params

Triple = tuple[Stage, Stage, Stage]  # (fit, output or sample, evaluate)
Key = tuple[str, float, int]  # (variant, guidance, seed)


@dataclasses.dataclass
class LoopPlan:
    # instruments key (a seed, or None when evaluate.instruments is fixed) -> the real
    # splits, classifier and yardstick that measure that seed's chains
    instruments: dict[int | None, Instruments]
    # (variant, guidance, seed) -> per generation: (fit, output, evaluate); variant is ""
    # without loop.variants. `output` is the generation's pooled output O_g (the one
    # family's samples, or a pool stage), `fit` the first family's fit (its deps["train"]
    # is the training set every family shares).
    chains: dict[Key, list[Triple]]
    # (variant, guidance, seed) -> per generation: family name -> its (fit, sample, evaluate), when
    # several families feed the pool that generation (empty when one does).
    families: dict[Key, list[dict[str, Triple]]] = dataclasses.field(default_factory=dict)
    # (variant, guidance, seed) -> per generation: family name -> its heldout stage (test_loss),
    # for each family that has a held-out loss
    heldout: dict[Key, list[dict[str, Stage]]] = dataclasses.field(default_factory=dict)
    # (variant, guidance, seed) -> per generation: its tails stages (`Chain._tails`): "" for the
    # pooled output, and with several families each family's name for its own samples
    tails: dict[Key, list[dict[str, Stage]]] = dataclasses.field(default_factory=dict)

    @property
    def first(self) -> Instruments:
        return next(iter(self.instruments.values()))

    # The first instruments' (all of them when fixed), as before instruments were per seed.
    train = property(lambda self: self.first.train)
    test = property(lambda self: self.first.test)
    classifier = property(lambda self: self.first.classifier)
    reference = property(lambda self: self.first.yardstick)

    def targets(self) -> list[Stage]:
        return ([st for inst in self.instruments.values() for st in (inst.yardstick, inst.yardstick_tails) if st]
                + [ev for chain in self.chains.values() for (_, _, ev) in chain]
                + [ev for chain in self.families.values() for parts in chain for (_, _, ev) in parts.values()]
                + [st for chain in self.heldout.values() for parts in chain for st in parts.values()]
                + [st for chain in self.tails.values() for parts in chain for st in parts.values()])


@dataclasses.dataclass(frozen=True)
class PoolEntry:
    """A generator family of the pool, resolved to stage parameters."""

    name: str  # provenance name (images carry source gen:<name>)
    family: GeneratorFamily
    share: float
    fit_config: dict  # the family's settings, less those only sampling reads
    sampling: dict  # sample-stage settings (diffusion: sampler, sample_steps, sample_batch_size)
    bias: float | None  # None: the chain's guidance (families whose knob is guidance)

    def sample_stage(self, fit: Stage, n: int, w: float, seed: int, label: str, first_label: int = 0,
                     drift: tuple[Stage, int] | None = None) -> Stage:
        """`n` samples of this family fitted as `fit`, with its bias knob (the chain's
        guidance `w` unless the entry sets one). `drift` (loop.labels: sampled): (the
        model's training set, a seed): the labels are drawn from its class proportions."""
        params = {"n": n, self.family.bias: w if self.bias is None else self.bias, "seed": seed, **self.sampling}
        params.update(family_params(self.family))
        deps = {"model": fit}
        if drift is not None:
            params.update(labels="sampled", label_seed=drift[1])
            deps["train"] = drift[0]
        elif first_label:
            params["first_label"] = first_label
        return Stage("sample", params, deps, label=label)


def pool_entries(config: StudyConfig, lc=None) -> list[PoolEntry]:
    """The families feeding the loop's pool (`loop.generators` of `lc`, default the loop
    section; by default one diffusion family with the `generator:` settings)."""
    out = []
    for i, entry in enumerate((lc or config.loop).families()):
        family = get_family(entry.family)
        plain = family.config is type(config.generator) and not entry.settings  # the generator: section as is
        settings = settings_params(config.generator if plain else
                                      entry.generator_config(config.generator, f"loop.generators[{i}]"))
        sampling = {k: settings.pop(k) for k in SAMPLING_FIELDS if k in settings}
        bias = entry.bias
        if bias is None and family.bias != "guidance":
            bias = family.bias_default
        out.append(PoolEntry(entry.label, family, entry.share, settings, sampling, bias))
    return out


@dataclasses.dataclass
class Condition:
    """What the chains of one variant (and one seed's instruments) share: its loop settings,
    its real split R (and the detector probe's held-out real images), its pool and the
    stages every chain reads."""

    variant: str  # "" without loop.variants
    lc: object  # the variant's LoopConfig (a control's: its curated variant's, which sizes it)
    inst: Instruments
    loop_real: ImageSet  # R
    loop_stage: Stage  # R's data stage
    probe_real: Stage | None  # the detector probe's held-out real images (data stage)
    n_probe: int  # how many
    entries: list[PoolEntry]
    counts: list[int]  # images each family samples per generation (pool_counts of n_sample)
    n: int  # images per generation's training set
    num_classes: int
    evaluate: dict  # the evaluate stage's parameters
    scorer: dict  # the evaluate stage's classifier input ({} when it needs none)
    control: bool = False  # an unfiltered control: its chains match a curated chain's training sets


@dataclasses.dataclass
class Chain:
    """One chain of the loop: a condition's generations for one guidance and seed."""

    cond: Condition
    w: float  # guidance
    s: int  # seed
    match: Chain | None = None  # a control's curated chain (same guidance and seed)
    outputs: list[Stage] = dataclasses.field(default_factory=list)  # O_0, O_1, ...
    train_sets: list[Stage] = dataclasses.field(default_factory=list)  # what each generation trains on
    generations: list[Triple] = dataclasses.field(default_factory=list)
    parts: list[dict[str, Triple]] = dataclasses.field(default_factory=list)
    heldout: list[dict[str, Stage]] = dataclasses.field(default_factory=list)
    fits: list[dict[str, Stage]] = dataclasses.field(default_factory=list)  # per generation: family name -> fit
    tails: list[dict[str, Stage]] = dataclasses.field(default_factory=list)
    fit0: dict[str, Stage] = dataclasses.field(default_factory=dict)  # each family's generation 0 fit
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
        if self.match is not None and g > 0:
            source = self._matched(g)
        else:
            source = self._training_set(g, None if cond.control else self._curate(g))
        self.train_sets.append(source)
        parts, first = {}, 0
        for entry, count in zip(cond.entries, cond.counts):
            if count:
                parts[entry.name] = self._family_stages(entry, g, count, first % cond.num_classes, source)
                first += count
        self.fits.append({name: f for name, (f, _) in parts.items()})
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
        entries = {e.name: e for e in cond.entries}
        self.heldout.append({name: Stage("heldout", family_params(entries[name].family),
                                         {"model": f, "images": cond.inst.test_stage}, label=label)
                             for name, (f, _) in parts.items() if entries[name].family.heldout_loss is not None})
        self.tails.append({} if self.cond.inst.yardstick_tails is None else self._tails(g, parts, output, label))
        if g == 0 and cond.probe_real is not None and not cond.control:
            self.probe = self._probe(fit)

    def _evaluate(self, images: Stage, label: str) -> Stage:
        cond = self.cond
        cur, params = cond.lc.curation, cond.evaluate
        if cur.kind == "reward" and cur.reward != "label" and cond.scorer:  # expected_reward rows (a control's too)
            params = {**params, "reward": cur.params()}
        return Stage("evaluate", params, {"images": images, **cond.scorer, "real": cond.inst.reference},
                     label=label)

    def _tails(self, g: int, parts: dict[str, tuple[Stage, Stage]], output: Stage, label: str) -> dict[str, Stage]:
        """Generation g's tails stages (`ouroboros.metrics.tails`), scored on the evaluate
        stage's features against the same real split: "" for the pooled output and, with
        several families, one per family's own samples. A family whose models are Gaussian
        mixtures (the analytic families) also measures its model, sampled at its bias,
        against its generation 0 model: the real fitted density."""
        from ouroboros.generators.gaussian import FORMAT as MIXTURE
        from ouroboros.metrics.tails import DRAWS

        cond, entries = self.cond, {e.name: e for e in self.cond.entries}
        if g == 0:
            self.fit0 = {name: fit for name, (fit, _) in parts.items()}

        def stage(images: Stage, name: str | None, at: str) -> Stage:
            params = loop_data.tails_params(cond.evaluate)
            deps = {"images": images, **cond.scorer, "real": cond.inst.reference}
            entry = entries.get(name)
            if entry is not None and entry.family.format == MIXTURE and name in self.fit0:
                params.update(family_params(entry.family), density={"temperature": entry.bias, "draws": DRAWS,
                                                                    "seed": 0})
                deps.update(model=parts[name][0], real_model=self.fit0[name])
            return Stage("tails", params, deps, label=at)

        if len(parts) == 1:
            return {"": stage(output, next(iter(parts)), label)}
        return {"": stage(output, None, label),
                **{name: stage(sample, name, f"{label} {name}") for name, (_, sample) in parts.items()}}

    def _family_stages(self, entry: PoolEntry, g: int, count: int, first_label: int,
                       source: Stage) -> tuple[Stage, Stage]:
        """One family's fit on the generation's training set and its `count` samples. With
        one family the stages keep the keys they had before families existed (no family or
        first_label parameter, seeds not tied to the name); with several, each family's
        seeds are derived from its name too. A family on a PCA space (or a latent family
        with encoder_fit: real) fits it on the real training split, so every generation
        models the same space. Under loop.init previous, generation g > 0's fit starts from
        the same family's fit of generation g - 1 of this chain (its `init` input); under
        loop.labels sampled, the samples' labels are drawn from the training set's class
        proportions. Both add to the keys only when set."""
        lc = self.cond.lc
        several = len(self.cond.entries) > 1
        tag = (entry.name,) if several else ()
        fit_params = {"config": entry.fit_config, "seed": derived_seed(self.s, g, "fit", *tag), "name": entry.name}
        fit_params.update(family_params(entry.family))
        deps = {"train": source}
        if entry.fit_config.get("space") == "pca" or entry.fit_config.get("encoder_fit") == "real":
            deps["reference"] = self.cond.inst.train_stage
        if lc.init == "previous" and g > 0:
            fit_params.update(init="previous", warm_steps=lc.warm_steps)
            deps["init"] = self.fits[g - 1][entry.name]
        if lc.labels == "sampled" and g > 0:  # its classes may shrink (generation 0's are the real ones)
            fit_params["labels"] = "sampled"
        label = f"{self.label(g)} {entry.name}" if several else self.label(g)
        fit = Stage("fit", fit_params, deps, label=label)
        drift = (source, derived_seed(self.s, g, "labels", *tag)) if lc.labels == "sampled" else None
        sample = entry.sample_stage(fit, count, self.w, derived_seed(self.s, g, "sample", *tag), label, first_label,
                                    drift)
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
                     {"real": cond.probe_real, "generated": sample, "classifier": cond.inst.classifier},
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
            deps["classifier"] = cond.inst.classifier
        if cur.kind == "detector":
            deps["probe"] = self.probe
        candidates = None if index is None else "all" if lc.scenario != "fresh" else index.tolist()
        params = {"curation": cur.params(), "generation": g, "seed": derived_seed(self.s, g, "curate"),
                  "real": candidates}
        if cur.kind == "watermark":  # verdicts fixed per image: one seed for the whole chain
            params["verdict_seed"] = derived_seed(self.s, "watermark")
        return Stage("curate", params, deps, label=self.label(g))

    def _assemble_params(self, g: int) -> dict:
        cond, lc = self.cond, self.cond.lc
        params = {"scenario": lc.scenario, "generation": g, "n": cond.n, "seed": derived_seed(self.s, g, "assemble"),
                  "real_seed": derived_seed(self.s, "real order")}
        # Only what the scenario reads goes into the key: changing rho does not recompute augment.
        if lc.scenario in ("mix", "fresh"):
            params["real_fraction"] = lc.real_fraction
        if lc.scenario == "augment":
            params["synthetic_ratio"] = lc.synthetic_ratio
        if lc.labels == "sampled":  # draws keep the pool's class proportions
            params["labels"] = "sampled"
        return params

    def _window(self, g: int) -> dict[str, Stage]:
        lc = self.cond.lc
        return {f"out{k}": self.outputs[k] for k in scenarios.window_of(lc.scenario, lc.window, g)}

    def _training_set(self, g: int, curate: Stage | None) -> Stage:
        """The stage whose artifact generation g trains on. The real training split itself
        for generation 0 (fresh: the first N of its real order), and O_{g-1} itself under
        plain replace without curation, so those keep the keys they had before scenarios
        existed; an `assemble` stage otherwise (reading the curate stage's decisions when
        there is one)."""
        cond, lc = self.cond, self.cond.lc
        if g == 0 and not own_generation0(lc):
            return cond.inst.train_stage
        if g > 0 and lc.scenario == "replace" and lc.window in (None, 1) and curate is None:
            return self.outputs[g - 1]
        deps = {"real": cond.loop_stage, **self._window(g)}
        if curate is not None:
            deps["curation"] = curate
        return Stage("assemble", self._assemble_params(g), deps, label=self.label(g))

    def _matched(self, g: int) -> Stage:
        """A control's generation g >= 1: drawn without a filter from its own candidates, as
        large and with as many real images as the curated chain's set (scenarios.matched)."""
        deps = {"real": self.cond.loop_stage, **self._window(g), "match": self.match.train_sets[g]}
        return Stage("assemble", self._assemble_params(g), deps, label=self.label(g))


def own_generation0(lc) -> str | None:
    """Why a variant's generation 0 does not train on the whole real training split (None:
    it does, like every other variant's)."""
    if lc.scenario == "fresh":
        return "scenario fresh: generation 0 trains on the first N images of the chain's real order"
    return None


def distinct_generation0(config: StudyConfig) -> dict[str, str]:
    """variant -> why, for the variants whose generation 0 is not the one every other
    variant (of the same generator pool) shares."""
    return {name: why for name, lc in config.loop.cells() if (why := own_generation0(lc))}


def plan(config: StudyConfig, cache: Path | None, splits=None) -> LoopPlan:
    """Expand the config into stages. `splits`: the (train, test) splits per instruments key
    (`loop_data.load_data`, read from the data by default), or one (train, test) pair kept
    for every seed (as a given data.test is; per-seed instruments then redraw only the
    classifier). `cache` None plans without writing the data artifacts (a dry run)."""
    if splits is None:
        splits = loop_data.load_data(config)
    elif isinstance(splits, tuple):
        splits = {k: splits for k in loop_data.keys(config)}
    train = next(iter(splits.values()))[0]
    if train.num_classes < 2:
        raise UserError("the feedback loop needs at least 2 classes")
    evaluate = evaluation(config, train)
    insts = loop_data.instruments(config, splits, evaluate, cache)
    cells, controls = dict(config.loop.cells()), config.loop.controls()
    conds: dict = {}
    built: dict[Key, Chain] = {}
    out = LoopPlan(insts, {})
    for variant, lc in cells.items():
        for w, s in itertools.product(lc.guidance, lc.seeds):
            inst = insts[loop_data.key(config, s)]
            if (variant, inst.seed) not in conds:
                conds[variant, inst.seed] = _condition(config, variant, cells[controls.get(variant, variant)], inst,
                                                       evaluate, cache, control=variant in controls)
            match = built[(controls[variant], float(w), s)] if variant in controls else None
            chain = built[(variant, float(w), s)] = Chain(conds[variant, inst.seed], float(w), s, match).build()
            out.chains[(variant, float(w), s)] = chain.generations
            if any(chain.parts):
                out.families[(variant, float(w), s)] = chain.parts
            if any(chain.heldout):
                out.heldout[(variant, float(w), s)] = chain.heldout
            out.tails[(variant, float(w), s)] = chain.tails
    return out


def _condition(config: StudyConfig, variant: str, lc, inst: Instruments, evaluate: dict, cache: Path | None,
               control: bool) -> Condition:
    """The condition of `variant` measured by `inst`; `lc` its loop settings (a control's:
    its curated variant's, so it samples and draws from the same kind of candidates)."""
    loop_real, probe_real = curation_split(lc, inst.split_seed, inst.train)
    loop_data.check_loop(lc, loop_real, len(inst.train), None if inst.seed is None else [inst.seed])
    n = scenarios.samples_per_generation(lc, len(inst.train), len(loop_real))
    # Each generation samples N images; augment's window (one generation by default)
    # must also hold round(lambda |R|) of them; reward curation samples K times that.
    n_sample = max(n, scenarios.generated_count(lc.scenario, n, len(loop_real), lc.real_fraction,
                                                lc.synthetic_ratio) if lc.scenario == "augment" else n)
    if lc.curation.kind == "reward":
        n_sample *= lc.curation.choices
    entries = pool_entries(config, lc)
    scorer = {"classifier": inst.classifier} if loop_data.uses_classifier(evaluate) else {}
    return Condition(
        variant, lc, inst, loop_real,
        inst.train_stage if probe_real is None else data_stage(loop_real, "loop real", cache),
        None if probe_real is None else data_stage(probe_real, "probe real", cache),
        0 if probe_real is None else len(probe_real),
        entries, pool_counts([e.share for e in entries], n_sample), n, inst.train.num_classes, evaluate, scorer,
        control)
