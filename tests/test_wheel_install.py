"""A built wheel, installed into a fresh virtual environment, runs a search outside the checkout.

The default search space must come from the installed package (package data), not from a
path relative to a source tree. The wheel's dependencies are taken from this environment
(a `.pth` line; no download), drltune itself only from the wheel.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "encoder_width=4", "--set", "batch_size=16", "--set",
        "dataset_params={n_train: 60, n_val: 24, n_test: 24, audio_freq: 16, audio_time: 16, image_size: 16}"]


def run(*args: str | Path, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def dependency_dirs() -> list[str]:
    """Where this environment's torch, Ray, Optuna, ... live (never the checkout)."""
    import click
    import optuna_dashboard
    import ray
    import torch

    dirs = {str(Path(m.__file__).resolve().parents[1]) for m in (torch, ray, optuna, optuna_dashboard, click)}
    dirs.add(sysconfig.get_paths()["purelib"])
    # The checkout's own folder would put its drltune first; a .venv inside the checkout is fine
    # (only its packages are read: a folder named in a .pth line has its own .pth files ignored).
    return sorted(d for d in dirs if Path(d) != ROOT)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a clean copy: setuptools' build/ folder in a checkout could hide a missing file
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "drltune", source / "drltune", ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", work / "dist",
        source, cwd=work)
    (wheel,) = (work / "dist").glob("drltune-*.whl")
    venv = work / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=work)
    purelib = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=work).stdout.strip())
    (purelib / "zz_dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n")
    run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=work)
    return venv


def test_installed_package_finds_its_default_space_outside_the_checkout(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    code = ("import drltune, drltune.search.runner as r; print(drltune.__file__); "
            "print(r.DEFAULT_SPACE, r.DEFAULT_SPACE.is_file())")
    where, space = run(installed / "bin" / "python", "-c", code, cwd=tmp_path, env=env).stdout.splitlines()
    assert str(installed) in where and not where.startswith(str(ROOT))  # imported from the wheel
    assert space.startswith(str(installed)) and space.endswith("drltune/search_spaces/default.yaml True")
    help_text = run(installed / "bin" / "drltune", "search", "--help", cwd=tmp_path, env=env).stdout
    assert "--space" in help_text and "--trials" in help_text


def test_a_two_trial_search_runs_from_the_wheel(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = run(installed / "bin" / "drltune", "search", "--trials", "2", "--max-epochs", "1", "--concurrent", "2",
              *TINY, cwd=tmp_path, env=env).stdout
    assert "search space " in out and "drltune/search_spaces/default.yaml" in out
    study = optuna.load_study(study_name="synthetic-default", storage=f"sqlite:///{tmp_path / 'studies' / 'drltune.db'}")
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    assert "benchmarks/search_sim.py" in out  # the benchmark's figures: package data of the wheel
    assert study.user_attrs["space"].startswith("# ")  # the shipped file, read from the installed package
