"""Split lists: `clip,LABEL` rows (the papers' CSVs), read tolerantly and split
deterministically."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from drltune.errors import DrltuneError

Rows = list[tuple[str, str]]


def read_split(path: Path) -> Rows:
    """(clip, label) rows of a split CSV; a `name,label` header, a UTF-8 BOM and CRLF are
    accepted."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except FileNotFoundError:
        raise DrltuneError(f"split file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DrltuneError(f"cannot read split file {path}: {exc}") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["name", "label"]:
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows, 1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DrltuneError(f"{path}, row {i}: expected `clip,LABEL`, got {','.join(row)!r}")
        out.append((row[0].strip(), row[1].strip()))
    if not out:
        raise DrltuneError(f"split file {path} lists no clips")
    return out


def write_split(path: Path, rows: Rows) -> None:
    """Write `clip,LABEL` rows (no header, like DR's my_train.csv/val.csv) atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    tmp.replace(path)


def check_known(rows: Rows, known: set[str], where: str) -> None:
    """A split naming clips that do not exist is an error that names a few of them."""
    missing = [clip for clip, _ in rows if clip not in known]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DrltuneError(f"{where} names {len(missing)} clip(s) that do not exist: {shown}")


def stratified_split(
    rows: Rows,
    fractions: Sequence[float],
    seed: int = 0,
    group_of: Callable[[str], str] | None = None,
) -> list[Rows]:
    """Deterministic split of `rows` into len(fractions) parts, stratified by label.

    With `group_of` (e.g. the actor of a CREMA-D clip) no group straddles two parts, so the
    parts are speaker-independent; the label balance is then as close as whole groups allow.
    """
    parts: list[Rows] = []
    rest, remaining = sorted(rows), 1.0
    for frac in fractions[:-1]:
        taken, rest = _take(rest, frac / remaining, seed, group_of)
        remaining -= frac
        parts.append(taken)
    parts.append(rest)
    if any(not p for p in parts):
        raise DrltuneError(
            f"{len(rows)} clips are too few to split {len(fractions)} ways "
            f"({'/'.join(f'{f:g}' for f in fractions)}{' by group' if group_of else ''})"
        )
    return parts


def _take(
    rows: Rows, share: float, seed: int, group_of: Callable[[str], str] | None
) -> tuple[Rows, Rows]:
    """Split `rows` into (about a `share` of them, the rest); ([], rows) when that is impossible."""
    labels = np.array([label for _, label in rows])
    idx = np.arange(len(rows))
    n_take = round(share * len(rows))
    if n_take < 1 or n_take >= len(rows):
        return [], rows
    if group_of is None:
        counts = np.unique(labels, return_counts=True)[1]
        can_stratify = counts.min() >= 2 and len(counts) <= min(n_take, len(rows) - n_take)
        taken, rest = train_test_split(
            idx, train_size=n_take, random_state=seed, stratify=labels if can_stratify else None
        )
    else:
        groups = np.array([group_of(clip) for clip, _ in rows])
        n_groups = len(set(groups))
        if n_groups < 2:
            return [], rows
        n_splits = max(2, min(round(1 / share), n_groups))
        folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(
            idx, labels, groups
        )
        rest, taken = next(iter(folds))
    return [rows[i] for i in sorted(taken)], [rows[i] for i in sorted(rest)]
