"""Several driver processes on one study (the benchmark's workload, small): no trial lost or
duplicated, none left unfinished, on SQLite and on PostgreSQL."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # spawned drivers see it too
import storage_load  # noqa: E402


def _check(url: str) -> None:
    outcome = storage_load.run(url, n_drivers=3, trials=6, steps=3, pattern="drltune")  # what search drivers do
    assert outcome.errors == []
    assert (outcome.trials, outcome.lost, outcome.duplicated, outcome.unfinished) == (18, 0, 0, 0)
    assert outcome.reports > 0


def test_concurrent_drivers_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path}/load.db")


def test_concurrent_drivers_postgresql(postgres_url):
    _check(postgres_url)
