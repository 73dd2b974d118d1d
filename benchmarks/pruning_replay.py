"""What would each pruner setting have cost and lost on searches that ran unpruned?

Replays the learning curves of finished unpruned studies (e.g. `search_efficiency.py`'s `none`
route) through drltune's own pruners (`make_pruner`: re-init aware, like with like), in trial
order, `--concurrent` trials advancing epoch by epoch side by side. Per setting and study: epochs
trained as a share of trials x epochs, how far the best validation accuracy among the trials that
would have trained the whole budget falls below the study's best, how many of the study's 5 and
10 best trials would have trained it (a pruned good trial also tells TPE its region is bad), and
how many trials would have.

This is how the pruners' default start-up and warm-up were chosen. It holds the configurations
fixed: a real pruned search also samples differently (TPE learns from pruned trials), which
`search_efficiency.py` measures.

    python benchmarks/pruning_replay.py STUDY.db [STUDY.db ...] [--concurrent 2]
        [--warmups 1,2,3,5] [--startups 2,3,5]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import optuna
from optuna.trial import TrialState

from drltune.search.pruning import make_pruner, pruner_defaults

Curve = list[float]


def unpruned_curves(db: Path) -> list[Curve]:
    """The per-epoch validation accuracies of every trial that ran the whole budget, in trial order."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    study = optuna.load_study(study_name=storage.get_all_studies()[0].study_name, storage=storage)
    full = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    epochs = max(len(t.intermediate_values) for t in full)
    return [[t.intermediate_values[s] for s in sorted(t.intermediate_values)]
            for t in full if len(t.intermediate_values) == epochs]


def replay(curves: list[Curve], pruner_name: str, startup: int | None, warmup: int | None,
           concurrent: int) -> tuple[float, float, int, int, int]:
    """(share of epochs trained, best val lost, top-5 kept, top-10 kept, trials kept)."""
    epochs = len(curves[0])
    pruner, _ = make_pruner(pruner_name, epochs, len(curves), startup, warmup)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    waiting, live, trained, kept = list(range(len(curves))), {}, 0, set()
    while waiting or live:
        while waiting and len(live) < concurrent:
            live[waiting.pop(0)] = (study.ask(), 0)
        for i, (trial, step) in list(live.items()):
            trial.report(curves[i][step], step)
            trained += 1
            if step == epochs - 1:
                study.tell(trial, max(curves[i]))
                kept.add(i)
            elif trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
            else:
                live[i] = (trial, step + 1)
                continue
            del live[i]
    ranked = sorted(range(len(curves)), key=lambda i: -max(curves[i]))
    lost = max(curves[ranked[0]]) - max((max(curves[i]) for i in kept), default=0.0)
    return (trained / (len(curves) * epochs), lost, sum(i in kept for i in ranked[:5]),
            sum(i in kept for i in ranked[:10]), len(kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path, help="SQLite files of unpruned studies")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--warmups", default="1,2,3,5")
    parser.add_argument("--startups", default="2,3,5")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    studies = [unpruned_curves(db) for db in args.studies]
    epochs = len(studies[0][0])
    warmups = [int(w) for w in args.warmups.split(",")]
    settings = [("median", s, w) for w in warmups for s in map(int, args.startups.split(","))]
    settings += [(name, None, w) for name in ("sha", "hyperband") for w in warmups]
    print(f"{len(studies)} unpruned studies, {', '.join(str(len(c)) for c in studies)} trials x {epochs} epochs, "
          f"{args.concurrent} at a time")
    print("| pruner | start-up | warm-up | epochs % (each study) | best val lost, points | top 5 kept | top 10 kept "
          "| full-budget trials |")
    print("|---|---|---|---|---|---|---|---|")
    for name, startup, warmup in settings:
        default = pruner_defaults(name, epochs, len(studies[0])) == (startup, warmup)
        rows = [replay(c, name, startup, warmup, args.concurrent) for c in studies]
        print(f"| {name}{' (default)' if default else ''} | {startup or '-'} | {warmup} "
              f"| {statistics.mean(r[0] for r in rows) * 100:.0f} ({' '.join(f'{r[0] * 100:.0f}' for r in rows)}) "
              f"| {statistics.mean(r[1] for r in rows) * 100:.2f} ({' '.join(f'{r[1] * 100:.1f}' for r in rows)}) "
              + "".join(f"| {' '.join(str(r[k]) for r in rows)} " for k in (2, 3, 4)) + "|", flush=True)


if __name__ == "__main__":
    main()
