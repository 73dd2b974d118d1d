"""`drltune prepare check DIR`: does a prepared folder hold what the dataset's loader will read?

The checks are the loaders' own (layout, split lists, labels, clips that exist) plus, per clip,
what the loaders only find out while building the cache: an audio feature that loads with the
recorded shape and finite values, and at least one image in each frame folder. Nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from drltune.data import kinetics_sounds, ucf101
from drltune.data.cremad import CLASS_NAMES as CREMAD_CLASSES
from drltune.data.prepared import clips_in, label_ids, prepare_record, read_splits, require_layout
from drltune.data.video import frame_files
from drltune.errors import DrltuneError

SHOWN = 5


def check_prepared(root: Path) -> str:
    """One line saying what was found; a DrltuneError listing the first problems otherwise."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise DrltuneError(f"{root} does not exist or is not a folder")
    record = prepare_record(root)
    dataset = record.get("dataset") or _guess(root)
    if dataset not in CHECKS:
        raise DrltuneError(
            f"{root}: cannot tell which dataset it holds (no prepare.json naming one of "
            f"{', '.join(CHECKS)})"
        )
    splits, class_count, problems = CHECKS[dataset](root, record)
    if problems:
        shown = "; ".join(problems[:SHOWN]) + (
            f"; ... ({len(problems)} in all)" if len(problems) > SHOWN else ""
        )
        raise DrltuneError(f"{root} does not match what {dataset} training reads: {shown}")
    sizes = ", ".join(f"{name} {len(rows)}" for name, rows in splits.items())
    return f"{root} matches what {dataset} training reads: {class_count} classes; {sizes} clips"


def _guess(root: Path) -> str | None:
    if (root / "flow_u").is_dir():
        return "ucf101"
    return None


def _frames_ok(folder: Path, problems: list[str], clip: str, what: str) -> None:
    if not frame_files(folder):
        problems.append(f"{clip}: no images in {what}/{clip}")


def _audio_ok(path: Path, shape: list[int] | None, problems: list[str], clip: str) -> None:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        problems.append(f"{clip}: audio/{clip}.npy unreadable ({exc})")
        return
    if arr.ndim != 2 or (shape and list(arr.shape) != list(shape)):
        problems.append(
            f"{clip}: audio feature shape {arr.shape}, expected {tuple(shape) if shape else '2-D'}"
        )
    elif not np.isfinite(arr).all():
        problems.append(f"{clip}: audio feature has non-finite values")


def _audio_visual(
    root: Path,
    record: dict,
    dataset: str,
    layout: str,
    names: tuple[str, ...],
    classes: Callable[[dict], list[str]],
) -> tuple[dict, int, list[str]]:
    require_layout(root, dataset, ("audio", "frames", "splits"), layout)
    present = [n for n in names if (root / "splits" / f"{n}.csv").is_file()]
    rows = read_splits(
        root, present if "train" in present else names
    )  # a missing train.csv is an error
    class_names = classes(rows)
    known = clips_in(root / "audio", ".npy") & clips_in(root / "frames", None)
    ids = label_ids(
        rows, class_names, known, root / "splits"
    )  # raises on labels or clips that are not there
    problems: list[str] = []
    for clip in sorted({c for split_rows in ids.values() for c, _ in split_rows}):
        _audio_ok(root / "audio" / f"{clip}.npy", record.get("audio_shape"), problems, clip)
        _frames_ok(root / "frames" / clip, problems, clip, "frames")
    return rows, len(class_names), problems


def _kinetics_sounds(root: Path, record: dict) -> tuple[dict, int, list[str]]:
    return _audio_visual(
        root,
        record,
        "kinetics_sounds",
        kinetics_sounds.LAYOUT,
        ("train", "val", "test"),
        lambda rows: sorted({label for r in rows.values() for _, label in r}),
    )


def _cremad(root: Path, record: dict) -> tuple[dict, int, list[str]]:
    return _audio_visual(
        root,
        record,
        "cremad",
        "audio/<clip>.npy, frames/<clip>/ and splits/{train,val,test}.csv",
        ("train", "val", "test"),
        lambda rows: list(CREMAD_CLASSES),
    )


def _ucf101(root: Path, record: dict) -> tuple[dict, int, list[str]]:
    require_layout(root, "ucf101", ("frames", "flow_u", "flow_v"), ucf101.LAYOUT)
    rows, class_names, source = ucf101._split_rows(root, int(record.get("split", 1)))
    known = set.intersection(*(clips_in(root / m, None) for m in ("frames", "flow_u", "flow_v")))
    ids = label_ids(rows, class_names, known, root / source)
    problems: list[str] = []
    for clip in sorted({c for split_rows in ids.values() for c, _ in split_rows}):
        for modality in ("frames", "flow_u", "flow_v"):
            _frames_ok(root / modality / clip, problems, clip, modality)
    groups = {name: {ucf101._group(c) for c, _ in split_rows} for name, split_rows in rows.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = groups.get(a, set()) & groups.get(b, set())
        if shared:
            problems.append(f"group(s) in both {a} and {b}: {', '.join(sorted(shared)[:3])}")
    return rows, len(class_names), problems


CHECKS = {"kinetics_sounds": _kinetics_sounds, "ucf101": _ucf101, "cremad": _cremad}
