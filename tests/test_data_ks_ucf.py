"""Kinetics-Sounds and UCF-101 loaders over tiny preprocessed folders: splits, classes, cache, a 1-epoch train."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drltune.config import TrialConfig
from drltune.data import load_dataset
from drltune.data.prepared import carve_val
from drltune.data.ucf101 import _group, _split_rows
from drltune.errors import DrltuneError
from drltune.train import Trainer

KS_CLASSES = ("playing bagpipes", "chopping wood", "dog barking")
UCF_CLASSES = ("ApplyEyeMakeup", "Archery", "YoYo")


def _frames(folder: Path, n: int, value: int, mode: str = "RGB") -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new(mode, (40, 30), value if mode == "L" else (value, 255 - value, 90)).save(folder / f"frame_{i:05d}.jpg")


@pytest.fixture(scope="module")
def ks_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ks")
    (root / "audio").mkdir()
    (root / "splits").mkdir()
    rng = np.random.default_rng(0)
    rows = {"train": [], "test": []}
    for i in range(24):
        clip, label = f"ks_{i:03d}", KS_CLASSES[i % 3]
        np.save(root / "audio" / f"{clip}.npy", rng.standard_normal((64, 128)).astype(np.float32))
        _frames(root / "frames" / clip, 4, 60 * (i % 3))
        rows["train" if i < 18 else "test"].append(f"{clip},{label}\n")
    for split, lines in rows.items():
        (root / "splits" / f"{split}.csv").write_text("".join(lines))
    return root


def test_kinetics_sounds_loader_carves_a_stratified_val(ks_root):
    data = load_dataset("kinetics_sounds", str(ks_root), {"frames": 3, "image_size": 16, "val_fraction": 0.2})
    assert data.class_names == tuple(sorted(KS_CLASSES))
    assert (len(data.train), len(data.val), len(data.test)) == (14, 4, 6)
    assert set(data.val.labels.tolist()) == {0, 1, 2}  # stratified: every class in val
    assert data.audio_shape == (1, 64, 128) and data.visual_shape == (3, 3, 16, 16)
    assert isinstance(data.train.visual, np.memmap) and data.info["classes_found"] == 3


def test_kinetics_sounds_one_epoch_train(ks_root):
    cfg = TrialConfig.from_dict({"dataset": "kinetics_sounds", "data_root": str(ks_root), "epochs": 1,
                                 "batch_size": 8, "encoder_width": 4,
                                 "dataset_params": {"image_size": 16, "val_fraction": 0.2}})
    result = Trainer(cfg).fit()
    assert len(result.history) == 1


def test_kinetics_sounds_missing_split_file(tmp_path):
    for sub in ("audio", "frames", "splits"):
        (tmp_path / sub).mkdir()
    with pytest.raises(DrltuneError, match="split file not found: .*train.csv"):
        load_dataset("kinetics_sounds", str(tmp_path), {"frames": 3, "image_size": 16, "val_fraction": 0.1})


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF_CLASSES)))
    train, test = [], []
    for k, cls in enumerate(UCF_CLASSES):
        for g in range(1, 7):
            for c in range(1, 3):
                clip = f"v_{cls}_g{g:02d}_c{c:02d}"
                _frames(root / "frames" / clip, 3, 70 * k)
                _frames(root / "flow_u" / clip, 2, 128 + 20 * k, "L")
                _frames(root / "flow_v" / clip, 2, 128 - 20 * k, "L")
                (test if g == 1 else train).append((cls, clip, k + 1))
    (lists / "trainlist01.txt").write_text("".join(f"{cls}/{clip}.avi {k}\n" for cls, clip, k in train))
    (lists / "testlist01.txt").write_text("".join(f"{cls}/{clip}.avi\n" for cls, clip, _ in test))
    return root


UCF_SMALL = {"split": 1, "frames": 2, "flow_frames": 1, "image_size": 16, "val_fraction": 0.2}


def test_ucf101_official_lists_flow_channels_and_group_disjoint_val(ucf_root):
    data = load_dataset("ucf101", str(ucf_root), UCF_SMALL)
    assert data.class_names == UCF_CLASSES  # classInd.txt order
    assert len(data.test) == 6 and len(data.train) + len(data.val) == 30
    assert data.audio_shape == (2, 16, 16) and data.visual_shape == (2, 3, 16, 16)
    flow = np.asarray(data.test.audio, dtype=np.float32)
    assert -1.0 <= flow.min() and flow.max() <= 1.0
    # u rises and v falls with the class in the generated flow
    assert flow[data.test.labels == 2, 0].mean() > 0.2 and flow[data.test.labels == 2, 1].mean() < -0.2
    train, val = _carved(ucf_root)
    assert (len(data.train), len(data.val)) == (len(train), len(val))
    assert {_group(c) for c, _ in val} and not {_group(c) for c, _ in train} & {_group(c) for c, _ in val}


def _carved(root: Path):
    """The loader's train/val rows: val is held out whole groups at a time."""
    rows, _, _ = _split_rows(root, 1)
    return carve_val(rows["train"], UCF_SMALL["val_fraction"], group_of=_group)


def test_ucf101_one_epoch_train_with_a_two_channel_flow_encoder(ucf_root):
    cfg = TrialConfig.from_dict({"dataset": "ucf101", "data_root": str(ucf_root), "epochs": 1, "batch_size": 8,
                                 "encoder_width": 4, "dataset_params": dict(UCF_SMALL)})
    trainer = Trainer(cfg)
    assert trainer.model.audio_net.net.conv1.in_channels == 2
    assert len(trainer.fit().history) == 1


def test_ucf101_errors(ucf_root, tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(DrltuneError, match="expected frames/<clip>/, flow_u/<clip>/.*found frames/"):
        load_dataset("ucf101", str(tmp_path), UCF_SMALL)
    with pytest.raises(DrltuneError, match="trainlist02.txt not found"):
        load_dataset("ucf101", str(ucf_root), {**UCF_SMALL, "split": 2})
