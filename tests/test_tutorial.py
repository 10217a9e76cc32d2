"""docs/tutorial.ipynb runs top to bottom (nbclient, a fresh kernel): any error in any cell
fails the test, so the tutorial the docs site shows is one that works."""

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_tutorial_runs_top_to_bottom(tmp_path, monkeypatch):
    src = str(NOTEBOOK.parents[1] / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run folders
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}},
                            allow_errors=False).execute()
    print(f"tutorial: {time.perf_counter() - start:.1f} s")
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "Run(" in text and "True" in text  # the last cell read the custom family's run folder back
