"""``loop.grid``: lists of loop settings crossed into variants -- a phase diagram in one
config (e.g. Alemohammad et al.'s fresh real data x sampling bias)::

    loop:
      scenario: fresh
      grid: {real_fraction: [0.1, 0.5], guidance: [0, 1, 3]}

A grid is shorthand for the ``loop.variants`` it crosses into (`expand`); set one of the
two, not both. Every combination of its lists but guidance's is one variant, the keys
varying in the order they are listed (the last fastest), named by its values
("real_fraction=0.1", "scenario=mix, real_fraction=0.1"). The keys:

- ``guidance``: the loop's chain axis. Every variant already runs one chain per
  ``loop.guidance`` value, so the grid's list becomes loop.guidance (replacing it); its
  cells read ``real_fraction=0.1, guidance=3`` in results.csv. Only diffusion reads it.
- ``bias``: the sampling bias of every family in the pool (each ``loop.generators``
  entry's ``bias``: the temperature of the Gaussian families); refused for a pool with a
  family whose bias is guidance (use guidance).
- any setting a variant changes whose value is one number or word (`KEYS`): scenario,
  samples_per_generation, real_fraction, synthetic_ratio, window. Structured settings
  (generators, curation) are variants' business: list them in loop.variants.

The variants are recorded as loop.variants' are: results.csv's variant column, a column
per crossed key (`grid_columns`; guidance and scenario have theirs), comparisons against
the first variant (or ``compare.baseline``), a curated variant's control. With two keys
or more the report draws heat-maps at the last generation over the first two
(`ouroboros.studies.loop_grid`). A run folder's config.yaml keeps the grid, not its
expansion.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing

from ouroboros.config_convert import _convert, _show
from ouroboros.errors import UserError

GUIDANCE, BIAS = "guidance", "bias"
STRUCTURED = ("name", "generators", "curation")  # LoopVariant fields a grid does not cross


def keys() -> tuple[str, ...]:
    """The keys a grid may cross: guidance, bias and every scalar setting a variant changes
    (read from `LoopVariant`, so a new scalar setting is a grid key too)."""
    from ouroboros.config_sections import LoopVariant

    return (GUIDANCE, BIAS, *(f.name for f in dataclasses.fields(LoopVariant) if f.name not in STRUCTURED))


def _types() -> dict:
    from ouroboros.config_sections import LoopVariant

    return {**typing.get_type_hints(LoopVariant), GUIDANCE: float, BIAS: float}


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse(grid, where: str = "loop.grid") -> dict[str, list]:
    """The grid's lists, each value converted to its setting's type; UserError (naming the
    key) for a grid that is no mapping, an unknown key, a value that is no list, an empty
    list, a repeated value or a value of the wrong type."""
    if not isinstance(grid, dict) or not grid:
        raise UserError(f"{where} must map loop settings to lists of values (e.g. {{real_fraction: [0.2, 0.5], "
                        f"guidance: [0, 1]}}); got {_show(grid)}")
    types, known, out = _types(), keys(), {}
    for key, values in grid.items():
        if key not in known:
            structured = f"; {key} is set per variant in loop.variants" if key in STRUCTURED else ""
            raise UserError(f"{where}: unknown key {key!r}{structured}; a grid crosses {', '.join(known)}")
        if not isinstance(values, list):
            raise UserError(f"{where}.{key} must be a list of values to cross (e.g. [{_show(values)}]); "
                            f"got {_show(values)}")
        if not values:
            raise UserError(f"{where}.{key} is an empty list; give it at least one value, or remove the key")
        converted = [_convert(v, types[key], f"{where}.{key}[{i}]") for i, v in enumerate(values)]
        if key == GUIDANCE:  # checked here, where the user wrote it (it becomes loop.guidance)
            from ouroboros.config_sections import _guidance

            for i, w in enumerate(converted):
                _guidance(f"{where}.{key}[{i}]", w)
        if None in converted:
            raise UserError(f"{where}.{key} holds null; list values only")
        texts = [_text(v) for v in converted]
        if len(set(texts)) < len(texts):
            twice = next(t for t in texts if texts.count(t) > 1)
            raise UserError(f"{where}.{key} has the value {twice} twice (variant names print it so); list each once")
        out[key] = converted
    return out


def _name(point: dict) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in point.items())


def settings(loop) -> dict[str, dict]:
    """variant name -> {key: value} of each variant the grid makes (guidance left out: it
    is the chain axis); {} without a grid."""
    if loop.grid is None:
        return {}
    grid = {k: v for k, v in parse(loop.grid).items() if k != GUIDANCE}
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return {_name(p) or "grid": p for p in points}


def expand(loop, where: str = "loop") -> None:
    """Set ``loop.variants`` (and loop.guidance, when the grid crosses it) from
    ``loop.grid``; nothing without a grid. UserError for a bad grid (`parse`), too many
    variants, bias with a family whose bias is guidance, or loop.variants set too (unless
    they are the grid's own: a config built from another's, or read back)."""
    from ouroboros.config_sections import MAX_LIST, LoopVariant

    if loop.grid is None:
        return
    grid = parse(loop.grid, f"{where}.grid")
    count = 1
    for key, values in grid.items():
        count *= 1 if key == GUIDANCE else len(values)
    if count > MAX_LIST:
        raise UserError(f"{where}.grid crosses into {count} variants; at most {MAX_LIST} are allowed (each runs "
                        "every guidance and seed): shorten its lists")
    variants = []
    for name, point in settings(loop).items():
        changes = dict(point)
        if BIAS in changes:
            bias = changes.pop(BIAS)
            changes["generators"] = [dataclasses.replace(e, bias=bias) for e in loop.families()]
        variants.append(LoopVariant(name=name, **changes))
    if BIAS in grid:
        from ouroboros.generators.base import families

        guided = [e.family for e in loop.families() if getattr(families().get(e.family), "bias", "") == GUIDANCE]
        if guided:
            raise UserError(f"{where}.grid.bias sets the sampling bias of every generator family, but the "
                            f"{guided[0]} family's bias is guidance: cross guidance instead")
    variants = variants if len(grid) > (GUIDANCE in grid) else None  # guidance alone makes no variants
    if loop.variants is not None and loop.variants != variants:
        raise UserError(f"{where}.grid and {where}.variants are both set; a grid is shorthand for the variants it "
                        f"crosses into: use one of them")
    loop.variants = variants
    if GUIDANCE in grid:
        loop.guidance = grid[GUIDANCE]


def grid_columns(loop) -> dict[str, dict[str, object]]:
    """results.csv's column per crossed key but guidance and scenario (which have their
    own): column -> {variant name: value} (a curated variant's control: the variant's
    value); {} without a grid."""
    points = settings(loop)
    if loop.variants is not None:
        points.update({control: points[curated] for control, curated in loop.controls().items()
                       if curated in points})  # variants named outside a grid have no crossed settings
    out: dict[str, dict[str, object]] = {}
    for name, point in points.items():
        for key, value in point.items():
            if key != "scenario":
                out.setdefault(key, {})[name] = value
    return out

