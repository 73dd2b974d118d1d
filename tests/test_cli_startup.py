"""`drltune --help` and `--version` start fast: no torch, Ray or Optuna until a command runs; nor
do `drltune methods` and the refusal of a misspelt name or a broken space file.

The top-level listing is written in drltune.cli (so that listing imports nothing); these tests
keep it equal to the commands' own help and complete.
"""
from __future__ import annotations

import ast
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


def heavy_after(argv: list[str], cwd) -> tuple[int, str, str, list[str]]:
    """Run the CLI in a fresh interpreter: (exit code, stdout, stderr, the heavy modules it imported)."""
    code = ("import sys; from drltune.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    *err, heavy = done.stderr.strip().splitlines()
    return done.returncode, done.stdout, "\n".join(err), ast.literal_eval(heavy)


@pytest.mark.parametrize("argv, message", [
    (["search", "--dataset", "nope", "--trials", "1"], "error: unknown dataset 'nope'; valid: cremad, "),
    (["search", "--space", "broken.yaml"], "error: broken.yaml: not valid YAML: line 2"),
    (["search", "--space", "unknown.yaml"], "error: unknown.yaml: unknown key(s) metods; valid: "),
    (["compare", "--methods", "dr,nope", "--trials-per-method", "1"], "error: --methods 'nope': unknown method; "),
    (["compare", "--dataset", "nope", "--methods", "dr", "--trials-per-method", "1"], "error: unknown dataset"),
])
def test_a_misspelt_name_or_a_broken_space_is_refused_before_anything_heavy(argv, message, tmp_path):
    (tmp_path / "broken.yaml").write_text("space: {lr: [\n")
    (tmp_path / "unknown.yaml").write_text("metods: {dr: declared}\n")
    before = sorted(tmp_path.iterdir())
    code, _, err, heavy = heavy_after(argv, tmp_path)
    assert (code, heavy) == (2, []) and err.startswith(message) and err.count("\n") == 0, err
    assert sorted(tmp_path.iterdir()) == before  # no study database, no Ray folder


@pytest.mark.parametrize("command, home", [("methods", "drltune.methods:METHODS"),
                                           ("datasets", "drltune.data:DATASETS")])
def test_listings_show_the_registry_without_torch(command, home, tmp_path):
    module, attr = home.split(":")
    registry = getattr(importlib.import_module(module), attr)
    code, out, _, heavy = heavy_after([command], tmp_path)
    assert (code, heavy) == (0, [])
    assert out == "".join(f"{name}: {registry.get(name).description}\n"
                          + "".join(f"    {p.describe()}\n" for p in registry.get(name).params) for name in registry)


def test_the_source_declares_what_the_registries_hold():
    """drltune.declarations reads the names, and the methods', fusions' and datasets' declarations, from the
    source (no torch), equal to what the registries hold once imported."""
    code = ("import sys\nfrom drltune.declarations import declarations, names\n"
            "read = lambda: (declarations('method'), declarations('fusion'), names('dataset'), declarations('dataset'))\n"
            f"source = read()\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "import drltune.data, drltune.methods, drltune.models.fusion\n"
            "print(source == read(), len(source[0]), len(source[1]), len(source[2]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "True 12 4 4"]


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
