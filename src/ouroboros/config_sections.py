"""The sections of a study config (data, loop, contamination, output, executor), each a
dataclass with its defaults and a `validate(where)` that names the key of a bad value.
`ouroboros.config` assembles them into `StudyConfig`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

from ouroboros.config_convert import MAX_CONVERT, from_dict
from ouroboros.config_loop_extra import DataImbalance, LoopRetraining, VariantRetraining
from ouroboros.errors import UserError, check_float, check_int, check_list, check_text
from ouroboros.generators.diffusion import DiffusionConfig, check_guidance
from ouroboros.studies.curation import CurationConfig

# Upper bounds on sizes and seeds. They sit far above any sensible setting and only
# stop absurd values (a typo'd 10**9) from reaching a worker as a hang or an
# out-of-memory crash.
MAX_SEED = 2**31 - 1
MAX_GUIDANCE = 100.0
MAX_LIST = 100  # values in any config list (each value multiplies the work)


def _seeds(where: str, seeds) -> None:
    check_list(where, seeds, MAX_LIST, distinct=True)
    for i, s in enumerate(seeds):
        check_int(f"{where}[{i}]", s, 0, MAX_SEED)


def _guidance(where: str, w) -> None:
    try:
        check_guidance(w)
    except (UserError, TypeError):
        raise UserError(f"{where}: guidance must be a finite number >= 0 "
                        f"(eps = (1 + w) eps_cond - w eps_uncond); got {w!r}") from None
    check_float(where, w, 0.0, MAX_GUIDANCE)


@dataclass
class DataConfig(DataImbalance):  # + class_weights, long_tail (config_loop_extra)
    train: str = "digits"  # dataset spec (see ouroboros.data.loaders)
    test: Optional[str] = None  # None: split test_fraction of `train` off, per class
    test_fraction: float = 0.3
    split_seed: int = 0
    image_size: Optional[int] = None  # an ImageFolder's images resized to this x this on load; None: as they are

    def validate(self, where: str = "data") -> None:
        check_text(f"{where}.train", self.train)
        if self.test is not None:
            check_text(f"{where}.test", self.test)
        if self.image_size is not None:
            check_int(f"{where}.image_size", self.image_size, 2, 1024)
        check_float(f"{where}.test_fraction", self.test_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        self.validate_imbalance(where)
        check_int(f"{where}.split_seed", self.split_seed, 0, 2**32 - 1)  # numpy's seed range


MAX_BIAS = 100.0  # a family's sampling-bias knob (guidance, temperature) above this is a typo


@dataclass
class FamilyEntry:
    """One generator family feeding the loop's shared pool (``loop.generators``).

    Every generation, each entry's model is fitted on the same training set and samples
    round(share x N) of the N images the generation makes (largest remainders, so the
    counts sum to N exactly; an entry whose count is 0 makes nothing that generation).
    """

    family: str = "diffusion"  # a registered generator family: diffusion, gaussian, gmm
    share: float = 1.0  # its fraction of every generation's output, in [0, 1]; shares sum to 1
    # Provenance name: its images carry source gen:<name>, the results' family column and
    # train_share_family_<name> use it. None: the family's name. Distinct across entries.
    name: Optional[str] = None
    # The family's settings. diffusion: overrides of the top-level `generator:` section;
    # other families: their own settings (e.g. gaussian {space: pca, components: 16}).
    settings: Optional[dict] = None
    # The family's sampling-bias knob (guidance for diffusion, temperature for the
    # Gaussians). None: diffusion entries take the chain's loop.guidance, others their
    # family's neutral value (temperature 1: sample the fit as it is).
    bias: Optional[float] = None

    @property
    def label(self) -> str:
        return self.name or self.family

    def validate(self, where: str) -> None:
        from ouroboros.generators.base import get_family

        try:
            get_family(self.family)
        except UserError as exc:
            raise UserError(f"{where}.family: {exc}") from None
        check_float(f"{where}.share", self.share, 0.0, 1.0)
        if self.name is not None:
            check_text(f"{where}.name", self.name, 50)
            if not all(c.isalnum() or c in "-_." for c in self.name):
                raise UserError(f"{where}.name {self.name!r} may hold only letters, digits, '-', '_' and '.' "
                                "(it names files and results columns)")
        if self.bias is not None:
            check_float(f"{where}.bias", self.bias, 0.0, MAX_BIAS)

    def generator_config(self, generator: DiffusionConfig, where: str):
        """This entry's validated settings, as its family's config dataclass. A family whose
        settings are the top-level generator's kind (diffusion) starts from `generator`."""
        from ouroboros.generators.base import get_family

        family = get_family(self.family)
        if family.config is type(generator):
            config = from_dict(family.config, {**dataclasses.asdict(generator), **(self.settings or {})},
                               f"{where}.settings")
            config.validate(f"{where}.settings")
            return config
        try:
            return family.make_config(self.settings)
        except (UserError, TypeError, ValueError) as exc:
            raise UserError(f"{where}.settings: {exc}") from None


@dataclass
class LoopVariant(VariantRetraining):  # + init, warm_steps, labels (config_loop_extra)
    """One cell of a grid of loop variants: the LoopConfig keys it changes (None: the
    loop section's value) and its name in results.csv (default: made from the changes)."""

    name: Optional[str] = None
    scenario: Optional[Literal["replace", "accumulate", "accumulate-subsample", "mix", "augment", "fresh"]] = None
    samples_per_generation: Optional[int] = None
    real_fraction: Optional[float] = None
    synthetic_ratio: Optional[float] = None
    window: Optional[int] = None
    generators: Optional[list[FamilyEntry]] = None
    curation: Optional[CurationConfig] = None

    def changes(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "name" and getattr(self, f.name) is not None}

    def label(self) -> str:
        if self.name is not None:
            return self.name
        ch = self.changes()
        short = {"real_fraction": "rho", "synthetic_ratio": "lambda", "window": "K", "samples_per_generation": "N"}
        parts = [ch.pop("scenario")] if "scenario" in ch else []
        parts += [f"{short.get(k, k)}={_plain(v)}" for k, v in ch.items()]
        return " ".join(parts) or "loop"


def _plain(value) -> str:
    """A value as it reads in a variant's name: 0.2, 1, or a nested setting's own values."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(_plain(v) for v in value)
    if isinstance(value, FamilyEntry):
        return value.label if value.share == 1 else f"{value.label}:{value.share:g}"
    if dataclasses.is_dataclass(value):
        return ",".join(_plain(v) for v in dataclasses.asdict(value).values() if v is not None)
    return str(value)


@dataclass
class LoopConfig(LoopRetraining):  # + init, warm_steps, labels (config_loop_extra)
    generations: int = 5  # the demo's (5 minutes on 2 cores); the paper's 9: loop.generations=9
    guidance: list[float] = field(default_factory=lambda: [1.0, 0.0])  # the paper's: [1.0, 0.1, 0.0]
    # Five seeds: with three (t = 28 at alpha / 40) recall's fall under w = 1 did not resolve after Holm.
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    # How each generation's training set is drawn (ouroboros.studies.scenarios defines
    # each exactly): replace, accumulate, accumulate-subsample, mix, augment, fresh.
    scenario: Literal["replace", "accumulate", "accumulate-subsample", "mix", "augment", "fresh"] = "replace"
    samples_per_generation: Optional[int] = None  # None: the size of the real training set
    real_fraction: float = 0.5  # rho, mix and fresh: the FRACTION of the N-image set that is real
    synthetic_ratio: float = 1.0  # lambda, augment: generated images per real image (a RATIO, may exceed 1)
    # K: the generated part comes from the last K generations' output. None: 1 (only g-1),
    # except accumulate and accumulate-subsample, whose pool holds every generation so far.
    window: Optional[int] = None
    # The generator families feeding one shared pool (FamilyEntry: family, share, name,
    # settings, bias), e.g. [{family: diffusion, share: 0.7}, {family: gaussian, share: 0.3}].
    # Every family retrains on the same training set each generation and makes its share
    # of the next pool. loop.guidance (the chain axis) is the bias of diffusion entries
    # that set none. None: one diffusion family, share 1, the `generator:` settings.
    generators: Optional[list[FamilyEntry]] = None
    # A filter between each generation's candidates and its training set: none, watermark,
    # detector or reward (ouroboros.studies.curation defines each exactly).
    curation: CurationConfig = field(default_factory=CurationConfig)
    # A grid in one config: each variant is the loop above with some keys changed and
    # runs its own chains (every guidance x seed); null: the loop above alone.
    variants: Optional[list[LoopVariant]] = None
    # Lists of settings crossed into those variants, e.g. {real_fraction: [0.2, 0.5], guidance: [0, 1]}
    # (ouroboros.config_grid: keys, names, columns); instead of variants, not with them. null: none.
    grid: Optional[dict] = None
    # With variants: each curated variant gets an unfiltered control, "<name> control", whose
    # training sets match its sets' sizes and real counts (ouroboros.studies.scenarios.matched).
    curation_controls: bool = True
    # The FID Inception weights file for colour images of 32x32 and up (features: inception);
    # null: $OUROBOROS_INCEPTION_WEIGHTS or the cache folders, else classifier features.
    inception_weights: Optional[str] = None

    def families(self) -> list[FamilyEntry]:
        """The pool's entries; the default is one diffusion family with share 1."""
        return self.generators if self.generators is not None else [FamilyEntry()]

    def cells(self) -> list[tuple[str, "LoopConfig"]]:
        """(name, resolved loop settings) of each variant, then of each curated variant's
        control (`controls`: its settings with curation none); [("", self)] without variants."""
        if self.variants is None:
            return [("", self)]
        cells = [(v.label(), dataclasses.replace(self, variants=None, grid=None, **v.changes()))
                 for v in self.variants]
        by_name = dict(cells)
        return cells + [(control, dataclasses.replace(by_name[curated], curation=CurationConfig()))
                        for control, curated in self.controls().items()]

    def controls(self) -> dict[str, str]:
        """Each curated variant's control: control name ("<name> control") -> the curated
        variant's name; {} without variants or with curation_controls false."""
        if self.variants is None or not self.curation_controls:
            return {}
        curated = [v.label() for v in self.variants
                   if (v.curation if v.curation is not None else self.curation).kind != "none"]
        return {f"{name} control": name for name in curated}

    def validate(self, where: str = "loop") -> None:
        from ouroboros.crosschecks import check_cells

        if not isinstance(self.curation_controls, bool):
            raise UserError(f"{where}.curation_controls must be true or false; got {self.curation_controls!r}")
        self._validate_one(where)  # first: what a variant then gets wrong is its own (a grid's: loop.grid.<key>)
        if self.variants is not None:
            check_list(f"{where}.variants", self.variants, MAX_LIST)
            names = [name for name, _ in self.cells()]  # the variants', then their controls'
            for i, (name, cell) in enumerate(self.cells()[: len(self.variants)]):
                check_text(f"{where}.variants[{i}].name", name, 100)
                if names.count(name) > 1:
                    clash = " (the name of another variant's control)" if name.endswith(" control") else ""
                    raise UserError(f"{where}.variants: two variants are named {name!r}{clash}; give each a "
                                    "distinct name")
                cell.validate(f"{where}.grid" if self.grid is not None else f"{where}.variants[{i}]")
        check_cells(self, where)  # each condition (variant x guidance) has its own label and sample folder

    def _validate_one(self, where: str) -> None:
        from ouroboros.studies.scenarios import SCENARIOS

        check_int(f"{where}.generations", self.generations, 1, 1000)
        self.validate_retraining(where)
        if self.scenario not in SCENARIOS:  # a config built in Python skips the Literal check
            raise UserError(f"{where}.scenario: unknown scenario {self.scenario!r}; "
                            f"use one of {', '.join(SCENARIOS)}")
        check_float(f"{where}.real_fraction", self.real_fraction, 0.0, 1.0)
        check_float(f"{where}.synthetic_ratio", self.synthetic_ratio, 0.0, 100.0)
        if self.window is not None:
            check_int(f"{where}.window", self.window, 1, 1000)
            if self.scenario == "accumulate":
                raise UserError(f"{where}.window does not apply to scenario accumulate (it keeps every generation); "
                                "remove it or use accumulate-subsample")
        check_list(f"{where}.guidance", self.guidance, MAX_LIST, distinct=True)
        for i, w in enumerate(self.guidance):
            _guidance(f"{where}.guidance[{i}]", w)
        _seeds(f"{where}.seeds", self.seeds)
        if self.samples_per_generation is not None:
            check_int(f"{where}.samples_per_generation", self.samples_per_generation, 1, 10**7)
        if self.generators is not None:
            check_list(f"{where}.generators", self.generators, MAX_LIST)
            for i, entry in enumerate(self.generators):
                entry.validate(f"{where}.generators[{i}]")
            labels = [e.label for e in self.generators]
            twice = sorted({x for x in labels if labels.count(x) > 1})
            if twice:
                raise UserError(f"{where}.generators names {twice[0]!r} twice; give each entry a distinct name")
            total = sum(e.share for e in self.generators)
            if abs(total - 1.0) > 1e-6:
                raise UserError(f"{where}.generators: the shares sum to {total:g}, not 1; "
                                f"make them sum to 1 (e.g. 0.7 and 0.3)")
        self.curation.validate(f"{where}.curation")
        if self.inception_weights is not None:
            check_text(f"{where}.inception_weights", self.inception_weights)


@dataclass
class ContaminationConfig:
    """The contamination study (Hataya et al. 2023) on disjoint real splits of data.train."""

    # Disjoint real splits (fractions of data.train): the downstream training set, the generator's own training data
    # (which also trains the feature network of Tables 3 and 4), the same-source control (at least as large as the
    # training set: 100% needs no repeats), and the test split (ignored when data.test is given; nothing trains on it).
    split_train: float = 0.3
    split_generator: float = 0.23
    split_control: float = 0.32
    split_test: float = 0.15
    generated: Optional[str] = None  # an external generated pool (dataset spec) instead of fitting one
    resize_generated: bool = False  # resize an ImageFolder pool (e.g. 512 px RGB) to the training images' size/colour
    # Real controls, each replacing the same shares as the generated images (ouroboros.data.controls): same-source,
    # the control split; other-source, `control` (null: digits' is mnist5k, mnist5k's digits, resized).
    controls: list[str] = field(default_factory=lambda: ["same-source"])
    control: Optional[str] = None
    ratios: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.8, 1.0])
    archs: list[str] = field(default_factory=lambda: ["cnn", "resnet"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # each redraws every random choice
    guidance: float = 1.0  # simple conditioning: the class, at one guidance
    diverse_guidance: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])  # drawn per image
    diverse_sample_steps: list[int] = field(default_factory=lambda: [10, 25, 50])  # drawn per image
    small_fraction: float = 0.05  # Table 7: this much real, alone or filled up
    append_ratios: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.8])  # Table 8
    # Table 8's "appending generated data does not raise accuracy" is decided by TOST: it holds when the paired
    # accuracy difference is shown within +-this margin (0.01: one point), or negative, each after Holm's correction.
    equivalence_margin: float = 0.01
    # Table 3's (and 10's) generator, fitted on each mixture: true, the pool's (class-conditional at `guidance`);
    # false, the same model class-unconditional, as the paper's IDDPM is.
    table3_conditional: bool = True
    shifts: list[str] = field(default_factory=lambda: ["noise", "blur", "rotation", "elastic", "contrast"])
    # Confusion matrices (Fig. 3) grouped into superclasses, e.g. [["0", "6"], ["1", "7"]]; None: one row per class.
    class_groups: Optional[list[list[str]]] = None

    def validate(self, where: str = "contamination") -> None:
        from ouroboros.data.controls import check_controls, check_splits_and_sources
        from ouroboros.data.mixtures import check_ratio
        from ouroboros.data.shifts import SHIFTS
        from ouroboros.features.classifier import ARCHS

        check_splits_and_sources(where, self)
        check_controls(where, self.controls, self.control)
        # Tables 1 and 5 need ratios; Table 8 (append_ratios) and Table 6 (shifts) may be empty.
        for name, nonempty in (("ratios", True), ("append_ratios", False)):
            values = check_list(f"{where}.{name}", getattr(self, name), MAX_LIST, nonempty=nonempty, distinct=True)
            for r in values:
                if isinstance(r, bool) or not isinstance(r, (int, float)):
                    raise UserError(f"{where}.{name} must hold numbers; got {r!r}")
                try:
                    check_ratio(r)
                except UserError as exc:
                    raise UserError(f"{where}.{name}: {exc}") from None
        check_float(f"{where}.small_fraction", self.small_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        check_float(f"{where}.equivalence_margin", self.equivalence_margin, 0.0, 1.0, lo_open=True)
        check_list(f"{where}.archs", self.archs, MAX_LIST, distinct=True)
        for a in self.archs:
            if a not in ARCHS:
                raise UserError(f"{where}.archs: unknown arch {a!r}; use {', '.join(ARCHS)}")
        check_list(f"{where}.shifts", self.shifts, MAX_LIST, nonempty=False, distinct=True)
        for sh in self.shifts:
            if sh not in SHIFTS:
                raise UserError(f"{where}.shifts: unknown shift {sh!r}; use {', '.join(SHIFTS)}")
        _seeds(f"{where}.seeds", self.seeds)
        _guidance(f"{where}.guidance", self.guidance)
        check_list(f"{where}.diverse_guidance", self.diverse_guidance, MAX_LIST)
        for i, w in enumerate(self.diverse_guidance):
            _guidance(f"{where}.diverse_guidance[{i}]", w)
        check_list(f"{where}.diverse_sample_steps", self.diverse_sample_steps, MAX_LIST)
        for i, st in enumerate(self.diverse_sample_steps):
            check_int(f"{where}.diverse_sample_steps[{i}]", st, 1, 10_000)  # and <= num_train_timesteps
        if self.class_groups is not None:
            check_list(f"{where}.class_groups", self.class_groups, MAX_CONVERT, nonempty=False)
            seen: set = set()
            for i, group in enumerate(self.class_groups):
                check_list(f"{where}.class_groups[{i}]", group, MAX_CONVERT)
                for name in group:
                    check_text(f"{where}.class_groups[{i}]", name, 1000)
                    if name in seen:
                        raise UserError(f"{where}.class_groups names class {name!r} in two groups; "
                                        "put each class in at most one")
                    seen.add(name)


@dataclass
class EvaluateConfig:
    """How the loop and scenario studies measure each generation (ouroboros.studies.loop_data)."""

    # The real split every generation is scored against: test (nothing trains on it) or train (`scored_on` column);
    # per-seed: each seed redraws the split and the measuring classifier; fixed: one of each (`instruments` column).
    reference: Literal["test", "train"] = "test"
    instruments: Literal["per-seed", "fixed"] = "per-seed"
    tails: bool = False  # a tails stage per generation (ouroboros.metrics.tails); off: the demo's and grid's budgets

    def validate(self, where: str = "evaluate") -> None:
        if self.reference not in ("test", "train"):  # a config built in Python skips the Literal check
            raise UserError(f"{where}.reference must be test or train (the split scored on); got {self.reference!r}")
        if self.instruments not in ("per-seed", "fixed"):
            raise UserError(f"{where}.instruments must be per-seed (each seed redraws the split and the measuring "
                            f"classifier) or fixed (one of each for every seed); got {self.instruments!r}")


@dataclass
class OutputConfig:
    grid_per_class: int = 10  # images per class (columns) in each sample grid
    grid_scale: int = 4  # pixel upscaling of sample grids

    def validate(self, where: str = "output") -> None:
        check_int(f"{where}.grid_per_class", self.grid_per_class, 1, 100)
        check_int(f"{where}.grid_scale", self.grid_scale, 1, 32)


@dataclass
class ExecutorConfig:
    # local: worker processes on this machine. ray: each stage a Ray task (ouroboros.executors.ray).
    kind: Literal["local", "ray"] = "local"
    workers: int = 0  # local: 0 = one per CPU core (at most one per independent chain); ray: CPUs of a local instance
    threads_per_worker: int = 1  # torch threads per stage; under Ray, the CPUs each stage asks for
    # ray: None starts a local Ray instance; "auto" joins the cluster running on this machine;
    # HOST:PORT (or ray://HOST:PORT) joins that cluster's head.
    address: Optional[str] = None
    gpus_per_stage: float = 1.0  # ray: GPUs a stage whose device resolves to CUDA asks for (0.25: four share one)
    retries: int = 3  # ray: how many times a stage whose worker or node died is run again

    def validate(self, where: str = "executor") -> None:
        check_int(f"{where}.workers", self.workers, 0, 256)
        check_int(f"{where}.threads_per_worker", self.threads_per_worker, 1, 256)
        check_float(f"{where}.gpus_per_stage", self.gpus_per_stage, 0.0, 1.0, lo_open=True)
        check_int(f"{where}.retries", self.retries, 0, 100)
        if self.address is not None:
            from ouroboros.executors.address import check_address

            check_address(f"{where}.address", self.address)
