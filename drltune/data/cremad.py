"""CREMA-D (docs/methods.md §7.1): 6 emotions, audio + frames, the DR split (my_train 5,954 / val
744 / test 744).

Read from the folder `drltune prepare cremad` writes (see prepared.py). `splits/train.csv` is DR's
`my_train`: DR trains on it and diagnoses / selects on `val`, and drltune reports `test` once.
Frames: DR's eval pick (the middle frame of each of `frames` equal segments of the 1 fps frames),
resized to `image_size` when the cache is built; augmentation, if on, runs per batch on the device.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from drltune.data.base import DATASETS, DataBundle, DatasetSpec
from drltune.data.prepared import (
    audio_array,
    bundle,
    clips_in,
    existing_root,
    label_ids,
    prepare_record,
    read_splits,
    require_layout,
)
from drltune.data.video import pick_frames
from drltune.params import Param

CLASS_NAMES = (
    "NEU",
    "HAP",
    "SAD",
    "FEA",
    "DIS",
    "ANG",
)  # ids of the OGM-GE/PMR/ARL code (class_order: ogm)
CLASS_ORDERS = {
    "ogm": CLASS_NAMES,
    "official": tuple(sorted(CLASS_NAMES)),
}  # official: DR sorts the names
CLIP_NAME = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$"
)
LAYOUT = "audio/<clip>.npy, frames/<clip>/*.jpg and splits/{train,val,test}.csv"


@DATASETS.register
class CremaD(DatasetSpec):
    name = "cremad"
    description = (
        "CREMA-D (6 emotions; DR split 5,954/744/744); prepare it with `drltune prepare cremad`"
    )
    needs_data_root = True
    # Literal choices: `drltune datasets` reads them from this file without importing it
    # (declarations.py).
    params = (
        Param(
            "frames", "int", 2, "frames per clip (DR 2; segment middles of the 1 fps frames)", 1, 16
        ),
        Param(
            "image_size",
            "int",
            224,
            "frame height and width stored in the cache (papers: 224)",
            16,
            512,
        ),
        Param(
            "class_order",
            "choice",
            "ogm",
            "class ids: ogm (NEU 0 ... ANG 5, the OGM-GE/PMR/ARL code) or "
            "official (the DR code's sorted names: ANG 0 ... SAD 5)",
            choices=("ogm", "official"),
        ),
        Param(
            "audio_dtype",
            "choice",
            "float16",
            "audio features in the cache: float16 (half the memory) or "
            "float32 (exact, as the official code keeps them)",
            choices=("float16", "float32"),
        ),
    )
    # DR's official CREMA-D run: SGD lr 2e-3, momentum 0.9, wd 1e-4, batch 64, 90 epochs, no
    # schedule, no augmentation (its my_train mode skips the train transform), full-width ResNet-18.
    defaults = {
        "epochs": 90,
        "batch_size": 64,
        "lr": 2e-3,
        "optimizer": "sgd",
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "lr_schedule": "none",
        "encoder_width": 64,
        "augment": False,
    }

    @classmethod
    def load(cls, data_root: str | None, params: dict[str, Any]) -> DataBundle:
        root = existing_root(data_root, cls.name)
        require_layout(root, cls.name, ("audio", "frames", "splits"), LAYOUT)
        known = clips_in(root / "audio", ".npy") & clips_in(root / "frames", None)
        class_names = CLASS_ORDERS[params["class_order"]]
        splits = label_ids(read_splits(root), class_names, known, root / "splits")
        frames, size = params["frames"], params["image_size"]
        key = {"frames": frames, "image_size": size}
        if (
            params["class_order"] != "ogm"
        ):  # the default keeps the key (and cache) of earlier versions
            key["class_order"] = params["class_order"]

        def read_clip(clip: str) -> tuple[np.ndarray, np.ndarray]:
            return audio_array(root / "audio" / f"{clip}.npy"), pick_frames(
                root / "frames" / clip, frames, size
            )

        record = prepare_record(root)
        return bundle(
            root,
            cls.name,
            class_names,
            splits,
            {**key, "prepare": record},
            read_clip,
            info={"audio_frontend": record.get("audio_frontend", "unknown")},
            audio_dtype=params["audio_dtype"],
        )
