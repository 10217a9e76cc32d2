"""The feedback-loop study's comparisons (``comparisons.csv``; decided by
`ouroboros.report.comparisons`, configured by the ``compare:`` section).

With loop.variants (a grid), at the last generation, paired by seed, in every metric
with a margin (``compare.delta``), of the pooled output:

- every variant against its generator family's baseline variant, at the same guidance
  (``vs baseline``);
- every curated variant ``X`` against its unfiltered control ``X control`` when the grid
  has one (``vs control``);
- each baseline's last generation against its own generation 0 (``vs generation 0``):
  the collapse the variants are measured against. ``compare.generations`` lists the
  earlier generations compared (``vs generation N``; default [0]: a later one such as 5
  asks whether the error still grows, i.e. is not bounded) and ``compare.generations_of:
  all`` compares every variant's last generation with them, not only the baselines'.

Without variants (the demo: one loop at several guidance values), each guidance's last
generation against its own generation 0 (``vs generation 0``), and each guidance against
the first one listed at the last generation (``vs first guidance``).

A generator family is the pool of loop.generators a variant uses ("diffusion",
"gaussian", "diffusion:0.7+gaussian:0.3"). All comparisons of a run are corrected
together (Holm).
"""

from __future__ import annotations

from ouroboros.crosschecks import cell_label
from ouroboros.errors import UserError
from ouroboros.report.comparisons import Comparison, Pair, decide_all

LABELS = ["family", "guidance", "a_generation", "b_generation"]  # comparisons.csv's columns after kind, a, b


def family_of(lc) -> str:
    """A variant's generator family: its pool's entries, "+"-joined (with shares below 1)."""
    return "+".join(e.label if e.share == 1 else f"{e.label}:{e.share:g}" for e in lc.families())


def baselines(config) -> dict[str, str]:
    """family -> its baseline variant (``compare.baseline``, else the family's first variant);
    {} without loop.variants. UserError for a name that is no variant or family."""
    cells = config.loop.cells()
    given = config.compare.baseline
    if config.loop.variants is None:
        if given is not None:
            raise UserError("compare.baseline names a baseline variant, but loop.variants is not set; remove it "
                            "(without variants each guidance is compared with its generation 0 and with the first "
                            "guidance)")
        return {}
    family = {name: family_of(lc) for name, lc in cells}
    out: dict[str, str] = {}
    for name, fam in family.items():
        out.setdefault(fam, name)
    if isinstance(given, str):
        given = {family[_variant(given, family, "compare.baseline")]: given}
    for fam, name in (given or {}).items():
        if fam not in out:
            raise UserError(f"compare.baseline: no generator family {fam!r} in loop.variants; the families are "
                            f"{', '.join(repr(f) for f in out)}")
        _variant(name, family, f"compare.baseline.{fam}")
        if family[name] != fam:
            raise UserError(f"compare.baseline.{fam} names {name!r}, a variant of the {family[name]!r} family; "
                            f"name one of the {fam!r} family's variants")
        out[fam] = name
    return out


def _variant(name: str, family: dict, where: str) -> str:
    if name not in family:
        shown = ", ".join(repr(v) for v in list(family)[:12]) + (", ..." if len(family) > 12 else "")
        raise UserError(f"{where}: no variant named {name!r} in loop.variants; the variants are {shown}")
    return name


def pairs(rows: list[dict], config) -> list[Pair]:
    """What the run compares (see the module docstring), in a fixed order: by kind, then
    as the config lists variants and guidance, then metric as ``compare.delta`` lists them."""
    metrics = config.compare.metrics()
    values: dict[tuple, dict] = {}  # (cell, metric, generation) -> {seed: value}, of the pooled output
    final: dict[str, int] = {}  # cell -> its last generation
    for r in rows:
        if r["cell"] != "reference" and not r.get("family"):
            g = int(r["generation"])
            final[r["cell"]] = max(g, final.get(r["cell"], g))
            if r["metric"] in metrics:
                values.setdefault((r["cell"], r["metric"], g), {})[str(r["seed"])] = float(r["value"])
    _last = final.get
    lc = config.loop
    out: list[Pair] = []

    def add(kind, a_cell, a_gen, b_cell, b_gen, family, w):
        if a_gen is None or b_gen is None:
            return
        for metric in metrics:
            a, b = values.get((a_cell, metric, a_gen)), values.get((b_cell, metric, b_gen))
            if a and b:
                out.append(Pair(kind, a_cell, b_cell, metric, a, b,
                                {"family": family, "guidance": f"{w:g}", "a_generation": a_gen,
                                 "b_generation": b_gen}))

    earlier = list(config.compare.generations)

    def versus_earlier(cell, fam, w):
        last = _last(cell)
        for g in earlier:
            add(f"vs generation {g}", cell, last, cell, g if last and g < last else None, fam, w)

    if lc.variants is None:
        fam = family_of(lc)
        for w in lc.guidance:
            versus_earlier(cell_label("", w), fam, w)
        first = cell_label("", lc.guidance[0])
        for w in lc.guidance[1:]:
            cell = cell_label("", w)
            last = _last(cell)
            add("vs first guidance", cell, last, first, last if last == _last(first) else None, fam, w)
        return out
    cells = dict(lc.cells())
    base = baselines(config)
    whose = base.items() if config.compare.generations_of == "baselines" else (
        (family_of(variant), name) for name, variant in cells.items())
    for fam, name in whose:
        for w in lc.guidance:
            versus_earlier(cell_label(name, w), fam, w)
    for kind in ("vs baseline", "vs control"):
        for name, variant in cells.items():
            fam = family_of(variant)
            other = base[fam] if kind == "vs baseline" else f"{name} control"
            if other == name or other not in cells:
                continue
            for w in lc.guidance:  # at the last generation both reached (the same one)
                a, b = cell_label(name, w), cell_label(other, w)
                last = _last(a)
                add(kind, a, last, b, last if last == _last(b) else None, fam, w)
    return out


def comparisons(rows: list[dict], config) -> list[Comparison]:
    """The run's comparisons, decided (`ouroboros.report.comparisons.decide_all`)."""
    return decide_all(pairs(rows, config), config.compare.delta_of, config.compare.alpha)
