"""Storage under load: N driver processes share one Optuna study and run many short fake trials
(ask, report + should_prune per step, tell; no training), the pattern of several `drltune search`
drivers joining one study. Prints trials/s, report calls/s and lost or duplicated trials (must be 0).

Two patterns: `plain` (bare Optuna calls) and `drltune` (what a search driver does besides: the
retrying storage with Optuna heartbeats, the shared --trials budget check with its stale-trial
query before each ask, the driver claim after it, and one heartbeat per reported epoch, far more
often than the real 10 s).

    .venv/bin/python benchmarks/storage_load.py                      # SQLite, plus PostgreSQL if
    .venv/bin/python benchmarks/storage_load.py --drivers 1,2,4,8    #   DRLTUNE_TEST_POSTGRES_URL is set
    .venv/bin/python benchmarks/storage_load.py --postgres-url postgresql://user@127.0.0.1/db
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from dataclasses import dataclass

import optuna

SPACE = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
         "method": optuna.distributions.CategoricalDistribution(["baseline", "dr"])}


def make_study(url: str, name: str) -> optuna.Study:
    return optuna.create_study(storage=url, study_name=name, direction="maximize",
                               sampler=optuna.samplers.RandomSampler(seed=0),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))


def driver(url: str, name: str, index: int, trials: int, steps: int, barrier, results, pattern: str = "plain",
           total: int = 0) -> None:
    """One driver process: `trials` fake trials, each tagged (driver, seq) to detect loss and duplication."""
    import warnings

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, budget = url, None
    if pattern == "drltune":
        from drltune.search.storage import open_storage

        storage = open_storage(url, heartbeat=True)
    study = optuna.load_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=index),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    if pattern == "drltune":
        from drltune.search.liveness import SharedBudget

        budget = SharedBudget(study, total, max_retries=2)
    reports, errors = 0, []
    barrier.wait()
    for seq in range(trials):
        try:
            if budget is not None:
                budget._next_check = 0.0  # measure the check every time
                budget.state()
            trial = study.ask(SPACE)
            if budget is not None:
                budget.claim(trial)
            trial.set_user_attr("driver_seq", f"{index}:{seq}")
            state = optuna.trial.TrialState.COMPLETE
            value = 0.0
            for step in range(steps):
                value = trial.params["lr"] * (step + 1) / steps  # any deterministic curve will do
                trial.report(value, step)
                if budget is not None:
                    study._storage.record_heartbeat(trial._trial_id)
                reports += 1
                if trial.should_prune():
                    state = optuna.trial.TrialState.PRUNED
                    break
            study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        except Exception as exc:  # counted and shown: a storage error must not hide in the figures
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    results.put((index, reports, errors))


@dataclass
class Outcome:
    seconds: float
    trials: int
    reports: int
    lost: int
    duplicated: int
    unfinished: int
    errors: list[str]


def run(url: str, n_drivers: int, trials: int, steps: int, pattern: str = "plain") -> Outcome:
    name = f"load-{uuid.uuid4().hex[:8]}"
    make_study(url, name)
    ctx = mp.get_context("spawn")  # separate interpreters, like separate `drltune search` processes
    barrier, results = ctx.Barrier(n_drivers + 1), ctx.Queue()
    procs = [ctx.Process(target=driver, args=(url, name, i, trials, steps, barrier, results, pattern,
                                              n_drivers * trials + 1)) for i in range(n_drivers)]
    for p in procs:
        p.start()
    barrier.wait()  # every driver has imported optuna and opened the study: start the clock
    start = time.perf_counter()
    outs = [results.get() for _ in procs]
    seconds = time.perf_counter() - start
    for p in procs:
        p.join()
    study = optuna.load_study(storage=url, study_name=name)
    stored = study.get_trials(deepcopy=False)
    tags = collections.Counter(t.user_attrs.get("driver_seq") for t in stored)
    expected = {f"{i}:{s}" for i in range(n_drivers) for s in range(trials)}
    numbers = collections.Counter(t.number for t in stored)
    return Outcome(
        seconds=seconds, trials=len(stored), reports=sum(o[1] for o in outs),
        lost=len(expected - set(tags)),
        duplicated=sum(c - 1 for c in tags.values() if c > 1) + sum(c - 1 for c in numbers.values() if c > 1),
        unfinished=sum(not t.state.is_finished() for t in stored),
        errors=[e for o in outs for e in o[2]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drivers", default="1,2,4,8", help="comma-separated driver counts")
    ap.add_argument("--trials", type=int, default=30, help="trials per driver")
    ap.add_argument("--steps", type=int, default=6, help="reported epochs per trial")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--patterns", default="plain,drltune")
    ap.add_argument("--postgres-url", default=os.environ.get("DRLTUNE_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counts = [int(n) for n in args.drivers.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="drltune-load-")
    urls = {"sqlite": f"sqlite:///{tmp.name}/load.db", "postgresql": args.postgres_url}
    print(f"{'storage':<11}{'pattern':>8}{'drivers':>8}{'trials':>8}{'seconds':>9}{'trials/s':>10}{'reports/s':>11}"
          f"{'lost':>6}{'dup':>5}{'unfinished':>11}{'errors':>8}")
    bad = 0
    for backend in args.backends.split(","):
        if not urls.get(backend):
            print(f"{backend:<11} skipped: no URL (set DRLTUNE_TEST_POSTGRES_URL or --postgres-url)")
            continue
        for pattern, n in [(p, n) for n in counts for p in args.patterns.split(",")]:
            o = run(urls[backend], n, args.trials, args.steps, pattern)
            print(f"{backend:<11}{pattern:>8}{n:>8}{o.trials:>8}{o.seconds:>9.2f}{o.trials / o.seconds:>10.1f}"
                  f"{o.reports / o.seconds:>11.1f}{o.lost:>6}{o.duplicated:>5}{o.unfinished:>11}{len(o.errors):>8}")
            for err in sorted(set(o.errors))[:3]:
                print(f"{'':<11}  error: {err}")
            bad += o.lost + o.duplicated + o.unfinished + len(o.errors)
    tmp.cleanup()
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
