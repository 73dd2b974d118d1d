"""Does pruning pay? The same search budget with and without the (re-init-aware) Optuna pruner.

Runs `drltune search` twice on the built-in dataset, with the same space, sampler seed, trial count
and epoch budget: once with `--pruner PRUNER`, once with `--pruner none`. Prints, for each, the
best validation accuracy, the epochs actually trained (sum over trials), the wall time, and the
ratios. Each run uses its own SQLite study in a temporary folder.

    python benchmarks/search_efficiency.py [--trials 16] [--max-epochs 8] [--pruner median]
        [--concurrent 2] [--seed 0] [--space FILE] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from drltune.search.pruning import PRUNERS
from drltune.search.runner import DEFAULT_SPACE, SearchSpec, run_search


def run(args: argparse.Namespace, pruner: str, folder: Path) -> dict[str, float]:
    spec = SearchSpec(dataset="synthetic", space_file=args.space, trials=args.trials, max_epochs=args.max_epochs,
                      pruner=pruner, concurrent=args.concurrent, seed=args.seed, overrides=args.set,
                      storage=f"sqlite:///{folder / f'{pruner}.db'}", study_name=f"efficiency-{pruner}",
                      command=f"benchmarks/search_efficiency.py --pruner {pruner}")
    start = time.perf_counter()
    study = run_search(spec, echo=lambda line: None)
    seconds = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {"best": max((t.value for t in complete), default=float("nan")),
            "epochs": sum(len(t.intermediate_values) for t in trials),
            "complete": len(complete), "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--pruner", choices=[p for p in PRUNERS if p != "none"], default="median")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"search efficiency: synthetic, {args.trials} trials x {args.max_epochs} epochs, {args.concurrent} "
          f"concurrent, TPE seed {args.seed}, space {args.space.name}" + (f", {' '.join(args.set)}" if args.set else ""))
    with tempfile.TemporaryDirectory(prefix="drltune-efficiency-") as tmp:
        rows = {name: run(args, name, Path(tmp)) for name in (args.pruner, "none")}
    budget = args.trials * args.max_epochs
    print(f"{'pruner':<10} {'best val_acc':>12} {'epochs trained':>15} {'of budget':>10} "
          f"{'complete/pruned/failed':>23} {'seconds':>8}")
    for name, r in rows.items():
        print(f"{name:<10} {r['best']:>12.4f} {r['epochs']:>15d} {r['epochs'] / budget:>10.0%} "
              f"{r['complete']:>9d}/{r['pruned']}/{r['failed']:<11d} {r['seconds']:>8.1f}")
    with_p, without = rows[args.pruner], rows["none"]
    print(f"epochs with {args.pruner} / without pruning: {with_p['epochs'] / without['epochs']:.2f} "
          f"({without['epochs'] / with_p['epochs']:.2f}x fewer); best val_acc difference "
          f"{with_p['best'] - without['best']:+.4f}; wall time ratio {with_p['seconds'] / without['seconds']:.2f}")


if __name__ == "__main__":
    main()
