"""`drltune prepare ucf101`: the UCF-101 videos and official split lists -> the layout ucf101.py
reads.

    RAW/<Class>/v_<Class>_gNN_cMM.avi
        as UCF101.rar unpacks (any folder depth; any container PyAV reads)
    SPLITS/classInd.txt, trainlist0N.txt, testlist0N.txt
        as UCF101TrainTestSplits-RecognitionTask.zip unpacks

Each clip of the chosen official split gives OUT/frames/<clip>/ (RGB, 1 fps), OUT/flow_u/<clip>/ and
OUT/flow_v/<clip>/ (TV-L1, see flow.py). OUT/splits/{train,val,test}.csv hold the official train and
test lists and a validation split carved out of train by whole groups (gNN: the same actor and
scene), class-stratified, so that no group is in two splits. Resumable; a bad video is reported
and skipped.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from drltune.data import prepare_common as common
from drltune.data.flow import BOUND, frames_and_flow
from drltune.data.prepared import carve_val, listing
from drltune.data.splits import Rows, write_split
from drltune.data.ucf101 import _class_index, _group, _official_list
from drltune.data.video import save_frames
from drltune.errors import DrltuneError, typed_line

MODALITIES = (
    "flow_u",
    "flow_v",
    "frames",
)  # committed in this order: frames/<clip> marks a clip done
FAILURES = ("decode error",)


@dataclass
class UcfSummary:
    prepared: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # clip -> "kind: detail"
    not_in_raw: int = 0
    stats: dict = field(default_factory=dict)


def prepare_ucf101(
    raw: Path,
    splits_dir: Path,
    out: Path,
    split: int = 1,
    val_fraction: float = 0.1,
    seed: int = 0,
    jobs: int = 1,
    flow_bound: float = BOUND,
    echo: Callable[[str], None] = print,
) -> UcfSummary:
    """Make OUT (frames/, flow_u/, flow_v/, splits/, prepare.json, stats.json, prepare_report.txt);
    resumable."""
    common.require_media("cv2")
    try:
        import cv2

        # plain opencv lacks the contrib modules
        cv2.optflow.DualTVL1OpticalFlow.create  # noqa: B018
    except AttributeError:
        raise DrltuneError(
            "prepare ucf101 needs OpenCV's contrib modules (cv2.optflow): "
            "pip install 'drltune[media]' (opencv-contrib-python-headless)"
        ) from None
    raw, out = common.existing_folder(raw, "--raw"), out.expanduser().resolve()
    lists = _read_lists(common.existing_folder(splits_dir, "--splits"), split)
    summary = UcfSummary()
    videos = _raw_videos(raw)
    wanted = {clip: label for name in ("train", "test") for clip, label in lists[name]}
    present = {clip: videos[clip] for clip in wanted if clip in videos}
    summary.not_in_raw = len(wanted) - len(present)
    if not present:
        raise DrltuneError(
            f"--raw {raw}: none of the {len(wanted)} videos of split {split} is there "
            f"(expected RAW/<Class>/v_<Class>_gNN_cMM.avi); found {listing(raw)}"
        )
    # val is carved from the listed train videos before decoding: a bad --val-fraction fails at
    # once, and a video that fails to decode later does not move others between train and val
    train, val = _carve(lists["train"], present, val_fraction, seed)
    options = {
        "dataset": "ucf101",
        "split": split,
        "val_fraction": val_fraction,
        "seed": seed,
        "fps": 1,
        "flow": "tvl1 (opencv DualTVL1 defaults)",
        "flow_bound": flow_bound,
    }
    common.start_out(out, options, (*MODALITIES, "splits"))
    seconds = {k: v for k, v in common.read_json(out / common.SECONDS).items() if k in present}
    todo = [
        (clip, str(path), str(out), flow_bound)
        for clip, path in sorted(present.items())
        if not all((out / m / clip).is_dir() for m in MODALITIES)
    ]
    summary.reused = len(present) - len(todo)
    for clip, (status, value) in common.run_clips(_try_clip, todo, jobs, "prepare ucf101"):
        if status == "ok":
            summary.prepared += 1
            seconds[clip] = value
        else:
            summary.skipped[clip] = value
    common.write_json(out / common.SECONDS, seconds)
    done = {clip for clip in present if clip not in summary.skipped}
    splits = {
        name: [(c, label) for c, label in rows if c in done]
        for name, rows in (("train", train), ("val", val), ("test", lists["test"]))
    }
    for name, rows in splits.items():
        if rows:
            write_split(out / "splits" / f"{name}.csv", rows)
        else:  # the loader would read an older run's list
            (out / "splits" / f"{name}.csv").unlink(missing_ok=True)
    common.write_json(
        out / "prepare.json",
        {
            **options,
            "class_names": lists["classes"],
            "split_source": f"official split {split}; val: {val_fraction:g} of "
            f"train by group (seed {seed})",
        },
    )
    common.write_report(out / common.REPORT, summary.skipped)
    summary.stats = common.write_stats(out, "ucf101", splits, seconds, summary.skipped, FAILURES)
    summary.stats["listed_but_not_in_raw"] = summary.not_in_raw
    common.write_json(out / common.STATS, summary.stats)
    for clip, why in sorted(summary.skipped.items()):
        echo(f"skipped {clip}: {why}")
    return summary


def _read_lists(folder: Path, split: int) -> dict:
    """The official lists, checked before any decoding: every label must be a classInd.txt class."""
    classes = _class_index(folder / "classInd.txt")
    rows = {
        "train": _official_list(folder / f"trainlist0{split}.txt"),
        "test": _official_list(folder / f"testlist0{split}.txt"),
    }
    known = set(classes)
    for name, split_rows in rows.items():
        bad = sorted({label for _, label in split_rows if label not in known})
        if bad:
            raise DrltuneError(
                f"{folder}/{name}list0{split}.txt: class(es) not in classInd.txt: "
                f"{', '.join(bad[:5])}"
            )
    return {**rows, "classes": classes}


def _carve(train: Rows, present: dict, fraction: float, seed: int) -> tuple[Rows, Rows]:
    """(train, val) of the listed train videos that are in RAW, val by whole groups."""
    rows = [(c, label) for c, label in train if c in present]
    try:
        return carve_val(rows, fraction, seed=seed, group_of=_group)
    except (ValueError, DrltuneError) as exc:  # sklearn refuses folds larger than a class
        groups = len({_group(c) for c, _ in rows})
        raise DrltuneError(
            f"--val-fraction {fraction:g}: cannot hold out whole groups from {len(rows)} train "
            f"video(s) in {groups} group(s) ({str(exc).splitlines()[0]})"
        ) from None


def _raw_videos(raw: Path) -> dict[str, Path]:
    """{file stem: video} of every video under RAW."""
    return {
        p.stem: p
        for p in sorted(raw.rglob("*"))
        if p.suffix.lower() in common.VIDEO_SUFFIXES and not p.name.startswith(".") and p.is_file()
    }


def _try_clip(args: tuple) -> tuple[str, tuple[str, object]]:
    clip = args[0]
    try:
        return clip, ("ok", _prepare_clip(*args))
    except Exception as exc:
        return clip, ("skip", f"decode error: {typed_line(exc)}")


def _prepare_clip(clip: str, video: str, out_dir: str, bound: float) -> float:
    """Decode one video into OUT; each modality lands by a rename, RGB frames last."""
    import cv2

    cv2.setNumThreads(1)  # the pool's processes are the parallelism
    out = Path(out_dir)
    frames, flow_u, flow_v, seconds = frames_and_flow(video, bound=bound)
    if not flow_u:
        raise ValueError("a single frame: no optical flow")
    for modality, images in zip(MODALITIES, (flow_u, flow_v, frames)):
        tmp = out / modality / f".{clip}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if modality == "frames":
            save_frames(images, tmp)
        else:
            _save_grey(images, tmp)
        common.replace_folder(tmp, out / modality / clip)
    return round(seconds, 3)


def _save_grey(images: list[np.ndarray], folder: Path, quality: int = 95) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"frame_{i:05d}.jpg", quality=quality)
