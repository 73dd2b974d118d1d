"""Record the learning-curve table: configurations drawn over the default space, each trained the
whole budget on several seeds, every epoch's figures kept. The search simulator
(`benchmarks/search_sim.py`) answers trials from it instead of training.

Configurations: `--configs` draws from drltune's default space by Optuna's RandomSampler (seeded),
the method taken in turn (config i runs method i mod 8), so every prefix of the table covers every
method evenly and each method's own parameters, fusion, lr, optimiser and batch size are drawn at
random. Each is trained `--epochs` epochs on each seed at the benchmark size of
`search_efficiency.py` (built-in data, 120 train, 600 val, 600 test clips, width 2, 16 px).

One JSON line per (config, seed), in chunk files of 25 configs (`OUT/chunk-NN.jsonl`), written
as each run ends: per epoch the validation and test accuracy (on the scoring-only seeds 3-4, the
test accuracy only at epochs with a new best val_acc, the only ones that can be selected), each modality's validation and test
accuracy, the epoch's seconds (training and validation, not the extra test evaluation) and DR's
re-init marks; a run that stopped on a non-finite loss keeps the epochs it reached and its error.
Resumable: a (config, seed) already in the table is skipped, so running the same command again
continues where a stopped recording ended (a run cut off half-way is run again).

    python benchmarks/curve_table.py [--configs 200] [--seeds 0,1,2] [--epochs 30] [--workers 2]
        [--out benchmarks/curve_table] [--status]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

CHUNK = 25  # configs per chunk file
TABLE_SEED = 20261206  # the draw of the configurations (never a search seed)
OUT = Path(__file__).resolve().parent / "curve_table"
# The benchmark size of search_efficiency.py: fits 2 cores, 600 val clips (0.17 points a clip).
BENCH_SET = ["encoder_width=2", "dataset_params.n_train=120", "dataset_params.n_val=600",
             "dataset_params.n_test=600", "dataset_params.image_size=16", "dataset_params.audio_freq=16",
             "dataset_params.audio_time=16", "dataset_params.frames=1"]
# Seeds no simulated search sees (their runs only score a config): the test split is evaluated only
# at epochs that could be selected (a new best val_acc), which is all the score needs.
SCORED_ONLY = (3, 4)
CURVE_KEYS = ("val", "test", "val_audio", "val_visual", "test_audio", "test_visual", "seconds")


def draw_configs(n: int, epochs: int, overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """The table's configurations: `{"id", "params" (Optuna's names), "trial" (TrialConfig dict)}`."""
    import optuna

    from drltune.search.runner import DEFAULT_SPACE, SearchSpec, base_config
    from drltune.search.space_file import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(DEFAULT_SPACE, epochs)
    base = base_config(SearchSpec(overrides=BENCH_SET + list(overrides or [])), space.fixed)
    base = base.replace(epochs=epochs, threads=1)
    methods = list(space.methods)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=TABLE_SEED))
    out = []
    for i in range(n):
        study.enqueue_trial({"method": methods[i % len(methods)]})
        trial = study.ask()
        config = space.config_for(trial, base)
        out.append({"id": i, "params": dict(trial.params), "trial": config.to_dict()})
        study.tell(trial, 0.0)
    return out


def world_of(config_id: int, n_methods: int) -> str:
    """"even" or "odd": the parity of the config's round of the method cycle (config i runs method
    i mod n, so ids 0..n-1 are round 0). Each world holds every method; search_sim.py chooses
    settings on one and reports them on the other."""
    return "odd" if (config_id // n_methods) % 2 else "even"


def chunk_file(out: Path, config_id: int) -> Path:
    return out / f"chunk-{config_id // CHUNK:02d}.jsonl"


def load_runs(out: Path = OUT) -> list[dict[str, Any]]:
    """Every recorded run of the table (a torn last line, from a kill mid-write, is skipped)."""
    runs = []
    for path in sorted(out.glob("chunk-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return runs


_DATA: dict[str, Any] = {}


def record_run(job: tuple[dict[str, Any], int]) -> dict[str, Any]:
    """Train one (config, seed) the whole budget; the data are built once per worker process."""
    config, seed = job
    from drltune.config import TrialConfig
    from drltune.data import load_dataset
    from drltune.resolve import resolve
    from drltune.train import Trainer

    resolved = resolve(TrialConfig.from_dict({**config["trial"], "seed": seed}))
    key = json.dumps([resolved.dataset, resolved.dataset_params], sort_keys=True, default=str)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_dataset(resolved.dataset, resolved.data_root, resolved.dataset_params)
    trainer = Trainer(resolved, data=_DATA[key])
    curves: dict[str, list[float]] = {k: [] for k in CURVE_KEYS}
    reinits: list[int] = []

    best_val = [-1.0]

    def report(epoch: int, record: dict[str, Any]) -> bool:
        if seed in SCORED_ONLY and record["val_acc"] <= best_val[0]:  # not a selectable epoch: no test
            curves["test"].append(None)
            curves["test_audio"].append(None)
            curves["test_visual"].append(None)
            for name, value in (("val", record["val_acc"]), ("val_audio", record["val_acc_audio"]),
                                ("val_visual", record["val_acc_visual"]), ("seconds", record["seconds"])):
                curves[name].append(round(float(value), 4 if name != "seconds" else 3))
            if record.get("reinit"):
                reinits.append(epoch)
            return False
        best_val[0] = max(best_val[0], record["val_acc"])
        test = trainer.evaluate(trainer.data.test)
        for name, value in (("val", record["val_acc"]), ("test", test["acc"]),
                            ("val_audio", record["val_acc_audio"]), ("val_visual", record["val_acc_visual"]),
                            ("test_audio", test["acc_audio"]), ("test_visual", test["acc_visual"])):
            curves[name].append(round(float(value), 4))
        curves["seconds"].append(round(float(record["seconds"]), 3))
        if record.get("reinit"):
            reinits.append(epoch)
        return False

    error = None
    try:
        trainer.fit(report=report)
    except Exception as exc:  # a non-finite loss: the run keeps the epochs it reached
        error = f"{type(exc).__name__}: {exc}"[:300]
    return {"config": config["id"], "seed": seed, "method": config["params"]["method"],
            "params": config["params"], **curves, "reinits": reinits, "error": error}


def table_configs(out: Path, n: int, epochs: int) -> list[dict[str, Any]]:
    """A table's stored configs when it has some (a resumed recording must run exactly those, whatever
    methods the default space has gained since), else `n` freshly drawn ones."""
    stored_file = out / "configs.json"
    if not stored_file.exists():
        return draw_configs(n, epochs)
    stored = json.loads(stored_file.read_text())
    if stored["epochs"] != epochs or len(stored["configs"]) < n:
        raise SystemExit(f"error: {out} holds {len(stored['configs'])} configs of {stored['epochs']} epochs; "
                         f"{n} configs of {epochs} epochs need another --out")
    return stored["configs"][:n]


def todo(configs: list[dict[str, Any]], seeds: list[int], done: set[tuple[int, int]]) -> Iterator[tuple[dict, int]]:
    """Config-major: a config's seeds together, so any prefix of the table has whole configs."""
    for config in configs:
        for seed in seeds:
            if (config["id"], seed) not in done:
                yield config, seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=200)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--parity", choices=("all", "even", "odd"), default="all",
                        help="record only one world's configs this time (world_of: search_sim.py's --world)")
    parser.add_argument("--status", action="store_true", help="only say how much of the table is recorded")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(args.out)
    done = {(r["config"], r["seed"]) for r in runs}
    wanted = args.configs * len(seeds)
    have = sum((c, s) in done for c in range(args.configs) for s in seeds)
    print(f"curve table: {have}/{wanted} runs recorded in {args.out}", flush=True)
    if args.status:
        return
    configs = table_configs(args.out, args.configs, args.epochs)
    (args.out / "configs.json").write_text(json.dumps(
        {"table_seed": TABLE_SEED, "epochs": args.epochs, "seeds": seeds, "set": BENCH_SET, "configs": configs},
        indent=None, separators=(",", ":")) + "\n")
    n_methods = len({c["params"]["method"] for c in configs})
    wanted_configs = [c for c in configs if args.parity == "all" or world_of(c["id"], n_methods) == args.parity]
    jobs = list(todo(wanted_configs, seeds, done))
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=50) as pool:
        for n, row in enumerate(pool.imap_unordered(record_run, jobs), 1):
            with chunk_file(args.out, row["config"]).open("a") as f:
                f.write(json.dumps(row, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
            rate = (time.perf_counter() - start) / n
            print(f"[{have + n}/{wanted}] config {row['config']} ({row['method']}) seed {row['seed']}: "
                  f"best val {max(row['val'], default=float('nan')):.4f} over {len(row['val'])} epochs"
                  f"{' ' + row['error'] if row['error'] else ''}; ~{rate * (len(jobs) - n) / 60:.0f} min left",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
