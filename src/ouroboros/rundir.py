"""A run folder's own files: the resolved config, the history of configs run into it,
and the outputs derived from a run, which always show the current config alone.

A rerun into the same folder reuses every cached stage whose key still matches (the
point of ``cache/``), but what is derived from the results -- results.csv, tables.md,
plots/, samples/, report.html, timings.json, comparisons.csv -- is removed before the
new run writes its own, so nothing of an earlier config survives in them. Each run
appends its config's hash and the time to ``config-history.jsonl``; a run whose config
differs from the last one there prints one ``warning:`` line.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from ouroboros.io import stable_hash, write_json_atomic, write_text_atomic

HISTORY = "config-history.jsonl"
# What a run derives from its results; removed before a run writes them anew.
DERIVED = ("results.csv", "comparisons.csv", "tables.md", "report.html", "timings.json", "plots", "samples")


def config_hash(config) -> str:
    return stable_hash(config.to_dict())


def read_history(run_dir: Path) -> list[dict]:
    from ouroboros.io import read_bytes_bounded

    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    entries = []
    for line in read_bytes_bounded(path, "config history", "table").decode("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def clear_derived(run_dir: Path) -> None:
    """Remove the outputs derived from an earlier run (a symlink is removed, never followed)."""
    for name in DERIVED:
        path = Path(run_dir) / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def open_run(config, run_dir: Path) -> None:
    """Create the run folder, note the config in its history (warning when the folder
    held another one), clear what an earlier run derived, write the resolved config.yaml."""
    import yaml

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    history = read_history(run_dir)
    if history and history[-1].get("hash") != digest:
        print(f"warning: {run_dir} held results of another config (hash {history[-1].get('hash')}, "
              f"{history[-1].get('time', 'unknown time')}); its cached stages are reused where they match, and "
              f"results, plots, samples and the report now show this config (hash {digest}) alone",
              file=sys.stderr)
    entry = {"hash": digest, "name": config.name, "study": config.study,
             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    lines = [json.dumps(e, sort_keys=True) for e in history] + [json.dumps(entry, sort_keys=True)]
    # Written first: a full disk here leaves the folder as it was.
    write_text_atomic(run_dir / HISTORY, "\n".join(lines) + "\n")
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    clear_derived(run_dir)


def write_timings(run_dir: Path, runner) -> None:
    """timings.json: the stages run this time, with their wall time and the node each ran on
    (the host name locally; the Ray node's name under Ray)."""
    write_json_atomic(Path(run_dir) / "timings.json",
                      [{"kind": k, "stage": label, "seconds": round(sec, 3), "node": node}
                       for (k, label, sec), node in zip(runner.timings, runner.nodes)])
