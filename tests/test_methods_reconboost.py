"""ReconBoost's stages, reconcilement weights, alternation and unimodal starting weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.errors import DrltuneError
from drltune.methods.reconboost import boosting_loss, stage_position
from drltune.params import Param
from drltune.resolve import resolve
from drltune.train import Trainer


def test_stages_alternate_audio_and_visual_each_with_its_update_then_rectification():
    got = [stage_position(e, 2, 1) for e in range(7)]
    assert got == [(0, "audio", 1), (0, "audio", 1), (0, "audio", 2), (1, "visual", 1), (1, "visual", 1),
                   (1, "visual", 2), (2, "audio", 1)]


def _code_boosting_loss(out_obj, other, lbl, w1, w2):
    """train.py's boosting_loss, written as it is (one-hot target, mean over the classes)."""
    target = torch.zeros_like(out_obj).scatter_(1, lbl.view(-1, 1), 1)
    return (-w1 * (target * out_obj.log_softmax(1)).mean(-1)
            + w2 * (target * other.detach().softmax(1) * out_obj.log_softmax(1)).mean(-1)).mean()


def test_reconcilement_loss_is_the_released_one_and_down_weights_what_the_other_modality_knows():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    other = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]])  # sure and right on clip 0, wrong on clip 1
    labels = torch.tensor([0, 1])
    loss, weights = boosting_loss(logits, labels, other, 5.0, 1.0)
    assert loss.item() == pytest.approx(_code_boosting_loss(logits, other, labels, 5.0, 1.0).item(), rel=1e-6)
    q = other.softmax(1)[[0, 1], labels]
    assert weights.tolist() == pytest.approx(((5.0 - q) / 3).tolist())
    assert weights[0] < weights[1]
    # no learner for the other modality yet: q = 1 (the code's one-column c0)
    loss, weights = boosting_loss(logits, labels, None, 5.0, 1.0)
    assert weights.tolist() == pytest.approx([4 / 3, 4 / 3])
    assert loss.item() == pytest.approx(4 / 3 * F.cross_entropy(logits, labels).item())


def _snapshot(trainer):
    model = trainer.model
    return {n: t.detach().clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}


def _changed(before, after, prefix):
    return any(not torch.equal(before[n], after[n]) for n in before if n.startswith(prefix))


def _step(trainer, epoch):
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    trainer.model.train()
    trainer.method.train_step(audio, visual, labels, epoch, 0)


def test_a_modality_update_trains_only_that_encoder_and_the_head_and_rectification_trains_all(tiny_config):
    trainer = Trainer(tiny_config(method="reconboost", params={"stage_epochs": 1, "correct_epochs": 1}))
    trainer.method.setup()
    fusion = trainer.model.fusion
    assert not fusion.member("audio") and not fusion.member("visual")  # from scratch: empty ensemble

    before = _snapshot(trainer)
    _step(trainer, 0)  # stage 0, audio update; visual has no learner yet, so it is not even run
    after = _snapshot(trainer)
    assert _changed(before, after, "audio_net.") and _changed(before, after, "fusion.head.")
    assert not _changed(before, after, "visual_net.") and not _changed(before, after, "fusion.boost_rate")
    assert fusion.member("audio") and not fusion.member("visual")

    _step(trainer, 1)  # stage 0, rectification over the ensemble so far: audio and beta
    again = _snapshot(trainer)
    assert _changed(after, again, "audio_net.") and _changed(after, again, "fusion.boost_rate")
    assert not _changed(after, again, "visual_net.")

    _step(trainer, 2)  # stage 1, visual update: the audio learner runs (train mode) but does not learn
    last = _snapshot(trainer)
    assert _changed(again, last, "visual_net.") and fusion.member("visual")
    audio_weights = [n for n, _ in trainer.model.audio_net.named_parameters(prefix="audio_net")]
    assert all(torch.equal(again[n], last[n]) for n in audio_weights)
    assert _changed(again, last, "audio_net.net.bn1.running_mean")  # the code's ensemble forward is in train mode


def test_each_phase_starts_with_a_fresh_optimiser_state(tiny_config):
    trainer = Trainer(tiny_config(method="reconboost", weight_decay=0.0,  # the buffer is then the bare gradient
                                  params={"stage_epochs": 1, "correct_epochs": 1}))
    trainer.method.setup()
    _step(trainer, 0)
    head = next(trainer.model.fusion.head.parameters())
    first = trainer.optimizer.state[head]["momentum_buffer"].clone()
    _step(trainer, 1)  # a new phase: the momentum buffer restarts from this step's gradient
    assert torch.equal(trainer.optimizer.state[head]["momentum_buffer"], head.grad)
    assert not torch.equal(first, head.grad)


def _unimodal_run(tiny_config, tmp_path, modality, **overrides):
    folder = tmp_path / modality
    Trainer(tiny_config(modality=modality, **overrides)).fit(checkpoint_dir=folder)
    return folder


def test_starts_from_saved_unimodal_runs(tiny_config, tmp_path):
    audio_run = _unimodal_run(tiny_config, tmp_path, "audio")
    saved = torch.load(next(audio_run.glob("best_state-*.pt")), weights_only=True)["weights"]
    trainer = Trainer(tiny_config(method="reconboost", params={"init_audio": str(audio_run)}))
    for name, tensor in trainer.model.audio_net.state_dict().items():
        assert torch.equal(tensor, saved[f"audio_net.{name}"]), name
    fusion = trainer.model.fusion
    assert fusion.member("audio") and not fusion.member("visual")  # a pretrained learner is in from the start
    fresh = Trainer(tiny_config(method="reconboost"))
    assert not torch.equal(fresh.model.audio_net.net.conv1.weight, trainer.model.audio_net.net.conv1.weight)
    # from the start the stage-0 audio update is reweighted by nothing (visual has no learner) ...
    both = Trainer(tiny_config(method="reconboost", params={"init_audio": str(audio_run),
                                                               "init_visual": str(audio_run)}))
    assert both.model.fusion.member("visual")  # ... unless both are given


def test_bad_starting_weights_are_one_clear_error(tiny_config, tmp_path):
    with pytest.raises(DrltuneError, match="params.init_audio: .*no such file"):
        resolve(tiny_config(method="reconboost", params={"init_audio": str(tmp_path / "missing")}))
    wide = _unimodal_run(tiny_config, tmp_path, "visual", encoder_width=8)
    with pytest.raises(DrltuneError, match="visual_net.*shape .*encoder_width"):
        Trainer(tiny_config(method="reconboost", params={"init_visual": str(wide)}))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DrltuneError, match="cannot be read as saved weights"):
        Trainer(tiny_config(method="reconboost", params={"init_audio": str(junk)}))


def test_text_parameters_take_text_only():
    param = Param("init", "str", "", "a path")
    assert param.validate("/x", "params") == "/x"
    with pytest.raises(DrltuneError, match="params.init: expected text"):
        param.validate(3, "params")


def test_weights_that_turn_negative_are_refused(tiny_config):
    with pytest.raises(DrltuneError, match="params.weight2: 6.0 is above params.weight1"):
        resolve(tiny_config(method="reconboost", params={"weight2": 6.0}))


@pytest.mark.parametrize("params", [{}, {"head": "linear", "consolidation": "off"}])
def test_trains_above_chance_on_the_built_in_data(tiny_config, params):
    data = {"n_train": 120, "n_val": 48, "n_test": 48, "audio_freq": 16, "audio_time": 16, "image_size": 16}
    params = {"stage_epochs": 1, "correct_epochs": 1, **params}
    result = Trainer(tiny_config(epochs=12, lr=0.02, method="reconboost", params=params, dataset_params=data)).fit()
    assert result.test_acc > 0.3, result.test_acc  # chance is 1/6
    assert [r["recon_phase"] for r in result.history] == [1, 2] * 6


@pytest.mark.parametrize("form", ["flat.pt", "model.pt", "weights.safetensors"])
def test_weights_files_in_the_other_saved_forms_are_read(tiny_config, tmp_path, form):
    from safetensors.torch import save_file

    source = Trainer(tiny_config(modality="visual", seed=5)).model.state_dict()
    path = tmp_path / form
    if form == "flat.pt":
        torch.save(source, path)
    elif form == "model.pt":
        torch.save({"model": source, "epoch": 3}, path)  # the official repos' form
    else:
        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    trainer = Trainer(tiny_config(method="reconboost", params={"init_visual": str(path)}))
    for name, tensor in trainer.model.visual_net.state_dict().items():
        assert torch.equal(tensor, source[f"visual_net.{name}"]), name


def test_a_run_resumes_exactly_across_phases_and_stages(tiny_config, tmp_path):
    from test_method_contract import assert_resumes_exactly

    cfg = tiny_config(epochs=3, method="reconboost", params={"stage_epochs": 1, "correct_epochs": 1})
    whole = Trainer(cfg)
    assert_resumes_exactly(cfg, tmp_path, whole, whole.fit())
