"""The shipped search spaces: one copy, the top-level search_spaces/, that the package build ships.

The wheel and the editable install themselves are built and run in tests/test_wheel_install.py (slow).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from setuptools import find_packages
from setuptools.config.pyprojecttoml import read_configuration

from drltune.search.space_file import load_space
from drltune.shipped_spaces import DEFAULT_SPACE, PUBLISHED_FILE, SPACES_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_reads_its_one_top_level_copy():
    assert SPACES_DIR == ROOT / "search_spaces"
    assert not (ROOT / "drltune" / "search_spaces").exists()
    assert (DEFAULT_SPACE.parent, PUBLISHED_FILE.parent) == (SPACES_DIR, SPACES_DIR)


@pytest.mark.parametrize("name", ["default.yaml", "dr.yaml"])
def test_every_shipped_space_loads(name):
    assert load_space(SPACES_DIR / name, max_epochs=8).methods


def test_the_build_ships_the_top_level_folder_as_drltune_search_spaces_and_every_package():
    """`packages` is a list (find cannot map a folder outside drltune/): one forgotten here is missing from
    the wheel, so the list must be drltune's packages plus its two data folders."""
    setuptools = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]
    code = find_packages(where=str(ROOT), include=["drltune", "drltune.*"])
    assert sorted(setuptools["packages"]) == sorted([*code, "drltune.resources", "drltune.search_spaces"])
    assert setuptools["package-dir"] == {"drltune.search_spaces": "search_spaces"}
    assert setuptools["package-data"]["drltune.search_spaces"] == ["*.yaml"]
