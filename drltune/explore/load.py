"""Open a study read-only and turn its trials into pandas frames (the notebook API).

Reading never writes: the storage is opened with `create=False` (a SQLite URL or journal path
to a missing file is an error, not a new empty database, and Optuna's table creation is skipped),
and every stored name comes from `drltune.record`.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
import pandas as pd

from drltune import record
from drltune.errors import DrltuneError, first_line
from drltune.record import HISTORY_KEYS, RESULT_ATTRS, reinits_fired, trial_fusion, trial_method
from drltune.search.objective import pareto_front, primary, study_objective
from drltune.search.storage import open_reader, shown
from drltune.search.storage_url import DEFAULT_URL as DEFAULT_STORAGE

TRIAL_COLUMNS = (
    "number",
    "state",
    "value",
    "best_val_acc",
    "method",
    "fusion",
    "best_epoch",
    "epochs_run",
    "reinits",
    *RESULT_ATTRS,
    "duration_s",
    "error",
)


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    try:
        return sorted(s.study_name for s in storage.get_all_studies())
    except Exception as exc:  # e.g. a SQLite file that holds no Optuna tables
        raise DrltuneError(f"storage: not an Optuna storage ({first_line(exc)})") from None


def choose_study(study: str | None, names: list[str], storage: str = DEFAULT_STORAGE) -> str:
    """`study`, or the only one of the stored `names` when none is named; else a one-line error
    listing them (`storage`: how the error names the storage)."""
    if study is not None:
        return study
    if len(names) == 1:
        return names[0]
    if not names:
        raise DrltuneError(f"{shown(storage)} holds no study yet; run `drltune search` first")
    raise DrltuneError(
        f"{shown(storage)} holds {len(names)} studies; pick one with --study "
        f"({', '.join(names)}; `drltune studies` lists them with their trials)"
    )


def open_study(
    study: str | None,
    storage: str = DEFAULT_STORAGE,
    backend: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """Load an existing study with trials (None: the storage's only study); a missing or empty one
    is a one-line error listing the stored names. `backend`: `storage` as the command opened it
    (once), else it is opened here for reading."""
    if backend is None:
        backend = open_reader(storage)
    names = study_names(backend)
    study = choose_study(study, names, storage)
    if study not in names:
        listed = ", ".join(names) if names else "none"
        raise DrltuneError(
            f"no study named {study!r} in {shown(storage)}; existing studies: {listed}"
        )
    logging.getLogger("optuna").setLevel(logging.WARNING)
    loaded = optuna.load_study(study_name=study, storage=backend)
    if not loaded.get_trials(deepcopy=False):
        raise DrltuneError(
            f"study {study!r} in {shown(storage)} has no trials yet; "
            f"existing studies: {', '.join(names)}"
        )
    return loaded


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, method, fusion, results, then `params_<name>`
    columns."""
    rows = []
    objective = study_objective(study)
    names, multi = objective.names, objective.multi
    front = {t.number for t in pareto_front(study)} if multi else set()
    for t in study.get_trials(deepcopy=False):
        steps = t.intermediate_values
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": primary(t),  # the first objective's
            "best_val_acc": max(steps.values())
            if steps
            else None,  # so far, for pruned and running ones
            "method": trial_method(t),
            "fusion": trial_fusion(t),
            "best_epoch": t.user_attrs.get(record.BEST_EPOCH),
            "epochs_run": t.user_attrs.get(record.EPOCHS_RUN, (max(steps) + 1) if steps else 0),
            "reinits": reinits_fired(t),
            **{key: _number(t.user_attrs.get(key)) for key in RESULT_ATTRS},
            "duration_s": t.duration.total_seconds() if t.duration is not None else None,
            "error": t.user_attrs.get(record.ERROR),
            **{f"params_{k}": v for k, v in t.params.items()},
        }
        if multi:  # a two-objective study: each value under its metric's name, and the front
            row.update(
                {
                    f"objective_{name}": (t.values[i] if t.values else None)
                    for i, name in enumerate(names)
                },
                pareto=t.number in front,
            )
        rows.append(row)
    params = sorted({k for row in rows for k in row if k.startswith("params_")})
    extra = [*(f"objective_{name}" for name in names), "pareto"] if multi else []
    frame = pd.DataFrame(rows, columns=[*TRIAL_COLUMNS, *extra, *params])
    for col in (
        "best_epoch",
        "epochs_run",
        "reinits",
        *params,
    ):  # integers stay integers next to missing values
        values = [row[col] for row in rows if row.get(col) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            frame[col] = frame[col].astype("Int64")
    return frame


def history_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per (trial, epoch): the stored per-epoch record, or the intermediate val_acc
    alone."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        for rec in record.epochs(t):
            row = {
                "number": t.number,
                "state": t.state.name,
                "method": trial_method(t),
                "fusion": trial_fusion(t),
                "epoch": rec.get("epoch"),
            }
            row.update({k: rec.get(k) for k in HISTORY_KEYS})
            rows.append(row)
    columns = ["number", "state", "method", "fusion", "epoch", *HISTORY_KEYS]
    return pd.DataFrame(rows, columns=columns)


def load(study: str, storage: str = DEFAULT_STORAGE) -> pd.DataFrame:
    """The trials of a stored study as a DataFrame, for notebooks.

    >>> df = drltune.explore.load("synthetic", "sqlite:///studies/drltune.db")  # doctest: +SKIP
    >>> df[df.state == "COMPLETE"].groupby("method").value.max()                # doctest: +SKIP
    """
    return trials_frame(open_study(study, storage))
