"""Truth under concurrency (issue #23, "Done when"): driver processes asking, telling, retiring
each other's trials and resuming on one study count every trial once, never retry one lineage
twice at a time and lose no told result, on SQLite and PostgreSQL (benchmarks/concurrency_stress.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # spawned drivers see it too
import concurrency_stress  # noqa: E402


def _check(url: str) -> None:
    outcome = concurrency_stress.Outcome()
    for seed in range(2):
        outcome.add(concurrency_stress.run(url, n_drivers=4, seconds=8, max_trials=60, seed=seed))
    assert outcome.errors == []
    assert (outcome.double_counted, outcome.double_retried, outcome.lost_results) == (0, 0, 0), outcome
    assert outcome.trials >= 20 and outcome.operations > 0  # the drivers did race


@pytest.mark.slow
def test_concurrency_stress_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path}/stress.db")


@pytest.mark.slow
def test_concurrency_stress_postgresql(postgres_url):
    _check(postgres_url)
