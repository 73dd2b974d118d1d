"""`drltune prepare kinetics_sounds` and `prepare ucf101` on small real videos the tests write
(PyAV: moving content, an AAC track or none, a corrupt file), then the loaders and a 1-epoch train
on what they wrote, and `prepare check`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "optflow"):
    pytest.skip("needs opencv-contrib (cv2.optflow)", allow_module_level=True)

from fake_videos import write_corrupt, write_video  # noqa: E402

from drltune.cli import main  # noqa: E402
from drltune.config import TrialConfig  # noqa: E402
from drltune.data import load_dataset  # noqa: E402
from drltune.data.ks_prepare import class_list, prepare_kinetics_sounds  # noqa: E402
from drltune.data.prepared_check import check_prepared  # noqa: E402
from drltune.data.ucf101 import _group  # noqa: E402
from drltune.data.ucf_prepare import prepare_ucf101  # noqa: E402
from drltune.errors import DrltuneError  # noqa: E402
from drltune.train import Trainer  # noqa: E402

KS = ("playing bagpipes", "chopping wood", "tap dancing")
UCF = ("ApplyEyeMakeup", "Archery", "YoYo")
QUIET = {"echo": lambda line: None}


# ---- Kinetics-Sounds -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ks_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("ks") / "raw"
    for split, n in (("train", 4), ("test", 2)):
        for k, name in enumerate(KS):
            folder = raw / split / (name.replace(" ", "_") if k else name.title())  # names match loosely
            for i in range(n):
                write_video(folder / f"{split}{k}{i}.{'mkv' if i == 1 else 'mp4'}", k)
    write_video(raw / "train" / "juggling" / "other_class.mp4", 0)  # not a Kinetics-Sounds class: ignored
    write_video(raw / "train" / "chopping_wood" / "silent.mp4", 1, audio=False)
    write_video(raw / "train" / "chopping_wood" / "short.mp4", 1, seconds=0.5)
    write_corrupt(raw / "train" / "tap_dancing" / "broken.mp4")
    return raw


@pytest.fixture(scope="module")
def ks_out(ks_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ks") / "prepared"
    summary = prepare_kinetics_sounds(ks_raw, out, "ks31", jobs=2, **QUIET)  # worker processes
    assert (summary.prepared, summary.reused) == (18, 0)
    return out


def test_ks_writes_what_the_loader_reads_and_reports_bad_clips(ks_out):
    assert np.load(ks_out / "audio" / "train00.npy").shape == (1024, 128)  # OGM-GE KS fbank
    assert sorted(p.name for p in (ks_out / "frames" / "train00").iterdir()) == ["frame_00000.jpg", "frame_00001.jpg"]
    assert not (ks_out / "audio" / "other_class.npy").exists()
    report = (ks_out / "prepare_report.txt").read_text()
    for clip, kind in (("silent", "no audio"), ("short", "too short"), ("broken", "decode error")):
        assert f"{clip}\t{kind}: " in report
        assert not (ks_out / "frames" / clip).exists()
    stats = json.loads((ks_out / "stats.json").read_text())
    assert stats["clips"] == {"train": 12, "test": 6}
    assert stats["clips_per_class"]["test"] == {name: 2 for name in sorted(KS)}
    assert stats["decode_failures"] == 1 and stats["skipped_by_kind"] == {"decode error": 1, "no audio": 1, "too short": 1}
    assert stats["media_seconds"]["test"] == pytest.approx(12, abs=0.5)  # 6 clips of 2 s
    labels = {line.split(",")[1] for line in (ks_out / "splits" / "train.csv").read_text().splitlines()}
    assert labels == set(KS)  # the list's spelling, whatever the folder's


def test_ks_prepared_folder_loads_trains_and_checks(ks_out):
    data = load_dataset("kinetics_sounds", str(ks_out), {"frames": 3, "image_size": 16, "val_fraction": 0.25})
    assert data.class_names == tuple(sorted(KS)) and data.audio_shape == (1, 1024, 128)
    assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 6)
    assert "kinetics_sounds training reads: 3 classes; train 12, test 6" in check_prepared(ks_out)
    cfg = TrialConfig.from_dict({"dataset": "kinetics_sounds", "data_root": str(ks_out), "epochs": 1, "batch_size": 8,
                                 "encoder_width": 4, "dataset_params": {"image_size": 16, "val_fraction": 0.25}})
    assert len(Trainer(cfg).fit().history) == 1


def test_ks_resumes_and_refuses_other_options(ks_raw, ks_out, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(ks_out, out)
    (out / "audio" / "train00.npy").unlink()  # an interrupted clip
    again = prepare_kinetics_sounds(ks_raw, out, "dr", jobs=1, **QUIET)  # `dr` is the same list as ks31
    assert (again.prepared, again.reused, len(again.skipped)) == (1, 17, 3)
    with pytest.raises(DrltuneError, match="prepared with min_seconds=1"):
        prepare_kinetics_sounds(ks_raw, out, "ks31", min_seconds=0.2, **QUIET)


def test_ks_class_lists(tmp_path):
    names, source = class_list("ks31")
    assert len(names) == len(set(names)) == 31 and source == "ks31" and "playing bagpipes" in names
    assert class_list("OGM-GE")[0] == names == class_list("balancebenchmark")[0]
    with pytest.raises(DrltuneError, match="not known"):
        class_list("arl")
    custom = tmp_path / "class.txt"
    custom.write_text("playing bagpipes, chopping_wood,tap dancing\n")  # ARL's one-line, comma-separated form
    assert class_list(str(custom))[0] == ["playing bagpipes", "chopping_wood", "tap dancing"]
    custom.write_text("a\nA\n")
    with pytest.raises(DrltuneError, match="distinct"):
        class_list(str(custom))


def test_ks_cli_prints_stats_and_check_and_rejects_bad_raw(ks_raw, ks_out, tmp_path, capsys):
    out = tmp_path / "cli"
    shutil.copytree(ks_out, out)
    main(["prepare", "kinetics_sounds", "--raw", str(ks_raw), "--out", str(out), "--jobs", "1"])
    printed = capsys.readouterr().out
    assert "prepared 0 clip(s), reused 18, skipped 3" in printed
    assert "train: 12 clip(s)" in printed and "decode failures: 1" in printed
    assert "check: " in printed and "matches what kinetics_sounds training reads" in printed
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "kinetics_sounds", "--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code != 0
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --raw")


def test_check_finds_what_training_would_trip_on(ks_out, tmp_path):
    out = tmp_path / "broken"
    shutil.copytree(ks_out, out)
    np.save(out / "audio" / "train00.npy", np.zeros((10, 128), np.float32))
    for image in (out / "frames" / "test10").iterdir():
        image.unlink()
    with pytest.raises(DrltuneError) as err:
        check_prepared(out)
    assert "train00: audio feature shape (10, 128), expected (1024, 128)" in str(err.value)
    assert "test10: no images in frames/test10" in str(err.value)


# ---- UCF-101 -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ucf_raw(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ucf")
    raw, lists = base / "UCF-101", base / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF)))
    for split, test_group in ((1, 1), (2, 2)):
        train, test = [], []
        for k, name in enumerate(UCF):
            for g in range(1, 7):
                for c in (1, 2):
                    clip = f"v_{name}_g{g:02d}_c{c:02d}"
                    if split == 1:
                        write_video(raw / name / f"{clip}.avi", k, seconds=2, audio=False)
                    (test if g == test_group else train).append(f"{name}/{clip}.avi" + ("" if g == test_group
                                                                                         else f" {k + 1}"))
        if split == 1:
            write_corrupt(raw / "Archery" / "v_Archery_g06_c03.avi")
            train.append("Archery/v_Archery_g06_c03.avi 2")
        (lists / f"trainlist0{split}.txt").write_text("\n".join(train) + "\n")
        (lists / f"testlist0{split}.txt").write_text("\n".join(test) + "\n")
    return raw, lists


@pytest.fixture(scope="module")
def ucf_out(ucf_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ucf") / "prepared"
    summary = prepare_ucf101(*ucf_raw, out, split=1, val_fraction=0.2, jobs=2, **QUIET)
    assert (summary.prepared, list(summary.skipped)) == (36, ["v_Archery_g06_c03"])
    return out


def _split_clips(out: Path) -> dict[str, list[str]]:
    return {name: [line.split(",")[0] for line in (out / "splits" / f"{name}.csv").read_text().splitlines()]
            for name in ("train", "val", "test")}


def test_ucf_writes_frames_and_tvl1_flow(ucf_out):
    clip = "v_Archery_g03_c01"
    for modality in ("frames", "flow_u", "flow_v"):
        assert sorted(p.name for p in (ucf_out / modality / clip).iterdir()) == ["frame_00000.jpg", "frame_00001.jpg"]
    u = np.asarray(cv2.imread(str(ucf_out / "flow_u" / clip / "frame_00000.jpg"), cv2.IMREAD_GRAYSCALE), np.float32)
    v = np.asarray(cv2.imread(str(ucf_out / "flow_v" / clip / "frame_00000.jpg"), cv2.IMREAD_GRAYSCALE), np.float32)
    # the square moves 2 px right a frame: u = 127.5 + 2 * 255 / 40 there, background and v stay at rest
    square = u[8:16, 0:10]
    assert square.max() >= 136 and abs(np.median(u) - 127.5) <= 2 and abs(v.mean() - 127.5) <= 3
    stats = json.loads((ucf_out / "stats.json").read_text())
    assert stats["decode_failures"] == 1 and stats["clips"] == {"train": 24, "val": 6, "test": 6}
    assert stats["media_seconds"]["test"] == pytest.approx(12.0)


def test_ucf_official_split_and_no_group_in_two_splits(ucf_raw, ucf_out, tmp_path):
    clips = _split_clips(ucf_out)
    assert {_group(c).rsplit("_g", 1)[1] for c in clips["test"]} == {"01"}  # testlist01: the g01 clips
    groups = {name: {_group(c) for c in rows} for name, rows in clips.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not groups[a] & groups[b], (a, b)
    assert {c.split("_")[1] for c in clips["val"]} == set(UCF)  # stratified: every class in val
    out2 = tmp_path / "split2"
    prepare_ucf101(*ucf_raw, out2, split=2, val_fraction=0.2, **QUIET)
    assert {_group(c).rsplit("_g", 1)[1] for c in _split_clips(out2)["test"]} == {"02"}


def test_ucf_prepared_folder_loads_trains_and_checks(ucf_out):
    data = load_dataset("ucf101", str(ucf_out), {"frames": 2, "flow_frames": 2, "image_size": 16})
    assert data.class_names == tuple(sorted(UCF)) and data.audio_shape == (4, 16, 16)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 6)
    assert float(np.asarray(data.train.audio).max()) > 0.03  # flow, scaled to [-1, 1], shows motion
    assert "ucf101 training reads: 3 classes; train 24, val 6, test 6" in check_prepared(ucf_out)
    cfg = TrialConfig.from_dict({"dataset": "ucf101", "data_root": str(ucf_out), "epochs": 1, "batch_size": 8,
                                 "encoder_width": 4, "dataset_params": {"image_size": 16, "frames": 2}})
    assert len(Trainer(cfg).fit().history) == 1


def test_ucf_rejects_lists_naming_unknown_classes(ucf_raw, tmp_path):
    raw, lists = ucf_raw
    bad = tmp_path / "lists"
    shutil.copytree(lists, bad)
    (bad / "testlist01.txt").write_text("Bowling/v_Bowling_g01_c01.avi\n")
    with pytest.raises(DrltuneError, match="not in classInd.txt: Bowling"):
        prepare_ucf101(raw, bad, tmp_path / "out", **QUIET)
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_ucf_val_that_cannot_be_carved_fails_before_decoding(ucf_raw, tmp_path):
    raw, lists = ucf_raw
    few = tmp_path / "lists"
    shutil.copytree(lists, few)
    (few / "trainlist01.txt").write_text("Archery/v_Archery_g02_c01.avi 2\nYoYo/v_YoYo_g02_c01.avi 3\n")
    with pytest.raises(DrltuneError, match="--val-fraction 0.1: cannot hold out whole groups from 2 train"):
        prepare_ucf101(raw, few, tmp_path / "out", **QUIET)
    assert not (tmp_path / "out").exists()
