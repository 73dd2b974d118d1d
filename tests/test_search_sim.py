"""The search simulator (benchmarks/search_sim.py) on a tiny hand-made table: deterministic for a
seed, regret computed from the held-out seeds, never more trials running than workers."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import search_sim as sim  # noqa: E402
from curve_table import draw_configs  # noqa: E402

EPOCHS = 6


def curve(final: float, epochs: int = EPOCHS) -> list[float]:
    return [round(final * (e + 1) / epochs, 4) for e in range(epochs)]


@pytest.fixture(scope="module")
def table() -> sim.Table:
    """16 configs (2 per method). Visible seeds: val ends at 0.2 + 0.04 * id (config 15 looks best);
    test accuracy 0.3 + 0.01 * id, except config 3 on the held-out seeds: 0.9, so the true best
    is config 3, which no search can tell from the seeds it sees."""
    from drltune.search.runner import DEFAULT_SPACE
    from drltune.search.space_file import load_space

    configs = []
    for c in draw_configs(16, EPOCHS):
        runs = {}
        for seed in (*sim.VISIBLE_SEEDS, *sim.HELDOUT_SEEDS):
            val = curve(0.2 + 0.04 * c["id"] + 0.001 * seed)
            test = [0.9 if c["id"] == 3 and seed in sim.HELDOUT_SEEDS else 0.3 + 0.01 * c["id"]] * EPOCHS
            runs[seed] = sim.Run(val, test, [1.0 + 0.1 * c["id"]] * EPOCHS)
        configs.append(sim.Config(c["id"], c["params"], runs))
    return sim.Table(configs, load_space(DEFAULT_SPACE, EPOCHS), EPOCHS)


def test_true_quality_is_the_heldout_test_accuracy_at_the_val_selected_epoch() -> None:
    run = sim.Run(val=[0.1, 0.5, 0.5, 0.2], test=[0.9, 0.4, 0.8, 0.7], seconds=[1.0] * 4)
    assert run.selected == 1  # the first maximum of val, as the trainer selects
    config = sim.Config(0, {"method": "baseline"}, {3: run, 4: sim.Run([0.3, 0.1], [0.6, 0.2], [1.0, 1.0])})
    assert config.quality() == pytest.approx((0.4 + 0.6) / 2)
    failed = sim.Run([0.3], [0.9], [1.0], error="NonFiniteLoss")
    assert sim.Config(1, {"method": "baseline"}, {3: failed, 4: failed}).quality() == 0.0


def test_regret_is_the_best_true_quality_minus_the_returned_configs(table: sim.Table) -> None:
    row = sim.run_one_on(table, "tpe", seed=0, trials=12, workers=2)
    returned = row["config"]
    assert table.best_quality == pytest.approx(0.9)
    assert row["regret"] == pytest.approx(100 * (0.9 - table.quality[returned]))
    assert row["regret"] > 0 or returned == 3


def test_a_search_is_deterministic_for_its_seed(table: sim.Table) -> None:
    for route in ("median", "stock", "median-forgive"):
        a = sim.simulate(table, sim.ROUTES[route], seed=5, trials=12, workers=2)
        b = sim.simulate(table, sim.ROUTES[route], seed=5, trials=12, workers=2)
        assert a == b
    other = [sim.simulate(table, sim.ROUTES["random"], seed=s, trials=12, workers=2).methods for s in (1, 2, 3)]
    assert len({tuple(sorted(m.items())) for m in other}) > 1  # another seed, another search


def test_no_more_trials_run_at_once_than_workers(table: sim.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    peaks = []
    original = sim.Clock.free

    def free(clock: sim.Clock) -> None:
        peaks.append(clock.peak)
        original(clock)

    monkeypatch.setattr(sim.Clock, "free", free)
    for workers in (1, 3):
        peaks.clear()
        sim.simulate(table, sim.ROUTES["tpe"], seed=1, trials=9, workers=workers)
        assert max(peaks) == workers


def test_the_clock_counts_each_epochs_recorded_seconds(table: sim.Table) -> None:
    # config i's epochs take 1 + 0.1 * i seconds: one worker serialises them exactly
    one = sim.simulate(table, sim.ROUTES["tpe"], seed=2, trials=6, workers=1)
    assert one.epochs == 6 * EPOCHS
    assert one.seconds == pytest.approx(sum(EPOCHS * (1 + 0.1 * i) for i in one.trial_configs))
    two = sim.simulate(table, sim.ROUTES["tpe"], seed=2, trials=6, workers=2)
    assert max(EPOCHS * (1 + 0.1 * i) for i in two.trial_configs) <= two.seconds < one.seconds


def test_pruning_trains_fewer_epochs_and_racing_returns_the_best_mean(table: sim.Table) -> None:
    unpruned = sim.simulate(table, sim.ROUTES["tpe"], seed=3, trials=16, workers=2)
    pruned = sim.simulate(table, sim.ROUTES["median"], seed=3, trials=16, workers=2)
    assert pruned.epochs < unpruned.epochs == 16 * EPOCHS
    raced = sim.simulate(table, sim.ROUTES["median-race3"], seed=3, trials=16, workers=2)
    assert raced.epochs > pruned.epochs  # the race's extra seeds are counted
    assert raced.raced_val == pytest.approx(
        sum(max(table.by_id[raced.config].runs[s].val) for s in sim.VISIBLE_SEEDS) / 3)


def test_bootstrap_interval_excludes_zero_only_for_a_real_difference() -> None:
    low, high = sim.bootstrap([1.0, 1.2, 0.8, 1.1, 0.9] * 8)
    assert 0 < low < 1.0 < high
    low, high = sim.bootstrap([1.0, -1.0] * 20)
    assert low < 0 < high


def test_each_world_holds_every_method() -> None:
    from curve_table import world_of

    configs = draw_configs(32, EPOCHS)
    methods = {c["params"]["method"] for c in configs}
    for world in ("even", "odd"):
        assert {c["params"]["method"] for c in configs if world_of(c["id"], len(methods)) == world} == methods


def test_forgiving_sampler_hides_only_trials_pruned_at_the_first_verdict() -> None:
    """TPE behind ForgivingSampler does not see a trial pruned at step <= the first verdict; one
    pruned later, and complete ones, it sees as usual."""
    import optuna
    from optuna.trial import TrialState

    seen: list[list[int]] = []

    class Spy(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, dist):  # type: ignore[no-untyped-def]
            seen.append([t.number for t in study._get_trials(deepcopy=False, states=(TrialState.PRUNED,
                                                                                      TrialState.COMPLETE))])
            return super().sample_independent(study, trial, name, dist)

    study = optuna.create_study(direction="maximize", sampler=sim.ForgivingSampler(Spy(seed=0), before_step=2))
    for number, last_step in enumerate((1, 2, 3)):  # pruned after epochs 1, 2 (first verdict), 3
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        for step in range(last_step + 1):
            trial.report(0.1, step)
        study.tell(trial, state=TrialState.PRUNED)
    done = study.ask()
    done.suggest_float("x", 0, 1)
    study.tell(done, 0.5)
    seen.clear()
    study.ask().suggest_float("x", 0, 1)
    assert seen == [[2, 3]]


def test_a_recorded_table_keeps_its_own_methods_after_the_space_gains_some(tmp_path: Path) -> None:
    """A table recorded over two methods: resuming its recording runs its stored configs, and the
    simulator proposes only those two methods and splits worlds by their count (not today's space's)."""
    import json

    from curve_table import chunk_file, table_configs

    stored = [{"id": i, "params": {"method": ("baseline", "dr")[i % 2]}, "trial": {}} for i in range(4)]
    (tmp_path / "configs.json").write_text(json.dumps({"epochs": EPOCHS, "configs": stored}))
    assert table_configs(tmp_path, 4, EPOCHS) == stored
    with pytest.raises(SystemExit, match="holds 4 configs"):
        table_configs(tmp_path, 5, EPOCHS)
    for c in stored:
        for seed in (*sim.VISIBLE_SEEDS, *sim.HELDOUT_SEEDS):
            row = {"config": c["id"], "seed": seed, "method": c["params"]["method"], "params": c["params"],
                   "val": curve(0.5), "test": curve(0.4), "seconds": [1.0] * EPOCHS, "reinits": [],
                   "val_audio": curve(0.3), "val_visual": curve(0.2), "error": None}
            with chunk_file(tmp_path, c["id"]).open("a") as f:
                f.write(json.dumps(row) + "\n")
    odd = sim.Table.load(tmp_path, "odd", EPOCHS)
    assert list(odd.space.methods) == ["baseline", "dr"]
    assert sorted(c.id for c in odd.configs) == [2, 3]  # round 1 of a 2-method cycle
