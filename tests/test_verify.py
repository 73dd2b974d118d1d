"""`drltune verify` on a small real study: fresh seeds only, runs stored in the study as they
finish (a second call trains nothing), seed-paired comparisons with a Student-t interval."""
from __future__ import annotations

import statistics

import optuna
import pytest
from test_explore_study import new_study, record_trial

from drltune.cli import main
from drltune.config import TrialConfig
from drltune.train import Trainer
from drltune.verify import PREFIX, fresh_seeds, paired_interval, summarize_runs, verdict

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_fresh_seeds_skip_every_seed_the_study_trained_with(tmp_path):
    study = optuna.create_study(direction="maximize")
    for seed in (0, 2):
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"config": {"seed": seed}}))
    assert fresh_seeds(study, 3) == [3, 4, 5]
    study.set_user_attr("verify_seeds", [1, 3])  # chosen by an earlier verify: kept, in order
    assert fresh_seeds(study, 3) == [1, 3, 4]


def test_paired_interval_is_the_student_t_interval_of_the_differences():
    stats = pytest.importorskip("scipy.stats")
    diffs = [0.02, -0.01, 0.03, 0.015]
    mean, low, high = paired_interval(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    assert mean == pytest.approx(statistics.mean(diffs))
    assert (low, high) == pytest.approx((mean - half, mean + half), abs=1e-4)
    assert paired_interval([0.1]) is None
    assert "includes zero" in verdict("dr", "baseline", (mean, low, high), 4)
    assert verdict("dr", "baseline", (0.05, 0.01, 0.09), 4).startswith("better than baseline")


def test_summary_pairs_only_seeds_both_ran():
    def rec(label, seed, acc):
        return {"trial": 3, "label": label, "seed": seed, "method": "dr", "test_acc": acc,
                "test_acc_audio": 0.5, "test_acc_visual": 0.2}
    runs = {f"{PREFIX}{i}": r for i, r in enumerate([rec("config", 1, 0.6), rec("config", 2, 0.7),
                                                     rec("ref-baseline", 2, 0.65)])}
    [v] = summarize_runs(runs)
    assert v.seeds == [1, 2] and v.references["baseline"]["paired_seeds"] == [2]
    assert v.references["baseline"]["interval"] is None


@pytest.mark.slow
def test_verify_trains_fresh_seeds_stores_runs_and_resumes(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    study = new_study(url, "v")
    record_trial(study, {"method": "dr", "fusion": "concat", "lr": 0.05, "dr.reinit_epoch": 1,
                         "dr.alpha": 2.0, "dr.reinit_num": 1})
    record_trial(study, {"method": "baseline", "fusion": "sum", "lr": 0.01})
    args = ["verify", "--study", "v", "--storage", url, "--trial", "0", "--seeds", "2",
            "--reference", "baseline,dr", "--concurrent", "2"]
    main(args)
    out = capsys.readouterr().out
    assert "6 runs, 0 already stored, 6 to train" in out
    stored = {k: v for k, v in optuna.load_study(study_name="v", storage=url).user_attrs.items()
              if k.startswith(PREFIX)}
    assert len(stored) == 6 and {r["seed"] for r in stored.values()} == {1, 2}  # the search trained seed 0
    assert {r["label"] for r in stored.values()} == {"config", "ref-baseline", "ref-dr"}
    # a stored run is the trial's config trained on that seed (CPU training is deterministic)
    cfg = TrialConfig.from_dict(study.trials[0].user_attrs["config"]).replace(seed=2)
    assert stored[f"{PREFIX}trial0:config:seed2"]["test_acc"] == Trainer(cfg).fit().test_acc
    # the reference keeps the winner's knobs and uses the method's defaults
    assert stored[f"{PREFIX}trial0:ref-baseline:seed1"]["method"] == "baseline"
    assert "verified test_acc" in out and "over 2 seeds [1, 2]" in out and "vs baseline: " in out
    assert "paired difference" in out and ("not shown to differ" in out or "than baseline" in out)

    main(args)  # everything is stored: nothing is trained again
    again = capsys.readouterr().out
    assert "6 runs, 6 already stored, 0 to train" in again and "seed 1: test_acc" not in again

    html = tmp_path / "report.html"
    main(["explore", "--study", "v", "--storage", url, "--html", str(html)])
    shown = capsys.readouterr().out
    assert "verified on fresh seeds" in shown and "trial 0 (dr): search val_acc" in shown
    assert "vs baseline:" in shown and "verified test_acc" in shown
    page = html.read_text()
    assert "Verified on fresh seeds" in page and "Not shown" not in page.split("Verified on fresh seeds")[1]


@pytest.mark.parametrize("args, message", [
    (["--top", "2", "--trial", "0"], "use --top K or --trial N, not both"),
    (["--reference", "nope"], "--reference 'nope': unknown method"),
    (["--trial", "7"], "has no trial 7"),
])
def test_verify_mistakes_are_one_line(tmp_path, capsys, args, message):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    new_study(url, "v").add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"config": {"seed": 0}}))
    with pytest.raises(SystemExit):
        main(["verify", "--study", "v", "--storage", url, *args])
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_verify_waits_out_a_locked_sqlite_file_instead_of_losing_a_finished_run(tmp_path, capsys, monkeypatch):
    """A running search holds the SQLite file's lock past SQLite's own wait while verify stores a run:
    the write is retried until the lock goes (the reader's storage, which verify wrote through, failed)."""
    import sqlite3
    import threading

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from drltune import verify

    url = f"sqlite:///{tmp_path / 'v.db'}"
    cfg = TrialConfig(epochs=1, encoder_width=4, threads=1, seed=0).to_dict()
    new_study(url, "v").add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"config": cfg}))
    met_the_lock = threading.Event()

    def short_wait(dbapi_connection, record):  # SQLite's own wait, short: the lock outlasts it
        dbapi_connection.execute("PRAGMA busy_timeout = 100")

    def on_error(context):
        if "locked" in str(context.original_exception):
            met_the_lock.set()

    def execute(study, runs, *args):  # what verify.execute does with each finished run, without Ray
        holder = sqlite3.connect(tmp_path / "v.db", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        release = threading.Thread(target=lambda: (met_the_lock.wait(30), holder.rollback()))
        release.start()
        try:
            result = {**{k: 0.5 for k in verify.RESULT_KEYS}, "best_epoch": 0}
            for run in runs:
                study.set_user_attr(run.key, verify.record(run, result))
        finally:
            release.join()
            holder.close()
        return 0

    monkeypatch.setattr(verify, "execute", execute)
    monkeypatch.setenv("DRLTUNE_STORAGE_PATIENCE_S", "60")
    event.listen(Engine, "connect", short_wait)
    event.listen(Engine, "handle_error", on_error)
    try:
        main(["verify", "--study", "v", "--storage", url, "--trial", "0", "--seeds", "1", "--reference", ""])
    finally:
        event.remove(Engine, "connect", short_wait)
        event.remove(Engine, "handle_error", on_error)
    assert met_the_lock.is_set()
    stored = [k for k in optuna.load_study(study_name="v", storage=url).user_attrs if k.startswith(PREFIX)]
    assert stored == [f"{PREFIX}trial0:config:seed1"]
    assert "verified test_acc 0.5000" in capsys.readouterr().out
