"""The docs' configuration and command-line pages are generated from the code
(docs/hooks.py, run while the site builds): every setting of every config section, with
its default and the comment beside it in the source, and every command with its options."""

import dataclasses
import importlib.util
import types
import typing
from pathlib import Path

import pytest

HOOKS = Path(__file__).resolve().parents[1] / "docs" / "hooks.py"


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", HOOKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(cls, prefix=""):
    """Every setting's dotted key, through nested sections and list entries."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _keys(hint, f"{prefix}{f.name}.")
            continue
        yield f"{prefix}{f.name}"


def test_every_setting_is_on_the_configuration_page(hooks):
    from ouroboros.config import StudyConfig

    page = hooks.configuration_markdown()
    keys = list(_keys(StudyConfig))
    assert len(keys) > 80
    missing = [k for k in keys if f"| `{k}` |" not in page]
    assert not missing
    # type, default and the comment beside the field in the source
    assert "| `loop.generations` | `int` | `5` |" in page
    assert "a registered study (`ouroboros.study`)" in page
    assert "## `loop.variants[]`" in page and "## `loop.curation`" in page


def test_field_comments_are_read_from_the_source(hooks):
    @dataclasses.dataclass
    class Example:
        # above, first line
        # above, second line
        a: int = 1  # at the end
        b: str = "x"
        c: float = 0.5  # only at the end

    comments = hooks.field_comments(Example)
    assert comments == {"a": "above, first line above, second line at the end", "c": "only at the end"}


def test_every_command_and_option_is_on_the_cli_page(hooks):
    page = hooks.cli_markdown()
    for command in ("demo", "run", "configs", "metrics", "caption-metrics", "mix", "generate text2image",
                    "generate tiny-pipeline", "report"):
        assert f"### `ouroboros {command}`" in page
    for option in ("--log-mlflow", "--log-tensorboard", "--dry-run", "--force", "--inception-weights"):
        assert option in page


def test_links_out_of_docs_show_as_text_on_the_site(hooks):
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_uri="literature.md"))
    text = ("See [`configs/a.yaml`](../src/ouroboros/configs/a.yaml), [the script](../benchmarks/x.py) "
            "and [Metrics](metrics.md).")
    assert hooks.on_page_markdown(text, page=page) == (
        "See `configs/a.yaml`, the script (`benchmarks/x.py`) and [Metrics](metrics.md).")
