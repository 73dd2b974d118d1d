"""UCF-101 (docs/methods.md §7.3): RGB + optical flow, 101 classes, official split 1 by default.

`drltune prepare ucf101` (ucf_prepare.py) makes this folder from the videos and the official lists
(with splits/*.csv holding the official split and a val carved by group); a folder preprocessed
elsewhere in this layout works too:

    ROOT/frames/<clip>/*.jpg                    RGB frames
    ROOT/flow_u/<clip>/*.jpg, flow_v/<clip>/*.jpg   flow as greyscale JPEGs (128 = no motion)
    ROOT/ucfTrainTestlist/classInd.txt, trainlist0N.txt, testlist0N.txt   (as downloaded), or
    ROOT/splits/train.csv, test.csv [, val.csv]  `clip,ClassName` rows

<clip> is the video's file stem (v_ApplyEyeMakeup_g08_c01). The model's two slots carry RGB and
flow: `visual` = RGB frames (augmented and normalised like CREMA-D's), `audio` = the flow of
`flow_frames` segment-middle frames stacked as 2 x flow_frames channels scaled to [-1, 1], so the
first encoder's conv1 takes 2 channels by default (as the papers' flow stream). Without a val list,
a deterministic class-stratified `val_fraction` of train is held out, whole groups (gNN, the same
actor and scene) at a time so that val does not leak near-duplicates of train.
Note: the DR code starts UCF-101 encoders from ImageNet weights; drltune trains them from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drltune.data.base import DATASETS, DataBundle, DatasetSpec
from drltune.data.prepared import (
    bundle,
    carve_val,
    clips_in,
    existing_root,
    label_ids,
    read_splits,
    require_layout,
)
from drltune.data.splits import Rows
from drltune.data.video import pick_frames
from drltune.errors import DrltuneError
from drltune.params import Param

LIST_DIR = "ucfTrainTestlist"
LAYOUT = (
    f"frames/<clip>/, flow_u/<clip>/, flow_v/<clip>/ and either {LIST_DIR}/ (classInd.txt, "
    f"trainlist01.txt, testlist01.txt) or splits/train.csv, splits/test.csv"
)


@DATASETS.register
class UCF101(DatasetSpec):
    name = "ucf101"
    description = (
        "UCF-101 (101 classes; RGB frames + 2-channel optical flow) from a preprocessed folder"
    )
    needs_data_root = True
    params = (
        Param("split", "int", 1, "official train/test split (ucfTrainTestlist)", 1, 3),
        Param("frames", "int", 3, "RGB frames per clip (segment middles)", 1, 16),
        Param("flow_frames", "int", 1, "flow frames per clip, stacked as 2 channels each", 1, 16),
        Param(
            "image_size",
            "int",
            224,
            "frame height and width stored in the cache (papers: 224)",
            16,
            512,
        ),
        Param(
            "val_fraction",
            "float",
            0.1,
            "share of train held out as val when there is no val list",
            0.01,
            0.5,
        ),
    )
    defaults = {
        "epochs": 30,
        "batch_size": 64,
        "lr": 1e-3,
        "optimizer": "sgd",
        "encoder_width": 64,
        "augment": True,
    }

    @classmethod
    def load(cls, data_root: str | None, params: dict[str, Any]) -> DataBundle:
        root = existing_root(data_root, cls.name)
        require_layout(root, cls.name, ("frames", "flow_u", "flow_v"), LAYOUT)
        rows, class_names, source = _split_rows(root, params["split"])
        if "val" not in rows:
            rows["train"], rows["val"] = carve_val(
                rows["train"], params["val_fraction"], group_of=_group
            )
        known = (
            clips_in(root / "frames", None)
            & clips_in(root / "flow_u", None)
            & clips_in(root / "flow_v", None)
        )
        splits = label_ids(rows, class_names, known, root / source)
        frames, flow_frames, size = params["frames"], params["flow_frames"], params["image_size"]

        def read_clip(clip: str) -> tuple[np.ndarray, np.ndarray]:
            u = pick_frames(root / "flow_u" / clip, flow_frames, size, channels=1)
            v = pick_frames(root / "flow_v" / clip, flow_frames, size, channels=1)
            flow = np.concatenate([u, v], axis=1).reshape(
                2 * flow_frames, size, size
            )  # u1, v1, u2, v2, ...
            return (flow.astype(np.float32) - 127.5) / 127.5, pick_frames(
                root / "frames" / clip, frames, size
            )

        key = {
            "split": params["split"] if source == LIST_DIR else "csv",
            "frames": frames,
            "flow_frames": flow_frames,
            "image_size": size,
            "val_fraction": params["val_fraction"],
        }
        return bundle(
            root,
            cls.name,
            class_names,
            splits,
            key,
            read_clip,
            info={"modalities": {"audio": "optical flow", "visual": "rgb"}},
        )


def _group(clip: str) -> str:
    """v_<Class>_g08_c01 -> <Class>_g08: clips of one group share actor and scene."""
    return clip.rsplit("_", 1)[0]


def _split_rows(root: Path, split: int) -> tuple[dict[str, Rows], list[str], str]:
    """Rows from the official lists (class order of classInd.txt) or from splits/*.csv (sorted
    labels)."""
    lists = root / LIST_DIR
    if lists.is_dir():
        class_names = _class_index(lists / "classInd.txt")
        rows = {
            "train": _official_list(lists / f"trainlist0{split}.txt"),
            "test": _official_list(lists / f"testlist0{split}.txt"),
        }
        return rows, class_names, LIST_DIR
    if not (root / "splits").is_dir():
        require_layout(root, "ucf101", (LIST_DIR,), LAYOUT)
    names = (
        ("train", "val", "test") if (root / "splits" / "val.csv").is_file() else ("train", "test")
    )
    rows = read_splits(root, names)
    return rows, sorted({label for r in rows.values() for _, label in r}), "splits"


def _read_lines(path: Path) -> list[str]:
    try:
        return [
            line.strip()
            for line in path.read_text(encoding="utf-8-sig").splitlines()
            if line.strip()
        ]
    except FileNotFoundError:
        raise DrltuneError(
            f"{path} not found (expected the ucfTrainTestlist files as downloaded)"
        ) from None


def _class_index(path: Path) -> list[str]:
    """classInd.txt: `1 ApplyEyeMakeup` ... -> names in index order."""
    pairs = []
    for line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DrltuneError(f"{path}: expected `<index> <ClassName>` lines, got {line!r}")
        pairs.append((int(parts[0]), parts[1]))
    return [name for _, name in sorted(pairs)]


def _official_list(path: Path) -> Rows:
    """trainlist/testlist lines `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi [label]` -> (clip,
    class)."""
    rows = []
    for line in _read_lines(path):
        video = line.split()[0]
        if "/" not in video:
            raise DrltuneError(f"{path}: expected `<Class>/<video>.avi` lines, got {line!r}")
        label, name = video.split("/", 1)
        rows.append((Path(name).stem, label))
    return rows
