"""CREMA-D end to end on a generated raw folder: prepare, loader, cache, errors, a 1-epoch train."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("soundfile")

from fake_cremad import write_cremad_raw  # noqa: E402

from drltune.cli import main  # noqa: E402
from drltune.data import load_dataset  # noqa: E402
from drltune.data.cremad_prepare import prepare_cremad  # noqa: E402
from drltune.errors import DrltuneError  # noqa: E402

N_CLIPS = 24
CORRUPT = "1001_IEO_NEU_XX"
SMALL = {"frames": 2, "image_size": 32}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cremad") / "raw"
    names = write_cremad_raw(root, N_CLIPS)
    assert CORRUPT in names
    (root / "VideoFlash" / f"{CORRUPT}.flv").write_bytes(b"not a video")
    return root


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cremad") / "prepared"
    summary = prepare_cremad(raw, out, jobs=2, echo=lambda line: None)  # worker processes
    assert summary.prepared == N_CLIPS - 1
    return out


def test_prepare_writes_layout_and_reports_the_corrupt_clip(prepared):
    audio = sorted(p.stem for p in (prepared / "audio").glob("*.npy"))
    assert len(audio) == N_CLIPS - 1 and CORRUPT not in audio
    assert np.load(prepared / "audio" / f"{audio[0]}.npy").shape == (256, 128)  # DR fbank
    frames = sorted(p.name for p in (prepared / "frames" / audio[0]).iterdir())
    assert frames == ["frame_00000.jpg", "frame_00001.jpg"]  # 2.2 s at 1 fps: 2 whole seconds
    report = (prepared / "prepare_report.txt").read_text()
    assert CORRUPT in report
    rows = {s: (prepared / "splits" / f"{s}.csv").read_text().split() for s in ("train", "val", "test")}
    clips = [r.split(",")[0] for s in rows.values() for r in s]
    assert sorted(clips) == audio  # every good clip in exactly one split, the corrupt one in none
    assert {r.split(",")[1] for r in rows["train"]} == {"NEU", "HAP", "SAD", "FEA", "DIS", "ANG"}
    record = json.loads((prepared / "prepare.json").read_text())
    assert record["audio_frontend"] == "fbank" and record["split_source"].startswith("stratified")


def test_prepare_cli_lists_skipped_clip_and_resumes(raw, prepared, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    (out / "audio" / "1002_IEO_HAP_XX.npy").unlink()  # as if interrupted before this clip finished
    main(["prepare", "cremad", "--raw", str(raw), "--out", str(out)])
    captured = capsys.readouterr()
    assert "prepared 1 clip(s), reused 22, skipped 1" in captured.out
    assert f"skipped {CORRUPT}" in captured.err
    assert (out / "audio" / "1002_IEO_HAP_XX.npy").is_file()


def test_prepare_refuses_to_mix_front_ends(raw, prepared, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    with pytest.raises(DrltuneError, match="audio_frontend=fbank"):
        prepare_cremad(raw, out, audio_frontend="stft", echo=lambda line: None)


def test_prepare_accepts_a_preprocessed_folder_and_user_splits(prepared, tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    clips = sorted(p.stem for p in (prepared / "audio").glob("*.npy"))
    (splits / "my_train.csv").write_text("".join(f"{c},{c.split('_')[2]}\n" for c in clips[:15]))
    (splits / "val.csv").write_text("".join(f"{c},{c.split('_')[2]}\n" for c in clips[15:19]))
    (splits / "test.csv").write_text("name,label\n" + "".join(f"{c},{c.split('_')[2]}\n" for c in clips[19:]))
    out = tmp_path / "again"
    summary = prepare_cremad(prepared, out, splits_dir=splits, echo=lambda line: None)
    assert summary.prepared == N_CLIPS - 1 and not summary.skipped
    assert summary.split_sizes == {"train": 15, "val": 4, "test": 4}
    assert (out / "splits" / "train.csv").read_text().splitlines()[0] == f"{clips[0]},{clips[0].split('_')[2]}"


def test_user_split_naming_missing_clips_is_an_error(raw, tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("train", "val", "test"):
        (splits / f"{name}.csv").write_text("1091_XYZ_ANG_XX,ANG\n")
    with pytest.raises(DrltuneError, match="splits/train names 1 clip.*do not exist: 1091_XYZ_ANG_XX"):
        prepare_cremad(raw, tmp_path / "out", splits_dir=splits, echo=lambda line: None)
    assert not (tmp_path / "out").exists()  # refused before decoding anything


def test_prepare_wrong_layout_says_expected_and_found(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "cremad", "--raw", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "expected the published CREMA-D layout" in err and "found videos/" in err
    assert len(err.strip().splitlines()) == 1


def test_loader_builds_a_memmapped_cache_once(prepared, monkeypatch):
    bundle = load_dataset("cremad", str(prepared), SMALL)
    assert bundle.class_names == ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == N_CLIPS - 1
    for split in (bundle.train, bundle.val, bundle.test):
        assert isinstance(split.audio, np.memmap) and split.audio.dtype == np.float16
        assert isinstance(split.visual, np.memmap) and split.visual.dtype == np.uint8
        assert split.labels.dtype == np.int64
    assert bundle.audio_shape == (1, 256, 128) and bundle.visual_shape == (2, 3, 32, 32)
    # the stored frames are the eval transform of the class colour (green falls as the label rises)
    green = bundle.train.visual[:, :, 1].mean(axis=(1, 2, 3))
    assert np.corrcoef(green, bundle.train.labels)[0, 1] < -0.9

    import drltune.data.cache as cache

    monkeypatch.setattr(cache, "_build", lambda *a: pytest.fail("second load rebuilt the cache"))
    again = load_dataset("cremad", str(prepared), SMALL)
    np.testing.assert_array_equal(again.train.visual, bundle.train.visual)
    monkeypatch.undo()
    other = load_dataset("cremad", str(prepared), {"frames": 1, "image_size": 16})  # another key, another cache
    assert other.visual_shape == (1, 3, 16, 16)
    assert len(list((prepared / "cache").glob("cremad-*/meta.json"))) == 2


def test_loader_errors(prepared, tmp_path):
    with pytest.raises(DrltuneError, match="does not exist"):
        load_dataset("cremad", str(tmp_path / "nope"), SMALL)
    with pytest.raises(DrltuneError, match="needs its prepared folder.*--set data_root=DIR. for train"):
        load_dataset("cremad", None, SMALL)
    (tmp_path / "audio").mkdir()
    with pytest.raises(DrltuneError, match=r"expected audio/<clip>.npy.*found audio/"):
        load_dataset("cremad", str(tmp_path), SMALL)
    broken = tmp_path / "broken"
    shutil.copytree(prepared, broken, ignore=shutil.ignore_patterns("cache"))
    with open(broken / "splits" / "val.csv", "a") as f:
        f.write("1090_IEO_SAD_XX,SAD\n")
    with pytest.raises(DrltuneError, match=r"splits/val names 1 clip\(s\) that do not exist: 1090_IEO_SAD_XX"):
        load_dataset("cremad", str(broken), SMALL)


def test_one_epoch_train_on_prepared_data(prepared, tmp_path):
    metrics = tmp_path / "m.json"
    main(["train", "--quiet", "--metrics-out", str(metrics), "--set", "dataset=cremad",
          "--set", f"data_root={prepared}", "--set", "epochs=1", "--set", "encoder_width=4",
          "--set", "batch_size=8", "--set", "augment=true",
          "--set", "dataset_params.image_size=32"])
    result = json.loads(metrics.read_text())
    assert len(result["history"]) == 1 and 0.0 <= result["test_acc"] <= 1.0


@pytest.mark.slow
def test_one_epoch_search_on_prepared_data(prepared, tmp_path):
    import subprocess
    import sys

    import optuna

    drltune = str(Path(sys.executable).parent / "drltune")
    run = subprocess.run([drltune, "search", "--race", "0", "--dataset", "cremad", "--data-root", str(prepared), "--trials", "1",
                          "--max-epochs", "1", "--concurrent", "1", "--set", "encoder_width=4",
                          "--set", "dataset_params.image_size=32"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="cremad-default", storage=f"sqlite:///{tmp_path}/studies/drltune.db")
    (trial,) = study.get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["config"]["dataset"] == "cremad"
    assert trial.user_attrs["config"]["data_root"] == str(prepared)
    assert sorted(trial.intermediate_values) == [0]


def test_preprocessed_input_with_a_corrupt_frame_is_reported(prepared, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(prepared, src, ignore=shutil.ignore_patterns("cache", "prepare*"))
    broken = "1002_IEO_HAP_XX"
    (src / "frames" / broken / "frame_00001.jpg").write_bytes(b"\xff\xd8 truncated")
    summary = prepare_cremad(src, tmp_path / "out", echo=lambda line: None)
    assert set(summary.skipped) == {broken} and "frame_00001.jpg" in summary.skipped[broken]
    assert not (tmp_path / "out" / "frames" / broken).exists()
    assert summary.prepared == N_CLIPS - 2


def test_the_declared_choices_are_the_ones_the_loader_knows():
    """cremad.py writes its choices as literals (declarations.py reads them without importing)."""
    from drltune.data.cache import AUDIO_DTYPES
    from drltune.data.cremad import CLASS_ORDERS, CremaD

    choices = {p.name: p.choices for p in CremaD.params}
    assert choices["class_order"] == tuple(CLASS_ORDERS)
    assert choices["audio_dtype"] == AUDIO_DTYPES
