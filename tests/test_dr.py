"""DR's diagnosis, re-initialisation and schedule, checked against hand computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drltune.methods.dr import blend_, purity, reinit_weight
from drltune.train import Trainer


def _separable(n_per_class: int, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    centres = np.eye(k) * 10.0
    x = np.concatenate([centres[c] + 0.01 * rng.standard_normal((n_per_class, k)) for c in range(k)])
    return x, np.repeat(np.arange(k), n_per_class)


def test_purity_gap_and_weight_by_hand():
    rng = np.random.default_rng(0)
    k = 6
    train_x, train_y = _separable(10, k, rng)
    # Validation: 6 tight clusters, each holding two clips of every class, so every
    # cluster's majority covers 2 of its 12 clips: purity 12/72 = 1/6 exactly.
    val_x, _ = _separable(12, k, rng)
    val_y = np.tile(np.repeat(np.arange(k), 2), k)
    p_train = purity(train_x, train_y, n_clusters=k)
    p_val = purity(val_x, val_y, n_clusters=k)
    assert p_train == 1.0
    assert p_val == pytest.approx(1 / 6)
    assert reinit_weight(abs(p_train - p_val), 3.0) == pytest.approx(math.tanh(3.0 * 5 / 6))


def test_purity_counts_majority_per_cluster_weighted_by_size():
    # Two well separated groups: the first (8 clips) is 6x class 0 + 2x class 1, the second
    # (4 clips) is 3x class 1 + 1x class 0 -> purity (6 + 3) / 12.
    x = np.array([[0.0]] * 8 + [[100.0]] * 4) + np.linspace(0, 0.01, 12)[:, None]
    y = np.array([0] * 6 + [1] * 2 + [1] * 3 + [0])
    assert purity(x, y, n_clusters=2) == pytest.approx(9 / 12)


def test_a_split_smaller_than_the_class_count_is_one_clear_error():
    """k-means needs a clip per cluster: a tiny val split is named, not sklearn's ValueError."""
    from drltune.errors import DrltuneError

    with pytest.raises(DrltuneError, match="3 clusters .* the split has 2 clips"):
        purity(np.zeros((2, 4)), np.array([0, 1]), n_clusters=3)


def test_blend_moves_every_encoder_parameter_exactly(tiny_config):
    trainer = Trainer(tiny_config(method="dr", params={"alpha": 3.0}))
    model, method = trainer.model, trainer.method
    method.setup()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for name, buf in model.named_buffers():
            if buf.dtype.is_floating_point:
                buf.add_(1.0)
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    w = 0.37
    method.reinit("audio", w)
    after = model.state_dict()
    for name, value in after.items():
        is_audio_param = name.startswith("audio_net.") and name in dict(model.named_parameters())
        if is_audio_param:
            expected = w * method.initial[name] + (1 - w) * before[name]
            assert torch.equal(value, expected), name
        else:  # visual encoder, fusion head and every BN buffer stay as they were
            assert torch.equal(value, before[name]), name
    assert any(n.startswith("audio_net.") and n.endswith("running_mean") for n in after)


def test_blend_keeps_parameter_objects_for_the_optimiser():
    p = torch.nn.Parameter(torch.ones(3))
    ident = id(p)
    blend_([("w", p)], {"w": torch.zeros(3)}, 0.25)
    assert id(p) == ident and torch.allclose(p, torch.full((3,), 0.75))


def test_reinit_schedule_follows_the_official_code(tiny_config):
    # reinit_epoch 2, reinit_num 2, 7 epochs: re-init after epochs 2 and 4; the counter
    # ticks again at 6 but no third re-init happens.
    cfg = tiny_config(method="dr", epochs=7, params={"reinit_epoch": 2, "reinit_num": 2})
    result = Trainer(cfg).fit()
    fired = [r["epoch"] for r in result.history if r["reinit"]]
    assert fired == [2, 4]
    for r in result.history:
        weights = (r["reinit_weight_audio"], r["reinit_weight_visual"])
        if r["reinit"]:
            for m in ("audio", "visual"):
                gap = abs(r[f"purity_train_{m}"] - r[f"purity_val_{m}"])
                assert r[f"reinit_weight_{m}"] == pytest.approx(math.tanh(3.0 * gap))
        else:
            assert weights == (None, None)
