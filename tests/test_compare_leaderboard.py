"""The compare leaderboard from stored runs (no training): intervals, verdicts, the 100-column
table, the CSV, explore's figure; and the per-method spaces and published reference configs."""
from __future__ import annotations

import csv
import io
import math
import statistics

import optuna
import pytest
import yaml

from drltune import record
from drltune.compare.leaderboard import (
    leaderboard,
    leaderboard_csv,
    leaderboard_lines,
    stored_leaderboard,
)
from drltune.compare.plan import common_seeds, method_space_text, published_config
from drltune.config import TrialConfig
from drltune.explore.report import leaderboard_figure
from drltune.published import published
from drltune.search.runner import DEFAULT_SPACE

optuna.logging.set_verbosity(optuna.logging.WARNING)
SEEDS = [1, 2, 3]
# test accuracy per method and seed: dr is better than baseline on every seed, by 0.10 +- 0.01;
# ogm_ge is sometimes better, sometimes worse
ACC = {"baseline": [0.50, 0.55, 0.60], "dr": [0.60, 0.66, 0.69], "ogm_ge": [0.45, 0.70, 0.58]}
PUBLISHED = {"baseline": [0.40, 0.42, 0.41], "dr": [0.60, 0.61, 0.59], "ogm_ge": [0.50, 0.52, 0.51]}


def _study(storage, method: str) -> optuna.Study:
    study = optuna.create_study(study_name=f"cmp-{method}", storage=storage, direction="maximize")
    trial = optuna.trial.create_trial(value=0.5, params={}, distributions={},
                                      user_attrs={record.CONFIG: {"seed": 0, "method": method}})
    study.add_trial(trial)
    study.set_user_attr(record.COMPARE, "cmp")
    study.set_user_attr(record.COMPARE_SEEDS, SEEDS)
    for label, values in (("config", ACC[method]), ("ref-published", PUBLISHED[method])):
        for seed, acc in zip(SEEDS, values):
            study.set_user_attr(f"verify:trial0:{label}:seed{seed}", {
                "trial": 0, "label": label, "seed": seed, "method": method, "test_acc": acc, "test_f1": acc,
                "test_acc_audio": acc - 0.1, "test_acc_visual": acc - 0.3, "best_val_acc": acc, "best_epoch": 1})
    return study


@pytest.fixture
def studies():
    storage = optuna.storages.InMemoryStorage()
    return {m: _study(storage, m) for m in ACC}


def _interval(values: list[float]) -> tuple[float, float, float]:
    mean, half = statistics.mean(values), 4.303 * statistics.stdev(values) / math.sqrt(len(values))  # t(0.975, 2)
    return mean, mean - half, mean + half


def test_rows_intervals_and_paired_differences(studies):
    rows = {r["method"]: r for r in leaderboard(studies, {m: 0 for m in studies}, SEEDS)}
    for method, row in rows.items():
        mean, low, high = _interval(ACC[method])
        assert (row["test_acc_mean"], row["test_acc_ci_low"], row["test_acc_ci_high"]) == pytest.approx((mean, low, high))
        assert row["imbalance_mean"] == pytest.approx(0.2)  # audio - visual = (acc - 0.1) - (acc - 0.3)
        assert row["published_acc_mean"] == pytest.approx(statistics.mean(PUBLISHED[method]))
        pub = _interval([a - p for a, p in zip(ACC[method], PUBLISHED[method])])
        assert (row["vs_published"]["diff"], row["vs_published"]["ci_low"]) == pytest.approx(pub[:2])
    dr = rows["dr"]["vs_baseline"]
    assert dr["diff"] == pytest.approx(0.1) and dr["ci_low"] > 0 and dr["verdict"] == "better"
    assert rows["baseline"]["vs_dr"]["verdict"] == "worse"
    assert rows["ogm_ge"]["vs_baseline"]["verdict"] == "not shown to differ"
    assert rows["dr"]["vs_dr"] is None and rows["baseline"]["vs_baseline"] is None


def test_terminal_lines_fit_100_columns_and_say_not_shown_to_differ(studies):
    lines = leaderboard_lines(leaderboard(studies, {m: 0 for m in studies}, SEEDS))
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert [line.split()[0] for line in lines[1:4]] == ["baseline", "dr", "ogm_ge"]
    (ogm,) = [line for line in lines if line.strip().startswith("ogm_ge - baseline")]
    assert ogm.endswith("not shown to differ")
    (dr,) = [line for line in lines if line.strip().startswith("dr - baseline")]
    assert "+0.1000 [" in dr and dr.endswith("better")


def test_csv_has_one_row_per_method_with_every_column(studies):
    rows = leaderboard(studies, {m: 0 for m in studies}, SEEDS)
    parsed = list(csv.DictReader(io.StringIO(leaderboard_csv(rows))))
    assert [r["method"] for r in parsed] == ["baseline", "dr", "ogm_ge"]
    assert parsed[1]["vs_baseline_verdict"] == "better" and parsed[1]["seeds"] == "1 2 3"
    assert float(parsed[2]["test_acc_ci_high"]) == pytest.approx(_interval(ACC["ogm_ge"])[2])


def test_explore_finds_the_compare_of_a_study_and_plots_it_with_interval_error_bars(studies):
    rows = stored_leaderboard(studies["dr"])  # reads the other methods' studies from the storage
    assert [r["method"] for r in rows] == ["baseline", "dr", "ogm_ge"]
    fig = leaderboard_figure(rows)
    tuned = fig.data[0]
    mean, low, high = _interval(ACC["dr"])
    assert tuned.error_y.array[1] == pytest.approx(high - mean) and tuned.error_y.arrayminus[1] == pytest.approx(mean - low)
    assert list(fig.data[1].y) == pytest.approx([statistics.mean(PUBLISHED[m]) for m in ACC])
    alone = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    assert stored_leaderboard(alone) == []


def test_each_method_searches_the_same_shared_knobs_and_its_own_block():
    full = yaml.safe_load(DEFAULT_SPACE.read_text())
    for method in ("dr", "baseline"):
        narrowed = yaml.safe_load(method_space_text(DEFAULT_SPACE, method))
        assert narrowed["space"] == full["space"] and narrowed.get("fixed") == full.get("fixed")
        assert narrowed["methods"] == {method: full["methods"][method]}
    assert yaml.safe_load(method_space_text(DEFAULT_SPACE, "toy_absent"))["methods"] == {"toy_absent": "declared"}


def test_published_reference_keeps_the_compare_data_and_scales_epochs_to_the_budget():
    tuned = TrialConfig(dataset="synthetic", encoder_width=4, threads=1, batch_size=16,
                        dataset_params={"n_train": 60}, lr=0.05)
    cfg = published_config(published("papers")["ogm_ge"], tuned, max_epochs=10, overrides=["lr_gamma=0.5"])
    assert (cfg.method, cfg.epochs, cfg.lr, cfg.batch_size, cfg.encoder_width) == ("ogm_ge", 10, 1e-3, 64, 4)
    assert cfg.dataset_params == {"n_train": 60} and cfg.lr_step == 7 and cfg.lr_gamma == 0.5  # 70 of 100 epochs
    assert cfg.params["modulation_ends"] == 5 and cfg.params["alpha"] == 0.8


def test_common_seeds_avoid_every_studys_training_seeds_and_reuse_earlier_ones():
    studies = []
    for seeds in ([0, 1], [0, 4]):
        study = optuna.create_study()
        for s in seeds:
            study.add_trial(optuna.trial.create_trial(value=0.1, user_attrs={record.CONFIG: {"seed": s}}))
        studies.append(study)
    assert common_seeds(studies, 3) == [5, 6, 7]
    studies[0].set_user_attr(record.VERIFY_SEEDS, [2, 3, 9])
    assert common_seeds(studies, 2) == [2, 3]
