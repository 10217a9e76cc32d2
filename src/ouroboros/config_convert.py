"""Strict conversion of a config's YAML values into its dataclasses: an unknown key or a
wrong type is a `UserError` naming the key; ``--set a.b=value`` overrides."""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from typing import Any, Literal

import yaml

from ouroboros.errors import UserError, check_text
from ouroboros.safe_yaml import load_yaml

MAX_CONVERT = 1000  # values in any list at all (class_groups can name many classes)


def _check_type(value: Any, tp, where: str) -> None:
    """Raise UserError if `value` (held by a dataclass field of type `tp`) has the wrong type."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, tp):
            raise UserError(f"{where} must be a {tp.__name__}; got {value!r}")
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            _check_type(getattr(value, f.name), hints[f.name], f"{where}.{f.name}")
    else:
        _convert(value, tp, where)


# -- strict conversion ------------------------------------------------------------------


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 50, 50


def _show(value: Any) -> str:
    """A short repr for messages: a huge or nested value (YAML aliases can make one
    enormous) must neither flood the error line nor take long to print."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _convert(value: Any, tp, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], where)
        for tp_ in inner:  # several types (str | dict): the first that takes the value
            try:
                return _convert(value, tp_, where)
            except UserError:
                pass
        words = {str: "string", dict: "mapping"}
        raise UserError(f"{where} must be a {' or a '.join(words.get(t, _type_name(t)) for t in inner)}; "
                        f"got {_show(value)}")
    if origin is Literal:
        if isinstance(value, (list, dict)) or value not in args:
            raise UserError(f"{where} must be one of {', '.join(map(str, args))}; got {_show(value)}")
        return value
    if origin is list:
        if isinstance(value, (str, int, float)):  # a scalar where a list goes (--set loop.guidance=1): a list of one
            value = [value]
        if not isinstance(value, list):
            raise UserError(f"{where} must be a list; got {_show(value)}")
        if len(value) > MAX_CONVERT:  # before walking it: YAML aliases can nest huge lists cheaply
            raise UserError(f"{where} has {len(value)} values; at most {MAX_CONVERT} are allowed")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already built (a validate() pass, a list of sections)
            _check_type(value, tp, where)
            return value
        return from_dict(tp, value, where)
    if tp is dict:  # free-form settings, checked by whoever reads them
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping of keys to values; got {_show(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false; got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} must be an integer; got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number; got {_show(value)}")
        return float(value)  # NaN and infinities are ranged out by each section's validate()
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where} must be a string; got {_show(value)}")
        return check_text(where, value)
    raise TypeError(f"unsupported config type {tp} at {where}")


def from_dict(cls, data: Any, where: str = "config"):
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of keys to values; got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in data if k not in names), key=str)  # YAML keys may be numbers
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
            value = load_yaml(text, f"--set {key}")
        except (yaml.YAMLError, RecursionError):  # not YAML (or absurdly nested): take the text as is
            value = text
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = value
    return raw
