"""Checks across config sections, before the first write: a family's own settings against
the loop's, and what the metrics need against the sizes the loop makes.

Each section validates its own values (ouroboros.config); these checks need two of
them at once. `check_families` runs with the config alone (StudyConfig.validate);
`check_sizes` once with the config alone (the sizes it states) and again when the
data's sizes are known (the loop study's checks, before its run folder is written).
"""

from __future__ import annotations

from ouroboros.errors import UserError
from ouroboros.safepath import components

FID_MIN = 2  # FID estimates a covariance
EVALUATE_K = 5  # the loop's PRDC neighbourhood (ouroboros.studies.loop.evaluation)


def check_families(config) -> None:
    """A diffusion entry of loop.generators made unconditional (``settings: {conditional:
    false}``) cannot take the guidance it would sample with: its own ``bias``, else every
    chain's loop.guidance value."""
    from ouroboros.generators.base import get_family

    for v, (_, lc) in enumerate(config.loop.cells()):
        at = variant_at(config.loop, v)
        for i, entry in enumerate(lc.families()):
            family = get_family(entry.family)
            if family.config is not type(config.generator) or not entry.settings:
                continue  # the top-level generator: checked by StudyConfig.validate
            if entry.settings.get("conditional", config.generator.conditional) is not False:
                continue
            guided = [w for w in ([entry.bias] if entry.bias is not None else lc.guidance) if w != 0]
            if guided:
                where = f"{at}generators[{i}]"
                source = f"{where}.bias" if entry.bias is not None else "loop.guidance"
                raise UserError(f"{where}.settings sets conditional: false, and an unconditional model takes no "
                                f"guidance, but it would sample with {source} {guided[0]:g}: set {where}.bias: 0 "
                                "(or loop.guidance: [0]), or remove conditional: false")


def _need(k: int = EVALUATE_K) -> int:
    return max(FID_MIN, k + 1)


def check_sizes(config, n_real: int | None = None, n_test: int | None = None, classes: int | None = None) -> None:
    """Every image set the loop scores (each generation's output, each family's share of it
    when several feed the pool, the real training and test splits) has at least k + 1
    images for PRDC's k-NN balls (k = 5), hence the 2 FID needs. With `n_real` None, only
    the variants that set loop.samples_per_generation are checked (the rest depend on the
    data). Also: a watermark curation expected to leave fewer images than classes under
    replace (no real data to fall back on)."""
    from ouroboros.studies.scenarios import pool_counts, samples_per_generation

    need = _need()
    why = f"each set of images is scored with FID (at least {FID_MIN}) and PRDC with k = {EVALUATE_K} " \
          f"(at least k + 1 = {need})"
    for name, n in (("the real training split", n_real), ("the real test split", n_test)):
        if n is not None and n < need:
            raise UserError(f"{name} has {n} images, but {why}; use more data (or a larger data.test_fraction)")
    for v, (_, lc) in enumerate(config.loop.cells()):
        at = variant_at(config.loop, v)
        if lc.samples_per_generation is None and n_real is None:
            continue
        n = samples_per_generation(lc, n_real, n_real)
        setting = f"{at}samples_per_generation" if lc.samples_per_generation else "the real training split's size"
        if n < need:
            raise UserError(f"{setting} is {n}, but {why}; make at least {need} images a generation")
        families = lc.families()
        if len(families) > 1:
            for i, (entry, count) in enumerate(zip(families, pool_counts([e.share for e in families], n))):
                if 0 < count < need:
                    raise UserError(f"{at}generators[{i}] (share {entry.share:g}) makes {count} of the {n} images "
                                    f"a generation, and each family's images are scored on their own: {why}; "
                                    f"raise its share or {at}samples_per_generation, or set its share to 0")
        cur = lc.curation
        if cur.kind == "watermark" and lc.scenario == "replace" and cur.recall < 1.0:
            kept = n * (1.0 - cur.recall)
            floor = 2 if classes is None else classes  # at least one image a class, once the classes are known
            if kept < floor:
                raise UserError(f"{at}curation: a watermark of recall {cur.recall:g} keeps about {kept:.1f} of the "
                                f"{n} images of each generation under scenario replace, too few to train the next "
                                f"generation; lower {at}curation.recall, raise {at}samples_per_generation, or use a "
                                "scenario that keeps real data (e.g. mix)")


def variant_at(loop, i: int) -> str:
    """Where a message about variant i's settings points: ``loop.grid.`` for a grid's
    variant (it differs from the loop only by the grid's keys), ``loop.variants[i].``,
    or ``loop.`` without variants."""
    if loop.variants is None:
        return "loop."
    return "loop.grid." if loop.grid is not None else f"loop.variants[{i}]."


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
