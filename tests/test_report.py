"""The self-contained run report (ouroboros.report.html): findings with their intervals,
plots, sample grids, comparisons of several runs, and bad input.

Most tests build a run folder directly: a results.csv whose per-seed values are chosen
so the findings have closed-form answers, sample grids of random images, and a
config.yaml. The end-to-end runs (tests/test_runner.py, tests/test_contamination.py)
check the same report on real runs.
"""

import base64
import io
import math
import re
import types

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import TINY, assert_user_error
from ouroboros import cli
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros import api
from ouroboros.studies import loop_report
from ouroboros.report.grids import save_grid
from ouroboros.report.results import write_results

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (3 seeds)

# Per seed, the change from generation 0 to 2 in accuracy: guidance=1 rises by
# 0.05/0.06/0.07 (mean 0.06, sd 0.01), guidance=0 falls by 0.1/0.3/0.2 (mean -0.2, sd 0.1).
START = {"guidance=1": [0.90, 0.91, 0.92], "guidance=0": [0.80, 0.82, 0.84]}
CHANGE = {"guidance=1": [0.05, 0.06, 0.07], "guidance=0": [-0.1, -0.3, -0.2]}


def _loop_rows(cells=("guidance=1", "guidance=0"), fid_cells=None, study="syn", shift=(0.0, 0.0, 0.0)):
    rows = [{"study": study, "cell": "reference", "seed": "", "generation": "", "metric": "accuracy",
             "value": 0.99, "guidance": "", "scenario": ""}]
    for cell in cells:
        w = float(cell.split("=")[1])
        for s in range(3):
            for g in range(3):
                acc = START[cell][s] + CHANGE[cell][s] * g / 2 + shift[s]
                rows.append({"study": study, "cell": cell, "seed": s, "generation": g, "metric": "accuracy",
                             "value": acc, "guidance": w, "scenario": "replace"})
                if fid_cells is None or cell in fid_cells:
                    rows.append({"study": study, "cell": cell, "seed": s, "generation": g, "metric": "fid",
                                 "value": 10.0 + 5 * g + s, "guidance": w, "scenario": "replace"})
    return rows


def make_loop_run(path, cells=("guidance=1", "guidance=0"), fid_cells=None, overrides=(), shift=(0.0, 0.0, 0.0)):
    """A loop run folder: config.yaml, results.csv (see START/CHANGE; accuracy + shift[seed])
    and sample grids."""
    path.mkdir(parents=True, exist_ok=True)
    config = load_config(None, TINY + list(overrides), base={"name": "syn"})
    (path / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    write_results(path / "results.csv", _loop_rows(cells, fid_cells, shift=shift), ["guidance", "scenario"])
    rng = np.random.default_rng(0)
    images = ImageSet.create(rng.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8), np.arange(30) % 3,
                             ["a", "b", "c"], source="real:toy")
    save_grid(images, path / "samples" / "real.png", 3, 2)
    for cell in cells:
        for g in range(3):
            save_grid(images, path / "samples" / cell / f"gen{g}.png", 3, 2)
    return path


def _main(capsys, *args):
    """cli.main in this process (no interpreter start-up); returns (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def _srcs(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page)


def test_loop_findings_have_closed_form_intervals(tmp_path):
    run = api.load_run(make_loop_run(tmp_path / "run"))
    changes = {(c.condition, c.metric): c for c in loop_report.loop_changes(run.rows)}
    up, down = changes[("guidance=1", "accuracy")], changes[("guidance=0", "accuracy")]
    assert (up.first, up.last, up.diff.n) == (0, 2, 3)
    assert up.start.mean == pytest.approx(0.91) and up.end.mean == pytest.approx(0.97)
    assert up.diff.mean == pytest.approx(0.06) and up.diff.half == pytest.approx(T_975_2 * 0.01 / math.sqrt(3))
    assert down.diff.mean == pytest.approx(-0.2) and down.diff.half == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    fid = changes[("guidance=0", "fid")]
    assert fid.diff.mean == pytest.approx(10.0) and fid.diff.half == pytest.approx(0.0)
    # The findings are the run's comparisons (tests/test_comparisons.py checks their numbers):
    # the 6 comparisons are accuracy and FID of each guidance's generation 2 against its
    # generation 0, and of guidance 0 against guidance 1; p-values Holm-corrected over all 6.
    found = {f.text.split(":")[0]: f for f in run.findings}
    assert len(found) == 6
    acc = found["classifier accuracy, guidance=1 (generation 2) vs guidance=1 (generation 0)"]
    assert acc.verdict == "higher"
    assert "0.970 [0.920, 1.000] vs 0.910 [0.885, 0.935]; difference +0.060 [+0.035, +0.085]: higher " \
           "(Holm-adjusted p 0.037; 3 seeds)" in acc.text  # 0.97 + 0.05 clipped at 1: an accuracy
    assert found["classifier accuracy, guidance=0 (generation 2) vs guidance=0 (generation 0)"].verdict == \
        "not resolved"
    assert found["FID, guidance=0 (generation 2) vs guidance=1 (generation 2)"].verdict == "equivalent"


def test_report_is_one_self_contained_file(tmp_path):
    run_dir = make_loop_run(tmp_path / "run")
    out = api.report([run_dir])
    assert out == run_dir / "report.html"
    page = out.read_text()
    srcs = _srcs(page)
    assert srcs and all(s.startswith("data:") for s in srcs), [s[:40] for s in srcs if not s.startswith("data:")]
    assert "<script" not in page and "url(" not in page and "@import" not in page
    images = [s for s in srcs if s.startswith("data:image/png;base64,")]
    # 7 plots would need metrics this table lacks: accuracy and FID only; real.png; 2 x 3 grids.
    assert len(images) == 2 + 1 + 6
    for s in images:
        assert Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).size[0] > 0
    assert "difference +0.060 [+0.035, +0.085]: higher" in page  # the findings, with their intervals
    assert "<td class=l>guidance=1</td><td class=l>classifier accuracy (fraction correct)</td><td>0 → 2</td>" \
           "<td>0.910 [0.885, 0.935]</td><td>0.970 [0.920, 1.000]</td>" in page  # and the values they compare
    assert (run_dir / "comparisons.csv").is_file()  # the report rewrites what it shows
    assert "gen 2</th>" in page and "guidance=0</td>" in page  # grids side by side: conditions x generations
    assert "loop:" in page and "train_steps: 60" in page  # the resolved config
    for metric in ("accuracy", "fid"):  # and copies for papers
        assert (run_dir / "plots" / f"{metric}.png").is_file() and (run_dir / "plots" / f"{metric}.svg").is_file()
    # Same results, same page and figures.
    svg = (run_dir / "plots" / "fid.svg").read_bytes()
    assert api.report([run_dir]).read_text() == page
    assert (run_dir / "plots" / "fid.svg").read_bytes() == svg


def test_plots_label_axes_mark_generation_zero_and_keep_colours(tmp_path):
    # guidance=1 has no FID: the default colour cycle would give guidance=0 the first
    # colour in fid.svg; the report keeps it the second, as in accuracy.svg.
    run_dir = make_loop_run(tmp_path / "run", fid_cells=["guidance=0"])
    api.report([run_dir])
    first, second = "#1f77b4", "#ff7f0e"  # tab10
    acc = (run_dir / "plots" / "accuracy.svg").read_text()
    fid = (run_dir / "plots" / "fid.svg").read_text()
    assert first in acc and second in acc
    assert second in fid and first not in fid
    for svg in (acc, fid):  # text kept as text: searchable and editable
        assert "generation (0 = trained on real data)" in svg
        assert "generation 0 (trained on real)" in svg
    assert "classifier accuracy (fraction correct)" in acc and "real test split" in acc


def test_several_runs_compared_on_one_page(tmp_path, capsys):
    a = make_loop_run(tmp_path / "cpu")
    b = make_loop_run(tmp_path / "gpu", cells=("guidance=1",), overrides=["generator.train_steps=80"],
                      shift=(0.01, 0.03, 0.02))
    out = tmp_path / "cmp" / "report.html"
    proc = _main(capsys, "report", a, b, "--out", out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "Runs compared" in page
    assert re.search(r"generator\.train_steps</td><td>60</td><td>80</td>", page)
    for name in ("cpu · guidance=1", "cpu · guidance=0", "gpu · guidance=1"):
        assert f"<td class=l>{name}</td>" in page  # values per run and condition
    assert "cpu: loop" in page and "gpu: loop" in page and page.count("comparisons: ") == 2  # findings per run
    # Between runs, paired by seed: gpu - cpu = shift, mean 0.02, sd 0.01, at generation 2.
    diffs = {(d.cell, d.metric): d for d in loop_report.run_differences(*(api.load_run(p).rows for p in (a, b)))}
    assert set(diffs) == {("guidance=1", "accuracy"), ("guidance=1", "fid")}  # only the shared condition
    acc = diffs[("guidance=1", "accuracy")]
    assert acc.generation == 2 and acc.diff.n == 3 and acc.diff.mean == pytest.approx(0.02)
    assert acc.diff.half == pytest.approx(T_975_2 * 0.01 / math.sqrt(3))
    assert diffs[("guidance=1", "fid")].diff.mean == 0.0
    assert "Between runs: each against cpu" in page and f"<td>{acc.diff.format_range(1, 3)}</td>" in page
    assert (tmp_path / "cmp" / "plots" / "accuracy.svg").is_file()
    assert all(s.startswith("data:") for s in _srcs(page))
    assert not (a / "report.html").exists() and not (b / "report.html").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--out", "x.txt"], "--out must name an .html file"),
    (["{missing}"], "run folder not found"),
    (["{empty}"], "no results table"),
])
def test_bad_report_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, args, fragment):
    good = make_loop_run(tmp_path / "good")
    (tmp_path / "empty").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = [a.format(missing=tmp_path / "nope", empty=tmp_path / "empty") for a in args]
    monkeypatch.chdir(tmp_path)
    assert_user_error(_main(capsys, "report", good, *args), fragment)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
