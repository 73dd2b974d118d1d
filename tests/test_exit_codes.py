"""Exit 2 for usage errors, 1 for runtime failures (click's convention); storage errors name their cause."""
from __future__ import annotations

import socket

import pytest
from test_explore_study import run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_usage_errors_exit_2(capsys, tmp_path):
    assert run_cli(capsys, "train", "--set", "dataset=nope")[0] == 2
    assert run_cli(capsys, "explore", "--html", "x.html", "--no-html")[0] == 2
    assert run_cli(capsys, "train", "--epochs", "0")[0] == 2  # click's own parameter check


def test_a_training_that_diverges_exits_1(capsys, monkeypatch):
    monkeypatch.setenv("DRLTUNE_FAULTS", "epoch_start:1:nan")  # every weight NaN at epoch 1: the loss follows
    code, _, err = run_cli(capsys, "train", "--epochs", "2", "--quiet", "--set", "threads=1",
                           "--set", "encoder_width=4", "--set", "dataset_params.n_train=40")
    assert code == 1 and err.startswith("error: loss became nan") and err.count("\n") == 1


@pytest.mark.parametrize("command", [["studies"], ["explore", "--study", "s"], ["export", "--study", "s", "-o", "-"]])
def test_a_database_down_says_connection_refused_and_exits_1(command, capsys):
    url = f"postgresql://me:pw@127.0.0.1:{_closed_port()}/db"
    code, out, err = run_cli(capsys, *command, "--storage", url)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "Connection refused" in err and "invalid data in the commit" not in err


def test_a_mysql_url_without_its_driver_names_the_package(capsys):
    pytest.importorskip("sqlalchemy")
    try:
        import MySQLdb  # noqa: F401
        pytest.skip("mysqlclient is installed here")
    except ImportError:
        pass
    code, _, err = run_cli(capsys, "studies", "--storage", "mysql://me:pw@127.0.0.1:1/db")
    assert code == 1 and err.strip().endswith("(no module 'MySQLdb'): pip install mysqlclient")
