"""The trainer: determinism, learning, selection on validation, metrics and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from drltune.config import TrialConfig
from drltune.data import load_dataset
from drltune.data.batches import augment_frames
from drltune.errors import DrltuneError
from drltune.train import NonFiniteLoss, Trainer


def _strip_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.mark.parametrize("method", ["baseline", "dr"])
def test_same_seed_gives_identical_metrics(tiny_config, method):
    params = {"reinit_epoch": 1, "reinit_num": 1} if method == "dr" else {}
    runs = [Trainer(tiny_config(method=method, params=params, augment=True)).fit() for _ in range(2)]
    assert _strip_time(runs[0].history) == _strip_time(runs[1].history)
    assert runs[0].test_acc == runs[1].test_acc


def test_other_seed_gives_other_metrics(tiny_config):
    a = Trainer(tiny_config(seed=0)).fit()
    b = Trainer(tiny_config(seed=1)).fit()
    assert _strip_time(a.history) != _strip_time(b.history)


def test_training_beats_chance_by_a_wide_margin():
    cfg = TrialConfig.from_dict({"epochs": 5, "encoder_width": 4,
                                 "dataset_params": {"n_train": 360, "n_val": 120, "n_test": 120}})
    result = Trainer(cfg).fit()
    chance = 1 / 6
    assert result.best_val_acc > chance + 0.25
    assert result.test_acc > chance + 0.2


def test_report_every_epoch_with_required_metrics_and_early_stop(tiny_config):
    seen = []

    def report(epoch, record):
        seen.append(record)
        return epoch == 1  # ask to stop after the second epoch

    result = Trainer(tiny_config(epochs=4)).fit(report)
    assert [r["epoch"] for r in seen] == [0, 1] and result.stopped_early
    for key in ("val_acc", "val_f1", "val_acc_audio", "val_acc_visual", "train_loss", "val_acc_best"):
        assert all(isinstance(r[key], float) for r in seen), key


def test_selects_the_best_validation_epoch_and_tests_it(tiny_config):
    result = Trainer(tiny_config(epochs=3)).fit()
    accs = [r["val_acc"] for r in result.history]
    assert result.best_epoch == int(np.argmax(accs))
    assert result.best_val_acc == max(accs)
    assert all("test_acc" not in r for r in result.history)  # test is evaluated once, at the end


def test_nan_loss_stops_with_a_clear_error(tiny_config):
    trainer = Trainer(tiny_config(epochs=3))
    with torch.no_grad():
        trainer.model.fusion.fc_out.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="loss became nan at epoch 0, step 0"):
        trainer.fit()


@pytest.mark.parametrize("optimizer,schedule", [("adam", "step"), ("adamw", "cosine")])
def test_optimisers_and_schedules(tiny_config, optimizer, schedule):
    result = Trainer(tiny_config(optimizer=optimizer, lr_schedule=schedule, lr_step=1, lr=1e-3)).fit()
    lrs = [r["lr"] for r in result.history]
    assert lrs[1] < lrs[0]


def test_augmentation_is_batched_and_reproducible():
    frames = torch.rand(4, 2, 3, 16, 16)
    a = augment_frames(frames, torch.Generator().manual_seed(0))
    b = augment_frames(frames, torch.Generator().manual_seed(0))
    assert a.shape == frames.shape and torch.equal(a, b) and not torch.equal(a, frames)


def test_synthetic_data_is_deterministic_and_shaped_like_cremad():
    params = {"seed": 3, "n_train": 12, "n_val": 6, "n_test": 6, "audio_freq": 16, "audio_time": 20,
              "frames": 3, "image_size": 16, "audio_snr": 1.0, "visual_snr": 0.5,
              "audio_reliability": 0.75, "visual_reliability": 0.8}
    a = load_dataset("synthetic", None, params)
    assert a.train.audio.shape == (12, 1, 16, 20) and a.train.visual.shape == (12, 3, 3, 16, 16)
    assert a.train.visual.dtype == np.uint8 and a.num_classes == 6
    from drltune.data.synthetic import _generate
    _generate.cache_clear()
    b = load_dataset("synthetic", None, params)
    assert np.array_equal(a.train.audio, b.train.audio) and np.array_equal(a.test.labels, b.test.labels)


def test_bad_config_values_name_the_key(tiny_config):
    with pytest.raises(DrltuneError, match="unknown dataset 'nope'; valid: .*synthetic"):
        Trainer(tiny_config(dataset="nope"))
    with pytest.raises(DrltuneError, match="^params.reinit_num"):
        Trainer(tiny_config(method="dr", params={"reinit_num": -1}))
    with pytest.raises(DrltuneError, match="^batch_size"):
        Trainer(tiny_config(batch_size=0))
    with pytest.raises(DrltuneError, match="^lr: expected float"):
        TrialConfig.from_dict({"lr": "fast"})


@pytest.mark.gpu
def test_trains_on_cuda_with_bf16_autocast(tiny_config):
    trainer = Trainer(tiny_config(device="cuda"))
    assert trainer.amp and next(trainer.model.parameters()).is_cuda
    result = trainer.fit()
    assert 0.0 <= result.test_acc <= 1.0 and len(result.history) == 2


def test_linear_probe_of_a_skipped_encoder_is_chance(tiny_config):
    from drltune.train.probe import linear_probe

    trainer = Trainer(tiny_config(modality="visual", epochs=1))
    trainer.fit()
    probe = linear_probe(trainer)
    assert set(probe) == {"probe_audio", "probe_visual"}
    assert probe["probe_audio"] == pytest.approx(1 / 6)  # all-zero features: one class for every clip
    assert 0.0 <= probe["probe_visual"] <= 1.0
