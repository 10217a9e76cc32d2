"""The tidy results table: ``study, cell, seed, generation, metric, value`` + parameter columns."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ouroboros.errors import UserError
from ouroboros.io import write_text_atomic

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
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no results table at {path}; run the study first (ouroboros run CONFIG --out DIR)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not set(BASE_COLUMNS) <= set(rows[0]):
        raise UserError(f"{path} is not an ouroboros results table (columns {BASE_COLUMNS} expected)")
    return rows
