"""`drltune search` mistakes: one line on stderr, exit 2, and nothing written to the storage."""
from __future__ import annotations

import socket

import pytest

from drltune.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, message", [
    (["--space", "missing.yaml"], "search space file not found: missing.yaml"),
    (["--space", "bad.yaml"], "bad.yaml: methods.dr.alpha: a log range needs low > 0"),
    (["--set", "batch_size=0"], "batch_size: 0 is outside"),
    (["--set", "nope=1"], "unknown key(s) nope"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--storage", "not a url"], "not a database URL"),
    (["--address", "127.0.0.1:{port}"], "no Ray cluster reachable there"),
    (["--sampler", "gp"], "--sampler gp cannot model a conditional space (method parameters dr.reinit_epoch"),
    (["--pruner", "sha", "--pruner-startup", "3"], "--pruner-startup applies to --pruner median only"),
    (["--pruner-warmup", "2"], "--pruner-warmup 2: must be below --max-epochs 2"),
    (["--address", "ray://head:10001"], "Ray Client is not supported (the search driver keeps the study and must "
                                         "run on the cluster); run it on the head node with --address auto, or "
                                         "submit it: ray job submit"),
])
def test_search_mistakes_are_one_line_and_store_nothing(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("methods:\n  dr: {alpha: {low: 0, high: 1, log: true}}\n")
    args = [a.format(port=_closed_port()) for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--trials", "2", "--max-epochs", "2", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "studies").exists()


def test_missing_data_folder_fails_before_any_storage_is_created(tmp_path, monkeypatch, capsys):
    from drltune.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["search", "--dataset", "cremad", "--data-root", str(tmp_path / "nope"), "--trials", "1",
              "--max-epochs", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data root") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
