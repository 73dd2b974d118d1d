"""What the search driver spends per event as its study grows to the sizes users run (2,000 trials
of 90 epochs): milliseconds per new trial (budget check, TPE, claim), per reported epoch (report,
re-init-aware pruning), per finished trial (tell with its attributes, progress line, dashboard
Note and artifacts), and the driver's memory.

The study is filled with N finished trials shaped like a real search's (the default space's
parameters, 90 intermediate values, the `config` and `history` attributes), written in bulk.
Then a real `OptunaBridge` (the driver's Ray Tune searcher, with its pruner, sampler, shared
budget and dashboard publisher) runs `--concurrent` live trials through suggest, 30 epochs of
`on_epoch` and `on_trial_complete`, as Ray Tune calls them, with no training and no Ray. A cost
that grows with N shows up as the rows grow.

    .venv/bin/python benchmarks/driver_cost.py                                # SQLite, N = 0, 500, 2000
    .venv/bin/python benchmarks/driver_cost.py --sizes 0 2000 --postgres-url postgresql://user@host/db
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState, create_trial

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drltune.record import CONFIG, FINAL_KEYS, FINISHED_AT, trial_summary  # noqa: E402
from drltune.search.bridge import OptunaBridge  # noqa: E402
from drltune.search.dashboard_view import DashboardPublisher, describe_study  # noqa: E402
from drltune.search.liveness import SharedBudget  # noqa: E402
from drltune.search.progress import Progress  # noqa: E402
from drltune.search.pruning import make_pruner  # noqa: E402
from drltune.search.runner import DEFAULT_SPACE, SearchSpec, base_config  # noqa: E402
from drltune.search.samplers import make_sampler  # noqa: E402
from drltune.search.seeding import TrialSeededSampler  # noqa: E402
from drltune.search.space_file import load_space  # noqa: E402
from drltune.search.storage import open_storage  # noqa: E402

EPOCHS = 90
LIVE_EPOCHS = 30  # past the median pruner's warm-up (max-epochs / 6 = 15), so it judges


def record(epoch: int, val: float) -> dict:
    """One epoch's record, with the keys a real trainer writes."""
    return {"epoch": epoch, "train_loss": round(2.0 - val, 4), "val_acc": val, "val_acc_audio": val * 0.8,
            "val_acc_visual": val * 0.5, "lr": 1e-3, "seconds": 41.6, "checkpoint_s": 0.4}


def curve(rng: random.Random, epochs: int) -> list[float]:
    top = rng.uniform(0.3, 0.7)
    return [round(top * (1 - 0.97 ** (e + 1)) + rng.uniform(-0.02, 0.02), 4) for e in range(epochs)]


def bulk_writer(url: str, study_name: str) -> optuna.Study:
    """The same study through a storage that skips SQLite's fsync: only the fill is sped up."""
    storage = optuna.storages.RDBStorage(url)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        event.listen(storage.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous = OFF"))
        storage.engine.dispose()
    return optuna.load_study(study_name=study_name, storage=storage)


def fill(study: optuna.Study, space, base, count: int, rng: random.Random) -> None:
    """Add `count` finished trials shaped like a real search's (params from the space, 90 epochs)."""
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng.randrange(1 << 30)))
    for _ in range(count):
        trial = scratch.ask()
        cfg = space.config_for(trial, base)
        frozen = scratch._storage.get_trial(trial._trial_id)
        values = curve(rng, EPOCHS)
        pruned = rng.random() < 0.6
        kept = values[:rng.randrange(16, 40)] if pruned else values
        history = [record(e, v) for e, v in enumerate(kept)]
        attrs = {**trial_summary(history), CONFIG: cfg.to_dict(), FINISHED_AT: "2026-11-25T10:00:00"}
        if not pruned:
            attrs.update({key: 0.5 for key in FINAL_KEYS if key != "best_val_acc"})
        study.add_trial(create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
            value=kept[-1] if pruned else max(values), params=frozen.params, distributions=frozen.distributions,
            intermediate_values=dict(enumerate(kept)), user_attrs=attrs))
        scratch.tell(trial, 0.0)


def measure(bridge: OptunaBridge, progress: Progress, concurrent: int, rng: random.Random) -> dict[str, list[float]]:
    """One wave of `concurrent` live trials through the driver's callbacks; milliseconds per call."""
    times: dict[str, list[float]] = {"suggest": [], "epoch": [], "complete": [], "progress": []}
    live = []
    for i in range(concurrent):
        trial_id = f"bench_{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        suggestion = bridge.suggest(trial_id)
        times["suggest"].append(1000 * (time.perf_counter() - start))
        assert isinstance(suggestion, dict), suggestion
        live.append((trial_id, curve(rng, LIVE_EPOCHS)))
    stopped: set[str] = set()
    for epoch in range(LIVE_EPOCHS):
        for trial_id, values in live:
            if trial_id in stopped:
                continue
            result = {"epoch": epoch, "val_acc": values[epoch], "record": json.dumps(record(epoch, values[epoch]))}
            start = time.perf_counter()
            if bridge.on_epoch(trial_id, result):
                stopped.add(trial_id)
            times["epoch"].append(1000 * (time.perf_counter() - start))
    for trial_id, values in live:
        final = {"best_val_acc": max(values), **{key: 0.5 for key in FINAL_KEYS if key != "best_val_acc"}}
        start = time.perf_counter()
        bridge.on_trial_complete(trial_id, final)
        times["complete"].append(1000 * (time.perf_counter() - start))
    for _ in range(concurrent):
        start = time.perf_counter()
        progress.status()
        times["progress"].append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 500, 2000])
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--waves", type=int, default=2, help="waves of live trials measured at each size")
    parser.add_argument("--postgres-url", default=None, help="a PostgreSQL database instead of a SQLite file")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    folder = Path(tempfile.mkdtemp(prefix="drltune-driver-cost-"))
    url = args.postgres_url or f"sqlite:///{folder}/bench.db"
    space = load_space(DEFAULT_SPACE, EPOCHS)
    base = base_config(SearchSpec(), space.fixed).replace(epochs=EPOCHS)
    target = max(args.sizes) + 10 * args.concurrent * args.waves * len(args.sizes)
    pruner, _ = make_pruner("median", EPOCHS, target)
    sampler = TrialSeededSampler(lambda seed: make_sampler("tpe", seed, target, space)[0], 0)
    study = optuna.create_study(study_name=f"driver-cost-{uuid.uuid4().hex[:6]}", storage=open_storage(url, True),
                                sampler=sampler, pruner=pruner, direction="maximize")
    describe_study(study)
    publish = DashboardPublisher(study, url, warn=print)
    bridge = OptunaBridge(study, space, base, SharedBudget(study, target, max_retries=2), threads=1)
    progress = Progress(study, target, echo=lambda line: None, running=lambda: len(bridge.live))
    bridge.on_outcome = lambda outcome: publish(outcome.number)
    bridge.before_tell = publish.attach_artifacts
    rng = random.Random(0)

    print(f"driver cost per event (ms, median / p90), {'PostgreSQL' if args.postgres_url else 'SQLite'}, "
          f"default space, median pruner, TPE, {args.concurrent} live trials x {LIVE_EPOCHS} epochs per wave")
    print(f"{'trials in study':>15} {'fill s':>7} {'suggest':>14} {'epoch':>12} {'complete':>14} "
          f"{'progress':>12} {'driver RSS MB':>14}")
    for size in sorted(args.sizes):
        have = len(study.get_trials(deepcopy=False))
        start = time.perf_counter()
        fill(bulk_writer(url, study.study_name), space, base, max(0, size - have), rng)
        filled = time.perf_counter() - start
        times: dict[str, list[float]] = {}
        for _ in range(args.waves):
            for key, values in measure(bridge, progress, args.concurrent, rng).items():
                times.setdefault(key, []).extend(values)

        def cell(key: str) -> str:
            values = sorted(times[key])
            return f"{statistics.median(values):.1f} / {values[int(0.9 * (len(values) - 1))]:.1f}"

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{size:>15} {filled:>7.0f} {cell('suggest'):>14} {cell('epoch'):>12} {cell('complete'):>14} "
              f"{cell('progress'):>12} {rss:>14.0f}", flush=True)
    if not args.postgres_url:
        print(f"SQLite file: {os.path.getsize(folder / 'bench.db') / 1e6:.0f} MB at "
              f"{len(study.get_trials(deepcopy=False))} trials")


if __name__ == "__main__":
    main()
