"""A built wheel, installed into a fresh virtual environment, runs a search outside the checkout.

The default search space must come from the installed package (package data), not from a
path relative to a source tree. The wheel's dependencies (and pip, setuptools) are taken from this
environment (a `.pth` line; no download), drltune itself only from the wheel. An editable install
(`make setup`'s `pip install -e`) reads the checkout's own top-level search_spaces/.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["default.yaml", "dr.yaml", "published.yaml"]  # search_spaces/
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


def source_copy(work: Path) -> Path:
    """A clean copy of what the build reads: setuptools' build/ folder in a checkout could hide a missing file."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("drltune", "search_spaces"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    return source


def dependency_venv(work: Path) -> Path:
    """A fresh venv without drltune that sees this environment's dependencies, pip and setuptools."""
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    purelib = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=work).stdout.strip())
    (purelib / "zz_dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n")
    return venv


def outside_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", work / "dist",
        source_copy(work), cwd=work)
    (built,) = (work / "dist").glob("drltune-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel) -> Path:
    venv = dependency_venv(wheel.parents[1])
    run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=venv,
        env=outside_env())
    return venv


# Run outside the checkout: prints where the shipped spaces were read from, after loading each.
LOAD_SHIPPED = ("from drltune.published import check_published; from drltune.search.space_file import load_space; "
                "from drltune.shipped_spaces import SPACES_DIR; "
                "[load_space(SPACES_DIR / n, 8) for n in ('default.yaml', 'dr.yaml')]; "
                "assert check_published() == []; print(SPACES_DIR)")


def test_the_wheel_ships_the_one_copy_of_the_spaces_inside_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.endswith(".yaml")) == [f"drltune/search_spaces/{n}" for n in SHIPPED]
    assert "drltune/search/search_benchmark.json" in names and "drltune/resources/kinetics-sounds/ks31.txt" in names


def test_an_editable_install_reads_the_checkouts_top_level_spaces(tmp_path):
    source = source_copy(tmp_path)
    venv = dependency_venv(tmp_path)
    run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
        "-e", source, cwd=tmp_path, env=outside_env())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run(venv / "bin" / "python", "-c", LOAD_SHIPPED, cwd=outside, env=outside_env()).stdout.strip()
    assert where == str(source / "search_spaces")


def test_installed_package_finds_its_default_space_outside_the_checkout(installed, tmp_path):
    env = outside_env()
    code = ("import drltune, drltune.search.runner as r; print(drltune.__file__); "
            "print(r.DEFAULT_SPACE, r.DEFAULT_SPACE.is_file()); " + LOAD_SHIPPED)
    where, space, spaces = run(installed / "bin" / "python", "-c", code, cwd=tmp_path, env=env).stdout.splitlines()
    assert str(installed) in where and not where.startswith(str(ROOT))  # imported from the wheel
    assert space.startswith(str(installed)) and space.endswith("drltune/search_spaces/default.yaml True")
    assert spaces == str(Path(where).parent / "search_spaces")  # every shipped space loaded from there
    help_text = run(installed / "bin" / "drltune", "search", "--help", cwd=tmp_path, env=env).stdout
    assert "--space" in help_text and "--trials" in help_text


def test_a_two_trial_search_runs_from_the_wheel(installed, tmp_path):
    out = run(installed / "bin" / "drltune", "search", "--trials", "2", "--max-epochs", "1", "--concurrent", "2",
              *TINY, cwd=tmp_path, env=outside_env()).stdout
    assert "search space " in out and "drltune/search_spaces/default.yaml" in out
    study = optuna.load_study(study_name="synthetic-default", storage=f"sqlite:///{tmp_path / 'studies' / 'drltune.db'}")
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    assert "benchmarks/search_sim.py" in out  # the benchmark's figures: package data of the wheel
    assert study.user_attrs["space"].startswith("# ")  # the shipped file, read from the installed package
