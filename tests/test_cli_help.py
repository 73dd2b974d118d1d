"""Every option of every command says what it does in --help."""
from __future__ import annotations

import click

from drltune.cli import COMMANDS, load_command


def test_every_option_has_help():
    missing = [f"{name} {'/'.join(p.opts)}" for name in COMMANDS for p in load_command(name).params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert missing == []


def test_top_level_help_lists_every_registered_method(capsys):
    from drltune.cli import main
    from drltune.methods import METHODS

    try:
        main(["--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    listed = out.split("Methods (")[1].split(":", 1)[1].replace(",", " ").split()
    assert listed == sorted(METHODS.names())
