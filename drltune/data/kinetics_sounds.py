"""Kinetics-Sounds (docs/methods.md §7.2): 31 classes, fbank audio (1,024 frames x 128) + 3 frames.

`drltune prepare kinetics_sounds` (ks_prepare.py) makes this folder from Kinetics videos; a folder
preprocessed elsewhere in the same common layout works too:

    ROOT/audio/<clip>.npy        Kaldi fbank, 1,024 x 128, AudioSet-normalised (the OGM/DR recipe)
    ROOT/frames/<clip>/*.jpg     frames at 1 fps
    ROOT/splits/train.csv, test.csv [, val.csv]   `clip,label` rows (OGM's my_train / my_test lists)

The class list is the sorted set of labels in the lists (31 for the papers' version; how many
were found is in the bundle's info). Without val.csv, a deterministic class-stratified
`val_fraction` of train is held out for validation (the papers select on test; drltune does not).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drltune.data.base import DATASETS, DataBundle, DatasetSpec
from drltune.data.prepared import (
    audio_array,
    bundle,
    carve_val,
    clips_in,
    existing_root,
    label_ids,
    read_splits,
    require_layout,
)
from drltune.data.video import pick_frames
from drltune.params import Param

PAPER_CLASSES = 31
LAYOUT = (
    "audio/<clip>.npy, frames/<clip>/*.jpg and splits/train.csv, splits/test.csv (splits/val.csv "
    "optional)"
)


@DATASETS.register
class KineticsSounds(DatasetSpec):
    name = "kinetics_sounds"
    description = (
        "Kinetics-Sounds (31 classes; fbank 1024x128 + 3 frames) from a preprocessed folder"
    )
    needs_data_root = True
    params = (
        Param("frames", "int", 3, "frames per clip (papers: 3, segment middles)", 1, 16),
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
            "share of train held out as val when there is no splits/val.csv",
            0.01,
            0.5,
        ),
    )
    # BalanceMM's KS run length with the OGM/DR SGD settings; ResNet-18s from scratch.
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
        require_layout(root, cls.name, ("audio", "frames", "splits"), LAYOUT)
        rows = read_splits(root, ("train", "test"))
        val_file = (root / "splits" / "val.csv").is_file()
        if val_file:
            rows["val"] = read_splits(root, ("val",))["val"]
        else:
            rows["train"], rows["val"] = carve_val(rows["train"], params["val_fraction"])
        class_names = sorted({label for split_rows in rows.values() for _, label in split_rows})
        known = clips_in(root / "audio", ".npy") & clips_in(root / "frames", None)
        splits = label_ids(rows, class_names, known, root / "splits")
        frames, size = params["frames"], params["image_size"]

        def read_clip(clip: str) -> tuple[np.ndarray, np.ndarray]:
            return audio_array(root / "audio" / f"{clip}.npy"), pick_frames(
                root / "frames" / clip, frames, size
            )

        key = {
            "frames": frames,
            "image_size": size,
            "val": "file" if val_file else params["val_fraction"],
        }
        return bundle(
            root,
            cls.name,
            class_names,
            splits,
            key,
            read_clip,
            info={"classes_found": len(class_names), "paper_classes": PAPER_CLASSES},
        )
