"""What a study hands the report: findings and sections made of a few kinds of items.

The report (`ouroboros.report.html`) knows no study. Each study turns its runs into
`Section`s (`ouroboros.study.Study.report_sections`), each placed under one of the
page's headings (findings, plots, samples, tables) and made of items the report knows
how to draw: text, findings, tables, images (plots written by the study, sample grids
from the run folder), a grid of images, Markdown. All text is escaped when drawn; an
image is embedded only when it is a regular file inside its run folder or the report's
plot folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Literal, Union


@dataclasses.dataclass
class Finding:
    """One thing a run found: a sentence and its verdict, a word such as "higher", "lower",
    "equivalent", "not resolved", "holds" or "reversed" ("" when it states a value)."""

    text: str
    verdict: str = ""
    run: str = ""  # the run's label, when several runs are reported together

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass
class Text:
    text: str


@dataclasses.dataclass
class Findings:
    findings: list[Finding]


@dataclasses.dataclass
class Table:
    header: list[str]
    rows: list[list[str]]  # cells as text; a cell may be a Finding (drawn with its verdict's style)
    left: int = 1  # the first `left` columns are names (left-aligned)


@dataclasses.dataclass
class Image:
    path: Path
    caption: str = ""
    kind: Literal["plot", "figure", "grid"] = "figure"  # plot: half the page wide; grid: pixelated samples


@dataclasses.dataclass
class Plot:
    """A plot the report draws into its plots/ folder: `draw(path)` writes it as PNG (and
    SVG beside it) at the path the report chooses from `name` (a safe file name, checked
    with every other plot's before any is drawn)."""

    name: str
    caption: str
    draw: Callable[[Path], object]
    wide: bool = False  # False: half the page wide, the caption as its alt text (its title is inside it)


@dataclasses.dataclass
class ImageGrid:
    """Images in rows (e.g. conditions) and columns (e.g. generations); None leaves a cell empty."""

    corner: str
    columns: list[str]
    rows: list[tuple[str, list[Path | None]]]


@dataclasses.dataclass
class Markdown:
    """The subset `tables.md` uses: #/## headings, pipe tables, paragraphs, **bold**."""

    text: str


Item = Union[Text, Findings, Table, Image, Plot, ImageGrid, Markdown]
PLACES = ("findings", "plots", "samples", "tables")


@dataclasses.dataclass
class Section:
    place: Literal["findings", "plots", "samples", "tables"]  # the page heading it goes under
    title: str  # its own heading ("" for none)
    items: list[Item]
