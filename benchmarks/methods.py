"""The balancing methods side by side on the built-in dataset, over seeds, at one epoch budget.

Prints, per method (its declared defaults), mean ± std over seeds of: best val accuracy, test
accuracy at the val-selected epoch, per-modality test accuracy (zero-padded head) and linear
probes of each frozen encoder, the test-accuracy difference to the baseline, and seconds per epoch
(wall time of training plus the per-epoch validation; the methods run round-robin per seed).

    python benchmarks/methods.py [--seeds 3] [--epochs N] [--rows baseline,ogm_ge,...] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import statistics
import time

from drltune.config import TrialConfig
from drltune.methods import METHODS
from drltune.resolve import resolve
from drltune.train import Trainer
from drltune.train.probe import linear_probe

COLUMNS = ("val_acc", "test_acc", "test_audio", "test_visual", "probe_audio", "probe_visual")


def run_one(base: TrialConfig, method: str, seed: int) -> dict[str, float]:
    trainer = Trainer(base.replace(seed=seed, method=method, params={}))
    start = time.perf_counter()
    result = trainer.fit()
    per_epoch = (time.perf_counter() - start) / len(result.history)
    probe = linear_probe(trainer)
    return dict(zip(COLUMNS + ("s/epoch",), (
        result.best_val_acc, result.test_acc, result.test_acc_audio, result.test_acc_visual,
        probe["probe_audio"], probe["probe_visual"], per_epoch)))


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f}±{std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        help="TrialConfig override for every row, e.g. fusion=sum")
    parser.add_argument("--rows", default="baseline,ogm_ge,pmr,arl,agm,dr,mmpareto,mla,inforeg,gblending,lfm,reconboost")
    args = parser.parse_args()
    rows = args.rows.split(",")
    for row in rows:
        METHODS.get(row)  # unknown names fail before any training
    base = TrialConfig(threads=args.threads).with_overrides(args.assignments)
    if args.epochs:
        base = base.replace(epochs=args.epochs)
    print(f"dataset {base.dataset} {base.dataset_params or '(defaults)'}; fusion {base.fusion}; {args.seeds} seeds; "
          f"{resolve(base).epochs} epochs; each method with its declared defaults; threads {args.threads}")
    header = f"{'method':<9} " + " ".join(f"{c:>13}" for c in COLUMNS) + f" {'Δtest':>7} {'s/epoch':>8}"
    print(header)
    print("-" * len(header))
    # seeds outside, methods inside: on a shared machine a load swing then hits every method alike
    runs: dict[str, list[dict[str, float]]] = {row: [] for row in rows}
    for seed in range(args.seeds):
        for row in rows:
            runs[row].append(run_one(base, row, seed))
    baseline_test = None
    for row in rows:
        cols = {key: [run[key] for run in runs[row]] for key in runs[row][0]}
        test = statistics.mean(cols["test_acc"])
        if row == "baseline":
            baseline_test = test
        delta = f"{test - baseline_test:+.3f}" if baseline_test is not None else "n/a"
        print(f"{row:<9} " + " ".join(f"{cell(cols[c]):>13}" for c in COLUMNS)
              + f" {delta:>7} {statistics.mean(cols['s/epoch']):>8.2f}", flush=True)


if __name__ == "__main__":
    main()
