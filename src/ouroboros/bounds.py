"""Whole-run bounds: the planned work estimated from the config, refused past a limit.

Each setting is bounded on its own (ouroboros.config), but their products are not:
generations x seeds x guidance values plan stages, samples per generation x reward
choices x image size fill memory. Before anything is written (and before the stage
graph is built, which for a huge product would itself take minutes) a study
estimates, in closed form:

- stages: the stages of its plan (`loop_stages`, `contamination_stages`);
- memory: the images the largest stage holds at once, each C x H x W bytes as uint8
  plus 4 bytes per value as float32 (the copy models train on);
- disk: the bytes its cache receives in total (the generated and assembled image
  sets, uint8).

A run past a limit of the `limits:` section is one error naming the settings that
multiply to it and the limit to raise. `ouroboros generate text2image` bounds its
classes x --per-class the same way with its own flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from ouroboros.errors import UserError, check_float, check_int

GIB = 2**30
BYTES_IN_MEMORY = 5  # per pixel value: uint8 as loaded plus float32 as trained on


@dataclass
class LimitsConfig:
    """Upper bounds on a whole run (ouroboros.bounds), checked before anything is written.

    max_stages: stages in the plan (each one a task and a cache entry; a laptop runs
    thousands, a cluster may run far more). max_memory_gib: GiB of images the largest
    stage holds at once. max_disk_gib: GiB of images the run writes to its cache in all.
    A cluster config raises them, e.g. ``limits: {max_stages: 200000, max_disk_gib: 2000}``.
    """

    max_stages: int = 20_000
    max_memory_gib: float = 8.0
    max_disk_gib: float = 50.0

    def validate(self, where: str = "limits") -> None:
        check_int(f"{where}.max_stages", self.max_stages, 1, 10**9)
        check_float(f"{where}.max_memory_gib", self.max_memory_gib, 0.0, 2.0**20, lo_open=True)
        check_float(f"{where}.max_disk_gib", self.max_disk_gib, 0.0, 2.0**30, lo_open=True)


def _refuse(what: str, factors: list[str], total: str, limit: str, value) -> None:
    how = f"{limit} N" if limit.startswith("--") else f"--set {limit}=N, or in the config"
    raise UserError(f"the run plans too much: {' x '.join(factors)} = {total} {what}, more than "
                    f"{limit} ({value:,}); lower one of these settings, or raise {limit} ({how}) "
                    "where the machine can take it")


def _gib(n: float) -> str:
    return f"{n / GIB:,.1f} GiB"


# -- the feedback loop --------------------------------------------------------------------


def _chain_stages(lc, control: bool = False) -> tuple[int, int]:
    """(stages per generation, stages of one chain) for the loop settings `lc` of one variant
    (`control`: a curated variant's unfiltered control, which draws every set with assemble)."""
    families = len(lc.families())
    # fit, sample and held-out loss each, evaluate, pool
    per_gen = 3 * families + 1 + (families + 1 if families > 1 else 0)
    extra = 0
    if lc.curation.kind != "none" and not control:
        per_gen += 1  # curate (from generation 1)
        extra -= 1
    plain = lc.scenario == "replace" and lc.window in (None, 1) and lc.curation.kind == "none" and not control
    if not plain:
        per_gen += 1  # assemble (from generation 1; fresh from generation 0)
        extra -= 0 if lc.scenario == "fresh" else 1
    if lc.curation.kind == "detector" and not control:
        extra += 2  # the chain's probe sample and probe
    return per_gen, lc.generations * per_gen + extra


def loop_stages(loop, instruments: str = "per-seed") -> tuple[int, list[str]]:
    """(stages, the factors that multiply to them) of a loop section, without any data;
    `instruments`: evaluate.instruments (per-seed: each seed its own split, classifier and
    yardstick)."""
    cells = loop.cells()
    controls = loop.controls()
    chains = len(loop.guidance) * len(loop.seeds)
    keys = len(loop.seeds) if instruments == "per-seed" else 1
    # 4 per instruments: the two data stages, the classifier, the yardstick; 2 per detector
    # variant's instruments: its real split and the probe's held-out images
    total = 4 * keys + sum(chains * _chain_stages(lc, name in controls)[1]
                           + (2 * keys if lc.curation.kind == "detector" and name not in controls else 0)
                           for name, lc in cells)
    per_gen = max(_chain_stages(lc, name in controls)[0] for name, lc in cells)
    factors = [f"loop.generations ({loop.generations})", f"loop.seeds ({len(loop.seeds)} values)",
               f"loop.guidance ({len(loop.guidance)} values)"]
    if loop.variants is not None:
        factors.append(f"loop.variants ({len(loop.variants)}{f' and {len(controls)} controls' if controls else ''})")
    factors.append(f"up to {per_gen} stages per generation (fit, sample and held-out loss per loop.generators "
                   "entry, evaluate, curate, assemble)")
    return total, factors


def _loop_sizes(lc, n_real: int) -> tuple[int, int, int, list[str]]:
    """(images sampled per generation, images the largest stage holds, images written per
    chain, the factors of the largest stage) for one variant and |R| real images."""
    from ouroboros.studies.scenarios import generated_count, samples_per_generation

    n = samples_per_generation(lc, n_real, n_real)
    n_sample = n
    factors = [f"loop.samples_per_generation ({n})" if lc.samples_per_generation else f"{n} real images"]
    if lc.scenario == "augment":
        n_sample = max(n, generated_count("augment", n, n_real, lc.real_fraction, lc.synthetic_ratio))
        factors = [f"loop.synthetic_ratio ({lc.synthetic_ratio:g}) x {n_real} real images"]
    if lc.curation.kind == "reward":
        n_sample *= lc.curation.choices
        factors.append(f"loop.curation.choices ({lc.curation.choices})")
    accumulates = lc.scenario in ("accumulate", "accumulate-subsample") and lc.window is None
    window = lc.generations - 1 if accumulates else (lc.window or 1)
    window = max(1, min(window, lc.generations - 1))
    if window > 1:
        factors.append(f"{window} generations in the pool ({'loop.generations' if accumulates else 'loop.window'})")
    held = n_real + window * n_sample  # the real split and the window's outputs (assemble, evaluate)
    sets = 2 if len(lc.families()) > 1 else 1  # each family's samples and the pooled output
    trained = n_real + window * n if lc.scenario in ("accumulate", "augment") else n
    written = lc.generations * (sets * n_sample + trained)
    return n_sample, held, written, factors


def check_loop_size(config, n_real: int, image_shape: tuple[int, int, int]) -> None:
    """Memory of the largest stage and the cache's bytes, once the real split's size is known."""
    limits = config.limits
    c, h, w = image_shape
    pixels = c * h * w
    chains = len(config.loop.guidance) * len(config.loop.seeds)
    worst, disk = None, 0
    cells = dict(config.loop.cells())
    for name, curated in {**{n: n for n in cells}, **config.loop.controls()}.items():
        _, held, written, factors = _loop_sizes(cells[curated], n_real)  # a control samples as its curated does
        disk += chains * written * pixels
        if worst is None or held > worst[0]:
            worst = (held, factors)
    held, factors = worst
    memory = held * pixels * BYTES_IN_MEMORY
    if memory > limits.max_memory_gib * GIB:
        _refuse("of images held at once by one stage",
                [*factors, f"{c}x{h}x{w} images", f"{BYTES_IN_MEMORY} bytes a value (uint8 and float32)"],
                _gib(memory), "limits.max_memory_gib", limits.max_memory_gib)
    if disk > limits.max_disk_gib * GIB:
        _refuse("of images written to the cache",
                [f"loop.generations ({config.loop.generations})", f"loop.seeds ({len(config.loop.seeds)} values)",
                 f"loop.guidance ({len(config.loop.guidance)} values)",
                 *([f"loop.variants ({len(config.loop.variants)})"] if config.loop.variants else []),
                 *factors[:2], f"{c}x{h}x{w} bytes an image"],
                _gib(disk), "limits.max_disk_gib", limits.max_disk_gib)


# -- the contamination study ----------------------------------------------------------------


def contamination_stages(c) -> tuple[int, list[str]]:
    """(stages, factors) of a contamination section, without any data."""
    r, a, archs, k = len(c.ratios), len(c.append_ratios), len(c.archs), len(c.controls)
    mixtures = (2 + k) * r + 2 + k + a  # generated, diverse and each control per ratio; Table 7's; Table 8's
    pools = 0 if c.generated is not None else 3  # fit, simple and diverse samples
    # Table 4 per mixture, Table 3 (fit, sample, score) per generated and control mixture, SSL per ratio;
    # Table 10 (the kept real set, fit, sample, score); detection x 2
    analysis = (2 + k) * r + 3 * (1 + k) * r + r + 4 + 2
    per_seed = pools + mixtures + archs * (mixtures + 1) + analysis
    total = 6 + len(c.seeds) * per_seed  # data stages and the feature classifier
    factors = [f"contamination.seeds ({len(c.seeds)} values)",
               f"about {per_seed} stages a seed (contamination.ratios ({r} values) x contamination.archs "
               f"({archs} values), contamination.append_ratios ({a} values))"]
    return total, factors


def check_contamination_size(config, n_train: int, image_shape: tuple[int, int, int]) -> None:
    """Memory and cache bytes of a contamination study with `n_train` training images."""
    limits, c = config.limits, config.contamination
    pixels = image_shape[0] * image_shape[1] * image_shape[2]
    shape = "x".join(map(str, image_shape))
    memory = 2 * n_train * pixels * BYTES_IN_MEMORY  # a mixture: the training set and a pool as large
    if memory > limits.max_memory_gib * GIB:
        _refuse("of images held at once by one stage",
                [f"2 x {n_train} training images", f"{shape} images", f"{BYTES_IN_MEMORY} bytes a value"],
                _gib(memory), "limits.max_memory_gib", limits.max_memory_gib)
    k = len(c.controls)  # pools; mixtures and Table 3's samples; Tables 7, 8; Table 10's set and samples
    sets = 2 + (3 + 2 * k) * len(c.ratios) + 2 + k + len(c.append_ratios) + 2
    disk = len(c.seeds) * sets * n_train * pixels
    if disk > limits.max_disk_gib * GIB:
        _refuse("of images written to the cache",
                [f"contamination.seeds ({len(c.seeds)} values)",
                 f"{sets} image sets a seed (contamination.ratios ({len(c.ratios)} values), "
                 f"contamination.append_ratios ({len(c.append_ratios)} values))",
                 f"{n_train} training images", f"{shape} bytes an image"],
                _gib(disk), "limits.max_disk_gib", limits.max_disk_gib)


def check_stages(config, total: int, factors: list[str]) -> None:
    """Refuse a plan of more than limits.max_stages stages, counted by the study from the
    config alone (`loop_stages`, `contamination_stages`): in microseconds, before any
    data is loaded or any stage built."""
    if total > config.limits.max_stages:
        _refuse("stages", factors, f"about {total:,}", "limits.max_stages", config.limits.max_stages)


# -- text to image ------------------------------------------------------------------------------

MAX_IMAGES = 2_000_000  # default --max-images: ImageNet's 1.28M images fit
MAX_DISK_GIB = 1000.0  # default --max-disk-gib


def check_text2image(groups: list, kind: str, per_class: int, size: int, max_images: int = MAX_IMAGES,
                     max_disk_gib: float = MAX_DISK_GIB) -> int:
    """Images a text-to-image run makes (classes x --per-class, or captions x --per-class)
    and the bytes they take (at most 3 bytes a pixel: PNGs of size x size RGB, uncompressed
    at worst); refused past --max-images or --max-disk-gib before the work list is built."""
    check_int("--max-images", max_images, 1, 10**12)
    check_float("--max-disk-gib", max_disk_gib, 0.0, 2.0**30, lo_open=True)
    units = sum(len(g.names) for g in groups) if kind == "captions" else len(groups)
    what = f"{units} captions" if kind == "captions" else f"{units} classes"
    images = units * per_class
    factors = [what, f"--per-class ({per_class})"]
    if images > max_images:
        _refuse("images", factors, f"{images:,}", "--max-images", max_images)
    disk = images * size * size * 3
    if disk > max_disk_gib * GIB:
        _refuse("of images to write", [*factors, f"--size {size} x {size} x 3 bytes"], _gib(disk),
                "--max-disk-gib", max_disk_gib)
    return images
