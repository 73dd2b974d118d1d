"""The pieces under the dataset loaders: audio front-ends, frame picks, splits, and the cache's atomicity."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from drltune.data.cache import cached_splits
from drltune.data.splits import read_split, stratified_split
from drltune.data.video import segment_middles
from drltune.errors import DrltuneError


# ---- audio -----------------------------------------------------------------------------------
def test_fbank_is_kaldi_shaped_and_puts_a_tone_in_the_right_mel_bin():
    from drltune.data.audio import _mel, fbank_feature, kaldi_fbank, ogm_stft_feature

    sr = 16_000
    t = np.arange(int(2.0 * sr)) / sr
    wave = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    raw = kaldi_fbank(wave, sr)
    assert raw.shape == (1 + (len(wave) - 400) // 160, 128)  # snip-edges framing, 25 ms / 10 ms
    mel_low, mel_high = _mel(20.0), _mel(8000.0)
    centres = mel_low + (mel_high - mel_low) / 129 * np.arange(1, 129)
    assert abs(int(raw.mean(0).argmax()) - int(np.abs(centres - _mel(1000.0)).argmin())) <= 1
    feat = fbank_feature(wave, sr)
    assert feat.shape == (256, 128)  # padded from 198 frames to DR's 256
    assert np.allclose(feat[200:], (0 + 4.503877) / (2 * 5.141276))  # zero padding, then normalised
    assert ogm_stft_feature(wave, 22_050).shape == (257, 188)


def test_read_audio_resamples(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    from drltune.data.audio import read_audio

    soundfile.write(tmp_path / "a.wav", np.zeros((16_000, 2), np.float32), 16_000)
    assert read_audio(str(tmp_path / "a.wav"), 22_050).shape == (22_050,)


# ---- frames ----------------------------------------------------------------------------------
def test_segment_middles_follow_dr():
    assert segment_middles(3, 2) == [0, 1]  # seg 1: indices 0, 1 (DR reads frame 0 in eval)
    assert segment_middles(5, 2) == [1, 3]
    assert segment_middles(10, 3) == [1, 4, 7]
    assert segment_middles(1, 2) == [0, 0]  # too few frames: repeat


def test_one_frame_per_whole_second(tmp_path):
    av = pytest.importorskip("av")
    from drltune.data.video import frames_per_second

    def clip(n_frames: int) -> str:
        path = str(tmp_path / f"{n_frames}.flv")
        with av.open(path, "w", format="flv") as c:
            s = c.add_stream("flv", rate=30)
            s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
            for i in range(n_frames):
                c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((24, 32, 3), 8 * i % 256, np.uint8), "rgb24")))
            c.mux(s.encode())
        return path

    frames = frames_per_second(clip(75))  # 2.5 s: frames 0 and 30; the half second is dropped
    assert len(frames) == 2 and frames[0].shape == (24, 32, 3)
    assert abs(int(frames[1].mean()) - 8 * 30 % 256) < 12
    assert len(frames_per_second(clip(10))) == 1  # under a second: its first frame


# ---- splits ----------------------------------------------------------------------------------
def _rows(n_actors: int = 6, per_actor: int = 12) -> list[tuple[str, str]]:
    emotions = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
    return [(f"{1001 + a}_S{i:02d}_{emotions[i % 6]}_XX", emotions[i % 6])
            for a in range(n_actors) for i in range(per_actor)]


def test_stratified_split_is_deterministic_and_balanced():
    rows = _rows()
    parts = stratified_split(rows, (0.8, 0.1, 0.1), seed=0)
    assert parts == stratified_split(list(reversed(rows)), (0.8, 0.1, 0.1), seed=0)
    assert sorted(r for p in parts for r in p) == sorted(rows)
    assert [len(p) for p in parts] == [58, 7, 7]
    assert {label for _, label in parts[0]} == {"NEU", "HAP", "SAD", "FEA", "DIS", "ANG"}


def test_split_by_actor_keeps_each_actor_in_one_part():
    parts = stratified_split(_rows(), (0.8, 0.1, 0.1), seed=0, group_of=lambda clip: clip[:4])
    actors = [{clip[:4] for clip, _ in p} for p in parts]
    assert all(actors) and not (actors[0] & actors[1] or actors[0] & actors[2] or actors[1] & actors[2])
    with pytest.raises(DrltuneError, match="too few to split 3 ways"):
        stratified_split(_rows(n_actors=2), (0.8, 0.1, 0.1), group_of=lambda clip: clip[:4])


def test_read_split_accepts_the_papers_variants(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeffname,label\r\n1001_IEO_NEU_XX,NEU\r\n\r\n1002_DFA_ANG_XX,ANG\r\n".encode())
    assert read_split(path) == [("1001_IEO_NEU_XX", "NEU"), ("1002_DFA_ANG_XX", "ANG")]
    path.write_text("1001_IEO_NEU_XX\n")
    with pytest.raises(DrltuneError, match="row 1: expected `clip,LABEL`"):
        read_split(path)


def test_shipped_paper_splits_are_used_when_the_clips_match():
    from drltune.data.cremad_prepare import (
        PrepareSummary,
        _default_splits,
        _leave_out_skipped,
        _shipped_splits,
    )

    shipped = _shipped_splits()
    assert [len(shipped[s]) for s in ("train", "val", "test")] == [5954, 744, 744]
    every = {clip for rows in shipped.values() for clip, _ in rows}
    broken = shipped["val"][0][0]
    summary = PrepareSummary(skipped={broken: "ValueError: bad"})
    splits, source = _default_splits(every, every - {broken}, False, 0)
    splits = _leave_out_skipped(splits, every - {broken}, summary)
    assert source.startswith("paper") and len(splits["val"]) == 743 and len(splits["train"]) == 5954
    assert summary.skipped[broken] == "ValueError: bad (left out of val)"


# ---- cache -----------------------------------------------------------------------------------
SPLITS = {"train": [(f"c{i}", i % 2) for i in range(6)], "val": [("v0", 0), ("v1", 1)], "test": [("t0", 1)]}


def _reader(calls: list, fail_at: str | None = None):
    def read(clip: str):
        calls.append(clip)
        if clip == fail_at:
            raise RuntimeError("decoder crashed")
        value = sum(map(ord, clip)) % 256
        return np.full((1, 4, 5), value / 100, np.float32), np.full((2, 3, 8, 8), value, np.uint8)
    return read


def test_a_failed_build_leaves_no_cache_and_the_next_one_completes(tmp_path: Path):
    with pytest.raises(RuntimeError, match="decoder crashed"):
        cached_splits(tmp_path, "toy", {"p": 1}, SPLITS, _reader([], fail_at="v1"))
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # neither a final nor a temporary folder
    calls: list = []
    splits = cached_splits(tmp_path, "toy", {"p": 1}, SPLITS, _reader(calls))
    assert splits["val"].visual.shape == (2, 2, 3, 8, 8) and splits["train"].audio.dtype == np.float16
    assert splits["test"].visual[0, 0, 0, 0, 0] == sum(map(ord, "t0")) % 256
    assert splits["train"].labels.tolist() == [0, 1, 0, 1, 0, 1]
    calls.clear()
    cached_splits(tmp_path, "toy", {"p": 1}, SPLITS, _reader(calls))
    assert calls == []  # a hit reads nothing
    cached_splits(tmp_path, "toy", {"p": 2}, SPLITS, _reader(calls))
    assert len(calls) == 1 + 9  # another key: a new cache (the first clip is read twice, for the shapes)


def test_concurrent_loads_build_once(tmp_path: Path):
    calls: list = []
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(
        cached_splits(tmp_path, "toy", {}, SPLITS, _reader(calls)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(calls) == 10
    assert all(np.array_equal(r["train"].visual, results[0]["train"].visual) for r in results)


def test_inconsistent_clip_shapes_are_a_clear_error(tmp_path: Path):
    def read(clip: str):
        size = 8 if clip != "c3" else 9
        return np.zeros((1, 4, 5), np.float32), np.zeros((2, 3, size, size), np.uint8)

    with pytest.raises(DrltuneError, match="clip c3: audio .* differ from the first clip's"):
        cached_splits(tmp_path, "toy", {}, SPLITS, read)
