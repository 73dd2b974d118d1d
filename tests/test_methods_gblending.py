"""G-Blending's weights from the overfitting-to-generalisation ratio, its schedule and blended loss;
it trains above chance."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_method_contract import final_weights

from drltune.config import TrialConfig
from drltune.data.batches import to_device_batch
from drltune.methods.gblending import blend_weights, due
from drltune.train import Trainer

ABOVE_CHANCE_DATA = {"n_train": 240, "n_val": 96, "n_test": 96, "audio_freq": 16, "audio_time": 16, "image_size": 16}


def test_weights_are_generalisation_over_overfitting_squared_normalised():
    # (L_tr first, L_val first, L_tr last, L_val last)
    estimates = {
        "audio": (2.0, 2.0, 1.0, 1.5),   # G = -0.5, O = 0.5 - 0 = 0.5  -> |G/O^2| = 2
        "visual": (2.0, 2.0, 1.0, 1.9),  # G = -0.1, O = 0.9           -> 0.1/0.81
        "fused": (2.0, 2.1, 0.5, 2.0),   # G = -0.1, O = 1.5 - 0.1 = 1.4 -> 0.1/1.96
    }
    raw = {"audio": 2.0, "visual": 0.1 / 0.81, "fused": 0.1 / 1.96}
    total = sum(raw.values())
    weights = blend_weights(estimates)
    assert weights == pytest.approx({k: v / total for k, v in raw.items()})
    assert sum(weights.values()) == pytest.approx(1.0)
    # abs() as in BalanceBenchmark: a rising val loss still earns a positive weight
    assert blend_weights({"audio": (1.0, 1.0, 0.5, 1.5), "fused": (1.0, 1.0, 0.5, 0.5)})["audio"] > 0


def test_zero_overfitting_change_and_no_generalisation_stay_finite():
    weights = blend_weights({"audio": (1.0, 1.0, 0.5, 0.5), "visual": (1.0, 1.0, 0.9, 0.9)})  # O = 0 both
    assert all(torch.isfinite(torch.tensor(w)) for w in weights.values())
    assert blend_weights({"audio": (1.0, 1.0, 0.0, 1.0), "visual": (1.0, 2.0, 0.0, 2.0)}) == \
        {"audio": 0.5, "visual": 0.5}  # G = 0 everywhere: equal weights


def test_schedule_online_every_super_epoch_offline_once():
    assert [e for e in range(25) if due(e, "online", 10)] == [0, 10, 20]
    assert [e for e in range(25) if due(e, "offline", 10)] == [0]


def test_loss_blends_the_three_heads_with_the_weights(tiny_config):
    trainer = Trainer(tiny_config(method="gblending"))
    method, model = trainer.method, trainer.model
    method.weights = {"audio": 0.5, "visual": 0.2, "fused": 0.3}
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    out = model(audio, visual)
    logits_a, logits_v = model.unimodal_logits(out)
    expected = (0.5 * F.cross_entropy(logits_a, labels) + 0.2 * F.cross_entropy(logits_v, labels)
                + 0.3 * F.cross_entropy(out.logits, labels))
    assert method.loss(out, labels, 0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_unimodal_copies_see_only_their_modality(tiny_config):
    trainer = Trainer(tiny_config(method="gblending"))
    audio, visual, _ = to_device_batch(trainer.data.train, list(range(8)), trainer.device, False, None)
    for head, changed, kept in (("audio", visual, audio), ("visual", audio, visual)):
        model = trainer.method.copy_for(head).eval()
        noise = torch.randn_like(changed)
        args = (kept, noise) if head == "audio" else (noise, kept)
        with torch.no_grad():
            base = model(audio, visual).logits
            assert torch.equal(model(*args).logits, base), f"the {head} copy looked at the other modality"
    fused = trainer.method.copy_for("fused").eval()
    with torch.no_grad():
        assert not torch.equal(fused(audio, torch.randn_like(visual)).logits, fused(audio, visual).logits)
    assert trainer.model.modality == "both"


def test_estimate_leaves_the_model_and_its_optimiser_alone(tiny_config):
    trainer = Trainer(tiny_config(method="gblending", params={"estimate_epochs": 2}))
    before = final_weights(trainer).clone()
    weights = trainer.method.estimate(0)
    assert set(weights) == {"audio", "visual", "fused"} and sum(weights.values()) == pytest.approx(1.0)
    assert len(set(weights.values())) == 3
    assert torch.equal(final_weights(trainer), before), "the estimate trained the model itself"
    assert not trainer.optimizer.state_dict()["state"], "the estimate stepped the trial's optimiser"


def test_online_re_estimates_at_each_super_epoch(tiny_config):
    result = Trainer(tiny_config(method="gblending", epochs=4,
                                 params={"super_epoch": 2, "estimate_epochs": 2})).fit()
    w = [(r["gblend_weight_audio"], r["gblend_weight_visual"]) for r in result.history]
    assert w[0] == w[1] and w[2] == w[3] and w[1] != w[2]
    assert w[0] != (1 / 3, 1 / 3)  # estimated before epoch 0, not the equal start


def test_gblending_trains_above_chance():
    cfg = TrialConfig.from_dict({"epochs": 5, "encoder_width": 4, "batch_size": 16, "optimizer": "adam", "lr": 0.01,
                                 "method": "gblending", "params": {"estimate_epochs": 2, "super_epoch": 3},
                                 "dataset_params": ABOVE_CHANCE_DATA})
    result = Trainer(cfg).fit()
    chance = 1 / 6
    assert result.best_val_acc > chance + 0.15
    assert result.test_acc > chance + 0.1


def test_default_space_searches_inforeg_and_gblending_over_their_declared_ranges():
    from drltune.methods import METHODS
    from drltune.search.space_file import load_space
    from drltune.shipped_spaces import DEFAULT_SPACE

    # max_epochs = the space file's own `epochs`: epoch-valued ranges are not rescaled
    s = load_space(DEFAULT_SPACE, max_epochs=90)
    assert {"inforeg", "gblending"} <= set(s.methods)
    dims = {d.name: d for name in ("inforeg", "gblending") for d in s.methods[name]}
    declared = {p.name: p for p in METHODS.get("inforeg").params}
    for name in ("threshold", "coeff_audio", "coeff_visual", "trace_window"):
        assert (dims[f"inforeg.{name}"].low, dims[f"inforeg.{name}"].high) == declared[name].search, name
    assert dims["inforeg.unimodal_loss"].choices == (False, True)
    assert dims["gblending.mode"].choices == ("online", "offline")
    assert (dims["gblending.estimate_epochs"].low, dims["gblending.estimate_epochs"].high) == (2, 5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_the_estimate_builds_a_fresh_optimiser_of_every_kind(tiny_config, optimizer):
    """The copies' optimiser is built from the config: `type(opt)(**opt.defaults)` failed for AdamW."""
    from drltune.train import Trainer

    trainer = Trainer(tiny_config(method="gblending", optimizer=optimizer, epochs=1,
                                  params={"estimate_epochs": 2, "super_epoch": 1}))
    assert trainer.fit().best_val_acc >= 0
