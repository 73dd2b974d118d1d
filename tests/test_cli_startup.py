"""`drltune --help` and `--version` start fast: no torch, Ray or Optuna until a command runs.

The top-level listing is written in drltune.cli (so that listing imports nothing); these tests
keep it equal to the commands' own help and complete.
"""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import drltune.commands
from drltune.cli import COMMANDS, load_command

HEAVY = ("torch", "ray", "optuna", "pandas", "plotly", "sklearn")


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_help_and_version_import_nothing_heavy(argv):
    code = ("import sys; from drltune.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_listing_matches_each_commands_own_help():
    for name, (_, short) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        assert (command.help or "").strip().splitlines()[0] == short


def test_every_command_of_every_module_is_listed():
    """A command added to a module's COMMANDS but not to the listing would be unreachable."""
    for info in pkgutil.iter_modules(drltune.commands.__path__):
        module = importlib.import_module(f"drltune.commands.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            assert COMMANDS.get(command.name, (None,))[0] == info.name, command.name


def test_an_unknown_command_is_one_line(capsys):
    from drltune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["serach"])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: No such command 'serach'")
