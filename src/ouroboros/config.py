"""Study configs: YAML -> validated dataclasses.

Every section is a dataclass whose defaults live beside the component. Loading is
strict: an unknown key, a wrong type or a value out of range is a `UserError`
naming the key. ``--set a.b=value`` overrides parse `value` as YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from ouroboros.errors import UserError
from ouroboros.features.classifier import ClassifierConfig
from ouroboros.generators.diffusion import DiffusionConfig, check_guidance


@dataclass
class DataConfig:
    train: str = "digits"  # dataset spec (see ouroboros.data.loaders)
    test: Optional[str] = None  # None: split test_fraction of `train` off, per class
    test_fraction: float = 0.3
    split_seed: int = 0

    def validate(self) -> None:
        if self.test is None and not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"data.test_fraction must lie in (0, 1); got {self.test_fraction}")


@dataclass
class LoopConfig:
    generations: int = 9
    guidance: list[float] = field(default_factory=lambda: [1.0, 0.1, 0.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    scenario: Literal["replace"] = "replace"
    samples_per_generation: Optional[int] = None  # None: the size of the real training set

    def validate(self) -> None:
        if self.generations < 1:
            raise UserError(f"loop.generations must be at least 1; got {self.generations}")
        if not self.guidance:
            raise UserError("loop.guidance needs at least one value")
        for w in self.guidance:
            try:
                check_guidance(w)
            except UserError as exc:
                raise UserError(f"loop.guidance: {exc}") from None
        if len(set(self.guidance)) != len(self.guidance):
            raise UserError(f"loop.guidance has repeated values: {self.guidance}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"loop.seeds must be a non-empty list of distinct integers; got {self.seeds}")
        if self.samples_per_generation is not None and self.samples_per_generation < 1:
            raise UserError("loop.samples_per_generation must be at least 1")


@dataclass
class ContaminationConfig:
    """The contamination study (Hataya et al. 2023) on disjoint real splits of data.train."""

    # Disjoint real splits (fractions of data.train): the downstream training set, the
    # generator's own training data (which also trains the feature network of Tables 3
    # and 4), the real control source (at least as large as the training set, so that
    # replacing 100% needs no repeats), and the test split (ignored when data.test is
    # given; no model trains on it).
    split_train: float = 0.3
    split_generator: float = 0.23
    split_control: float = 0.32
    split_test: float = 0.15
    generated: Optional[str] = None  # an external generated pool (dataset spec) instead of fitting one
    control: Optional[str] = None  # an external real control source instead of the control split
    ratios: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.8, 1.0])
    archs: list[str] = field(default_factory=lambda: ["cnn", "resnet"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # each redraws every random choice
    guidance: float = 1.0  # simple conditioning: the class, at one guidance
    diverse_guidance: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])  # drawn per image
    diverse_sample_steps: list[int] = field(default_factory=lambda: [10, 25, 50])  # drawn per image
    small_fraction: float = 0.05  # Table 7: this much real, alone or filled up
    append_ratios: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.8])  # Table 8
    shifts: list[str] = field(default_factory=lambda: ["noise", "blur", "rotation", "elastic", "contrast"])
    # Confusion matrices (Fig. 3) grouped into superclasses, e.g. [["0", "6"], ["1", "7"]];
    # None: one row per class.
    class_groups: Optional[list[list[str]]] = None

    def validate(self) -> None:
        from ouroboros.data.mixtures import check_ratio
        from ouroboros.data.shifts import SHIFTS
        from ouroboros.features.classifier import ARCHS

        for name in ("split_train", "split_generator", "split_control", "split_test"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"contamination.{name} must lie in [0, 1); got {getattr(self, name)}")
        if self.split_train + self.split_generator + self.split_control + self.split_test > 1.0 + 1e-9:
            raise UserError("contamination splits must sum to at most 1")
        for r in list(self.ratios) + list(self.append_ratios) + [self.small_fraction]:
            try:
                check_ratio(r)
            except UserError as exc:
                raise UserError(f"contamination: {exc}") from None
        for a in self.archs:
            if a not in ARCHS:
                raise UserError(f"contamination.archs: unknown arch {a!r}; use {', '.join(ARCHS)}")
        for sh in self.shifts:
            if sh not in SHIFTS:
                raise UserError(f"contamination.shifts: unknown shift {sh!r}; use {', '.join(SHIFTS)}")
        for w in [self.guidance, *self.diverse_guidance]:
            check_guidance(w)
        if not self.seeds or not self.archs or not self.ratios:
            raise UserError("contamination.seeds, archs and ratios must not be empty")
        if any(st < 1 for st in self.diverse_sample_steps) or not self.diverse_sample_steps:
            raise UserError("contamination.diverse_sample_steps must be a non-empty list of positive integers")


@dataclass
class OutputConfig:
    grid_per_class: int = 10  # images per class (columns) in each sample grid
    grid_scale: int = 4  # pixel upscaling of sample grids

    def validate(self) -> None:
        if self.grid_per_class < 1 or self.grid_scale < 1:
            raise UserError("output.grid_per_class and output.grid_scale must be at least 1")


@dataclass
class ExecutorConfig:
    kind: Literal["local"] = "local"
    workers: int = 0  # 0: one per CPU core (at most one per independent chain)
    threads_per_worker: int = 1

    def validate(self) -> None:
        if self.workers < 0 or self.threads_per_worker < 1:
            raise UserError("executor.workers must be >= 0 and executor.threads_per_worker >= 1")


@dataclass
class StudyConfig:
    study: Literal["loop", "contamination"] = "loop"
    name: str = "loop"
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    generator: DiffusionConfig = field(default_factory=DiffusionConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "validate"):
                value.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- strict conversion ------------------------------------------------------------------


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if origin is Literal:
        if value not in args:
            raise UserError(f"{where} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where} must be a list; got {value!r}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number; got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where} must be a string; got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {where}")


def from_dict(cls, data: Any, where: str = "config"):
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of keys to values; got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = unknown[0] if where == "config" else f"{where}.{unknown[0]}"
        raise UserError(f"unknown key {key!r}; valid keys here: {', '.join(sorted(names))}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where != "config" else k) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (value parsed as YAML) to a nested dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value (e.g. loop.generations=3); got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = value
    return raw


def _shipped_config(path: Path) -> Path:
    """A config that ships in the package, named `NAME`, `NAME.yaml` or `configs/NAME.yaml`
    (so the documented paths work from any folder, installed or not)."""
    shipped = Path(__file__).with_name("configs")
    names = sorted(p.stem for p in shipped.glob("*.yaml"))
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    name = parts[0].removesuffix(".yaml") if len(parts) == 1 else None
    if name in names:
        return shipped / f"{name}.yaml"
    raise UserError(f"config file not found: {path}; give a YAML file or a shipped config: {', '.join(names)}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> StudyConfig:
    """Read a YAML study config (or start from `base`), apply overrides, validate."""
    raw: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            path = _shipped_config(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path} must hold a mapping of sections (data, loop, generator, ...)")
        raw.update(loaded)
    raw = apply_overrides(raw, overrides or [])
    config = from_dict(StudyConfig, raw)
    config.validate()
    return config
