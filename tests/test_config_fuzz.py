"""Malformed values for every config field fail up front: exit 2, one `error:` line
naming the key, and no run folder.

The fields are read from the dataclasses, so a field added later is fuzzed too. Only
values that are invalid for *every* field of a type are generated (wrong types, NaN,
infinities, negatives, absurd sizes, empty or junk text, nested junk). A value that
gets past every check reaches `open_run`, which the test replaces with a tripwire:
nothing trains (an absurd size that slipped through would otherwise run for ever)
and the test fails, naming the value.
"""

import dataclasses
import types
import typing
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ouroboros.cli import main
from ouroboros.config import StudyConfig, load_config
from ouroboros.errors import UserError


class Accepted(Exception):
    """Raised where a study would start writing: every up-front check let the value through."""


@pytest.fixture
def tripwire(monkeypatch):
    from ouroboros import rundir

    def open_run(config, *args, **kwargs):
        raise Accepted(config)

    monkeypatch.setattr(rundir, "open_run", open_run)


# Lists that may be empty: no Table 8 (append_ratios), no Table 6 (shifts), no superclasses.
EMPTY_OK = {"contamination.append_ratios", "contamination.shifts", "contamination.class_groups"}


def leaf_fields(cls=StudyConfig, prefix=""):
    """(dotted key, type) of every non-dataclass field, recursively."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, tp))
    return out


FIELDS = leaf_fields()


def test_fields_are_found_in_every_section():
    sections = {key.split(".")[0] for key, _ in FIELDS if "." in key}
    assert sections == {"data", "loop", "contamination", "evaluate", "generator", "classifier", "output", "executor",
                        "limits", "compare"}
    assert {"study", "name", "generator.lr", "contamination.class_groups", "executor.threads_per_worker"} <= {
        key for key, _ in FIELDS}


NAN, INF = float("nan"), float("inf")
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
not_a_number = st.one_of(st.booleans(), st.text(max_size=5), st.lists(junk, max_size=2),
                         st.dictionaries(st.text(max_size=3), junk, min_size=1, max_size=2))
bad_text = st.one_of(st.just(""), st.just("a\x00b"), st.just("x" * 5000),
                     st.integers(), st.floats(), st.booleans(), st.lists(junk, max_size=2),
                     st.dictionaries(st.text(max_size=3), junk, min_size=1, max_size=2))


def invalid(tp, key, optional=False):
    """Values that no field of type `tp` accepts (null too, unless the field is Optional)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[T]: null is valid, T's junk is not
        inner = [a for a in args if a is not type(None)]
        if inner == [str, dict]:  # a name or a mapping (compare.baseline): neither
            return st.one_of(st.integers(), st.floats(), st.booleans(), st.just(""), st.just("x" * 5000),
                             st.lists(junk, max_size=2))
        return invalid(inner[0], key, optional=True)
    null = st.nothing() if optional else st.none()
    if origin is Literal:
        return st.one_of(st.text(max_size=8).filter(lambda s: s not in args), st.integers(), null,
                         st.lists(st.sampled_from(args), min_size=1, max_size=2))
    if origin is list:
        # A scalar where a list goes is a list of one (--set loop.guidance=1): wrong when the item is.
        bad_scalar = invalid(args[0], key).filter(lambda v: v is not None and not isinstance(v, (list, dict)))
        wrong = st.one_of(bad_scalar, null, st.dictionaries(st.text(max_size=3), junk, min_size=1, max_size=2))
        bad_item = invalid(args[0], key).map(lambda v: [v])
        return st.one_of(wrong, bad_item) if key in EMPTY_OK else st.one_of(wrong, bad_item, st.just([]))
    if dataclasses.is_dataclass(tp):  # a section inside a list (loop.generators): not a mapping, or junk keys
        # (null is an empty section, i.e. the defaults, as for any section)
        return st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.booleans(),
                         st.lists(junk, max_size=2), st.dictionaries(st.text(max_size=3), junk, min_size=1, max_size=2))
    if tp is int:
        return st.one_of(not_a_number, null, st.integers(max_value=-1), st.integers(min_value=2**32),
                         st.floats(), st.sampled_from([NAN, INF, -INF, 3.0]))  # YAML 3.0 is a float
    if tp is float:
        # (limits.* take up to 2^20 GiB: a cluster's budget, not a typo)
        too_big = 2.0**21 if key.startswith("limits.") else 1e3
        return st.one_of(not_a_number, null, st.floats(max_value=-1e-6), st.floats(min_value=too_big),
                         st.sampled_from([NAN, INF, -INF]))
    if tp is str:
        return st.one_of(bad_text, null)
    if tp is dict:  # a mapping of margins (compare.delta): not a mapping, or a margin that is no number > 0
        return st.one_of(null, st.integers(), st.text(max_size=5), st.lists(junk, min_size=1, max_size=2),
                         st.dictionaries(st.sampled_from(["fid", "x"]), st.floats(max_value=0) | st.booleans(),
                                         min_size=1, max_size=2))
    if tp is bool:  # YAML's true/false only: 0, 1 and the strings "true"/"false" are not booleans
        return st.one_of(st.integers(), st.floats(), st.text(max_size=5), null,
                         st.lists(st.booleans(), min_size=1, max_size=2))
    raise AssertionError(f"no junk for config type {tp} of {key}: extend invalid()")


def as_override(value) -> str:
    """The --set text whose YAML parse is `value`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return text.removesuffix("\n...\n").strip()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_invalid_values_fail_up_front_with_one_line(tmp_path, capsys, tripwire, data):
    key, tp = data.draw(st.sampled_from(FIELDS), label="key")
    value = data.draw(invalid(tp, key), label="value")
    text = as_override(value)
    assume(as_override(yaml.safe_load(text)) == text)  # the override says what we mean
    out = tmp_path / "out"
    try:
        code = main(["demo", "--out", str(out), "--quiet", "--set", f"{key}={text}"])
    except Accepted:
        pytest.fail(f"accepted {key}={text}: a check is missing, or invalid() made a valid value")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (key, text, err)
    assert key in lines[0], (key, lines[0])
    assert not out.exists()


@pytest.mark.parametrize("text", ["\udcff", "caf\udce9", "a\ud800b"])  # undecodable argv bytes arrive as surrogates
@pytest.mark.parametrize("key", [k for k, tp in FIELDS if tp in (str, typing.Optional[str])])
def test_text_that_is_not_utf8(tmp_path, capsys, tripwire, key, text):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--set", f"{key}={text}"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0] and "UTF-8" in lines[0], lines
    assert not out.exists()


@pytest.mark.parametrize("key, tp", FIELDS, ids=[k for k, _ in FIELDS])
def test_every_field_rejects_each_kind_of_junk(key, tp):
    """The same kinds of junk as above, each tried on each field (the fuzzer samples)."""
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
    base = typing.get_args(tp)[0] if optional else tp
    inner = typing.get_args(base)[0] if typing.get_origin(base) is list else None
    absurd = {int: [-1, 2**40, 2**100, 1.5, True], float: [-1e-3, 1e12, 1e300, NAN, INF, -INF, True],
              str: ["", "x" * 5000, "a\x00b", 7]}
    values = [{"junk": [1]}] + ([] if optional else [None]) + absurd.get(base, [])
    if inner is not None:
        values += [[v] for v in absurd.get(inner, [])] + ([] if key in EMPTY_OK else [[]])
    for value in values:
        with pytest.raises(UserError) as info:
            load_config(None, [f"{key}={as_override(value)}"])
        assert key in str(info.value), (value, str(info.value))


def test_lists_that_may_be_empty_are_accepted_empty():
    # EMPTY_OK must not hide a list that really must be non-empty.
    for key in EMPTY_OK:
        load_config(None, [f"{key}=[]"])
