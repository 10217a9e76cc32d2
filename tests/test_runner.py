"""The stage runner and the feedback loop end to end, small."""

import csv
import json
import re
import subprocess
import sys
import time

import pytest
from scipy.stats import ttest_rel

from conftest import TINY, run_cli
from ouroboros.api import execute
from ouroboros.config import load_config
from ouroboros.runner import Runner
from ouroboros.studies import loop


def _tiny_config(*extra):
    return load_config(None, TINY + list(extra), base={"name": "tiny"})


def test_tiny_loop_writes_the_run_folder(tmp_path):
    log = tmp_path.parent / f"{tmp_path.name}-events.jsonl"
    proc = run_cli("demo", "--out", tmp_path, "--log-json", log, *sum((["--set", s] for s in TINY), []),
                   "--set", "evaluate.tails=true")
    assert proc.returncode == 0, proc.stderr
    assert "stages" in proc.stderr  # progress was shown
    events = [json.loads(line) for line in log.read_text().splitlines()]
    finished = [e for e in events if e["event"] == "finished"]
    started = [e for e in events if e["event"] == "started"]
    assert finished and sorted(e["key"] for e in started) == sorted(e["key"] for e in finished)
    assert {e["kind"] for e in finished} == {"classifier", "evaluate", "fit", "heldout", "sample", "tails"}
    total = len(finished) + sum(e["event"] == "cached" for e in events)
    assert f"[{total}/{total}] " in proc.stderr  # one line per finished stage, numbered
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["study", "cell", "seed", "generation", "metric", "value", "guidance", "scenario",
                             "curation", "scored_on", "instruments"]
    assert {(r["scored_on"], r["instruments"]) for r in rows} == {("test", "per-seed")}
    loop_rows = [r for r in rows if r["cell"] != "reference"]
    # the real yardstick per seed (the instruments are redrawn per seed)
    assert {r["seed"] for r in rows if r["cell"] == "reference"} == {"0", "1"}
    # 2 guidance x 2 seeds x 2 generations x (accuracy, cross-entropy, 10 per-class accuracies,
    # FID, precision, recall, density, coverage, test_loss, tail_unreached), plus the training set's
    # make-up: train_size and train_real_share, and for generation 1 (scenario replace) train_share_gen0,
    # and its class shares: 10 class_share/<c> and class_entropy
    assert len(loop_rows) == 2 * 2 * ((19 + 2 + 11) + (19 + 3 + 11))
    assert {r["scenario"] for r in loop_rows} == {"replace"}
    assert {r["curation"] for r in loop_rows} == {"none"}
    assert {r["metric"] for r in loop_rows} >= {"accuracy", "cross_entropy", "accuracy/7", "fid", "precision",
                                                "recall", "density", "coverage"}
    assert {r["guidance"] for r in loop_rows} == {"1.0", "0.0"}
    assert {r["generation"] for r in loop_rows} == {"0", "1"}
    for r in rows:
        value = float(r["value"])
        unbounded = ("cross_entropy", "fid", "density", "train_size", "test_loss", "class_entropy")
        assert value >= 0.0 and (value <= 1.0 or r["metric"] in unbounded), r  # and not NaN
    # Each generation's 200 samples are balanced (20 per class), so its accuracy is exactly the
    # mean of its per-class accuracies.
    for key in {(r["cell"], r["seed"], r["generation"]) for r in loop_rows}:
        cell = {r["metric"]: float(r["value"]) for r in loop_rows if (r["cell"], r["seed"], r["generation"]) == key}
        per_class = [v for m, v in cell.items() if m.startswith("accuracy/")]
        assert len(per_class) == 10 and abs(cell["accuracy"] - sum(per_class) / 10) < 1e-9, cell
    for w in ["1", "0"]:
        for g in [0, 1]:
            assert (tmp_path / "samples" / f"guidance={w}" / f"gen{g}.png").is_file()
    for p in ["accuracy", "cross_entropy", "class_accuracy", "fid", "precision", "recall", "density", "coverage",
              "test_loss"]:
        assert (tmp_path / "plots" / f"{p}.png").is_file()
    assert (tmp_path / "report.html").is_file() and (tmp_path / "config.yaml").is_file()
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r"""(?:src|href)=['"]([^'"]*)""", page)
    assert len(sources) > 10 and all(s.startswith("data:") for s in sources)  # self-contained
    assert "classifier accuracy, guidance=1 (generation 1) vs guidance=1 (generation 0): " in page
    # comparisons.csv, from results.csv: each guidance's generation 1 against its generation 0 and
    # guidance 0 against guidance 1, in every metric with a margin; p-values as scipy's
    with open(tmp_path / "comparisons.csv") as f:
        comparisons = list(csv.DictReader(f))
    assert {(c["kind"], c["a"], c["b"]) for c in comparisons} == {
        ("vs generation 0", "guidance=1", "guidance=1"), ("vs generation 0", "guidance=0", "guidance=0"),
        ("vs first guidance", "guidance=0", "guidance=1")}
    assert {c["metric"] for c in comparisons} >= {"accuracy", "cross_entropy", "fid", "precision", "recall",
                                                  "density", "coverage"}
    for c in comparisons:
        a, b = ([float(r["value"]) for r in loop_rows if (r["cell"], r["generation"], r["metric"]) == key]
                for key in ((c["a"], c["a_generation"], c["metric"]), (c["b"], c["b_generation"], c["metric"])))
        assert c["n"] == "2" and len(a) == len(b) == 2
        diffs = {x - y for x, y in zip(a, b)}
        if len(diffs) == 1:  # identical differences (e.g. accuracy 1 twice): scipy has no p; 1 when 0, else 0
            assert float(c["p"]) == (1.0 if diffs == {0.0} else 0.0)
        else:
            assert float(c["p"]) == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-9)
    assert f"comparisons.csv: {len(comparisons)} comparisons: " in proc.stdout
    assert not list(tmp_path.rglob(".tmp-*"))


def test_second_run_skips_every_stage(tmp_path):
    config = _tiny_config("loop.seeds=[0]", "loop.guidance=[1.0]")
    first = Runner(tmp_path, workers=1, progress=False)
    execute(config, tmp_path, progress=False, runner=first)
    kinds = sorted({k for k, _, _ in first.timings})
    assert kinds == ["classifier", "evaluate", "fit", "heldout", "sample"]  # evaluate.tails is off by default
    before = (tmp_path / "results.csv").read_bytes()
    second = Runner(tmp_path, workers=1, progress=False)
    execute(config, tmp_path, progress=False, runner=second)
    assert second.timings == []
    assert (tmp_path / "results.csv").read_bytes() == before


def test_keys_cover_what_changes_the_output(tmp_path):
    base = loop.plan(_tiny_config(), tmp_path / "cache")
    again = loop.plan(_tiny_config(), tmp_path / "cache")
    changed = loop.plan(_tiny_config("generator.train_steps=61"), tmp_path / "cache")
    sampler = loop.plan(_tiny_config("generator.sample_steps=9"), tmp_path / "cache")
    keys = lambda p: [s.key for chain in p.chains.values() for st in chain for s in st]  # noqa: E731
    assert keys(base) == keys(again)
    assert not set(keys(base)) & set(keys(changed))
    assert base.classifier.key == changed.classifier.key  # the classifier does not depend on the generator
    # Generation 0 is fitted on real data and shared across guidance values.
    fits0 = {chain[0][0].key for (_, w, s), chain in base.chains.items() if s == 0}
    assert len(fits0) == 1
    # Sampling settings change the samples (and all that follows) but not generation 0's model.
    first = lambda p: next(iter(p.chains.values()))[0]  # noqa: E731
    assert first(sampler)[0].key == first(base)[0].key
    assert first(sampler)[1].key != first(base)[1].key


def _interrupted_run(out, kill_after_fits, extra):
    args = [sys.executable, "-m", "ouroboros", "demo", "--out", str(out), "--quiet"]
    for s in TINY + extra:
        args += ["--set", s]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    fit_dir = out / "cache" / "fit"
    while time.time() < deadline and proc.poll() is None:
        if fit_dir.is_dir() and len([p for p in fit_dir.iterdir() if not p.name.startswith(".")]) >= kill_after_fits:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.kill()  # SIGKILL: no cleanup handlers run
    proc.wait()


def test_killed_runs_resume_to_the_same_results(tmp_path):
    """Kill the process for real (twice, two workers), rerun, compare with an uninterrupted run."""
    clean = run_cli("demo", "--out", tmp_path / "clean", "--quiet", *sum((["--set", s] for s in TINY), []))
    assert clean.returncode == 0, clean.stderr
    killed = tmp_path / "killed"
    _interrupted_run(killed, 1, ["executor.workers=2"])
    assert not (killed / "results.csv").exists()
    _interrupted_run(killed, 4, ["executor.workers=2"])
    resumed = run_cli("demo", "--out", killed, "--quiet", *sum((["--set", s] for s in TINY), []))
    assert resumed.returncode == 0, resumed.stderr
    assert (killed / "results.csv").read_bytes() == (tmp_path / "clean" / "results.csv").read_bytes()
