"""Truth under concurrency (issue #23): N driver processes on one study ask trials through
drltune's shared budget, report, tell COMPLETE or PRUNED, and meanwhile retire each other's
RUNNING trials as if stale (`study.retire` on random running trials, the owner's too, as a
driver that judged them stale would) and resume (`requeue_lost`). Bounded in trials and time.
Then three checks, each a count that must be 0:

* double_counted: lineages (retry chains) with more than one COMPLETE/PRUNED trial;
* double_retried: trials queued again more than once, or lineages ending with more than one
  WAITING/RUNNING retry (one lineage retried twice concurrently);
* lost_results: tells that returned success whose trial did not end in the state told.

Written against the APIs that both the fixed code and the code before issue #23's state changes
(69d03b8) have (open_storage, SharedBudget.state/claim, study.retire, requeue_lost, Optuna's
ask/tell), so `PYTHONPATH=<that checkout>` runs it against the old code.

    PYTHONPATH=. .venv/bin/python benchmarks/concurrency_stress.py  # SQLite, PostgreSQL if DRLTUNE_TEST_POSTGRES_URL
    PYTHONPATH=. .venv/bin/python benchmarks/concurrency_stress.py --runs 3 --seconds 20 --drivers 4

Recorded 2026-12-06 (2 CPU cores shared with a long benchmark; 4 drivers, 3 runs of 20 s per
row, counts summed over the runs; PostgreSQL 15 on loopback):

    code                                  storage     trials   ops  double_counted  double_retried  lost
    69d03b8 (before #23's state changes)  sqlite         285  2352              13               7     1
                                          postgresql     595  4707              26              31     0
    aa95b1e (conditional state changes,   sqlite         343  2696               8               8     0
      requeue_lost racing retire)         postgresql     574  4506              26              28     0
    4274e15 (a retry queued once)         sqlite         344  2703               0               0     0
                                          postgresql     671  5266               0               0     0
    --resume-rate 0 (no requeue_lost):
    69d03b8                               sqlite         317  2555               3               4     3
                                          postgresql     617  4862               0               0     0
    aa95b1e                               sqlite         341  2620               0               0     0
                                          postgresql     464  3510               0               0     0
    4274e15                               sqlite         318  2444               0               0     0
                                          postgresql     364  2788               0               0     0

Before issue #23's conditional state changes, two drivers retiring one trial on SQLite both won
(two retries) and an owner's tell could be overwritten by another driver's FAIL (lost results);
PostgreSQL's row lock hid that. On both, a driver resuming (requeue_lost) while another retired
a trial, between its FAIL and its queued retry, queued a second retry of the lineage.
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import random
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

SPACE = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
REASON = "interrupted: judged stale by the stress test"
RATES = (0.3, 0.05)  # per step: chance of retiring a random running trial, chance of a resume (requeue_lost)


def driver(url: str, name: str, index: int, seconds: float, max_trials: int, target: int, seed: int,
           rates: tuple[float, float], barrier, results) -> None:
    """One driver process; puts (index, operations, [(trial_id, state told)], errors) on `results`."""
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from drltune.search.liveness import SharedBudget
    from drltune.search.storage import open_storage
    from drltune.search.study import requeue_lost, retire

    rng = random.Random(seed * 1000 + index)
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=True),
                              sampler=optuna.samplers.RandomSampler(seed=seed * 1000 + index))
    budget = SharedBudget(study, target, max_retries=None)
    told: list[tuple[int, str]] = []
    ops, errors = 0, []

    def chaos() -> None:
        nonlocal ops
        if rng.random() < rates[0]:  # another driver judges a running trial stale
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if running:
                retire(study, rng.choice(running)._trial_id, REASON, None)
                ops += 1
        if rng.random() < rates[1]:  # a driver resumes
            requeue_lost(study)
            ops += 1

    barrier.wait()
    end, asked = time.monotonic() + seconds, 0
    while time.monotonic() < end and asked < max_trials:
        try:
            chaos()
            state = budget.state()
            ops += 1
            if state == "done":
                break
            if state == "wait":
                budget._next_check = 0.0
                time.sleep(0.01)
                continue
            trial = study.ask(SPACE)
            asked += 1
            ops += 1
            if not budget.claim(trial):
                continue
            pruned = rng.random() < 0.3
            for step in range(3):
                trial.report(trial.params["lr"] * (step + 1), step)
                study._storage.record_heartbeat(trial._trial_id)
                ops += 2
                chaos()
        except (UpdateFinishedTrialError, ValueError):  # another driver retired it first: a normal outcome
            ops += 1
            continue
        except Exception as exc:  # counted and shown
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
            continue
        state = TrialState.PRUNED if pruned else TrialState.COMPLETE
        try:
            study.tell(trial, None if pruned else trial.params["lr"], state=state)
        except Exception:  # another driver closed it first: a refused tell is a normal outcome
            continue
        finally:
            ops += 1
        told.append((trial._trial_id, state.name))
    results.put((index, ops, told, errors))


@dataclass
class Outcome:
    trials: int = 0
    operations: int = 0
    double_counted: int = 0
    double_retried: int = 0
    lost_results: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: "Outcome") -> None:
        for key in ("trials", "operations", "double_counted", "double_retried", "lost_results"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.errors += other.errors


def run(url: str, n_drivers: int = 4, seconds: float = 20.0, max_trials: int = 200, seed: int = 0,
        rates: tuple[float, float] = RATES) -> Outcome:
    """One stress run on a fresh study; the three counts of the module docstring."""
    from drltune.search.storage import open_storage
    from drltune.search.study import lineage

    name = f"stress-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=True), direction="maximize")
    ctx = mp.get_context("spawn")  # separate interpreters, like separate `drltune search` processes
    barrier, results = ctx.Barrier(n_drivers + 1), ctx.Queue()
    target = n_drivers * max_trials  # never reached in time: the budget stays open, its checks still run
    procs = [ctx.Process(target=driver, args=(url, name, i, seconds, max_trials, target, seed, rates, barrier, results))
             for i in range(n_drivers)]
    for p in procs:
        p.start()
    barrier.wait()
    outs = [results.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join()
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    by_id = {t._trial_id: t for t in trials}
    counted = collections.Counter(lineage(t) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
    open_ = collections.Counter(lineage(t) for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING))
    parents = collections.Counter(t.system_attrs["retry_history"][-1] for t in trials
                                  if t.system_attrs.get("retry_history"))
    told = [pair for out in outs for pair in out[2]]
    return Outcome(
        trials=len(trials), operations=sum(out[1] for out in outs),
        double_counted=sum(n - 1 for n in counted.values() if n > 1),
        double_retried=sum(n - 1 for n in parents.values() if n > 1) + sum(n - 1 for n in open_.values() if n > 1),
        lost_results=sum(by_id[trial_id].state.name != state for trial_id, state in told),
        errors=[e for out in outs for e in out[3]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drivers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="per run")
    ap.add_argument("--max-trials", type=int, default=200, help="per driver and run")
    ap.add_argument("--retire-rate", type=float, default=RATES[0])
    ap.add_argument("--resume-rate", type=float, default=RATES[1])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=os.environ.get("DRLTUNE_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    import drltune

    print(f"drltune from {os.path.dirname(drltune.__file__)}")
    tmp = tempfile.TemporaryDirectory(prefix="drltune-stress-")
    urls = {"sqlite": f"sqlite:///{tmp.name}/stress.db", "postgresql": args.postgres_url}
    print(f"{'storage':<11}{'runs':>5}{'drivers':>8}{'trials':>8}{'ops':>8}{'double_counted':>15}"
          f"{'double_retried':>15}{'lost_results':>13}{'errors':>7}")
    bad = 0
    for backend in args.backends.split(","):
        if not urls.get(backend):
            print(f"{backend:<11} skipped: no URL (set DRLTUNE_TEST_POSTGRES_URL or --postgres-url)")
            continue
        total = Outcome()
        for seed in range(args.runs):
            total.add(run(urls[backend], args.drivers, args.seconds, args.max_trials, seed,
                          (args.retire_rate, args.resume_rate)))
        print(f"{backend:<11}{args.runs:>5}{args.drivers:>8}{total.trials:>8}{total.operations:>8}"
              f"{total.double_counted:>15}{total.double_retried:>15}{total.lost_results:>13}{len(total.errors):>7}")
        for err, n in collections.Counter(total.errors).most_common(3):
            print(f"{'':<11}  error ({n}x): {err}")
        bad += total.double_counted + total.double_retried + total.lost_results
    tmp.cleanup()
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
