"""The feedback-loop study (Martinez et al. 2023).

Generation 0 is a class-conditional diffusion model trained on the real training
split. Every later generation is a fresh model trained on a set that `loop.scenario`
draws from real data and earlier generations' samples (ouroboros.studies.scenarios;
the default "replace" trains only on the previous generation's samples, the worst
case), each generation sampling as many images as the real set, balanced over
classes. results.csv records each training set's size and make-up from provenance
(train_size, train_real_share, train_share_gen<k>) and the scenario in its own
column. `loop.curation` (ouroboros.studies.curation) filters each generation's
candidates before the scenario draws from them (watermark, detector, reward) and
results.csv records what it removed (curation_*) and the kind in a `curation` column.
One chain per (guidance, seed).

Each generation's samples are scored as the data allows (`evaluation`): a classifier
trained on the real training split gives accuracy, cross-entropy and per-class
accuracy when the generator is class-conditional; FID, precision, recall, density and
coverage against the real training split always, on Inception features for colour
images of 32x32 and up when Inception weights are given (`loop.inception_weights`, or
found where ouroboros.features.inception looks), on the real-data classifier's
penultimate features otherwise.

In results.csv, ``generation`` is the model's index (0 = trained on real data); the
images it makes carry provenance generation ``g + 1``.

Several generator families (``loop.generators``; by default one diffusion family with
the ``generator:`` settings). Each generation, every listed family is fitted on the
same training set and samples its count of the generation's N images: share x N,
rounded by largest remainders so the counts sum to N (`pool_counts`; a family whose
count is 0 makes nothing that generation). Labels cycle through the classes across the
families in entry order, so the pooled output O_g is balanced over classes as one set.
Its images carry source ``gen:<name>`` (the entry's name, default the family's); a
`pool` stage concatenates the families' samples into O_g, which the scenario then draws
from as from a single generator's output. The bias knob: an entry's ``bias`` when set;
otherwise ``loop.guidance`` (the chain axis) for families whose knob is guidance
(diffusion), and the family's neutral value for the others (temperature 1). With one
family every stage keeps the key it had before families existed. With several,
results.csv gets a ``family`` column: the rows of the pooled output (and the make-up,
with ``train_share_family_<name>`` from provenance) leave it empty; each family's own
samples are scored too, in rows naming the family.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.generators.base import GeneratorFamily, get_family
from ouroboros.preflight import check_run
from ouroboros.runner import Stage
from ouroboros.safepath import components
from ouroboros.studies import curation, scenarios
from ouroboros.studies.common import (
    SAMPLING_FIELDS,
    data_stage,
    derived_seed,
    open_run,
    start_runner,
    write_timings,
)


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


@dataclasses.dataclass
class LoopPlan:
    train: ImageSet
    test: ImageSet
    classifier: Stage
    reference: Stage  # classifier on the real test split
    # (variant, guidance, seed) -> per generation: (fit, output, evaluate); variant is ""
    # without loop.variants. `output` is the
    # generation's pooled output O_g (the one family's samples, or a pool stage), `fit`
    # the first family's fit (its deps["train"] is the training set every family shares).
    chains: dict[tuple[str, float, int], list[tuple[Stage, Stage, Stage]]]
    # (variant, guidance, seed) -> per generation: family name -> its (fit, sample, evaluate), when
    # several families feed the pool that generation (empty when one does).
    families: dict[tuple[str, float, int], list[dict[str, tuple[Stage, Stage, Stage]]]] = dataclasses.field(
        default_factory=dict)

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


def pool_counts(shares: list[float], n: int) -> list[int]:
    """Images each family makes of a generation's n: share x n rounded by largest
    remainders (shares normalised to sum to 1; ties to the earlier entry), so that the
    counts sum to n exactly and each is floor or ceil of share x n."""
    import numpy as np

    exact = np.asarray(shares, dtype=np.float64) / sum(shares) * n
    counts = np.floor(exact).astype(int)
    remainders = np.round(exact - counts, 9)  # equal up to rounding error is a tie
    extra = np.argsort(-remainders, kind="stable")[: n - counts.sum()]
    counts[extra] += 1
    return counts.tolist()


def plan(config: StudyConfig, cache: Path, splits: tuple[ImageSet, ImageSet] | None = None) -> LoopPlan:
    """Expand the config into stages; `splits` (train, test) defaults to loading the data."""
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
        loop_stage = train_stage if probe_real is None else data_stage(loop_real, "loop real", cache)
        n = lc.samples_per_generation or len(loop_real)
        check_loop(lc, loop_real)
        # Each generation samples N images; augment's window (one generation by default)
        # must also hold round(lambda |R|) of them; reward curation samples K times that.
        n_sample = max(n, scenarios.generated_count(lc.scenario, n, len(loop_real), lc.real_fraction,
                                                    lc.synthetic_ratio) if lc.scenario == "augment" else n)
        if lc.curation.kind == "reward":
            n_sample *= lc.curation.choices
        entries = pool_entries(config, lc)
        counts = pool_counts([e.share for e in entries], n_sample)
        for w, s in itertools.product(lc.guidance, lc.seeds):
            outputs, chain, parts_chain, probe = [], [], [], None
            for g in range(lc.generations):
                label = f"{variant + ' ' if variant else ''}w={w:g} seed={s} gen={g}"
                curate = _curate(lc, g, s, n, loop_stage, len(loop_real), outputs, classifier, probe, label)
                source = _training_set(lc, g, s, n, loop_stage, outputs, label, curate)
                parts, first = {}, 0
                for entry, count in zip(entries, counts):
                    if count:
                        fit, sample = _family_stages(entry, len(entries) > 1, float(w), s, g, count,
                                                     first % train.num_classes, source, label, train_stage)
                        parts[entry.name] = (fit, sample)
                        first += count
                if len(parts) == 1:
                    ((fit, output),) = parts.values()
                else:
                    fit = next(iter(parts.values()))[0]
                    output = Stage("pool", {"families": list(parts)},
                                   {f"part{i}": sample for i, (_, sample) in enumerate(parts.values())}, label=label)
                ev = Stage("evaluate", evaluate, {"images": output, **scorer, "real": train_stage},
                           label=label)
                chain.append((fit, output, ev))
                outputs.append(output)
                parts_chain.append({} if len(parts) == 1 else {
                    name: (f, sm, Stage("evaluate", evaluate, {"images": sm, **scorer, "real": train_stage},
                                        label=f"{label} {name}"))
                    for name, (f, sm) in parts.items()})
                if g == 0 and probe_real is not None:
                    probe = _probe(s, w, entries[0], fit, data_stage(probe_real, "probe real", cache),
                                   len(probe_real), classifier, label.removesuffix(" gen=0"))
            chains[(variant, float(w), s)] = chain
            if any(parts_chain):
                families[(variant, float(w), s)] = parts_chain
    return LoopPlan(train, test, classifier, reference, chains, families)


def _family_stages(entry: PoolEntry, several: bool, w: float, s: int, g: int, count: int, first_label: int,
                   source: Stage, label: str, real: Stage) -> tuple[Stage, Stage]:
    """One family's fit on the generation's training set and its `count` samples. With
    one family the stages keep the keys they had before families existed (no family or
    first_label parameter, seeds not tied to the name); with several, each family's
    seeds are derived from its name too. A family on a PCA space fits it on the `real`
    training split, so every generation models the same space."""
    tag = (entry.name,) if several else ()
    fit_params = {"config": entry.fit_config, "seed": derived_seed(s, g, "fit", *tag), "name": entry.name}
    if entry.family.name != "diffusion":  # the stages' default family
        fit_params["family"] = entry.family.name
    deps = {"train": source}
    if entry.fit_config.get("space") == "pca":
        deps["reference"] = real
    fit = Stage("fit", fit_params, deps, label=f"{label} {entry.name}" if several else label)
    return fit, _sample_stage(entry, fit, count, w, derived_seed(s, g, "sample", *tag), fit.label, first_label)


def _sample_stage(entry: PoolEntry, fit: Stage, n: int, w: float, seed: int, label: str,
                  first_label: int = 0) -> Stage:
    """`n` samples of a fitted family, with its bias knob (the chain's guidance unless the
    entry sets one)."""
    params = {"n": n, entry.family.bias: w if entry.bias is None else entry.bias, "seed": seed, **entry.sampling}
    if entry.family.name != "diffusion":
        params["family"] = entry.family.name
    if first_label:
        params["first_label"] = first_label
    return Stage("sample", params, {"model": fit}, label=label)


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


def _probe(s: int, w: float, entry: PoolEntry, fit0: Stage, probe_real: Stage, n: int, classifier: Stage,
           label: str) -> Stage:
    """The chain's detector probe: held-out real images against a separate sample (as
    many) from generation 0's model (the pool's first family), never images that enter
    the pool."""
    sample = _sample_stage(entry, fit0, n, w, derived_seed(s, "probe sample"), f"{label} probe")
    return Stage("probe", {"seed": derived_seed(s, "probe")},
                 {"real": probe_real, "generated": sample, "classifier": classifier}, label=f"{label} probe")


def _curate(lc, g: int, s: int, n: int, real: Stage, n_real: int, outputs: list[Stage], classifier: Stage,
            probe: Stage | None, label: str) -> Stage | None:
    """Generation g's curate stage (None without curation, and for generation 0). Its
    real candidates: "all" of R, fresh's new images (indices into R), or none (replace,
    and reward, which curates only generated images)."""
    cur = lc.curation
    if cur.kind == "none" or g == 0:
        return None
    index = None if cur.kind == "reward" else scenarios.real_candidates(
        lc.scenario, g, n_real, n, lc.real_fraction, derived_seed(s, "real order"))
    deps = {f"out{k}": outputs[k] for k in scenarios.window_of(lc.scenario, lc.window, g)}
    if index is not None or cur.kind == "detector":
        deps["real"] = real
    if cur.kind in ("detector", "reward"):
        deps["classifier"] = classifier
    if cur.kind == "detector":
        deps["probe"] = probe
    candidates = None if index is None else "all" if lc.scenario != "fresh" else index.tolist()
    params = {"curation": cur.params(), "generation": g, "seed": derived_seed(s, g, "curate"), "real": candidates}
    return Stage("curate", params, deps, label=label)


def evaluation(config: StudyConfig, train: ImageSet) -> dict:
    """The evaluate stage's parameters for this study and data (see the module docstring):
    ``metrics`` is ``classifier+fid+prdc`` for a conditional generator, ``fid+prdc``
    otherwise; ``features`` (absent: the classifier's) is ``inception`` for colour
    images of at least 32x32 when the weights file is found, with its path and SHA-256
    (so other weights make other keys)."""
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
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _training_set(lc, g: int, s: int, n: int, train_stage: Stage, outputs: list[Stage], label: str,
                  curate: Stage | None = None) -> Stage:
    """The stage whose artifact generation g trains on. The real split itself for
    generation 0, and O_{g-1} itself under plain replace without curation, so those keep
    the keys they had before scenarios existed; an `assemble` stage otherwise (reading
    the curate stage's decisions when there is one)."""
    if g == 0 and lc.scenario != "fresh":
        return train_stage
    if lc.scenario == "replace" and lc.window in (None, 1) and curate is None:
        return outputs[g - 1]
    params = {"scenario": lc.scenario, "generation": g, "n": n, "seed": derived_seed(s, g, "assemble"),
              "real_seed": derived_seed(s, "real order")}
    # Only what the scenario reads goes into the key: changing rho does not recompute augment.
    if lc.scenario in ("mix", "fresh"):
        params["real_fraction"] = lc.real_fraction
    if lc.scenario == "augment":
        params["synthetic_ratio"] = lc.synthetic_ratio
    deps = {"real": train_stage,
            **{f"out{k}": outputs[k] for k in scenarios.window_of(lc.scenario, lc.window, g)}}
    if curate is not None:
        deps["curation"] = curate
    return Stage("assemble", params, deps, label=label)


def cell_label(variant: str, w: float) -> str:
    """A chain's condition in results.csv (`cell`) and its sample-grid folder's name."""
    return f"{variant}, guidance={w:g}" if variant else f"guidance={w:g}"


def check_cells(lc, where: str = "loop") -> dict[tuple[str, float], str]:
    """(variant, guidance) -> its sample-grid folder (`safepath.component` of its
    label); UserError when two guidance values print alike (``{w:g}``: 1 and 1.0000001)
    or two conditions would share a folder (also ignoring case). Before any write."""
    shown: dict[str, float] = {}
    for w in lc.guidance:
        if shown.setdefault(f"{w:g}", w) != w:
            raise UserError(f"{where}.guidance holds {shown[f'{w:g}']!r} and {w!r}, which both read guidance={w:g} "
                            "in results.csv and the sample folders; drop one or make them differ in the first 6 digits")
    keys = [(variant, float(w)) for variant, _ in lc.cells() for w in lc.guidance]
    where = f"{where}.variants" if lc.variants is not None else f"{where}.guidance"
    return dict(zip(keys, components([cell_label(*k) for k in keys], where)))


def varied_columns(config: StudyConfig) -> dict[str, dict[str, object]]:
    """column -> {variant: value} for every loop setting whose value differs between the
    variants (nested settings flattened as ``section.key``); {} without variants."""
    cells = config.loop.cells()
    if len(cells) < 2:
        return {}
    skip = {"generations", "guidance", "seeds", "variants", "scenario"}  # scenario has its own column
    flat = {name: _flatten({k: v for k, v in dataclasses.asdict(lc).items() if k not in skip}) for name, lc in cells}
    keys = list(next(iter(flat.values())))
    return {k: {name: values[k] for name, values in flat.items()} for k in keys
            if len({repr(values[k]) for values in flat.values()}) > 1}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):  # e.g. the generators: a readable summary of the entries
            out[f"{prefix}{k}"] = " + ".join(_entry_text(e) for e in v)
        else:
            out[f"{prefix}{k}"] = "" if v is None else v
    return out


def _entry_text(entry) -> str:
    if isinstance(entry, dict) and "family" in entry:
        return f"{entry.get('name') or entry['family']} {entry.get('share', 1.0):g}"
    return str(entry)


def param_columns(config: StudyConfig, several_families: bool) -> list[str]:
    """The parameter columns of results.csv: guidance, scenario and curation (its kind); with loop.variants the
    variant's name and each loop setting the variants vary; with several generator
    families, the family column."""
    columns = ["guidance", "scenario", "curation"]
    if config.loop.variants is not None:
        columns += ["variant", *varied_columns(config)]
    return columns + (["family"] if several_families else [])


def _rows(config: StudyConfig, plan_: LoopPlan, paths: dict) -> list[dict]:
    import json

    rows = []
    ref = json.loads(paths[plan_.reference.key].read_text())
    for metric, value in ref.items():
        rows.append({"study": config.name, "cell": "reference", "seed": "", "generation": "",
                     "metric": metric, "value": value, "guidance": "", "scenario": "", "curation": ""})
    cells = dict(config.loop.cells())
    varied = varied_columns(config)
    for (variant, w, s), chain in plan_.chains.items():
        lc = cells[variant]
        row = {"study": config.name, "cell": cell_label(variant, w),
               "seed": s, "guidance": w, "scenario": lc.scenario, "curation": lc.curation.kind}
        if variant:
            row.update({"variant": variant, **{col: by[variant] for col, by in varied.items()}})
        for g, (fit, _, ev) in enumerate(chain):
            metrics = json.loads(paths[ev.key].read_text())
            # The training set's size and make-up, read from the provenance of the set
            # the model was actually fitted on.
            metrics.update(scenarios.makeup(ImageSet.load(paths[fit.deps["train"].key]),
                                            by_family=len(lc.families()) > 1))
            curate = fit.deps["train"].deps.get("curation")
            if curate is not None:  # what curation removed from this generation's candidates
                metrics.update(json.loads(paths[curate.key].read_text())["stats"])
            rows += [{**row, "generation": g, "metric": metric, "value": value} for metric, value in metrics.items()]
            # With several families: each family's own samples scored too, named in the
            # family column (the pooled rows above leave it empty).
            for name, (_, _, fam_ev) in plan_.families.get((variant, w, s), [{}] * len(chain))[g].items():
                rows += [{**row, "generation": g, "metric": metric, "value": value, "family": name}
                         for metric, value in json.loads(paths[fam_ev.key].read_text()).items()]
    return rows


def pooled(rows: list[dict]) -> list[dict]:
    """The rows of the pooled output (and the reference): those without a family."""
    return [r for r in rows if not r.get("family")]


def check_families(config: StudyConfig, train: ImageSet) -> None:
    """Before anything is written: each diffusion entry's own settings build on this data
    (the top-level generator is checked by check_run), and a Gaussian family's PCA fits in
    the pixels and in the smallest training set a generation can have (N or |R|)."""
    for variant, (_, lc) in enumerate(config.loop.cells()):
        at = f"loop.variants[{variant}]." if config.loop.variants is not None else "loop."
        _check_pool(config, lc, train, at)


def _check_pool(config: StudyConfig, lc, train: ImageSet, at: str) -> None:
    from ouroboros.preflight import check_components

    smallest = min(lc.samples_per_generation or len(train), len(train))
    classes = train.num_classes
    for i, (spec, entry) in enumerate(zip(lc.families(), pool_entries(config, lc))):
        settings = {**entry.fit_config, **entry.sampling}
        where = f"{at}generators[{i}].settings"
        if spec.settings and entry.family.config is type(config.generator):
            try:
                check_components(dataclasses.replace(config, generator=entry.family.config(**settings)),
                                 train.shape, train.num_classes)
            except UserError as exc:
                raise UserError(f"{where}: {exc}") from None
        components = settings.get("components") if settings.get("space") == "pca" else None
        pixels = int(np.prod(train.shape))
        if components is not None and components > min(len(train), pixels):  # the PCA is fitted on R
            raise UserError(f"{where}: components ({components}) exceeds the {pixels} pixel values per image or "
                            f"the {len(train)} real training images the PCA is fitted on; "
                            f"use at most {min(len(train), pixels)}")
        if "space" in settings:  # the Gaussian families estimate a covariance per class (per component)
            need = max(2, settings.get("mixture_components", 2))
            if smallest // classes < need:
                raise UserError(f"{where}: the {entry.family.name} family needs at least {need} images per class "
                                f"in every training set, but a generation of {smallest} images has "
                                f"{smallest // classes} per class for {classes} classes; raise "
                                "loop.samples_per_generation")


def run(config: StudyConfig, run_dir: Path, progress: bool = True, runner=None) -> dict:
    """Run (or resume) the study into `run_dir`; returns a summary dict."""
    from ouroboros.report.grids import save_grid
    from ouroboros.report.results import write_results

    folders = check_cells(config.loop)  # sample folders: safe and distinct, before anything is written
    splits = load_splits(config)  # bad data fails here, before anything is written
    # and so does a real split too small for a scenario, or a curation certain to empty a class
    for _, lc in config.loop.cells():
        check_loop(lc, curation_split(lc, config.data.split_seed, splits[0])[0])
    check_run(config, run_dir, splits[0].shape, splits[0].num_classes)  # and a bad --out or component
    check_families(config, splits[0])  # and a family whose settings cannot fit this data
    runner = start_runner(config, Path(run_dir), progress, runner)  # and a cluster that cannot run it
    evaluate = evaluation(config, splits[0])  # and missing Inception weights named in the config
    if progress:
        lc = config.loop
        pool = " + ".join(f"{e.label} {e.share:.0%}" for e in lc.generators) if lc.generators else None
        cur = "" if lc.curation.kind == "none" else f", curation {lc.curation.kind}"
        what = (f"{len(lc.variants)} variants" if lc.variants is not None else
                f"scenario {lc.scenario}{f', families {pool}' if pool else ''}{cur}")
        scores = ("classifier accuracy, " if evaluate["metrics"].startswith("classifier+") else "") + \
            f"FID/PRDC on {evaluate.get('features', 'classifier')} features"
        print(f"ouroboros: {config.name}: {what}, "
              f"{len(config.loop.guidance)} guidance x "
              f"{len(config.loop.seeds)} seeds x "
              f"{config.loop.generations} generations on {len(splits[0])} real training images ({scores}) -> {run_dir}",
              file=sys.stderr)
    run_dir = Path(run_dir)
    runner = open_run(config, run_dir, progress, runner)
    p = plan(config, runner.cache, splits)
    paths = runner.run(p.targets())

    # The family column only when several families feed the pool (per-family rows).
    write_results(run_dir / "results.csv", _rows(config, p, paths), param_columns(config, bool(p.families)))
    write_timings(run_dir, runner)
    first_seed = config.loop.seeds[0]
    for (variant, w, s), chain in p.chains.items():
        if s != first_seed:
            continue
        for g, (_, sample, _) in enumerate(chain):
            out = run_dir / "samples" / folders[(variant, w)] / f"gen{g}.png"
            save_grid(ImageSet.load(paths[sample.key]), out, config.output.grid_per_class, config.output.grid_scale)
    save_grid(p.train, run_dir / "samples" / "real.png", config.output.grid_per_class, config.output.grid_scale)
    report(run_dir)
    return {"run_dir": str(run_dir), "timings": runner.timings}


def summary_table(rows: list[dict]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Key metrics (mean ± std over seeds) at the first, middle and last generation per
    guidance (or per variant and guidance, with loop.variants), of the pooled output;
    then, when several families feed the pool, of each family's own samples (the first
    column names the family)."""
    import numpy as np

    loop_rows = [r for r in rows if r["cell"] != "reference"]
    by_variant = any(r.get("variant") for r in loop_rows)
    header = ("variant" if by_variant else "guidance", "generation", "accuracy", "cross-entropy", "FID",
              "precision", "recall", "seeds")
    out = []
    gens = sorted({int(r["generation"]) for r in loop_rows})
    for family in sorted({r.get("family", "") for r in loop_rows}):  # "" (pooled) first
        for cell in _cells(loop_rows):
            for g in sorted({gens[0], gens[len(gens) // 2], gens[-1]}):
                sel = [r for r in loop_rows
                       if r["cell"] == cell and int(r["generation"]) == g and r.get("family", "") == family]
                if not sel:
                    continue
                values = []
                for metric in ("accuracy", "cross_entropy", "fid", "precision", "recall"):
                    v = [float(r["value"]) for r in sel if r["metric"] == metric]
                    values.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "-")
                first = cell if by_variant else f"{float(sel[0]['guidance']):g}"
                out.append((first + (f" {family}" if family else ""), str(g), *values,
                            str(len({r["seed"] for r in sel}))))
    return header, out


def _cells(loop_rows: list[dict]) -> list[str]:
    """The conditions of a run in display order: variants as listed, guidance descending."""
    order = {}
    for r in loop_rows:
        order.setdefault(r["cell"], (len(order) if r.get("variant") else 0, -float(r["guidance"])))
    return sorted(order, key=order.get)


def recall_sweeps(rows: list[dict]) -> dict[str, list[dict]]:
    """The watermark-recall sweeps in a grid of variants: for each (scenario, generator
    pool) with watermark variants at two or more recalls, their rows plus those of the
    same scenario and pool without curation (recall 0: nothing removed), keyed by a name
    for the plot's file (e.g. ``accumulate-subsample`` or ``accumulate-subsample-gaussian-1``; made one safe
    path component by `safepath.components`, which refuses two that would share a file)."""
    def key(r):
        return r["scenario"], r.get("generators", "")

    marked = [r for r in rows if r.get("variant") and r.get("curation.recall", "") != ""]
    watermark = defaultdict(list)
    for r in marked:
        if r["curation"] == "watermark" and float(r.get("curation.false_positive") or 0) == 0:
            watermark[key(r)].append(r)
    out = {}
    for k, group in watermark.items():
        plain = [{**r, "curation.recall": "0"} for r in marked if r["curation"] == "none" and key(r) == k]
        if len({r["curation.recall"] for r in group + plain}) >= 2:
            name = "-".join(part for part in k if part).replace(" ", "-")
            out[name] = group + plain + [r for r in rows if r["cell"] == "reference"]
    return dict(zip(components(list(out), "results.csv: the sweep named by a scenario and generators value",
                               max_bytes=200), out.values()))


def report(run_dir: Path) -> Path:
    """(Re)draw the plots and the self-contained report.html from results.csv."""
    from ouroboros.report.html import write_report

    return write_report([Path(run_dir)])
