"""The tidy results table: ``study, cell, seed, generation, metric, value`` + parameter columns."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ouroboros.errors import UserError
from ouroboros.io import read_bytes_bounded, write_text_atomic

BASE_COLUMNS = ["study", "cell", "seed", "generation", "metric", "value"]


def write_results(path: Path, rows: list[dict], param_columns: list[str]) -> None:
    columns = BASE_COLUMNS + param_columns
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    write_text_atomic(path, buf.getvalue())


def read_results(path: Path) -> list[dict]:
    """The rows of a results table, checked: a truncated or hand-edited file is a
    UserError here rather than a traceback while plotting. The numeric columns
    (value, generation, seed and the numeric parameters guidance and ratio) must
    parse; value may be nan."""
    path = Path(path)
    rerun = "run the study again with the same --out to rewrite it (finished stages are cached)"
    if not path.is_file():
        raise UserError(f"no results table at {path}; run the study first (ouroboros run CONFIG --out DIR)")
    try:
        text = read_bytes_bounded(path, "results table", "table").decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; {rerun}") from None
    if not text.strip():
        raise UserError(f"{path} is empty; {rerun}")
    if "\x00" in text:  # csv reads NUL bytes as text; they only come from damage
        raise UserError(f"{path} contains NUL bytes, so it is damaged; {rerun}")
    # write_results ends every row with a newline, so a file without one was cut short.
    if not text.endswith("\n"):
        raise UserError(f"{path} is truncated (its last row is incomplete); {rerun}")
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise UserError(f"{path} is not a readable CSV table ({exc}); {rerun}") from None
    header, body = records[0], records[1:]
    if not set(BASE_COLUMNS) <= set(header) or len(set(header)) != len(header):
        raise UserError(f"{path} is not an ouroboros results table (columns {', '.join(BASE_COLUMNS)} expected, "
                        f"got {', '.join(header)[:100]})")
    if not body:
        raise UserError(f"{path} has no rows; {rerun}")
    rows = []
    for line, record in enumerate(body, start=2):
        if len(record) != len(header):
            raise UserError(f"{path} line {line} has {len(record)} fields, the header {len(header)}; {rerun}")
        row = dict(zip(header, record))
        check_row(path, line, row)
        rows.append(row)
    return rows


# The columns read as numbers, and whether they must be set (the others may be empty).
# value may be nan (a metric that could not be computed); the parameters must be finite.
INT_COLUMNS = {"generation": False, "seed": False}
FLOAT_COLUMNS = {"value": True, "guidance": False, "ratio": False, "curation.recall": False,
                 "curation.false_positive": False}


def check_row(path: Path, line: int, row: dict) -> None:
    """Every number the report reads from `row` (line `line` of `path`) parses: a
    UserError naming the row and column otherwise, before anything is plotted."""
    rerun = "run the study again with the same --out to rewrite it (finished stages are cached)"
    for column, required in {**INT_COLUMNS, **FLOAT_COLUMNS}.items():
        if column not in row or (row[column] == "" and not required):
            continue
        try:
            number = int(row[column]) if column in INT_COLUMNS else float(row[column])
        except ValueError:
            raise UserError(f"{path} line {line}: {column} {row[column][:30]!r} is not a number; {rerun}") from None
        if column != "value" and not math.isfinite(number):
            raise UserError(f"{path} line {line}: {column} is {row[column][:30]!r}, not a finite number; {rerun}")
        if column == "generation" and number < 0:
            raise UserError(f"{path} line {line}: generation {number} is negative; {rerun}")
