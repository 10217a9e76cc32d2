"""Checks on a saved diffusers pipeline folder, made before diffusers reads any of it.

- ``model_index.json`` is a JSON object whose components (the keys holding a list)
  are ``[library, class]`` pairs of names, or ``[null, null]``, under a key that can
  name a folder; anything else there (``"unet": []``) is one `UserError`, not a
  traceback inside diffusers. Other keys (``_class_name``, ``requires_safety_checker``:
  pipeline options) are left to diffusers.
- No pickle: the weights a component folder names, directly (its ``*.safetensors``) or
  through an index (``*.index.json``, whose ``weight_map`` names shard files), are
  safetensors files inside that folder. A pickled shard named by an index (beside a
  decoy ``.safetensors``) is refused, so is a shard outside the folder (``../x``); a
  folder with pickled weights only is refused. Pickled files nothing names may stay:
  loading passes ``use_safetensors=True`` and never reads them.
- Bounded input: every file in a component folder is a regular file (no FIFO or
  device) within the size limits of `ouroboros.io.input_limit`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError
from ouroboros.io import check_regular_file, read_bytes_bounded

PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
WEIGHTS = (".safetensors", *PICKLED)
TEXT = (".json", ".txt")  # configs and tokenizer files: the small "text" limit
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a component folder, a library or a class name


def read_json(path: Path, what: str):
    """A small JSON file (the "text" size limit), parsed; anything wrong is a UserError."""
    try:
        return json.loads(read_bytes_bounded(path, what, "text").decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UserError(f"{what} {printable(path)} is not valid JSON ({printable(exc)}); "
                        "save the pipeline again with save_pretrained") from None


def read_model_index(model: Path) -> dict:
    """``model_index.json``, checked: a JSON object; each component a pair of names or nulls."""
    index_path = model / "model_index.json"
    if not model.is_dir():
        raise UserError(f"--model folder not found: {printable(model)}")
    if not index_path.exists():
        raise UserError(f"{printable(model)} is not a diffusers pipeline folder (no model_index.json); "
                        "save one with pipeline.save_pretrained(DIR)")
    index = read_json(index_path, "pipeline index")
    if not isinstance(index, dict):
        raise UserError(f"{printable(index_path)} must hold a JSON object; save the pipeline with save_pretrained")
    for comp, spec in index.items():
        if comp.startswith("_") or not isinstance(spec, list):  # options such as requires_safety_checker
            continue
        pair = isinstance(spec, list) and len(spec) == 2
        ok = pair and (spec == [None, None] or all(isinstance(s, str) and _NAME.match(s) for s in spec))
        if not _NAME.match(comp) or not ok:
            raise UserError(f"{printable(index_path)}: component {printable(comp)!r} must be a folder name with "
                            f"[library, class] names or [null, null]; got {printable(json.dumps(spec))[:80]}")
    return index


def components(index: dict) -> list[str]:
    """The components that have a folder: [library, class], not [null, null]."""
    return [comp for comp, spec in index.items()
            if not comp.startswith("_") and isinstance(spec, list) and spec[0] is not None]


def check_component_folder(model: Path, comp: str) -> None:
    """One component's folder: regular files within the limits; its weights safetensors only."""
    folder = model / comp
    if not folder.is_dir():
        raise UserError(f"{printable(model)}: component {comp!r} is listed in model_index.json but its folder "
                        "is missing")
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise UserError(f"cannot list {printable(folder)}: {printable(exc)}") from None
    files = [p for p in entries if not p.is_dir()]
    for p in files:
        check_regular_file(p, "model file", "text" if p.suffix in TEXT else "data")
    named = [p.name for p in files if p.suffix == ".safetensors"]
    for index in (p for p in files if p.name.endswith(".index.json")):
        named += _shards(folder, index)
    pickled = [p.name for p in files if p.suffix in PICKLED]
    if pickled and not named:
        raise UserError(f"{printable(folder)} holds only pickled weights ({printable(pickled[0])}), which are never "
                        "loaded; convert them to safetensors")
    if (folder / "config.json").exists() and not named:
        raise UserError(f"{printable(folder)} has no weights (*.safetensors)")


def _shards(folder: Path, index: Path) -> list[str]:
    """The files an index's ``weight_map`` names: each a safetensors file in `folder`."""
    data = read_json(index, "weight index")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UserError(f"{printable(index)} has no weight_map of tensor names to files; "
                        "save the pipeline again with save_pretrained")
    names = sorted(set(weight_map.values()))
    for name in names:
        if not name or name != Path(name).name or name.startswith(".") or "\\" in name:
            raise UserError(f"{printable(index)} names {printable(name)!r}, which is not a file in "
                            f"{printable(folder)}; shards must sit beside their index")
        if not name.endswith(".safetensors"):
            raise UserError(f"{printable(index)} names {printable(name)!r}, which is not a safetensors file: "
                            "pickled weights are never loaded; convert them to safetensors")
        shard = folder / name
        if not shard.exists():
            raise UserError(f"{printable(index)} names {printable(name)!r}, which is missing from "
                            f"{printable(folder)}")
        check_regular_file(shard, "model file", "data")
    return names
