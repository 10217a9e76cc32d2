"""MkDocs hook: the pages that must not drift are generated while the site builds.

- ``<!-- generated: configuration -->`` becomes every config setting, read from the config
  dataclasses themselves (`ouroboros.config.StudyConfig`, its sections and the built-in
  studies' own sections): the key, its type, its default and the comments written beside
  the field in the source.
- ``<!-- generated: cli -->`` becomes every `ouroboros` command's ``--help``, from the
  argparse parser the command line uses.
- Pages that other parts of the project write (`PLANNED`) get a stub until they exist.
- Links from a page to repository files outside docs/ show as text (`OUT_OF_DOCS`).

Run as a script (``python docs/hooks.py configuration|cli``) it prints the Markdown.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


# -- configuration -------------------------------------------------------------------------------


def field_comments(cls) -> dict[str, str]:
    """{field: its comment} for a dataclass and its bases: the comment lines right above a
    field and the one at the end of its line, as written in the source."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        comments = {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
        body = ast.parse(source).body[0].body
        for node in body:
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            above = []
            line = node.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments.get(line, ""))
                line -= 1
            end = comments.get(node.end_lineno)  # the comment at the end of the field's line
            text = " ".join([*above, end] if end else above)
            if text:
                out[node.target.id] = text
        for paragraph in (inspect.getdoc(klass) or "").split("\n\n"):  # ``name``: ... in the docstring
            match = re.match(r"``(\w+)``:\s*(.*)", paragraph, re.S)
            if match and match.group(1) not in out:
                out[match.group(1)] = " ".join(match.group(2).split())
    return out


def _inner_dataclass(hint):
    for arg in typing.get_args(hint):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
        found = _inner_dataclass(arg)
        if found is not None:
            return found
    return None


def _type_name(hint) -> str:
    text = str(hint) if not isinstance(hint, type) else hint.__name__
    for noise in ("typing.", "ouroboros.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("NoneType", "None")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "(required)"
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_table(cls, prefix: str) -> tuple[list[str], list[tuple[str, type]]]:
    """Markdown rows for one dataclass, and the nested dataclass sections it holds."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        hint = hints.get(f.name, f.type)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            nested.append((f"{prefix}{f.name}", hint))
            continue
        inner = _inner_dataclass(hint)  # Optional[X] or list[X] of a dataclass X: a row, and X's own table
        if inner is not None:
            many = typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in typing.get_args(hint))
            nested.append((f"{prefix}{f.name}{'[]' if many else ''}", inner))
        rows.append(f"| `{prefix}{f.name}` | `{_cell(_type_name(hint))}` | {_cell(_default(f))} | "
                    f"{_cell(comments.get(f.name, ''))} |")
    return rows, nested


def configuration_markdown() -> str:
    from ouroboros.config import StudyConfig, _studies

    header = ["| key | type | default | what it is |", "|---|---|---|---|"]
    top, sections = section_table(StudyConfig, "")
    out = ["## Top level", "", *header, *top, ""]
    seen: dict[type, str] = {}
    for study in sorted(_studies().values(), key=lambda s: s.name):
        if study.section and study.section_type is not None and study.section not in {n for n, _ in sections}:
            sections.append((study.section, study.section_type))
    while sections:
        name, cls = sections.pop(0)
        if cls in seen:
            out += [f"## `{name}`", "", f"The keys of `{seen[cls]}`.", ""]
            continue
        seen[cls] = name
        rows, nested = section_table(cls, f"{name}.")
        doc = inspect.getdoc(cls) or ""
        doc = "" if doc.startswith(cls.__name__ + "(") else " ".join(doc.split())  # dataclass' generated doc
        out += [f"## `{name}`", "", f"`{cls.__module__}.{cls.__name__}`" + (f": {doc}" if doc else ""), ""]
        out += [*header, *rows, ""]
        sections[:0] = nested
    return "\n".join(out)


# -- command line --------------------------------------------------------------------------------


def cli_markdown() -> str:
    import argparse
    import os

    from ouroboros.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help text to the terminal's width
    parser = build_parser()
    out = ["### `ouroboros`", "", "```text", parser.format_help().rstrip(), "```", ""]

    def walk(p, name):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    full = f"{name} {sub_name}"
                    out.extend([f"### `{full}`", "", "```text", sub.format_help().rstrip(), "```", ""])
                    walk(sub, full)

    walk(parser, "ouroboros")
    return "\n".join(out)


GENERATED = {"configuration": configuration_markdown, "cli": cli_markdown}


# Pages other parts of the project write; until one lands, the site shows a stub in its place
# (made here, never committed), so that the navigation and the links to it hold.
PLANNED = {
    "captioning.md": ("Captioning", "The captioning study: captioners trained on captioned data with generated "
                                    "images mixed in."),
    "literature.md": ("The literature's experiments", "Configs that run the experiments of the model-collapse papers."),
    "loop-mnist.md": ("Real MNIST", "The feedback loop on real 28×28 MNIST digits (`configs/loop-mnist.yaml`)."),
}


def on_files(files, config):
    from mkdocs.structure.files import File

    for path, (title, what) in PLANNED.items():
        if files.get_file_from_path(path) is None:
            files.append(File.generated(config, path, content=f"# {title}\n\n{what} This page is being written.\n"))
    return files


# A link from a page to a file of the repository outside docs/ ([`configs/x.yaml`](../src/...)) works
# where the Markdown is read on its own (GitHub) but is no page of the site: there it shows as text.
OUT_OF_DOCS = re.compile(r"\[([^\]]+)\]\((?:\.\./)+([^)#\s]+)\)")


def on_page_markdown(markdown: str, page=None, config=None, files=None) -> str:
    for name, make in GENERATED.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    if page is not None and "/" not in page.file.src_uri:  # a top-level page: ../ leaves docs/
        markdown = OUT_OF_DOCS.sub(lambda m: m.group(1) if m.group(2) in m.group(1) or m.group(1).startswith("`")
                                   else f"{m.group(1)} (`{m.group(2)}`)", markdown)
    return markdown


if __name__ == "__main__":
    print(GENERATED[sys.argv[1]]())
