"""End to end: a search survives its trials' faults, its workers' deaths, SIGKILLs of its driver
(one inside a DR re-initialisation) and a second driver on the same study. Every `drltune search`
runs as a real process in its own session; after a kill, every process it started (Ray's included,
found by a marker in their environment) is killed by PID."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState
from search_helpers import Search, counted, finished, load_study, wait_for

pytestmark = pytest.mark.slow

SPACE = """
fixed:
  encoder_width: 2
  batch_size: 16
  threads: 1
  dataset_params: {n_train: 24, n_val: 12, n_test: 12, audio_freq: 16, audio_time: 16, image_size: 16}
space:
  lr: {low: 1.0e-3, high: 1.0e-1, log: true}
methods:
  %s
"""
DR_ONLY = "dr: {reinit_epoch: 1, reinit_num: 2, alpha: {low: 0.5, high: 5.0, log: true}, kmeans_n_init: 1}"
TWO_METHODS = "baseline: {}\n  " + DR_ONLY


def _space(tmp_path: Path, methods: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE % methods)
    return path


def test_trial_faults_fail_or_retry(tmp_path):
    """NaN loss and a data error end their trials FAIL with the message; a worker killed after
    epoch 0 is retried once and resumes from its epoch-0 checkpoint; the search reaches --trials."""
    url = f"sqlite:///{tmp_path}/s.db"
    faults = ";".join([f"epoch_start:1:nan:{tmp_path}/nan", f"epoch_start:2:raise:{tmp_path}/raise",
                       f"epoch_end:0:kill:{tmp_path}/kill"])
    search = Search(tmp_path, ["--space", str(_space(tmp_path, TWO_METHODS)), "--trials", "4", "--max-epochs", "3",
                               "--study", "faults", "--storage", url, "--pruner", "none"], faults)
    assert search.wait() == 0, search.output()[-3000:]
    assert all((tmp_path / f).exists() for f in ("nan", "raise", "kill")), "every fault fired"
    trials = load_study(url, "faults").get_trials(deepcopy=False)
    assert not [t for t in trials if not t.state.is_finished()]
    assert len(counted(load_study(url, "faults"))) == 4
    errors = [t.user_attrs.get("error", "") for t in trials if t.state == TrialState.FAIL]
    nan = [t for t in trials if t.user_attrs.get("error", "").startswith("NonFiniteLoss: loss became nan at epoch 1")]
    assert len(nan) == 1 and len(nan[0].intermediate_values) < 3, errors  # stopped early
    assert sum(e.startswith("RuntimeError: injected fault at epoch_start, epoch 2") for e in errors) == 1, errors
    resumed = [t for t in trials if t.user_attrs.get("resumed_from_epoch") is not None]
    assert len(resumed) == 1 and resumed[0].user_attrs["resumed_from_epoch"] == 0
    assert not resumed[0].user_attrs.get("interrupted")
    assert sorted(resumed[0].intermediate_values) == list(range(len(resumed[0].intermediate_values)))
    assert len(trials) == 6, "the two failed trials did not use up --trials 4"
    assert all(t.user_attrs.get("ray_node") for t in trials if t.user_attrs.get("history"))
    assert not checkpoint_files(tmp_path), "a finished search leaves no trial checkpoint behind"


def checkpoint_files(folder: Path) -> list[Path]:
    return [p for p in (folder / "studies" / "ray" / "checkpoints").rglob("*") if p.is_file()]


def test_all_failing_trials_stop_the_search_with_one_line(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    search = Search(tmp_path, ["--space", str(_space(tmp_path, TWO_METHODS)), "--trials", "20", "--max-epochs", "2",
                               "--study", "failing", "--storage", url, "--max-failed-trials", "3"],
                    faults="epoch_start:0:raise")
    assert search.wait() == 1, search.output()[-3000:]  # a runtime failure, not a usage error
    errors = [line for line in search.output().splitlines() if line.startswith("error:")]
    assert errors == ["error: 3 trials in a row failed with: RuntimeError: injected fault at epoch_start, epoch 0"], \
        search.output()[-3000:]
    trials = load_study(url, "failing").get_trials(deepcopy=False)
    assert 3 <= len([t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")]) <= 4
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_driver_sigkill_during_dr_reinit_and_after_a_trial_then_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    args = ["--space", str(_space(tmp_path, DR_ONLY)), "--trials", "4", "--max-epochs", "3", "--study", "kill",
            "--storage", url, "--pruner", "none"]
    # 1. SIGKILL while a worker is inside DR's re-initialisation (the hook parks it there).
    first = Search(tmp_path, args, faults=f"dr_reinit:1:hang:{tmp_path}/reinit")
    wait_for(lambda: (tmp_path / "reinit").exists(), 300, "a DR re-initialisation", first)
    before = finished(url, "kill")
    first.kill()
    # 2. SIGKILL right after a trial finished.
    second = Search(tmp_path, args)
    wait_for(lambda: len(finished(url, "kill")) > len(before), 300, "a finished trial", second)
    second.kill()
    before_last = finished(url, "kill")
    # 3. The same command again finishes the study.
    third = Search(tmp_path, args)
    assert third.wait() == 0, third.output()[-3000:]
    assert "resuming:" in third.output()

    study = load_study(url, "kill")
    after = finished(url, "kill")
    assert all(after[n] == v for n, v in {**before, **before_last}.items()), "a finished trial changed or vanished"
    assert not [t for t in study.get_trials(deepcopy=False) if not t.state.is_finished()]
    assert len(counted(study)) == 4
    retried = [t for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs]
    assert retried, "the trials cut off by the kills were queued again"
    # the trial killed inside its epoch-1 re-init had saved epoch 0: its retry goes on from there
    assert any(t.user_attrs.get("resumed_from_epoch") == 0 for t in retried), \
        [(t.number, t.user_attrs.get("resumed_from_epoch")) for t in retried]
    for t in retried:  # its record holds the epoch it restored, not only the ones it trained
        if t.state == TrialState.COMPLETE and t.user_attrs.get("resumed_from_epoch") is not None:
            assert sorted(t.intermediate_values) == [0, 1, 2] and t.user_attrs["epochs_run"] == 3, t
    assert not [p for p in (tmp_path / "studies" / "ray" / "checkpoints").rglob("*") if p.is_file()]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_drivers_share_one_study(tmp_path, backend, request):
    """Two drivers started together on an empty database: --trials 5 is the study's total, reached
    exactly (a trial asked past it is closed at once as "not run"), nothing left RUNNING."""
    url = f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    name = f"shared-{uuid.uuid4().hex[:8]}"
    args = ["--space", str(_space(tmp_path, TWO_METHODS)), "--trials", "5", "--max-epochs", "2", "--study", name,
            "--storage", url, "--concurrent", "1", "--pruner", "none"]
    drivers = [Search(tmp_path, args), Search(tmp_path, args)]
    codes = [d.wait() for d in drivers]
    assert codes == [0, 0], "\n".join(d.output()[-2000:] for d in drivers)
    trials = load_study(url, name).get_trials(deepcopy=False)
    assert not [t for t in trials if not t.state.is_finished()]
    kept = counted(load_study(url, name))
    assert len(kept) == 5, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    extra = [t for t in trials if t.user_attrs.get("not_run")]  # never queued again (not `interrupted`)
    assert all(t.user_attrs["error"].startswith("not run: the study reached --trials") for t in extra)
    assert not [t for t in extra if t.user_attrs.get("interrupted")]
    firsts = {}
    for t in sorted(trials, key=lambda t: t.number):
        firsts.setdefault(t.user_attrs["driver"], t.params)
    assert len(firsts) == 2 and len({repr(sorted(p.items())) for p in firsts.values()}) == 2, \
        "the two drivers proposed the same first configuration"
