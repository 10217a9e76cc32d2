"""Study configs: YAML -> validated dataclasses.

Every section is a dataclass whose defaults live beside the component. Loading is
strict: an unknown key, a wrong type or a value out of range is a `UserError`
naming the key. ``--set a.b=value`` overrides parse `value` as YAML.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ouroboros.bounds import LimitsConfig
from ouroboros.config_compare import CompareConfig
from ouroboros.config_convert import _check_type, apply_overrides, from_dict
from ouroboros.config_sections import (  # noqa: F401  (the sections, importable from here as before)
    MAX_BIAS, MAX_GUIDANCE, MAX_LIST, MAX_SEED, ContaminationConfig, DataConfig, EvaluateConfig, ExecutorConfig,
    FamilyEntry, LoopConfig, LoopVariant, OutputConfig,
)
from ouroboros.errors import UserError, check_text
from ouroboros.features.classifier import ClassifierConfig
from ouroboros.generators.diffusion import DiffusionConfig
from ouroboros.io import read_bytes_bounded
from ouroboros.safe_yaml import load_yaml
from ouroboros.safepath import component
from ouroboros.studies.curation import CurationConfig  # noqa: F401


@dataclass
class StudyConfig:
    study: str = "loop"  # a registered study (`ouroboros.study`): loop, contamination or a plug-in
    name: str = "loop"
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # how the loop scores each generation
    generator: DiffusionConfig = field(default_factory=DiffusionConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)  # whole-run bounds (ouroboros.bounds)
    compare: CompareConfig = field(default_factory=CompareConfig)  # how comparisons are decided (config_compare)

    def __post_init__(self) -> None:
        # loop.grid is shorthand for the variants it crosses into: expanded here, so that
        # everything downstream reads loop.variants as if they were written out.
        from ouroboros.config_grid import expand

        if isinstance(self.loop, LoopConfig):  # else validate() names the wrong type
            expand(self.loop)

    def validate(self) -> None:
        # Types first (a config built in Python skips from_dict's conversion), then each
        # section's ranges, then the checks that span sections.
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_type(getattr(self, f.name), hints[f.name], f.name)
        check_text("name", self.name, 100)
        # The name is the default run folder (runs/<name>) and the results' study column.
        if component(self.name, "name") != self.name:
            raise UserError(f"name {self.name!r} must be usable as a folder name: printable, without / or \\, "
                            "not starting with '.' nor ending with '.' or ' ', at most 255 bytes of UTF-8")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "validate"):
                value.validate(f.name)
        for name, section in self.sections.items():  # a plug-in study's own section
            if hasattr(section, "validate"):
                section.validate(name)
        # Then the study's own checks across sections (ouroboros.study.Study.validate):
        # each family's settings against the loop's, the images the metrics need, the
        # plan's size (before any data is loaded or any stage built), ...
        study_of(self.study).validate(self)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.loop.grid is not None:  # the grid, not its expansion (read back, it expands again)
            data["loop"]["variants"] = None
        data.update({name: dataclasses.asdict(value) for name, value in self.sections.items()})
        return data

    @property
    def sections(self) -> dict:
        """A plug-in study's own config sections (name -> its dataclass), set by `load_config`."""
        return self.__dict__.setdefault("_sections", {})

    def __getattr__(self, name: str):
        sections = self.__dict__.get("_sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"StudyConfig has no section {name!r}")


def shipped_configs() -> dict[str, tuple[Path, str]]:
    """name -> (path, what it is: the first sentence of its leading comment) of every
    config that ships in the package."""
    out = {}
    for path in sorted(Path(__file__).with_name("configs").glob("*.yaml")):
        comment = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("# ").strip())
        text = " ".join(comment)
        end = re.search(r"(?<! al)(?<!Fig)(?<!e\.g)(?<!i\.e)\.\s", text)  # the first sentence ("et al." is no end)
        out[path.stem] = (path, text[: end.start() + 1] if end else text)
    return out


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> StudyConfig:
    """Read a YAML study config (or start from `base`), apply overrides, validate."""
    raw: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.exists():
            path = _shipped_config(path)
        text = read_bytes_bounded(path, "config file", "text")  # regular files only, size-checked
        try:
            loaded = load_yaml(text.decode("utf-8"), str(path))
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        except RecursionError:
            raise UserError(f"{path} is nested too deeply to be a study config") from None
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
    plugin = _plugin_sections(raw)
    config = from_dict(StudyConfig, raw)
    for name, (section_type, value) in plugin.items():
        config.sections[name] = from_dict(section_type, value, name)
    config.validate()
    return config


def _studies() -> dict:
    """The registered studies. The built-in ones register themselves when
    ``ouroboros.studies.builtin`` is imported: loaded here by name, like any plug-in, so
    that a config is checked in full whoever loads it."""
    import importlib

    from ouroboros.study import studies

    importlib.import_module("ouroboros.studies.builtin")
    return studies()


def study_of(name: str):
    """The registered study `name` (UserError when there is none)."""
    from ouroboros.study import get_study

    _studies()
    return get_study(name)


def _plugin_sections(raw: dict) -> dict:
    """Take the config sections of registered plug-in studies out of `raw`:
    name -> (its dataclass, the raw value). A plug-in study's section is always present
    (its defaults when the config does not give it) when the config runs that study."""
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    out = {}
    for study in _studies().values():
        name = study.section
        if name is None or name in fields or study.section_type is None:
            continue
        if name in raw or raw.get("study") == study.name:
            out[name] = (study.section_type, raw.pop(name, None))
    return out
