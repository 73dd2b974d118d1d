"""Simulated searches on the learning-curve table: which route returns the best config, and at what cost?

A simulated search runs drltune's own search machinery (the `OptunaBridge` that `drltune search`
runs under Ray: its sampler, its re-init-aware pruner, its budget and trial bookkeeping) on a
simulated clock with N workers, without Ray and without training: each trial's epochs come from
the table (`benchmarks/curve_table.py`). A proposal is answered by its nearest recorded
configuration of the same method (distance over the space's normalised dimensions), on the
search's training seed, so a search replays real curves, re-init dips and NaN failures included,
and an epoch takes the seconds it took when recorded.

Scoring. The seeds a search sees (0-2: one per search, as `drltune search` trains every trial on
its --seed; racing routes see the others) are never the seeds that score it: a config's *true
quality* is its mean over the held-out seeds (3 and 4, those recorded for every config of the
world) of the test accuracy at the epoch selected on validation, what a user gets from `drltune train` on a fresh seed. Regret of a search = the best
true quality in the world's configs minus the true quality of the config it returns (points).
Routes run on the same search seeds; paired differences get bootstrap 95 % intervals.

Worlds. `--world even|odd|all`: the table's configs in even rounds of the method cycle (ids 0-7,
16-23, ...), in odd rounds, or all; each world holds every method. Settings are chosen on one
world and set of search seeds and reported on the other (docs/benchmarks.md).

    python benchmarks/search_sim.py [--routes median,tpe,...] [--seeds 0-99] [--world all]
        [--trials 64] [--epochs 30] [--workers 2] [--jobs 2] [--out DIR] [--report] [--fidelity]
"""
from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from collections.abc import Container, Sequence
from typing import Any, Callable, Iterable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curve_table import OUT as TABLE_DIR  # noqa: E402
from curve_table import load_runs, world_of  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "drltune" / "search" / "search_benchmark.json"
VISIBLE_SEEDS = (0, 1, 2)
# Weights of the nearest-neighbour distance per searched dimension ("*": every other one, i.e. the
# method's own parameters). Chosen by --fit-weights on world "even" (leave-one-out Spearman 0.70 there
# against 0.47 with equal weights); docs/benchmarks.md reports the fidelity on world "odd".
DISTANCE_WEIGHTS = {"lr": 16.0, "batch_size": 4.0, "optimizer": 1.0, "fusion": 1.0, "*": 0.1}
HELDOUT_SEEDS = (3, 4)
QUALITY_SEEDS = HELDOUT_SEEDS  # what Table.load scores on; --quality-seeds (docs/benchmarks.md's figures: 3)


# ---- the table and its surrogate -------------------------------------------------------------------
@dataclass
class Run:
    """One recorded (config, seed): per-epoch curves; `error` when it stopped on a non-finite loss."""

    val: list[float]
    test: list[float]
    seconds: list[float]
    reinits: list[int] = field(default_factory=list)
    val_audio: list[float] = field(default_factory=list)
    val_visual: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def selected(self) -> int:
        """The epoch the trainer selects: the first maximum of validation accuracy."""
        return max(range(len(self.val)), key=lambda i: (self.val[i], -i))


@dataclass
class Config:
    id: int
    params: dict[str, Any]
    runs: dict[int, Run]

    @property
    def method(self) -> str:
        return self.params["method"]

    def quality(self, seeds: Iterable[int] = HELDOUT_SEEDS) -> float:
        """Mean test accuracy at the validation-selected epoch over `seeds` (a failed run counts 0)."""
        values = [self.runs[s].test[self.runs[s].selected] if self.runs[s].val and not self.runs[s].error else 0.0
                  for s in seeds if s in self.runs]
        return statistics.mean(values) if values else math.nan


class Table:
    """The world a simulated search lives in: configs, their runs, nearest-neighbour lookup."""

    def __init__(self, configs: list[Config], space: Any, epochs: int, quality_seeds: tuple[int, ...] = HELDOUT_SEEDS,
                 visible: tuple[int, ...] = VISIBLE_SEEDS, weights: dict[str, float] | None = None) -> None:
        self.epochs, self.space, self.visible = epochs, space, visible
        self.weights = {**DISTANCE_WEIGHTS, **(weights or {})}
        seen = [c for c in configs if all(s in c.runs for s in visible)]
        recorded = tuple(s for s in quality_seeds if seen and all(s in c.runs for c in seen))
        if not recorded:  # a table still recording
            print(f"note: no held-out seed of {quality_seeds} is recorded for every config yet: true quality is "
                  f"taken on the visible seeds {visible} (not held out)", file=sys.stderr)
        quality_seeds = recorded or visible
        self.quality_seeds = quality_seeds
        self.configs = [c for c in configs
                        if all(s in c.runs for s in visible) and all(s in c.runs for s in quality_seeds)]
        self.by_method: dict[str, list[Config]] = {}
        for c in self.configs:
            self.by_method.setdefault(c.method, []).append(c)
        self.dims = {m: [*space.top, *dims] for m, dims in space.methods.items()}
        self.quality = {c.id: c.quality(quality_seeds) for c in self.configs}
        self.by_id = {c.id: c for c in self.configs}
        self.best_quality = max(self.quality.values())

    @classmethod
    def load(cls, folder: Path = TABLE_DIR, world: str = "all", epochs: int = 30) -> "Table":
        """The world's configs from the table, scored on QUALITY_SEEDS (main's --quality-seeds)."""
        from drltune.search.runner import DEFAULT_SPACE
        from drltune.search.space_file import load_space

        runs = load_runs(folder)
        # The table's methods, not today's space's: a method added since it was recorded has no curves
        # and must not shift which world a config belongs to.
        recorded = {r["method"] for r in runs}
        space = load_space(DEFAULT_SPACE, epochs)
        space = dataclasses.replace(space, methods={m: d for m, d in space.methods.items() if m in recorded})
        configs: dict[int, Config] = {}
        for r in runs:
            if world != "all" and world_of(r["config"], len(recorded)) != world:
                continue
            c = configs.setdefault(r["config"], Config(r["config"], r["params"], {}))
            c.runs[r["seed"]] = Run(r["val"], r["test"], r["seconds"], r["reinits"], r["val_audio"],
                                    r["val_visual"], r["error"])
        return cls(sorted(configs.values(), key=lambda c: c.id), space, epochs, QUALITY_SEEDS)

    @staticmethod
    def _coordinate(dim: Any, value: Any) -> float | Any:
        """A number in [0, 1] (log scale where the space is; numeric choices by their rank), else the value."""
        if dim.kind in ("int", "float"):
            lo, hi, x = float(dim.low), float(dim.high), float(value)
            if dim.log:
                lo, hi, x = math.log(lo), math.log(hi), math.log(x)
            return (x - lo) / (hi - lo) if hi > lo else 0.0
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in dim.choices)
        if numeric and len(dim.choices) > 1:
            ranked = sorted(dim.choices)
            return ranked.index(value) / (len(ranked) - 1)
        return value

    def distance(self, method: str, a: dict[str, Any], b: dict[str, Any]) -> float:
        total = 0.0
        for dim in self.dims[method]:
            if not dim.searched:
                continue
            x, y = self._coordinate(dim, a[dim.name]), self._coordinate(dim, b[dim.name])
            weight = self.weights.get(dim.name, self.weights["*"])
            total += weight * ((x - y) ** 2 if isinstance(x, float) else float(x != y))
        return total

    def nearest(self, params: dict[str, Any], exclude: int | Container[int] | None = None) -> Config:
        """The recorded config of the same method closest to `params` (ties: the lower id), other than
        `exclude` (one id, or ids) while any other is left."""
        excluded = {exclude} if isinstance(exclude, int) else set(exclude or ())
        pool = [c for c in self.by_method[params["method"]] if c.id not in excluded] or self.by_method[params["method"]]
        return min(pool, key=lambda c: (self.distance(params["method"], params, c.params), c.id))

    def best_val(self, config: Config, seeds: Iterable[int]) -> float:
        """Mean best val accuracy over `seeds` (a failed run counts 0): what a search can see."""
        return statistics.mean(max(config.runs[s].val) if config.runs[s].val and not config.runs[s].error else 0.0
                               for s in seeds)

    def oracle_regrets(self) -> dict[str, float]:
        """The regret of searches that trained every config of the world: on one visible seed (mean
        over the seeds) and on all of them. The noise floor no route can beat with that knowledge."""
        one = [self.best_quality - self.quality[max(self.configs, key=lambda c: (self.best_val(c, [s]), -c.id)).id]
               for s in self.visible]
        every = max(self.configs, key=lambda c: (self.best_val(c, self.visible), -c.id))
        return {"one_seed": 100 * statistics.mean(one), "all_seeds": 100 * (self.best_quality - self.quality[every.id])}

    def fidelity(self) -> dict[str, float]:
        """Leave-one-out: each config's true quality predicted by its nearest other config of the
        same method; Spearman rank correlation over the world (and a method-mean predictor's)."""
        from scipy.stats import spearmanr

        truth, nn, method_mean = [], [], []
        for c in self.configs:
            if len(self.by_method[c.method]) < 2:
                continue
            truth.append(self.quality[c.id])
            nn.append(self.quality[self.nearest(c.params, exclude=c.id).id])
            others = [self.quality[o.id] for o in self.by_method[c.method] if o.id != c.id]
            method_mean.append(statistics.mean(others))
        return {"configs": len(truth), "spearman_nn": float(spearmanr(truth, nn).statistic),
                "spearman_method_mean": float(spearmanr(truth, method_mean).statistic)}


WEIGHT_GRID = {"lr": (4, 16, 32, 64), "batch_size": (1, 2, 4, 8), "optimizer": (0.5, 1, 2, 4), "fusion": (0.25, 0.5, 1),
               "*": (0.1, 0.25, 0.5, 1)}


def fit_weights(table: Table) -> list[tuple[float, dict[str, float]]]:
    """Every weight setting of WEIGHT_GRID with its leave-one-out fidelity on `table`, best first
    (choose them on one world, report the fidelity on the other)."""
    import itertools

    scored = []
    for values in itertools.product(*WEIGHT_GRID.values()):
        weights = dict(zip(WEIGHT_GRID, values))
        trial = Table(table.configs, table.space, table.epochs, table.quality_seeds, table.visible, weights)
        scored.append((trial.fidelity()["spearman_nn"], weights))
    return sorted(scored, key=lambda x: -x[0])


# ---- a candidate the benchmark tried (it did not win: docs/benchmarks.md) ------------------------------------

class _ForgivenStudy(optuna.Study):
    """The study as a forgiving sampler sees it: without trials pruned at or before `last_step`."""

    def __init__(self, study: optuna.Study, last_step: int) -> None:
        super().__init__(study_name=study.study_name, storage=study._storage, sampler=study.sampler,
                         pruner=study.pruner)
        self._last_step = last_step

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = super()._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if not (t.state == TrialState.PRUNED
                                          and (t.last_step is None or t.last_step <= self._last_step))]


class ForgivingSampler(optuna.samplers.BaseSampler):
    """`inner` (TPE) without the trials pruned at the first verdict (step <= `before_step`).

    TPE ranks every pruned trial below every complete one, so a slow starter cut at the first
    verdict marks its whole region bad; here such a trial is missing data, not a bad result."""

    def __init__(self, inner: optuna.samplers.BaseSampler, before_step: int) -> None:
        self.inner, self.before_step = inner, before_step
        self._views: dict[int, _ForgivenStudy] = {}

    def _view(self, study: optuna.Study) -> optuna.Study:
        key = id(study)
        if key not in self._views or self._views[key]._storage is not study._storage:
            self._views = {key: _ForgivenStudy(study, self.before_step)}
        return self._views[key]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


# ---- routes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """One way of searching: sampler, pruner and what happens after the search."""

    name: str
    sampler: str = "tpe"
    pruner: str = "none"
    startup: int | None = None
    warmup: int | None = None
    stock: bool = False  # Ray's OptunaSearch + ASHA: stopped trials told COMPLETE with their last value
    forgive: bool = False  # TPE does not see trials pruned at the first verdict
    race: int = 0  # re-run the top K on the other visible seeds; return the best mean
    trials: int | None = None  # None: --trials
    description: str = ""


ROUTES: dict[str, Route] = {r.name: r for r in (
    Route("random", sampler="random", description="random search, no pruning"),
    Route("tpe", description="TPE, no pruning"),
    Route("median", pruner="median", description="drltune's median pruner at its current defaults"),
    Route("sha", pruner="sha", description="successive halving"),
    Route("hyperband", pruner="hyperband", description="Hyperband"),
    Route("stock", stock=True, description="Ray OptunaSearch + ASHA semantics (stopped = COMPLETE, last value)"),
    Route("median-w3", pruner="median", warmup=3, description="median, first verdict at epoch 3"),
    Route("median-w5", pruner="median", warmup=5, description="median, first verdict at epoch 5"),
    Route("median-forgive-w3", pruner="median", warmup=3, forgive=True,
          description="median, first verdict at epoch 3, forgiving TPE"),
    Route("median-forgive", pruner="median", forgive=True,
          description="median; TPE does not learn from trials pruned at the first verdict"),
    Route("median-race3", pruner="median", race=3, description="median, then the top 3 raced on 2 more seeds"),
    Route("tpe-race3", race=3, trials=48, description="TPE unpruned, 48 trials, then the top 3 raced"),
    Route("median-w10", pruner="median", warmup=10, description="median, first verdict at epoch 10"),
    Route("median-w10-race3-t48", pruner="median", warmup=10, race=3, trials=48,
          description="median, first verdict at epoch 10, 48 trials, racing the top 3"),
    Route("median-w10-race3", pruner="median", warmup=10, race=3,
          description="median, first verdict at epoch 10, racing the top 3"),
    Route("hyperband-race3", pruner="hyperband", race=3, description="Hyperband, racing the top 3"),
    Route("tpe-race3-t32", race=3, trials=32, description="TPE unpruned, 32 trials, racing the top 3"),
    Route("median-forgive-race3", pruner="median", forgive=True, race=3,
          description="median + forgiving TPE + racing the top 3"),
    Route("median-forgive-race2", pruner="median", forgive=True, race=2,
          description="median + forgiving TPE + racing the top 2"),
    Route("median-race3-t48", pruner="median", race=3, trials=48, description="median, 48 trials, racing the top 3"),
    Route("median-forgive-race3-t48", pruner="median", forgive=True, race=3, trials=48,
          description="median + forgiving TPE, 48 trials, racing the top 3"),
)}


class LocalBudget:
    """`SharedBudget`'s decisions for one driver with no other driver and no stale trial:
    "done" once --trials trials finished, "wait" while running ones fill the rest, else "open"."""

    def __init__(self, study: optuna.Study, target: int) -> None:
        self.study, self.target, self.held_by_others = study, target, []

    def state(self) -> str:
        from drltune.search.liveness import FINISHED_OK

        finished = len(self.study.get_trials(deepcopy=False, states=FINISHED_OK))
        running = len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        return "done" if finished >= self.target else "wait" if finished + running >= self.target else "open"

    def claim(self, trial: optuna.Trial) -> bool:
        return True


@dataclass
class Outcome:
    """What one simulated search returned and spent."""

    config: int  # the table config whose curves the returned trial replayed
    best_val: float  # the returned trial's best validation accuracy (single seed), as the search shows it
    test_acc: float  # its test accuracy at the selected epoch (same seed)
    raced_val: float  # the mean it was chosen on (racing), else best_val
    epochs: int
    seconds: float
    states: dict[str, int]
    methods: dict[str, int]
    trial_configs: list[int] = field(default_factory=list)  # the table config each trial replayed, in order


class Clock:
    """N workers on a simulated clock: events are (time, order, trial), served in time order."""

    def __init__(self, workers: int) -> None:
        self.workers, self.now, self.events, self.order, self.busy, self.peak = workers, 0.0, [], 0, 0, 0

    def start(self, after: float, key: Any) -> None:
        self.busy += 1
        self.peak = max(self.peak, self.busy)
        assert self.busy <= self.workers, "more trials running than workers"
        self.schedule(after, key)

    def schedule(self, after: float, key: Any) -> None:
        heapq.heappush(self.events, (self.now + after, self.order, key))
        self.order += 1

    def next(self) -> Any:
        self.now, _, key = heapq.heappop(self.events)
        return key

    def free(self) -> None:
        self.busy -= 1


def epoch_record(run: Run, epoch: int) -> dict[str, Any]:
    return {"epoch": epoch, "val_acc": run.val[epoch], "val_acc_audio": run.val_audio[epoch] if run.val_audio else None,
            "val_acc_visual": run.val_visual[epoch] if run.val_visual else None, "reinit": epoch in run.reinits,
            "seconds": run.seconds[epoch]}


def final_result(run: Run, last: int) -> dict[str, Any]:
    best = run.selected
    return {"epoch": last, "val_acc": run.val[last], "best_val_acc": run.val[best], "best_epoch": best,
            "test_acc": run.test[best], "test_f1": math.nan, "test_acc_audio": math.nan, "test_acc_visual": math.nan}


def _sampler(route: Route, seed: int, trials: int, warmup: int | None) -> optuna.samplers.BaseSampler:
    """The sampler exactly as `drltune search` builds it (one seeded sampler per trial), each trial's
    behind a ForgivingSampler on the forgiving routes."""
    from drltune.search.samplers import search_sampler

    wrap = (lambda inner: ForgivingSampler(inner, warmup)) if route.forgive else None
    return search_sampler(route.sampler, seed, trials, wrap=wrap)[0]


def simulate(table: Table, route: Route, seed: int, trials: int = 64, workers: int = 2,
             distinct: bool = True) -> Outcome:
    """One search of `route` with search seed `seed` (sampler seed; training seed = visible[seed % 3])."""
    from drltune.config import TrialConfig
    from drltune.search.bridge import OptunaBridge
    from drltune.search.pruning import make_pruner, pruner_defaults

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    trials = route.trials or trials
    epochs, last = table.epochs, table.epochs - 1
    train_seed = table.visible[seed % len(table.visible)]
    warmup = route.warmup if route.warmup is not None else pruner_defaults("median", epochs, trials)[1]
    pruner, _ = make_pruner(route.pruner, epochs, trials, route.startup, route.warmup)
    if route.stock:  # OptunaSearch holds one sampler, seeded once (as search_efficiency.py's stock route)
        from drltune.search.samplers import make_sampler

        sampler = make_sampler(route.sampler, seed, trials)[0]
    else:
        sampler = _sampler(route, seed, trials, warmup)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=pruner if not route.stock else optuna.pruners.NopPruner())
    base = TrialConfig.from_dict({"dataset": "synthetic", "epochs": epochs, "seed": train_seed, "threads": 1})
    clock = Clock(workers)
    runs: dict[str, tuple[Config, Run]] = {}
    epochs_run = 0
    if route.stock:
        searcher = StockRoute(study, table, trials, epochs, warmup)
    else:
        bridge = OptunaBridge(study, table.space, base, LocalBudget(study, trials), max_failed=max(10, trials // 10))
        searcher = BridgeRoute(bridge)
    n_ids = 0
    while True:
        while clock.busy < workers and not searcher.finished:
            tid = f"t{n_ids}"
            params = searcher.suggest(tid)
            if params is None:
                break
            n_ids += 1
            # A real search's proposals are distinct configs: a proposal answered by a config this
            # search already ran takes the nearest one it has not (docs/benchmarks.md: the real-vs-simulated check).
            config = table.nearest(params, exclude={c.id for c, _ in runs.values()} if distinct else None)
            runs[tid] = (config, config.runs[train_seed])
            clock.start(runs[tid][1].seconds[0], (tid, 0))
        if not clock.events:
            break
        tid, epoch = clock.next()
        config, run = runs[tid]
        epochs_run += 1
        failed = run.error is not None and epoch == len(run.val) - 1
        stop = searcher.epoch(tid, run, epoch, last, failed)
        if stop or epoch == last or failed:
            clock.free()
        else:
            clock.schedule(run.seconds[epoch + 1], (tid, epoch + 1))
    outcome = searcher.returned()
    if outcome is None:
        return Outcome(-1, math.nan, math.nan, math.nan, epochs_run, clock.now, searcher.states(), {},
                       [c.id for c, _ in runs.values()])
    tid, chosen_val = outcome
    config, run = runs[tid]
    raced_val = chosen_val
    if route.race:
        config, raced_val, more_epochs, clock.now = race(table, searcher.ranked(runs), route.race, train_seed,
                                                          workers, clock.now)
        epochs_run += more_epochs
        run = config.runs[train_seed]
    methods: dict[str, int] = {}
    for c, _ in runs.values():
        methods[c.method] = methods.get(c.method, 0) + 1
    return Outcome(config.id, run.val[run.selected] if not run.error else 0.0,
                   run.test[run.selected] if not run.error else 0.0, raced_val, epochs_run, clock.now,
                   searcher.states(), methods, [c.id for c, _ in runs.values()])


def race(table: Table, ranked: list[Config], k: int, train_seed: int, workers: int,
         now: float) -> tuple[Config, float, int, float]:
    """Re-run the top `k` distinct configs on the other visible seeds (N workers, longest first);
    the winner is the best mean of best validation accuracy over all its visible seeds."""
    top = []
    for c in ranked:
        if c not in top:
            top.append(c)
        if len(top) == k:
            break
    others = [s for s in table.visible if s != train_seed]
    jobs = sorted((sum(c.runs[s].seconds) for c in top for s in others), reverse=True)
    finish = [now] * workers
    for seconds in jobs:
        i = min(range(workers), key=lambda w: finish[w])
        finish[i] += seconds
    epochs = sum(len(c.runs[s].val) for c in top for s in others)

    best = max(top, key=lambda c: (table.best_val(c, table.visible), -top.index(c)))
    return best, table.best_val(best, table.visible), epochs, max(finish)


class BridgeRoute:
    """drltune's route: the OptunaBridge exactly as `drltune search` drives it through Ray."""

    def __init__(self, bridge: Any) -> None:
        self.bridge, self.finished = bridge, False

    def suggest(self, tid: str) -> dict[str, Any] | None:
        from ray.tune.search import Searcher

        answer = self.bridge.suggest(tid)
        if answer == Searcher.FINISHED:
            self.finished = True
            return None
        if answer is None:
            return None
        return dict(self.bridge.live[tid].trial.params)

    def epoch(self, tid: str, run: Run, epoch: int, last: int, failed: bool) -> bool:
        record = epoch_record(run, epoch)
        result = final_result(run, last) if epoch == last else {"epoch": epoch, "val_acc": run.val[epoch]}
        stop = self.bridge.on_epoch(tid, {**result, "record": json.dumps(record)})
        if failed:
            self.bridge.on_trial_complete(tid, {"error": run.error or "failed", "val_acc": math.nan})
        elif stop or epoch == last:
            self.bridge.on_trial_complete(tid, result if epoch == last else None)
        return stop

    def returned(self) -> tuple[str, float] | None:
        best = max(self._complete(), key=lambda t: t.value, default=None)  # study.best_trial: the first max
        if best is None:
            return None
        return best.user_attrs["ray_trial_id"], best.value

    def _complete(self) -> list[Any]:
        return self.bridge.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def ranked(self, runs: dict[str, tuple[Config, Run]]) -> list[Config]:
        done = sorted(self._complete(), key=lambda t: (-t.value, t.number))
        return [runs[t.user_attrs["ray_trial_id"]][0] for t in done]

    def states(self) -> dict[str, int]:
        trials = self.bridge.study.get_trials(deepcopy=False)
        return {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}


class StockRoute:
    """Ray's `OptunaSearch` with `ASHAScheduler` (grace = drltune's first rung, factor 3): Ray's own
    ASHA decides on the *last* value; a stopped trial is told COMPLETE with its last value; the
    search returns the full-budget trial with the best best-so-far (as `search_efficiency.py`)."""

    def __init__(self, study: optuna.Study, table: Table, trials: int, epochs: int, grace: int) -> None:
        from ray.tune.schedulers import ASHAScheduler

        self.study, self.table, self.trials, self.finished = study, table, trials, False
        self.asha = ASHAScheduler(time_attr="training_iteration", metric="val_acc", mode="max", max_t=epochs,
                                  grace_period=grace, reduction_factor=3)
        self.live: dict[str, optuna.Trial] = {}
        self.full: list[tuple[float, int, str]] = []
        self.asked = 0

    def suggest(self, tid: str) -> dict[str, Any] | None:
        if self.asked >= self.trials:
            self.finished = True
            return None
        self.asked += 1
        trial = self.study.ask()
        self.table.space.sample(trial)
        self.live[tid] = trial
        self.asha.on_trial_add(None, SimpleNamespace(trial_id=tid))  # one bracket: no random choice
        return dict(trial.params)

    def epoch(self, tid: str, run: Run, epoch: int, last: int, failed: bool) -> bool:
        trial = self.live[tid]
        trial.report(run.val[epoch], epoch)
        if failed:
            self.study.tell(trial, state=TrialState.FAIL)
            return True
        action = self.asha.on_trial_result(None, SimpleNamespace(trial_id=tid),
                                           {"training_iteration": epoch + 1, "val_acc": run.val[epoch]})
        if epoch == last or action == "STOP":
            self.study.tell(trial, run.val[epoch])
            if epoch == last:
                self.full.append((max(run.val), -trial.number, tid))
            return True
        return False

    def returned(self) -> tuple[str, float] | None:
        if not self.full:
            return None
        value, _, tid = max(self.full)
        return tid, value

    def ranked(self, runs: dict[str, tuple[Config, Run]]) -> list[Config]:
        return [runs[tid][0] for _, _, tid in sorted(self.full, reverse=True)]

    def states(self) -> dict[str, int]:
        trials = self.study.get_trials(deepcopy=False)
        return {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}


# ---- many searches, and their figures -------------------------------------------------------------
def run_one(job: tuple[str, str, int, int, int, str]) -> dict[str, Any]:
    route_name, world, seed, trials, workers, folder = job
    return {"world": world, **run_one_on(_table(folder, world), route_name, seed, trials, workers)}


def run_one_on(table: Table, route_name: str, seed: int, trials: int, workers: int) -> dict[str, Any]:
    """One simulated search as a row: its outcome and its regret in points."""
    start = time.perf_counter()
    out = simulate(table, ROUTES[route_name], seed, trials, workers)
    regret = 100 * (table.best_quality - table.quality[out.config]) if out.config >= 0 else math.nan
    row = {"route": route_name, "seed": seed, "trials": trials, "workers": workers, "regret": regret,
           **out.__dict__, "sim_s": time.perf_counter() - start}
    row.pop("trial_configs")
    return row


_TABLES: dict[tuple[str, str], Table] = {}


def _table(folder: str, world: str) -> Table:
    if (folder, world) not in _TABLES:
        _TABLES[(folder, world)] = Table.load(Path(folder), world)
    return _TABLES[(folder, world)]


def bootstrap(diffs: list[float], n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of paired differences."""
    rng = np.random.default_rng(seed)
    d = np.asarray(diffs)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(rows: list[dict[str, Any]], budget: int, reference: str) -> list[str]:
    by_route: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_route.setdefault(r["route"], {})[r["seed"]] = r
    lines = ["| route | what it is | searches | median regret | p90 regret | mean regret | epochs / unpruned | sim wall s "
             f"| mean regret minus {reference} [95 % CI] |", "|---|---|---|---|---|---|---|---|---|"]
    ref = by_route.get(reference, {})
    for name in [n for n in ROUTES if n in by_route]:
        mine = by_route[name]
        regrets = [r["regret"] for r in mine.values()]
        paired = [mine[s]["regret"] - ref[s]["regret"] for s in mine if s in ref]
        ci = bootstrap(paired) if paired and name != reference else None
        diff = f"{statistics.mean(paired):+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "-"
        lines.append(f"| {name} | {ROUTES[name].description} | {len(mine)} | {np.median(regrets):.2f} | {np.percentile(regrets, 90):.2f} "
                     f"| {statistics.mean(regrets):.2f} | {100 * statistics.mean(r['epochs'] for r in mine.values()) / budget:.0f} % "
                     f"| {statistics.mean(r['seconds'] for r in mine.values()):.0f} | {diff} |")
    return lines


REAL_ROUTE = {"none": "tpe", "median": "median", "sha": "sha", "hyperband": "hyperband", "stock": "stock"}


def check_real(real: list[dict[str, Any]], rows: list[dict[str, Any]], epochs: int) -> list[str]:
    """Each real search (search_efficiency.py) against the simulated spread (5th-95th percentile over
    the simulated search seeds) of the same route: best val acc of the returned trial, epochs share."""
    lines = ["| route | real seed | real best val % | simulated 5-95 % (median) | inside | real epochs % "
             "| simulated 5-95 % (median) | inside |", "|---|---|---|---|---|---|---|---|"]
    budget = {r["route"]: r["trials"] * epochs for r in rows}
    for r in real:
        sim_route = REAL_ROUTE[r["route"]]
        mine = [x for x in rows if x["route"] == sim_route]
        if not mine:
            continue
        vals = [100 * x["best_val"] for x in mine]
        shares = [100 * x["epochs"] / budget[sim_route] for x in mine]
        cells = []
        for value, dist in ((100 * r["best_val"], vals), (100 * r["epochs_share"], shares)):
            lo, mid, hi = np.percentile(dist, [5, 50, 95])
            cells.append(f"{value:.1f} | {lo:.1f}-{hi:.1f} ({mid:.1f}) | {'yes' if lo <= value <= hi else 'NO'}")
        lines.append(f"| {r['route']} ({sim_route}) | {r['seed']} | " + " | ".join(cells) + " |")
    return lines


def write_figures(rows: list[dict[str, Any]], route: str, path: Path, world: str, seeds: str, budget: int,
                  quality_seeds: tuple[int, ...]) -> dict:
    """The default route's measured figures, for the line `drltune search` and `explore` print."""
    mine = [r for r in rows if r["route"] == route]
    regrets = [r["regret"] for r in mine]
    chosen = ROUTES[route]
    figures = {"benchmark": "benchmarks/search_sim.py", "route": route, "searches": len(mine), "world": world,
               "settings": {"sampler": chosen.sampler, "pruner": chosen.pruner, "race": chosen.race},
               "seeds": seeds, "trials": mine[0]["trials"], "epochs": budget // mine[0]["trials"],
               "workers": mine[0]["workers"],
               "median_regret": round(float(np.median(regrets)), 2),
               "p90_regret": round(float(np.percentile(regrets, 90)), 2),
               "epochs_share": round(statistics.mean(r["epochs"] for r in mine) / budget, 3),
               "quality_seeds": list(quality_seeds)}
    path.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds.extend(range(int(a), int(b) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--seeds", default="0-99", help="search seeds, e.g. 0-99 or 0,5,7")
    parser.add_argument("--world", choices=("all", "even", "odd"), default="all")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="simulations run side by side (processes)")
    parser.add_argument("--table", type=Path, default=TABLE_DIR)
    parser.add_argument("--out", type=Path, default=Path("studies/search_sim"))
    parser.add_argument("--reference", default="median", help="the route paired differences are taken against")
    parser.add_argument("--quality-seeds", default="3,4",
                        help="held-out seeds that score a config (those recorded for every config of the world)")
    parser.add_argument("--report", action="store_true", help="only print the table of the rows already there")
    parser.add_argument("--fidelity", action="store_true", help="print the surrogate's fidelity and stop")
    parser.add_argument("--fit-weights", action="store_true",
                        help="grid-search the nearest-neighbour distance weights on this world and stop")
    parser.add_argument("--check-real", type=Path, metavar="ROWS",
                        help="real search_efficiency.py rows (JSON lines) to check against the simulated spread")
    parser.add_argument("--write-figures", metavar="ROUTE",
                        help=f"write ROUTE's figures to {FIGURES} (what drltune search and explore quote)")
    args = parser.parse_args()
    global QUALITY_SEEDS
    QUALITY_SEEDS = tuple(parse_seeds(args.quality_seeds))  # forked workers inherit it
    table = Table.load(args.table, args.world)
    print(f"table: {len(table.configs)} configs in world {args.world!r} ({', '.join(f'{m} {len(c)}' for m, c in table.by_method.items())}); "
          f"best true quality {100 * table.best_quality:.2f} % (test accuracy at the val-selected epoch, mean over seeds "
          f"{', '.join(map(str, table.quality_seeds))})", flush=True)
    fid = table.fidelity()
    print(f"surrogate fidelity (leave-one-out, Spearman of true quality): nearest neighbour {fid['spearman_nn']:.2f}, "
          f"method mean {fid['spearman_method_mean']:.2f} over {fid['configs']} configs", flush=True)
    oracle = table.oracle_regrets()
    print(f"noise floor: every config trained on one visible seed, best returned: regret {oracle['one_seed']:.2f} "
          f"points (mean over the seeds); on all {len(table.visible)}: {oracle['all_seeds']:.2f}", flush=True)
    if args.fit_weights:
        for score, weights in fit_weights(table)[:5]:
            print(f"  {score:.3f}  {weights}")
        return
    if args.fidelity:
        return
    routes = [r for r in args.routes.split(",") if r]
    unknown = set(routes) - set(ROUTES)
    if unknown:
        parser.error(f"--routes: unknown {sorted(unknown)}; valid: {','.join(ROUTES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows_file = args.out / "rows.jsonl"
    scored = list(table.quality_seeds)

    def key(r: dict[str, Any]) -> tuple:
        return (r["route"], r["world"], r["seed"], r["trials"], r["workers"], tuple(r.get("quality_seeds", [3])))

    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    done = {key(r) for r in rows}
    seeds = parse_seeds(args.seeds)
    jobs = [(route, args.world, seed, args.trials, args.workers, str(args.table))
            for seed in seeds for route in routes
            if (route, args.world, seed, args.trials, args.workers, tuple(scored)) not in done]
    if jobs and not args.report:
        import multiprocessing

        start = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool, rows_file.open("a") as out:
            for n, row in enumerate(pool.imap_unordered(run_one, jobs, chunksize=1), 1):
                row["quality_seeds"] = scored
                out.write(json.dumps(row) + "\n")
                out.flush()
                rows.append(row)
                if n % 20 == 0 or n == len(jobs):
                    print(f"  {n}/{len(jobs)} searches simulated, {time.perf_counter() - start:.0f} s", flush=True)
    mine = [r for r in rows if r["world"] == args.world and r["seed"] in set(seeds) and r["trials"] == args.trials
            and r["workers"] == args.workers and r["route"] in routes and r.get("quality_seeds", [3]) == scored]
    print(f"\n{len({r['seed'] for r in mine})} search seeds ({args.seeds}), world {args.world}, {args.trials} trials x "
          f"{table.epochs} epochs, {args.workers} workers; regret in points of true quality "
          f"(held-out seeds' test accuracy)")
    print("\n".join(report(mine, args.trials * table.epochs, args.reference)))
    if args.check_real:
        real = [json.loads(line) for line in args.check_real.read_text().splitlines() if line.strip()]
        print(f"\nreal searches ({args.check_real.name}) against the simulated spread of the same route")
        print("\n".join(check_real(real, mine, table.epochs)))
    if args.write_figures:
        figures = write_figures(mine, args.write_figures, FIGURES, args.world, args.seeds, args.trials * table.epochs,
                                table.quality_seeds)
        print(f"\nwrote {FIGURES}: {figures}")


if __name__ == "__main__":
    main()
