"""The switches that reproduce the official DR code: class ids, k-means input, audio cache, frames.

The "official" computations below are written from the description in docs/methods.md (the DR
code's dataset sorts the class names; its diagnosis min-max scales float32 features and runs
sklearn's KMeans(random_state=0) with sklearn's default n_init, then votes by histogram).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_cremad import EMOTIONS, clip_names
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.preprocessing import MinMaxScaler

from drltune.config import TrialConfig
from drltune.data import load_dataset
from drltune.data.cremad_prepare import prepare_cremad
from drltune.data.splits import read_split
from drltune.methods import dr
from drltune.train import Trainer

N_CLIPS = 96  # 80/10/10: 9-10 clips in val, enough for 6 clusters


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A preprocessed-layout folder (audio/<clip>.npy, frames/<clip>/*.jpg) run through `prepare`."""
    base = tmp_path_factory.mktemp("fidelity")
    raw, rng = base / "raw", np.random.default_rng(0)
    for clip in clip_names(N_CLIPS, n_actors=4):
        k = EMOTIONS.index(clip.split("_")[2])
        spec = rng.normal(0, 1, (32, 16)).astype(np.float32) + k * 0.3
        (raw / "audio").mkdir(parents=True, exist_ok=True)
        np.save(raw / "audio" / f"{clip}.npy", spec)
        folder = raw / "frames" / clip
        folder.mkdir(parents=True)
        for i in range(2):
            colour = np.clip(np.array([40 * k, 255 - 40 * k, 128]) + rng.normal(0, 30, (16, 16, 3)), 0, 255)
            Image.fromarray(colour.astype(np.uint8)).save(folder / f"frame_{i:05d}.jpg")
    out = base / "prepared"
    prepare_cremad(raw, out, echo=lambda line: None)
    return out


def official_ids(labels: list[str]) -> list[int]:
    """The DR dataset: class names read from stat.csv (NEU, HAP, SAD, FEA, DIS, ANG), then sorted."""
    classes = sorted(["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"])
    return [classes.index(label) for label in labels]


def official_purity(features: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """The DR code's reinit_score + purity_score, on float32 features as its torch tensors are."""
    x = MinMaxScaler(feature_range=(-1, 1)).fit_transform(np.asarray(features, np.float32))
    clusters = KMeans(n_clusters=n_classes, random_state=0).fit_predict(x)
    y = np.unique(labels, return_inverse=True)[1]
    bins = np.arange(y.max() + 2)
    voted = np.zeros(len(y))
    for c in np.unique(clusters):
        voted[clusters == c] = np.argmax(np.histogram(y[clusters == c], bins=bins)[0])
    return float((voted == y).mean())


def test_official_class_order_gives_the_dr_codes_ids(prepared):
    default = load_dataset("cremad", str(prepared), {"image_size": 16})
    official = load_dataset("cremad", str(prepared), {"image_size": 16, "class_order": "official"})
    assert official.class_names == ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    rows = read_split(prepared / "splits" / "train.csv")
    assert official.train.labels.tolist() == official_ids([label for _, label in rows])
    assert [default.class_names[i] for i in default.train.labels] == [label for _, label in rows]
    assert default.train.labels.tolist() != official.train.labels.tolist()  # a separate cache, other ids


def test_diagnosis_purities_match_the_official_code_on_the_same_features(prepared):
    cfg = TrialConfig.from_dict({
        "dataset": "cremad", "data_root": str(prepared), "method": "dr", "epochs": 2, "batch_size": 16,
        "encoder_width": 4, "dataset_params": {"image_size": 16, "class_order": "official"},
        "params": {"reinit_epoch": 1, "kmeans_n_init": "auto", "kmeans_dtype": "float32"}})
    trainer = Trainer(cfg)
    trainer.method.setup()
    data = trainer.data
    train_a, train_v, train_y = trainer.features(data.train)
    val_a, val_v, val_y = trainer.features(data.val)
    rows = read_split(prepared / "splits" / "val.csv")
    assert val_y.tolist() == official_ids([label for _, label in rows])
    expected = {"purity_train_audio": official_purity(train_a, train_y, 6),
                "purity_val_audio": official_purity(val_a, val_y, 6),
                "purity_train_visual": official_purity(train_v, train_y, 6),
                "purity_val_visual": official_purity(val_v, val_y, 6)}
    record = trainer.method.on_epoch_end(1)
    assert record["reinit"] is True
    assert {k: record[k] for k in expected} == expected


def test_kmeans_sees_float32_rows_in_the_loaders_order_when_asked(tiny_config, monkeypatch):
    seen: list[np.ndarray] = []
    real_fit_predict = KMeans.fit_predict

    def spy(self, x, *args, **kwargs):
        seen.append(np.array(x))
        return real_fit_predict(self, x, *args, **kwargs)

    monkeypatch.setattr(KMeans, "fit_predict", spy)
    cfg = tiny_config(method="dr", params={"reinit_epoch": 1, "kmeans_n_init": 1, "feature_scaling": "none",
                                           "kmeans_rows": "shuffled"})
    trainer = Trainer(cfg)
    trainer.method.setup()
    train_a, _, _ = trainer.features(trainer.data.train)
    trainer.method.on_epoch_end(1)
    train_audio = seen[0]  # fits in order: train audio, val audio, train visual, val visual
    assert train_audio.dtype == np.float32
    order = trainer.method.row_order(len(train_a), 1)
    assert not np.array_equal(order, np.arange(len(order)))
    np.testing.assert_array_equal(train_audio, train_a[order])
    seen.clear()
    trainer.method.p.update(kmeans_rows="fixed", kmeans_dtype="float64")
    trainer.method.count = 0
    train_a, _, _ = trainer.features(trainer.data.train)  # the weights changed: a fresh pass
    trainer.method.on_epoch_end(1)
    assert seen[0].dtype == np.float64
    np.testing.assert_array_equal(seen[0], train_a.astype(np.float64))


def test_purity_casts_to_the_requested_dtype():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = np.repeat(np.arange(6), 10)
    captured = {}
    real = KMeans.fit_predict

    def spy(self, data, *a, **kw):
        captured["dtype"] = data.dtype
        return real(self, data, *a, **kw)

    KMeans.fit_predict = spy
    try:
        dr.purity(x, y, 6, n_init=1, dtype="float32")
        assert captured["dtype"] == np.float32
        dr.purity(x.astype(np.float32), y, 6, n_init=1, dtype="float64")
        assert captured["dtype"] == np.float64
    finally:
        KMeans.fit_predict = real


def test_float32_audio_cache_is_exact_and_separate(prepared):
    half = load_dataset("cremad", str(prepared), {"image_size": 16})
    full = load_dataset("cremad", str(prepared), {"image_size": 16, "audio_dtype": "float32"})
    assert half.train.audio.dtype == np.float16 and full.train.audio.dtype == np.float32
    clip = read_split(prepared / "splits" / "train.csv")[0][0]
    np.testing.assert_array_equal(full.train.audio[0, 0], np.load(prepared / "audio" / f"{clip}.npy"))
    assert np.abs(half.train.audio[0, 0].astype(np.float32) - full.train.audio[0, 0]).max() > 0
    metas = [json.loads(p.read_text()) for p in (prepared / "cache").glob("cremad-*/meta.json")]
    assert sum(m.get("audio_dtype") == "float32" for m in metas) == 1


def test_partial_seconds_keeps_a_frame_of_the_last_second(tmp_path):
    av = pytest.importorskip("av")
    from drltune.data.video import frames_per_second

    path = str(tmp_path / "short.flv")
    with av.open(path, "w", format="flv") as c:
        s = c.add_stream("flv", rate=30)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        for i in range(45):  # 1.5 s
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((24, 32, 3), 5 * i, np.uint8), "rgb24")))
        c.mux(s.encode())
    assert len(frames_per_second(path)) == 1  # whole seconds only: DR's 2-frame pick repeats it
    frames = frames_per_second(path, partial_seconds=True)
    assert len(frames) == 2 and abs(int(frames[1].mean()) - 5 * 30) < 12  # the frame at 1 s
