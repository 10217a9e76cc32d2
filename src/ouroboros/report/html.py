"""report.html: the plots and sample grids of a run folder on one page."""

from __future__ import annotations

import html
from pathlib import Path

from ouroboros.io import write_text_atomic


def write_report(run_dir: Path, title: str, summary_rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    run_dir = Path(run_dir)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}img{margin:4px;image-rendering:pixelated}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    if summary_rows:
        parts.append("<h2>Summary</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for row in summary_rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    plots = sorted((run_dir / "plots").glob("*.png"))
    if plots:
        parts.append("<h2>Metrics</h2>")
        parts += [f"<img src='plots/{p.name}' alt='{p.stem}'>" for p in plots]
    sample_dirs = sorted(p for p in (run_dir / "samples").glob("*") if p.is_dir())
    for d in sample_dirs:
        parts.append(f"<h2>Samples: {html.escape(d.name)}</h2>")
        for png in sorted(d.glob("*.png"), key=lambda p: (len(p.stem), p.stem)):
            parts.append(f"<figure style='display:inline-block'><img src='samples/{d.name}/{png.name}'>"
                         f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
    out = run_dir / "report.html"
    write_text_atomic(out, "\n".join(parts) + "\n")
    return out
