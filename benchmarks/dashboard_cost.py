"""What the optuna-dashboard view costs the search driver per finished trial, as a study grows.

optuna-dashboard keeps every Note in the study's system attributes; its `save_note` reads all of
them (twice), so the search writes a trial's first Note directly; the table has both. This fills a SQLite study with N notes of a
90-epoch DR trial's size and times, at each size, one trial's Note, its two artifacts
(history.csv, learning_curve.svg) and one refresh of the study figures.

    python benchmarks/dashboard_cost.py --sizes 0 500 1000 2000 --epochs 90
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
from optuna.trial import TrialState
from optuna_dashboard import save_note

from drltune.search.dashboard_view import DashboardPublisher, describe_study, trial_note, write_trial_note


def history(epochs: int, rng: random.Random) -> list[dict]:
    rows, acc = [], 0.2
    for epoch in range(epochs):
        acc = min(0.95, acc + rng.uniform(-0.02, 0.04))
        reinit = epoch > 0 and epoch % 20 == 0
        row = {"epoch": epoch, "train_loss": 1.5 - acc, "train_acc": acc + 0.1, "val_acc": round(acc * 744) / 744,
               "val_f1": acc - 0.02, "val_loss": 1.4 - acc, "val_acc_audio": acc - 0.1, "val_acc_visual": acc - 0.3,
               "lr": 0.01, "reinit": reinit, "val_acc_best": acc, "seconds": 12.0}
        for key in ("purity_train_audio", "purity_val_audio", "purity_train_visual", "purity_val_visual",
                    "reinit_weight_audio", "reinit_weight_visual"):
            row[key] = rng.random() if reinit else None
        rows.append(row)
    return rows


def finished_trial(study: optuna.Study, publisher: DashboardPublisher, epochs: int, rng: random.Random) -> dict:
    """One trial as the bridge finishes it; returns the seconds each dashboard step took."""
    study.enqueue_trial({"method": "dr"})
    trial = study.ask()
    trial.suggest_categorical("method", ["baseline", "dr"])
    rows = history(epochs, rng)
    attrs = {"config": {"method": "dr", "epochs": epochs, "lr": 0.01, "params": {"reinit_epoch": 20, "alpha": 3.0}},
             "history": rows, "best_epoch": epochs - 1, "epochs_run": epochs}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    t0 = time.perf_counter()
    publisher.attach_artifacts(trial, TrialState.COMPLETE, attrs)
    t1 = time.perf_counter()
    study.tell(trial, rows[-1]["val_acc"])
    t2 = time.perf_counter()
    publisher.write_note(trial.number)
    t3 = time.perf_counter()
    return {"artifacts": t1 - t0, "note": t3 - t2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 500, 1000, 2000])
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument("--real-trials", type=int, default=100, help="real trials for the figure refresh")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'drltune.db'}"
        study = optuna.create_study(study_name="cost", storage=url, direction="maximize")
        study.set_user_attr("space", "methods: {baseline: {}, dr: declared}\n")
        describe_study(study)
        publisher = DashboardPublisher(study, url, refresh_s=1e9)
        note = trial_note(optuna.trial.create_trial(
            state=TrialState.COMPLETE, value=0.7, params={}, distributions={},
            user_attrs={"config": {"method": "dr", "epochs": args.epochs}, "history": history(args.epochs, rng),
                        "best_epoch": 3}))
        for _ in range(args.real_trials):
            finished_trial(study, publisher, args.epochs, rng)
        print(f"note size {len(note)} characters; {args.epochs} epochs per trial; SQLite\n")
        print("| notes in the study | note, as the search writes it (ms) | note by `save_note` (ms) | "
              "artifacts (ms) | figure refresh, all trials (ms) |")
        print("|---:|---:|---:|---:|---:|")
        filled = args.real_trials
        for size in args.sizes:
            for fake_id in range(10_000_000 + filled, 10_000_000 + max(filled, size)):  # other trials' notes
                write_trial_note(study, fake_id, note)
            filled = max(filled, size)
            runs = [finished_trial(study, publisher, args.epochs, rng) for _ in range(3)]
            save_note_s = []
            for i in range(3):  # what save_note itself costs at this size (it needs a trial-like target)
                target = SimpleNamespace(study=study, storage=study._storage, _trial_id=20_000_000 + filled * 10 + i)
                t0 = time.perf_counter()
                save_note(target, note)
                save_note_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            publisher.refresh_figures()
            refresh = time.perf_counter() - t0
            print(f"| {filled} | {1000 * min(r['note'] for r in runs):.0f} | {1000 * min(save_note_s):.0f} | "
                  f"{1000 * min(r['artifacts'] for r in runs):.0f} | {1000 * refresh:.0f} |")


if __name__ == "__main__":
    main()
