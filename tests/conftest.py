import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Tests are CPU-sized; one torch thread keeps them deterministic and stops them
# oversubscribing the two cores CI has.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from ouroboros.data.imageset import ImageSet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# A small, fast version of the feedback loop: same code path as the demo.
TINY = [
    "loop.generations=2",
    "loop.guidance=[1.0,0.0]",
    "loop.seeds=[0,1]",
    "loop.samples_per_generation=200",
    "generator.train_steps=60",
    "generator.sample_steps=8",
    "classifier.epochs=2",
    "executor.workers=1",
]


def run_cli(*args, cwd=None, timeout=600):
    """Run `python -m ouroboros ARGS` in a subprocess; returns CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "ouroboros", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def run_main(capsys, *args):
    """`ouroboros ARGS` in this process (cli.main; no interpreter start-up or imports to pay
    for); returns what run_cli does: returncode, stdout and stderr."""
    from ouroboros import cli

    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["ouroboros", *map(str, args)], code, out.out, out.err)


def assert_user_error(proc, *fragments):
    """Exit code 2, exactly one stderr line, starting 'error:', naming the problem; no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])


@pytest.fixture(scope="module")
def digits():
    """100 training images (10 per class) and 50 test images of the embedded digits."""
    from ouroboros.data.imageset import stratified_split
    from ouroboros.data.loaders import load_digits

    full = load_digits()
    parts = stratified_split(full, {"train": 100 / len(full), "test": 50 / len(full)}, seed=0)
    return parts["train"], parts["test"]


@pytest.fixture
def toy_set():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 1, 8, 8), dtype=np.uint8)
    return ImageSet.create(images, np.arange(30) % 3, ["a", "b", "c"], source="real:toy")


@pytest.fixture
def tripwire(monkeypatch):
    """Fail fast where a study would start writing (`rundir.open_run`), instead of running it:
    a bad-input test that gets past the up-front checks fails here, having written nothing."""
    from ouroboros import rundir

    def open_run(*args, **kwargs):
        raise AssertionError("reached open_run: the up-front checks let this through")

    monkeypatch.setattr(rundir, "open_run", open_run)


# The modules that take longest (seconds of test time on the 2-core machine, from
# `pytest --durations`), run first: pytest-xdist hands whole modules to its workers in
# collection order (--dist loadscope), so the long ones starting early keep one worker from
# finishing a long module alone at the end. A module missing here only runs later.
LONGEST_FIRST = ["test_ray", "test_runner", "test_contamination", "test_study_protocol", "test_captioning_study",
                 "test_text2image", "test_paper_scale", "test_scenarios", "test_install", "test_tutorial",
                 "test_cli", "test_benchmarks", "test_features", "test_diffusion"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(item.nodeid.split("::")[0]).stem, len(rank)))
