"""`drltune compare` end to end: killed (SIGKILL) once the first verification run is stored, the
same command finishes it; nothing is trained or counted twice, and the leaderboard's rows and
intervals are those of the stored runs."""
from __future__ import annotations

import csv
import math
import statistics

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import Search, load_study, wait_for

pytestmark = pytest.mark.slow

SPACE = """
fixed:
  encoder_width: 4
  batch_size: 16
  threads: 1
  dataset_params: {n_train: 60, n_val: 24, n_test: 24, audio_freq: 16, audio_time: 16, image_size: 16}
space:
  lr: {low: 1.0e-3, high: 1.0e-1, log: true}
methods:
  dr:
    alpha: {low: 0.5, high: 10.0, log: true}
"""
METHODS = ["baseline", "dr", "ogm_ge"]
SEEDS = 2
T975_1 = 12.706  # Student t(0.975, 1 degree of freedom): the interval of a mean over 2 seeds


def _verify_runs(url: str) -> dict[str, dict[str, dict]]:
    out = {}
    for method in METHODS:
        try:
            study = load_study(url, f"cmp-{method}")
        except KeyError:
            continue
        out[method] = {k: v for k, v in study.user_attrs.items() if k.startswith("verify:")}
    return out


def test_compare_killed_during_verification_resumes_to_the_same_leaderboard(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    (tmp_path / "space.yaml").write_text(SPACE)
    args = ["--methods", ",".join(METHODS), "--trials-per-method", "2", "--seeds", str(SEEDS), "--max-epochs", "2",
            "--space", "space.yaml", "--name", "cmp", "--storage", url, "--pruner", "none", "--concurrent", "2",
            "--csv", str(tmp_path / "board.csv")]
    runs: list[Search] = []
    try:
        first = Search(tmp_path, args, command=("compare",))
        runs.append(first)
        wait_for(lambda: any(_verify_runs(url).values()), 600, "a stored verification run", first, poll=0.2)
        first.kill()  # SIGKILL: no clean-up, in the middle of the verification
        stored_before = _verify_runs(url)
        assert not (tmp_path / "board.csv").exists()

        second = Search(tmp_path, args, command=("compare",))
        runs.append(second)
        assert second.wait(600) == 0, second.output()[-3000:]
        out = second.output()
        assert "Traceback" not in out, out[-3000:]
        assert sum(int(line.split(":")[1].split()[0]) for line in out.splitlines()
                   if "already stored" in line) >= sum(map(len, stored_before.values())) >= 1
        assert "the study already has 2 finished trials" in out  # no method searched again
    finally:
        for run in runs:
            run.kill()

    stored = _verify_runs(url)
    for method in METHODS:
        study = load_study(url, f"cmp-{method}")
        trials = study.get_trials(deepcopy=False)
        assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 2
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        assert study.user_attrs["compare"] == "cmp"
        # every run once: its own config and the published config, on the same two fresh seeds
        labels = sorted((r["label"], r["seed"]) for r in stored[method].values())
        assert labels == sorted((label, s) for label in ("config", "ref-published") for s in (1, 2)), labels
        for key, value in stored_before.get(method, {}).items():
            assert stored[method][key] == value, "a stored run was trained again"

    with open(tmp_path / "board.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert list(rows) == METHODS
    acc = {m: {r["seed"]: r["test_acc"] for r in stored[m].values() if r["label"] == "config"} for m in METHODS}
    for method, row in rows.items():
        values = [acc[method][s] for s in (1, 2)]
        mean, sd = statistics.mean(values), statistics.stdev(values)
        assert float(row["test_acc_mean"]) == pytest.approx(mean)
        half = T975_1 * sd / math.sqrt(2)
        assert (float(row["test_acc_ci_low"]), float(row["test_acc_ci_high"])) == pytest.approx((mean - half,
                                                                                                  mean + half))
        assert row["seeds"] == "1 2" and row["trials"] == "2"
        assert row["published_acc_mean"] != ""
        for anchor in ("baseline", "dr"):
            if anchor == method:
                assert row[f"vs_{anchor}_diff"] == ""
                continue
            diffs = [acc[method][s] - acc[anchor][s] for s in (1, 2)]
            d_mean, d_half = statistics.mean(diffs), T975_1 * statistics.stdev(diffs) / math.sqrt(2)
            assert float(row[f"vs_{anchor}_diff"]) == pytest.approx(d_mean)
            assert float(row[f"vs_{anchor}_ci_low"]) == pytest.approx(d_mean - d_half)
            includes_zero = d_mean - d_half <= 0 <= d_mean + d_half
            assert (row[f"vs_{anchor}_verdict"] == "not shown to differ") == includes_zero
    lines = out.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("method ")):]
    assert [line.split()[0] for line in table[1:4]] == METHODS
    assert all(len(line) <= 100 for line in table if line.strip())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
