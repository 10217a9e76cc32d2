"""report.html: one self-contained page per run folder, or comparing several.

The page holds, for each run, what its study hands the report (`ouroboros.report.page`):
the findings computed from results.csv with their uncertainty, plots of each metric
with the spread over seeds, sample grids, tables, and then the resolved config. This
module draws those sections and knows no study. Every image is embedded as a ``data:``
URI and there is no script, stylesheet or font to fetch, so the one file reads the same
when mailed, attached to a supplement or opened offline. The plots are also saved as
PNG and SVG files under ``plots/`` beside the page.

The report reads only regular files inside the run folder (sample grids, figures,
results.csv, config.yaml) and writes only the page and its plots/ folder, never through
a symbolic link; every check runs before the first write.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ouroboros.errors import UserError
from ouroboros.io import write_text_atomic
from ouroboros.report.page import PLACES, Finding, Findings, Image, ImageGrid, Markdown, Plot, Table, Text
from ouroboros.safepath import components, refuse_symlink, regular_file_inside

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#111;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #999;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:2px 7px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}
img{max-width:100%;height:auto}img.grid{image-rendering:pixelated}
figure{display:inline-block;margin:4px;vertical-align:top;max-width:100%}
figure.plot{width:calc(50% - 10px);margin:4px 2px}figure.plot img{width:100%}
table.grids{width:100%;table-layout:fixed}table.grids th:first-child{width:8em}table.grids img{width:100%}
figcaption{font-size:.85em;text-align:center}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.8em}
span.rises,span.falls,span.higher,span.lower,span.equivalent{font-weight:600}.not-resolved{color:#555}
.findings li{margin:.2em 0}
@media print{body{max-width:none;margin:0}h2{page-break-after:avoid}figure,table{page-break-inside:avoid}}
"""


def _css(word: str) -> str:
    """A verdict or direction as a CSS class name ('not resolved' -> 'not-resolved')."""
    return word.replace(" ", "-")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def embedded_files(run_dir: Path) -> list[Path]:
    """The files a report may read from a run folder: sample grids, the study's own
    figures under plots/, results.csv and config.yaml."""
    samples = run_dir / "samples"
    found = [*samples.glob("*.png"), *samples.glob("*/gen*.png"), *(run_dir / "plots").glob("*.png")]
    return found + [p for p in (run_dir / "results.csv", run_dir / "config.yaml") if p.exists() or p.is_symlink()]


def check_run_folder(run_dir: Path) -> None:
    """UserError unless every file the report may read there is a regular file inside it."""
    for f in embedded_files(run_dir):
        regular_file_inside(run_dir, f)


def _img(path: Path, alt: str, cls: str = "") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")  # checked: check_run_folder / a plot drawn now
    attrs = f" class='{cls}'" if cls else ""
    return f"<img src='data:image/png;base64,{data}' alt='{_e(alt)}'{attrs}>"


def _figure(path: Path, caption: str, cls: str = "") -> str:
    return f"<figure>{_img(path, caption, cls)}<figcaption>{_e(caption)}</figcaption></figure>"


def _cell(value) -> str:
    if isinstance(value, Finding):
        return f"<span class='{_css(value.verdict)}'>{_e(value.text)}</span>"
    return _e(value)


def _table(header, body, left: int = 1, cls: str = "") -> str:
    """An HTML table; the first `left` columns are left-aligned (names, not numbers)."""
    def cells(tag, row):
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{c}</{tag}>" for i, c in enumerate(row))

    return (f"<table{f' class={cls}' if cls else ''}><tr>" + cells("th", [_e(h) for h in header]) + "</tr>"
            + "".join("<tr>" + cells("td", row) + "</tr>" for row in body) + "</table>")


def markdown_to_html(text: str) -> str:
    """The subset of Markdown `tables.md` uses: #/## headings, pipe tables, paragraphs, **bold**."""
    def inline(s):  # escaped first, then the bold markers (which escaping leaves alone)
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _e(s))

    out, table = [], []

    def flush():
        if table:
            header, body = table[0], [r for r in table[1:] if not set("".join(r)) <= set("-: ")]
            out.append(_table(header, [[inline(c) for c in r] for r in body], left=2))
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h4>{inline(line[3:])}</h4>")
        elif line.startswith("# "):
            out.append(f"<h3>{inline(line[2:])}</h3>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)


def _render(item, drawn: dict) -> str:
    """One item of a study's section as HTML (text escaped)."""
    if isinstance(item, Text):
        return f"<p>{_e(item.text)}</p>"
    if isinstance(item, Findings):
        return ("<ul class='findings'>" + "".join(f"<li class='{_css(f.verdict)}'>{_e(f.text)}</li>"
                                                  for f in item.findings) + "</ul>")
    if isinstance(item, Table):
        return _table(item.header, [[_cell(c) for c in row] for row in item.rows], left=item.left)
    if isinstance(item, Image):
        return _figure(item.path, item.caption, "grid" if item.kind == "grid" else "")
    if isinstance(item, Plot):
        path = drawn[id(item)]
        if item.wide:
            return _figure(path, item.caption)
        return f"<figure class='plot'>{_img(path, item.caption)}</figure>"
    if isinstance(item, ImageGrid):
        body = [[_e(label)] + [_img(p, f"{label} {col}", "grid") if p is not None else ""
                               for p, col in zip(paths, item.columns)] for label, paths in item.rows]
        return _table([item.corner] + item.columns, body, cls="grids")
    if isinstance(item, Markdown):
        return markdown_to_html(item.text)
    raise TypeError(f"a report section cannot hold {type(item).__name__}")


def _config_differences(runs: list) -> str:
    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    configs = [flat(run.config.to_dict()) for run in runs]
    keys = sorted({k for c in configs for k in c if len({repr(c2.get(k)) for c2 in configs}) > 1})
    if not keys:
        return "<p>The configs are identical.</p>"
    return _table(["setting"] + [run.label for run in runs],
                  [[_e(k)] + [_e(c.get(k, "-")) for c in configs] for k in keys])


def run_labels(paths: list[Path]) -> list[str]:
    """Folder names, made unique by their position when two are the same."""
    names = [Path(p).resolve().name for p in paths]
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


def report_path(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Where the report goes: `out`, or RUN_DIR/report.html for one run folder and
    ./report.html for several; UserError when it cannot be an .html file."""
    out = Path(out) if out is not None else (Path(run_dirs[0]) / "report.html" if len(run_dirs) == 1
                                             else Path("report.html"))
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out must name an .html file; got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the .html file to write")
    return out


def check_writes(out: Path, sections: list) -> dict[int, Path]:
    """Before the first write: neither the page nor plots/ nor a file in it is a symbolic
    link, and every plot a study asks for gets a safe file name of its own in plots/.
    Returns id(Plot) -> its path."""
    plots = refuse_symlink(out.parent / "plots")
    refuse_symlink(out)
    if plots.exists() and not plots.is_dir():
        raise UserError(f"{plots} is not a folder; remove it so that the report can write its plots there")
    for f in sorted(plots.iterdir()) if plots.is_dir() else []:
        refuse_symlink(f)
    wanted = [item for section in sections for item in section.items if isinstance(item, Plot)]
    names = components([item.name for item in wanted], "a plot's name", max_bytes=200)
    return {id(item): plots / f"{name}.png" for item, name in zip(wanted, names)}


def build_page(runs: list, sections: list, drawn: dict) -> str:
    """The report's HTML: `runs` (label, path, study and config_text each) and the
    sections their studies hand over, placed under the page's headings in order."""
    several = len(runs) > 1
    title = "ouroboros report: " + ", ".join(f"{r.label} ({r.config.study})" for r in runs)
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>", "<link rel='icon' href='data:,'>",
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>"]
    if several:
        parts += ["<h2>Runs compared</h2>",
                  _table(["run", "folder", "study"], [[_e(r.label), _e(r.path), _e(r.config.study)] for r in runs]),
                  "<h3>Settings that differ</h3>", _config_differences(runs)]
    headings = {"findings": "<h2 id='findings'>Findings</h2>", "plots": "<h2>Plots</h2>"}
    for place in PLACES:
        mine = [s for s in sections if s.place == place]
        if place in headings and (mine or place == "findings"):
            parts.append(headings[place])
        for section in mine:
            if section.title:
                level = "h3" if place in headings else "h2"
                parts.append(f"<{level}>{_e(section.title)}</{level}>")
            parts += [_render(item, drawn) for item in section.items]
    for run in runs:
        parts += [f"<h2>Config: {_e(run.label)}</h2>", "<details open><summary>config.yaml (resolved)</summary>",
                  f"<pre>{_e(run.config_text) or 'no config.yaml in this run folder'}</pre></details>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_page(runs: list, sections: list, out: Path) -> Path:
    """Check where it writes, draw the plots into plots/ beside `out`, write the page.
    `runs` come from `ouroboros.api.load_run`, which checked what their folders hold
    (`check_run_folder`)."""
    paths = check_writes(out, sections)
    plots = [item for section in sections for item in section.items if isinstance(item, Plot)]
    out.parent.mkdir(parents=True, exist_ok=True)
    if plots:
        (out.parent / "plots").mkdir(exist_ok=True)
    for item in plots:
        item.draw(paths[id(item)])
    write_text_atomic(out, build_page(runs, sections, paths))
    return out
