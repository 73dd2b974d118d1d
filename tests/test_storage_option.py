"""`--storage`: one option on every command, $OPTUNA_STORAGE when the flag is absent, one default,
resolved once where the command starts, and each command opens its storage once."""
from __future__ import annotations

import io

import click
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from test_explore_study import run_cli

from drltune.cli import COMMANDS, load_command
from drltune.search.storage_url import DEFAULT_URL, STORAGE_ENV, resolve_storage_url

optuna.logging.set_verbosity(optuna.logging.WARNING)


def stored(url: str, name: str) -> optuna.Study:
    """A study with one finished trial, as a search leaves it."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.set_user_attr("dataset", "synthetic")
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5,
                                 distributions={"method": CategoricalDistribution(["baseline"])},
                                 params={"method": "baseline"}, user_attrs={"config": {"seed": 0}}))
    return study


def storage_options() -> dict[str, click.Option]:
    found = {}
    for name in COMMANDS:
        for param in load_command(name).params:
            if isinstance(param, click.Option) and "--storage" in param.opts:
                found[name] = param
    return found


def test_every_command_with_a_storage_shares_one_option_and_one_default():
    options = storage_options()
    assert {"search", "dashboard", "studies", "explore", "export", "verify", "compare"} <= set(options)
    assert {(o.default, o.help, o.envvar, o.callback) for o in options.values()} == {
        (DEFAULT_URL, options["search"].help, STORAGE_ENV, options["search"].callback)}


def test_the_environment_variable_is_read_and_the_flag_beats_it(tmp_path, capsys, monkeypatch):
    from_env, from_flag = f"sqlite:///{tmp_path / 'env.db'}", f"sqlite:///{tmp_path / 'flag.db'}"
    stored(from_env, "in-env")
    stored(from_flag, "in-flag")
    monkeypatch.setenv(STORAGE_ENV, from_env)
    code, out, err = run_cli(capsys, "studies")
    assert code == 0 and "in-env" in out and "in-flag" not in out, err
    code, out, err = run_cli(capsys, "studies", "--storage", from_flag)
    assert code == 0 and "in-flag" in out and "in-env" not in out, err


def test_a_relative_sqlite_path_is_resolved_once_against_the_starting_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "here").mkdir()
    stored(f"sqlite:///{tmp_path / 'here' / 'rel.db'}", "s")
    assert resolve_storage_url("sqlite:///rel.db", cwd=tmp_path / "here") == f"sqlite:///{tmp_path / 'here'}/rel.db"
    assert resolve_storage_url(None, cwd=tmp_path) == f"sqlite:///{tmp_path}/studies/drltune.db"
    from drltune.search import storage

    opened = []
    reader = storage.open_reader

    def open_reader(url):
        opened.append(url)
        return reader(url)

    monkeypatch.setattr(storage, "open_reader", open_reader)
    monkeypatch.chdir(tmp_path / "here")
    code, out, err = run_cli(capsys, "studies", "--storage", "sqlite:///rel.db")
    assert code == 0 and "s " in out, err
    assert opened == [f"sqlite:///{tmp_path / 'here'}/rel.db"]  # passed down absolute, as resolved at the start


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_bad_storage_is_one_error_line_naming_where_it_came_from(where, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if where == "env":
        monkeypatch.setenv(STORAGE_ENV, "sqlite://")
    for argv in (["studies"], ["explore", "--study", "s"], ["search", "--trials", "1"]):
        code, out, err = run_cli(capsys, *argv, *(["--storage", "sqlite://"] if where == "flag" else []))
        named = "--storage" if where == "flag" else f"${STORAGE_ENV}"
        assert code == 2 and out == "" and err.count("\n") == 1, (argv, err)
        assert err.startswith(f"error: {named}: an in-memory SQLite database would lose the study"), (argv, err)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def opens(monkeypatch):
    """How many storages the code under test opened (every Optuna RDB storage, ours or not)."""
    count = [0]
    init = optuna.storages.RDBStorage.__init__

    def counted(self, *args, **kwargs):
        count[0] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.RDBStorage, "__init__", counted)
    return count


def test_each_reading_command_opens_its_storage_once(tmp_path, capsys, monkeypatch, opens):
    import optuna_dashboard

    url = f"sqlite:///{tmp_path / 's.db'}"
    stored(url, "a")
    stored(url, "b")
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **served: None)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    for argv in (["explore", "--study", "a", "--no-html"], ["export", "--study", "a", "-o", "-"], ["studies"],
                 ["studies", "--compare", "a", "b"], ["dashboard"], ["studies", "--delete", "b"]):
        opens[0] = 0
        code, _, err = run_cli(capsys, *argv, "--storage", url)
        assert code == 0 and opens[0] == 1, (argv, opens[0], err)


def test_verify_opens_its_storage_once_for_writing(tmp_path, capsys, monkeypatch, opens):
    from drltune import verify
    from drltune.search.optuna_private import backend_of
    from drltune.search.storage import ResilientRDBStorage

    url = f"sqlite:///{tmp_path / 's.db'}"
    stored(url, "v")
    written = []
    monkeypatch.setattr(verify, "execute", lambda study, runs, *args: written.append(backend_of(study)) or 0)
    opens[0] = 0
    code, _, err = run_cli(capsys, "verify", "--study", "v", "--trial", "0", "--seeds", "1", "--reference", "",
                           "--storage", url)
    assert code == 0 and opens[0] == 1, err
    assert isinstance(written[0], ResilientRDBStorage)  # the runs are written with retries


def test_search_opens_its_storage_once_new_or_resumed(tmp_path, capsys, monkeypatch, opens):
    from drltune.search import tune_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tune_run, "run_tune", lambda *args: None)  # no Ray: the storage is what is counted
    for run in ("new", "resumed"):
        opens[0] = 0
        code, out, err = run_cli(capsys, "search", "--trials", "1", "--max-epochs", "1")
        assert code == 0 and opens[0] == 1, (run, opens[0], err)
        assert f"in sqlite:///{tmp_path.resolve()}/studies/drltune.db" in out


def test_compare_opens_its_storage_once_for_all_its_searches(tmp_path, capsys, monkeypatch, opens):
    from drltune.search import ray_start, tune_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tune_run, "run_tune", lambda *args: None)  # no trials, so nothing to verify either
    monkeypatch.setattr(ray_start, "init_ray", lambda *args: None)
    code, out, err = run_cli(capsys, "compare", "--methods", "baseline,dr", "--trials-per-method", "1",
                             "--max-epochs", "1", "--published", "none")
    assert code == 0 and out.count("\n== ") == 2 and opens[0] == 1, (opens[0], err)
