"""`search --seed-with papers|balancebenchmark`: the published configurations as a study's first
trials.

Each method of the space that has a published configuration is enqueued once (Optuna's
`enqueue_trial`), so the search starts from what is known and TPE models those results with the
rest. Only what the space searches can be enqueued: a published value outside a searched range is
clipped into it, one missing from a categorical's choices is left to the sampler, and a key the
space does not search (or fixes) keeps the search's value; each such case is printed. Every trial
trains the search's epoch budget, so epoch-valued settings (lr_step, DR's reinit_epoch, windows)
are scaled by max_epochs / published epochs.

The study is seeded at most once, by whichever driver first writes the study system attribute
`drltune:seeded_with` (a unique key: drivers resuming together get one winner); a driver killed
between that write and the enqueues leaves the study unseeded, never seeded twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import optuna

from drltune import record
from drltune.config import EPOCH_KEYS
from drltune.published import Published, published, scale_epochs
from drltune.search.optuna_private import backend_of, storage_of, study_id_of
from drltune.search.space import Dimension, SearchSpace

SEEDED_WITH = (
    "drltune:seeded_with"  # study system attr: {"source", "token", "trials"} of the one seeding
)


def _fit(dim: Dimension, value: Any, key: str, params: dict[str, Any], notes: list[str]) -> None:
    """Put `value` into `params` as dimension `dim` takes it, noting what had to change."""
    if dim.kind == "fixed":
        if value != dim.value:
            notes.append(f"{key}: the space fixes {dim.value!r} (published {value!r})")
        return
    if dim.kind == "categorical":
        if value in dim.choices:
            params[dim.name] = value
        else:
            notes.append(f"{key}: published {value!r} is not among the space's choices; sampled")
        return
    fitted = min(max(value, dim.low), dim.high)
    if dim.step:
        fitted = dim.low + round((fitted - dim.low) / dim.step) * dim.step
    fitted = round(fitted) if dim.kind == "int" else float(fitted)
    if fitted != value:
        notes.append(
            f"{key}: published {value!r} -> {fitted!r} (the space searches [{dim.low:g}, "
            f"{dim.high:g}])"
        )
    params[dim.name] = fitted


def seed_params(
    space: SearchSpace, entry: Published, max_epochs: int
) -> tuple[dict[str, Any], list[str]]:
    """The Optuna params that enqueue `entry` into a study of `space`, and what could not be
    kept."""
    from drltune.methods import METHODS

    notes: list[str] = []
    values = dict(entry.values)
    published_epochs = values.pop("epochs", None)
    factor = max_epochs / published_epochs if published_epochs else 1.0
    if published_epochs and published_epochs != max_epochs:
        notes.append(
            f"epochs: published {published_epochs} -> the search's {max_epochs}; epoch-valued "
            f"settings scaled x{factor:.3g}"
        )
    own = values.pop("params", {}) or {}
    params: dict[str, Any] = {"method": entry.method}
    top = {d.name: d for d in space.top}
    for key, value in values.items():
        if key in EPOCH_KEYS:
            value = scale_epochs(value, factor, max_epochs)
        if key in top:
            _fit(top[key], value, key, params, notes)
        elif key in space.fixed:
            if space.fixed[key] != value:
                notes.append(f"{key}: the space fixes {space.fixed[key]!r} (published {value!r})")
        else:
            notes.append(f"{key}: published {value!r} not applied (the space does not search it)")
    dims = {d.name[len(entry.method) + 1 :]: d for d in space.methods[entry.method]}
    declared = {p.name: p for p in METHODS.get(entry.method).params}
    for pname, value in own.items():
        if declared[pname].is_epoch:
            value = scale_epochs(value, factor, max_epochs)
        if pname in dims:
            _fit(dims[pname], value, f"{entry.method}.{pname}", params, notes)
        else:
            notes.append(
                f"{entry.method}.{pname}: published {value!r} not applied (the space does not "
                "search it)"
            )
    return params, notes


def claim_seeding(study: optuna.Study, value: dict[str, Any]) -> dict[str, Any]:
    """The study's one seeding record: `value` if this call wrote it first, else the earlier one."""
    backend, study_id = backend_of(study), study_id_of(study)  # under Optuna's cache wrapper
    if hasattr(backend, "setdefault_study_system_attr"):  # one winner among racing drivers
        return backend.setdefault_study_system_attr(study_id, SEEDED_WITH, value)
    attrs = storage_of(study).get_study_system_attrs(study_id)  # one process (in memory): no race
    if SEEDED_WITH not in attrs:
        storage_of(study).set_study_system_attr(study_id, SEEDED_WITH, value)
        return value
    return attrs[SEEDED_WITH]


def enqueue_published(
    study: optuna.Study,
    space: SearchSpace,
    source: str,
    max_epochs: int,
    limit: int,
    echo: Callable[[str], None],
) -> int:
    """Enqueue the published configuration of each method in `space` (at most `limit`, in the
    file's order) unless the study was seeded before; returns how many were enqueued."""
    entries = published(source)
    eligible = len([m for m in entries if m in space.methods])
    chosen = [entries[m] for m in entries if m in space.methods][: max(0, limit)]
    missing = [m for m in space.methods if m not in entries]
    token = uuid.uuid4().hex
    won = claim_seeding(
        study, {"source": source, "token": token, "trials": [e.method for e in chosen]}
    )
    if won.get("token") != token:
        echo(
            f"--seed-with {source}: the study was seeded with {won.get('source')} configurations "
            f"before ({', '.join(won.get('trials', [])) or 'none'}); not again"
        )
        return 0
    echo(
        f"--seed-with {source}: {len(chosen)} published configurations enqueued as the first trials"
        + (
            f" ({limit} trials left to run: {eligible - len(chosen)} more not enqueued)"
            if len(chosen) < eligible
            else ""
        )
        + (f"; none published for {', '.join(missing)}" if missing else "")
    )
    for entry in chosen:
        params, notes = seed_params(space, entry, max_epochs)
        study.enqueue_trial(params, user_attrs={record.SEEDED_FROM: f"{source}:{entry.method}"})
        echo(f"  {entry.method}: {entry.source}")
        for note in notes:
            echo(f"    {note}")
    return len(chosen)
