"""Does pruning pay? drltune's pruners against no pruning and against stock Ray Tune + Optuna.

Five routes on the same space, trial count, epoch budget, concurrency and TPE sampler, each over
several search seeds (the seed of the sampler and of every trial's training):

* `none`, `median`, `sha`, `hyperband`: `drltune search --pruner ...` (run_search);
* `stock`: what a user would write instead with Ray's and Optuna's public APIs:
  `ray.tune.search.optuna.OptunaSearch` (define-by-run over the same space, same TPE settings)
  with `ray.tune.schedulers.ASHAScheduler` (grace period = drltune's first rung, factor 3).

Per route: the best validation accuracy among trials that trained the whole budget (mean ± std
over search seeds), the test accuracy of that trial, epochs trained as a fraction of
trials x epochs, wall time, and the trial states Optuna recorded (stock: OptunaSearch's study).

Resumable: each finished search appends one JSON row to OUT/rows.jsonl and is skipped when the
command runs again (a search cut off half-way is started again from scratch); the table is
printed from whatever rows exist, so `--report` after a partial run still gives figures.

    python benchmarks/search_efficiency.py [--trials 64] [--max-epochs 30] [--seeds 0,1,2]
        [--routes none,median,sha,hyperband,stock] [--concurrent 2] [--out DIR]
        [--set KEY=VALUE ...] [--report]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from drltune.config import TrialConfig
from drltune.resolve import resolve
from drltune.search.pruning import pruner_defaults
from drltune.search.ray_start import RAY_QUIET_ENV
from drltune.search.runner import DEFAULT_SPACE, SearchSpec, base_config, run_search
from drltune.search.samplers import make_sampler
from drltune.search.space_file import load_space

ROUTES = ("none", "median", "sha", "hyperband", "stock")
STATES = ("COMPLETE", "PRUNED", "FAIL")


def drltune_route(args: argparse.Namespace, route: str, seed: int, folder: Path) -> dict[str, Any]:
    spec = SearchSpec(dataset="synthetic", space_file=args.space, trials=args.trials, max_epochs=args.max_epochs,
                      pruner=route, concurrent=args.concurrent, seed=seed, overrides=args.set,
                      storage=f"sqlite:///{folder / 'study.db'}", study_name=f"efficiency-{route}-{seed}",
                      command=f"benchmarks/search_efficiency.py {route} seed {seed}")
    start = time.perf_counter()
    study = run_search(spec, echo=lambda line: None)
    seconds = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)
    full = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(full, key=lambda t: t.value, default=None)
    return {"best_val": best.value if best else math.nan,
            "test_acc": best.user_attrs.get("test_acc", math.nan) if best else math.nan,
            "epochs": sum(len(t.intermediate_values) for t in trials), "seconds": seconds,
            "states": {s: sum(t.state.name == s for t in trials) for s in STATES}}


def stock_trainable(config: dict[str, Any]) -> None:
    """One trial as a Ray user writes it: train, report val_acc every epoch; the last report
    (after the test evaluation) carries the test accuracy of the selected epoch."""
    from ray import tune

    from drltune.train import Trainer

    resolved = resolve(TrialConfig.from_dict(config["trial"]))
    last = resolved.epochs - 1

    def report(epoch: int, record: dict[str, Any]) -> bool:
        if epoch < last:
            tune.report({"val_acc": float(record["val_acc"]), "epoch": epoch})
        return False

    result = Trainer(resolved).fit(report=report)
    tune.report({"val_acc": float(result.history[-1]["val_acc"]), "epoch": last,
                 "best_val_acc": float(result.best_val_acc), "test_acc": float(result.test_acc)})


class DefineByRun:
    """The drltune space as an OptunaSearch define-by-run function (a class: Ray pickles it)."""

    def __init__(self, space: Any, base: TrialConfig) -> None:
        self.space, self.base = space, base

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {"trial": self.space.config_for(trial, self.base).to_dict()}


def stock_route(args: argparse.Namespace, seed: int, folder: Path) -> dict[str, Any]:
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    spec = SearchSpec(dataset="synthetic", space_file=args.space, max_epochs=args.max_epochs, seed=seed,
                      overrides=args.set)
    space = load_space(args.space, args.max_epochs)
    base = base_config(spec, space.fixed).replace(epochs=args.max_epochs, threads=1)

    sampler, _ = make_sampler("tpe", seed, args.trials)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'stock.db'}")
    searcher = OptunaSearch(space=DefineByRun(space, base), metric="val_acc", mode="max", sampler=sampler,
                            storage=storage, study_name=f"stock-{seed}")
    _, first_rung = pruner_defaults("sha", args.max_epochs, args.trials)
    scheduler = ASHAScheduler(time_attr="training_iteration", metric="val_acc", mode="max",
                              max_t=args.max_epochs, grace_period=first_rung, reduction_factor=3)
    ray.init(address="local", num_cpus=args.concurrent, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    start = time.perf_counter()
    try:
        tuner = tune.Tuner(
            tune.with_resources(stock_trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=args.trials,
                                        max_concurrent_trials=args.concurrent),
            run_config=tune.RunConfig(name=f"stock-{seed}", storage_path=str(folder / "ray"), verbose=0))
        grid = tuner.fit()
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    full = [r.metrics for r in grid if r.metrics and "test_acc" in r.metrics]
    best = max(full, key=lambda m: m["best_val_acc"], default=None)
    trials = optuna.load_study(study_name=f"stock-{seed}", storage=storage).get_trials(deepcopy=False)
    return {"best_val": best["best_val_acc"] if best else math.nan,
            "test_acc": best["test_acc"] if best else math.nan,
            "epochs": int(sum(r.metrics.get("training_iteration", 0) for r in grid if r.metrics)), "seconds": seconds,
            "states": {s: sum(t.state.name == s for t in trials) for s in STATES},
            "errors": sum(r.error is not None for r in grid)}


def same_setting(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Rows of the same benchmark: equal settings, the space compared by file name."""
    return ({**a, "space": Path(a["space"]).name} == {**b, "space": Path(b["space"]).name})


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f} (one seed)"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def table(rows: list[dict[str, Any]], budget: int) -> list[str]:
    """A Markdown table: one line per route, figures over the search seeds that finished."""
    lines = ["| route | seeds | best val acc % | its test acc % | epochs / budget | wall s (mean) "
             "| Optuna states C/P/F (sum) |", "|---|---|---|---|---|---|---|"]
    for route in ROUTES:
        mine = [r for r in rows if r["route"] == route]
        if not mine:
            continue
        states = "/".join(str(sum(r["states"][s] for r in mine)) for s in STATES)
        frac = statistics.mean(r["epochs"] / budget for r in mine)
        name = "stock OptunaSearch + ASHA" if route == "stock" else f"drltune {route}"
        lines.append(f"| {name} | {','.join(str(r['seed']) for r in mine)} | {mean_std([r['best_val'] for r in mine])} "
                     f"| {mean_std([r['test_acc'] for r in mine])} | {100 * frac:.0f} % "
                     f"| {statistics.mean(r['seconds'] for r in mine):.0f} | {states} |")
    return lines


def per_search(rows: list[dict[str, Any]], budget: int) -> list[str]:
    """Every finished search on its own line (seed by seed, so routes compare on the same seed)."""
    lines = ["| seed | route | best val acc % | its test acc % | epochs / budget | wall s | C/P/F |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["seed"], ROUTES.index(r["route"]))):
        lines.append(f"| {r['seed']} | {r['route']} | {100 * r['best_val']:.1f} | {100 * r['test_acc']:.1f} "
                     f"| {100 * r['epochs'] / budget:.0f} % | {r['seconds']:.0f} | "
                     + "/".join(str(r["states"][s]) for s in STATES) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    parser.add_argument("--out", type=Path, default=Path("studies/search_efficiency"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--report", action="store_true", help="only print the table of the rows already there")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    resolve(base_config(SearchSpec(overrides=args.set), {}))  # a bad --set fails before any search
    routes = [r for r in args.routes.split(",") if r]
    unknown = set(routes) - set(ROUTES)
    if unknown:
        parser.error(f"--routes: unknown {sorted(unknown)}; valid: {','.join(ROUTES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out = args.out.resolve()  # Ray wants an absolute storage path
    args.out.mkdir(parents=True, exist_ok=True)
    rows_file = args.out / "rows.jsonl"
    header = (f"search efficiency: synthetic, {args.trials} trials x {args.max_epochs} epochs, {args.concurrent} "
              f"concurrent, TPE, space {args.space.name}" + (f", {' '.join(args.set)}" if args.set else ""))
    if not args.report:
        print(header, flush=True)
    setting = {"trials": args.trials, "max_epochs": args.max_epochs, "concurrent": args.concurrent,
               "space": str(args.space), "set": args.set}
    done = {(r["route"], r["seed"]) for r in load_rows(rows_file) if same_setting(r["setting"], setting)}
    for seed in [] if args.report else seeds:
        for route in routes:
            if (route, seed) in done:
                continue
            folder = args.out / f"{route}-{seed}"
            shutil.rmtree(folder, ignore_errors=True)  # a search cut off earlier starts again
            folder.mkdir(parents=True)
            row = stock_route(args, seed, folder) if route == "stock" else drltune_route(args, route, seed, folder)
            row.update(route=route, seed=seed, setting=setting)
            with rows_file.open("a") as out:
                out.write(json.dumps(row) + "\n")
            print(f"{route} seed {seed}: best val {row['best_val']:.4f} test {row['test_acc']:.4f} "
                  f"epochs {row['epochs']} {row['seconds']:.0f}s states {row['states']}", flush=True)
    rows = [r for r in load_rows(rows_file) if same_setting(r["setting"], setting) and r["seed"] in seeds]
    print(header)
    print("\n".join(table(rows, args.trials * args.max_epochs)))
    print()
    print("\n".join(per_search(rows, args.trials * args.max_epochs)))


if __name__ == "__main__":
    main()
