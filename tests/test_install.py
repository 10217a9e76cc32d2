"""ouroboros as users get it: a built wheel installed into a fresh environment, run from
another folder, with the study configs that ship inside the package."""

import csv
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, TINY
from ouroboros.cli import main
from ouroboros.config import load_config
from ouroboros.errors import UserError

CONTAMINATION_TINY = [
    "contamination.ratios=[0.0,1.0]",
    "contamination.archs=[cnn]",
    "contamination.seeds=[0]",
    "contamination.append_ratios=[0.4]",
    "contamination.shifts=[noise]",
    "contamination.diverse_sample_steps=[4]",
    "generator.train_steps=20",
    "generator.sample_steps=4",
    "classifier.epochs=1",
    "executor.workers=1",
]


@pytest.mark.parametrize("name", ["loop-digits", "loop-digits.yaml", "configs/loop-digits.yaml"])
def test_a_shipped_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert load_config(name).name == "loop-digits"


def test_a_file_of_that_name_wins_over_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop-digits.yaml").write_text("name: mine\n")
    assert load_config("loop-digits.yaml").name == "mine"


@pytest.mark.parametrize("name", ["loop-digit", "other/loop-digits.yaml", "/nowhere/loop-digits.yaml",
                                  "loop-digits.yml"])
def test_an_unknown_config_lists_the_shipped_names(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    # An invalid override, so that a config found by mistake fails at once instead of running.
    assert main(["run", name, "--quiet", "--set", "loop.generations=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: config file not found"), err
    assert ("contamination-digits, contamination-sd-imagenet, contamination-sd-tiny, loop-cub, loop-digits, "
            "loop-digits-gaussian, loop-flowers, loop-mnist, loop-mnist-unet, mad-digits, reward-digits, "
            "scenarios-digits, stability-digits, tails-digits") in err[0]
    assert not (tmp_path / "runs").exists()


def test_the_configs_folder_is_the_packaged_one():
    assert (REPO / "configs").resolve() == (REPO / "src" / "ouroboros" / "configs").resolve()
    with pytest.raises(UserError):  # the shipped names come from the package folder itself
        load_config("configs/no-such-study")


def _site_dirs() -> list[str]:
    """Where the running interpreter's dependencies may live (its site-packages folders,
    pure and platform-specific, and the user's); never our source tree."""
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    if site.ENABLE_USER_SITE:
        dirs.add(site.getusersitepackages())
    return sorted(d for d in dirs if Path(d).is_dir())


@pytest.mark.slow
def test_the_built_wheel_runs_the_studies_from_another_folder(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
                            str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("ouroboros-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"ouroboros/configs/loop-digits.yaml", "ouroboros/configs/contamination-digits.yaml"} <= set(names)

    # A fresh environment without pip; its dependencies come from ours through a .pth
    # file. Python adds those folders but does not run the .pth files inside them, so an
    # editable install of ouroboros there stays invisible.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text("\n".join(_site_dirs()) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # our sources must not leak in
    install = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=300, env=env)
    assert install.returncode == 0, install.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([python, "-c", "import ouroboros; print(ouroboros.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where

    ouroboros = str(python.with_name("ouroboros"))  # the console script the wheel installed
    one_chain = sum((["--set", s] for s in TINY + ["loop.generations=1", "loop.seeds=[0]", "loop.guidance=[1.0]",
                                                   "loop.samples_per_generation=50", "generator.train_steps=10"]), [])
    runs = {
        "demo": [ouroboros, "demo", *one_chain],  # the packaged loop-digits config, run
        "contamination-digits": [ouroboros, "run", "contamination-digits"]
        + sum((["--set", s] for s in CONTAMINATION_TINY), []),
    }
    for name, args in runs.items():
        proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (name, proc.stderr)
        with open(work / "runs" / name / "results.csv") as f:
            assert len(list(csv.DictReader(f))) > 0, name
    # a shipped config found by its name from the wheel and planned (the demo above ran the same code)
    proc = subprocess.run([ouroboros, "run", "loop-mnist", "--dry-run"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "fit: 75" in proc.stdout, proc.stderr
    assert not (work / "runs" / "loop-mnist").exists()
