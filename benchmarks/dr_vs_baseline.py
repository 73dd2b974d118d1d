"""Baseline vs DR (and unimodal references) on the built-in dataset, over seeds.

Prints final val/test accuracy, per-modality accuracy (zero-padded head and linear probe of
each frozen encoder) and seconds per epoch. The visual-only row shows what the visual
encoder can learn alone: the gap to the baseline's visual probe is the modality imbalance.

    python benchmarks/dr_vs_baseline.py [--seeds 3] [--epochs N] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from drltune.config import TrialConfig
from drltune.train import Trainer
from drltune.train.probe import linear_probe

ROWS = {
    "baseline": {"method": "baseline"},
    "dr": {"method": "dr"},
    "audio-only": {"method": "baseline", "modality": "audio"},
    "visual-only": {"method": "baseline", "modality": "visual"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="assignments", action="append", default=[])
    parser.add_argument("--rows", default=",".join(ROWS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = TrialConfig().with_overrides(args.assignments)
    if args.epochs:
        base = base.replace(epochs=args.epochs)
    print(f"dataset {base.dataset} {base.dataset_params or '(defaults)'}; {args.seeds} seeds; "
          f"epochs {base.epochs or 'dataset default'}; DR params {base.params or 'defaults'}")
    header = f"{'row':<12} {'val_acc':>13} {'test_acc':>13} {'test_audio':>13} {'test_visual':>13} " \
             f"{'probe_audio':>13} {'probe_visual':>13} {'s/epoch':>8}"
    print(header)
    print("-" * len(header))
    for row in args.rows.split(","):
        cols: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            cfg = base.replace(seed=seed, **ROWS[row])
            if row != "dr":
                cfg = cfg.replace(params={})
            trainer = Trainer(cfg)
            start = time.perf_counter()
            result = trainer.fit()
            per_epoch = (time.perf_counter() - start) / len(result.history)
            probe = linear_probe(trainer)
            for key, value in (("val_acc", result.best_val_acc), ("test_acc", result.test_acc),
                               ("test_audio", result.test_acc_audio), ("test_visual", result.test_acc_visual),
                               ("probe_audio", probe["probe_audio"]), ("probe_visual", probe["probe_visual"]),
                               ("s/epoch", per_epoch)):
                cols.setdefault(key, []).append(value)
        cells = [f"{statistics.mean(v):.3f}±{statistics.stdev(v) if len(v) > 1 else 0:.3f}"
                 for k, v in cols.items() if k != "s/epoch"]
        print(f"{row:<12} " + " ".join(f"{c:>13}" for c in cells) + f" {statistics.mean(cols['s/epoch']):>8.2f}",
              flush=True)


if __name__ == "__main__":
    main()
