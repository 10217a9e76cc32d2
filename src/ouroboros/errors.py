"""The one exception type for bad user input, and the range checks that raise it.

Anything a user can fix (a config key, a file, a number out of range) raises
`UserError`; the CLI prints it as a single `error:` line and exits with code 2.
It subclasses `ValueError` so library users can catch it the usual way.

The `check_*` helpers validate one config value and name its key (`where`) in the
message. They check the type too, because config dataclasses can be built in
Python as well as from YAML.
"""

from __future__ import annotations

import math
import unicodedata


class UserError(ValueError):
    """Bad input that the user can fix; the message says what and how."""


def check_int(where: str, value, lo: int, hi: int) -> int:
    """An int (not a bool) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{where} must be an integer; got {value!r}")
    if not lo <= value <= hi:
        raise UserError(f"{where} must lie in [{lo}, {hi}]; got {value}")
    return value


def check_float(where: str, value, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in [lo, hi] (or the open interval at an end marked open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where} must be a number; got {value!r}")
    if not math.isfinite(value):
        raise UserError(f"{where} must be a finite number; got {value}")
    if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise UserError(f"{where} must lie in {interval}; got {value:g}")
    return float(value)


def check_list(where: str, values, max_len: int = 100, nonempty: bool = True, distinct: bool = False) -> list:
    """A list of at most `max_len` items; optionally non-empty and without repeats."""
    if not isinstance(values, list):
        raise UserError(f"{where} must be a list; got {values!r}")
    if nonempty and not values:
        raise UserError(f"{where} needs at least one value")
    if len(values) > max_len:
        raise UserError(f"{where} has {len(values)} values; at most {max_len} are allowed")
    if distinct:
        seen = []
        for v in values:
            if v in seen:
                raise UserError(f"{where} has the value {v!r} twice; list each value once")
            seen.append(v)
    return values


def check_text(where: str, value, max_len: int = 4096) -> str:
    """A non-empty string that is valid UTF-8 (no lone surrogates from undecodable bytes)."""
    if not isinstance(value, str):
        raise UserError(f"{where} must be a string; got {value!r}")
    if not value:
        raise UserError(f"{where} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where} is not valid UTF-8 text ({ascii(value)[:60]}); use plain UTF-8 characters") from None
    if "\x00" in value:
        raise UserError(f"{where} contains a NUL character; remove it")
    if len(value) > max_len:
        raise UserError(f"{where} is {len(value)} characters long; at most {max_len} are allowed")
    return value


_UNSAFE_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")  # control, surrogate (undecodable bytes), line and paragraph separators


def printable(text) -> str:
    """`text` on one line and encodable as UTF-8, for an `error:` line.

    Library messages and user file names can hold newlines or undecodable bytes; those
    are shown escaped (``\\n``, ``\\udcff``) instead of breaking the line or the print.
    """
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in str(text))
