"""The prepared layout every real dataset is read from, and the checks that give clear errors.

ROOT/audio/<clip>.npy          one audio feature per clip (2-D: frames x mel bins, or freq x time)
ROOT/frames/<clip>/*.jpg       the clip's frames at 1 fps, in name order
ROOT/splits/{train,val,test}.csv   `clip,LABEL` rows
ROOT/prepare.json              how `drltune prepare` made it (absent for a folder made elsewhere)
ROOT/cache/                    the memory-mapped arrays built on first use (see cache.py)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from drltune.data.base import DataBundle
from drltune.data.cache import cached_splits
from drltune.data.splits import Rows, check_known, read_split, stratified_split
from drltune.errors import DrltuneError

SPLITS = ("train", "val", "test")


def existing_root(data_root: str | None, dataset: str) -> Path:
    if not data_root:
        raise DrltuneError(
            f"dataset {dataset!r} needs its prepared folder (made by `drltune prepare {dataset}`): "
            "`data_root: DIR` in the config or `--set data_root=DIR` for train, "
            "`--data-root DIR` for search"
        )
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DrltuneError(f"data root {root} does not exist or is not a folder")
    return root


def listing(root: Path, limit: int = 8) -> str:
    """What a folder holds, for 'expected X, found Y' errors."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if not names:
        return "an empty folder"
    return ", ".join(names[:limit]) + (
        f", ... ({len(names)} entries)" if len(names) > limit else ""
    )


def require_layout(root: Path, dataset: str, folders: Sequence[str], expected: str) -> None:
    """Every folder in `folders` must exist under root, else say what was expected and found."""
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise DrltuneError(
            f"{root} is not a prepared {dataset} folder: expected {expected}; "
            f"found {listing(root)} (run `drltune prepare {dataset}` first?)"
        )


def clips_in(folder: Path, suffix: str | None) -> set[str]:
    """Clip names in a folder: files with `suffix` (stem), or sub-folders when suffix is None."""
    if suffix is None:
        return {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return {p.stem for p in folder.glob(f"*{suffix}") if not p.name.startswith(".")}


def read_splits(root: Path, names: Sequence[str] = SPLITS) -> dict[str, Rows]:
    """{split: rows} from ROOT/splits/<split>.csv."""
    return {name: read_split(root / "splits" / f"{name}.csv") for name in names}


def carve_val(
    train: Rows, fraction: float, seed: int = 0, group_of: Callable[[str], str] | None = None
) -> tuple[Rows, Rows]:
    """(train, val): a deterministic, class-stratified `fraction` of train held out as val."""
    val, rest = stratified_split(train, (fraction, 1 - fraction), seed=seed, group_of=group_of)
    return rest, val


def label_ids(
    rows: dict[str, Rows], class_names: Sequence[str], known: set[str], where: Path
) -> dict[str, list[tuple[str, int]]]:
    """{split: [(clip, label id)]}, each label checked against the class list and each clip to
    exist."""
    ids = {name: i for i, name in enumerate(class_names)}
    out = {}
    for split, split_rows in rows.items():
        bad = sorted({label for _, label in split_rows if label not in ids})
        if bad:
            raise DrltuneError(
                f"{where}/{split}: unknown label(s) {', '.join(bad[:5])}; "
                f"valid: {', '.join(class_names)}"
            )
        check_known(split_rows, known, f"{where}/{split}")
        out[split] = [(clip, ids[label]) for clip, label in split_rows]
    return out


def prepare_record(root: Path) -> dict[str, Any]:
    """What `drltune prepare` recorded (front-end, sources), or {} for a folder prepared
    elsewhere."""
    path = root / "prepare.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DrltuneError(f"{path} is unreadable ({exc}); re-run `drltune prepare`") from None


def audio_array(path: Path) -> np.ndarray:
    """A per-clip audio feature as (C, F, T): 2-D arrays get a channel axis."""
    arr = np.load(path)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DrltuneError(f"{path}: expected a 2-D audio feature, got shape {arr.shape}")
    return arr


def bundle(
    root: Path,
    name: str,
    class_names: Sequence[str],
    splits: dict[str, list[tuple[str, int]]],
    key_parts: dict[str, Any],
    read_clip: Callable[[str], tuple[np.ndarray, np.ndarray]],
    info: dict[str, Any] | None = None,
    audio_dtype: str = "float16",
) -> DataBundle:
    """A DataBundle over the node-shared memory-mapped cache of `splits` (built on first use)."""
    arrays = cached_splits(
        root / "cache", name, {"dataset": name, **key_parts}, splits, read_clip, audio_dtype
    )
    return DataBundle(
        arrays["train"],
        arrays["val"],
        arrays["test"],
        class_names=tuple(class_names),
        info={"data_root": str(root), **key_parts, **(info or {})},
    )
