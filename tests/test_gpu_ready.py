"""The GPU paths' correctness, checked on a CPU (issue 24): DR's diagnosis in float32 under
autocast, the on-device epoch sums equal to the per-step ones, the deferred NaN check, the CUDA
settings, the CUDA RNG state in checkpoints, the GPU plan's refusals. `gpu`-marked tests need CUDA."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from drltune.config import TrialConfig
from drltune.data.batches import to_device_batch
from drltune.errors import DrltuneError
from drltune.resolve import resolve
from drltune.search import gpu_plan
from drltune.train import NonFiniteLoss, Trainer, checkpoint, cuda_settings

DR_NOW = {"method": "dr", "params": {"reinit_epoch": 1, "reinit_num": 1, "alpha": 3.0, "kmeans_n_init": 1}}


# ---- 1. DR's diagnosis in float32 --------------------------------------------------------------
def test_dr_diagnosis_is_float32_even_under_bf16_autocast(tiny_config):
    """The diagnosis pass switches autocast off: features, purities and re-init weights under a bf16
    autocast (what CUDA training uses) are exactly the float32 ones."""
    cfg = tiny_config(**DR_NOW, epochs=2)
    plain, under_bf16 = Trainer(cfg), Trainer(cfg)
    for t in (plain, under_bf16):
        t.method.setup()
        t.train_epoch(0)
    under_bf16.amp = True  # as on CUDA: bf16 training; the diagnosis must not follow it
    reference = plain.method.on_epoch_end(1)
    feats = plain.features(plain.data.train)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        diagnosed = under_bf16.method.on_epoch_end(1)
    fresh = Trainer(cfg)  # features of the same weights, read under autocast
    fresh.model.load_state_dict(plain.model.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats_bf16 = fresh.features(fresh.data.train)
    for ours, theirs in zip(feats_bf16, feats):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    assert reference["reinit"] and diagnosed == reference


# ---- 3. the input path ---------------------------------------------------------------------------
def _per_step_epoch(trainer: Trainer, epoch: int) -> tuple[float, float]:
    """The epoch as drltune trained it before issue 24: one batch at a time, each loss and count read at once."""
    c = trainer.cfg
    trainer.model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for step, rows in enumerate(trainer.data.train.batches(c.batch_size, shuffle=True, generator=trainer.shuffle_gen)):
        audio, visual, labels = to_device_batch(trainer.data.train, rows, trainer.device, c.augment,
                                                trainer.augment_gen)
        loss, logits = trainer.method.train_step(audio, visual, labels, epoch, step)
        total_loss += float(loss) * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@pytest.mark.parametrize("overrides", [{"augment": True}, {"method": "ogm_ge", "batch_size": 12}])
def test_epoch_metrics_equal_the_per_step_path(tiny_config, overrides):
    cfg = tiny_config(**overrides)
    new, old = Trainer(cfg), Trainer(cfg)
    for t in (new, old):
        t.method.setup()
    start = checkpoint.rng_states()  # OGM-GE draws its noise from the global generator
    got = [new.train_epoch(epoch) for epoch in range(2)]
    checkpoint.set_rng_states(start)
    assert got == [_per_step_epoch(old, epoch) for epoch in range(2)]
    for key, value in new.model.state_dict().items():
        assert torch.equal(value, old.model.state_dict()[key]), key


def test_evaluation_equals_the_per_batch_path(tiny_config):
    trainer = Trainer(tiny_config(batch_size=5))  # several batches, the last one short
    split = trainer.data.val
    got = trainer.evaluate(split)
    trainer.model.eval()
    loss, preds = 0.0, []
    with torch.inference_mode():
        for rows in split.batches(trainer.eval_batch_size(), shuffle=False):
            audio, visual, labels = to_device_batch(split, rows, trainer.device, False, None)
            out = trainer.model(audio, visual)
            loss += torch.nn.functional.cross_entropy(out.logits, labels, reduction="sum").item()
            preds.append(out.logits.argmax(1).numpy())
    assert got["loss"] == loss / len(split)
    assert got["acc"] == float((np.concatenate(preds) == split.labels).mean())


def _nan_at(trainer: Trainer, bad_step: int) -> None:
    original, calls = trainer.method.loss, [0]

    def loss(out, labels, epoch):
        value = original(out, labels, epoch)
        calls[0] += 1
        return value * float("nan") if calls[0] == bad_step + 1 else value
    trainer.method.loss = loss


@pytest.mark.parametrize("deferred", [False, True])
def test_a_nan_loss_stops_the_epoch_with_the_same_message(tiny_config, deferred):
    """On a GPU the check is read once per epoch; it names the same step as the immediate check."""
    trainer = Trainer(tiny_config(batch_size=8))
    trainer.defer_finite_checks = deferred
    trainer.method.setup()
    _nan_at(trainer, 2)
    with pytest.raises(NonFiniteLoss, match=r"^loss became nan at epoch 0, step 2; lower the lr$"):
        trainer.train_epoch(0)


# ---- 4/6. settings ------------------------------------------------------------------------------
@pytest.fixture
def restore_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]


def test_cuda_settings_are_set_on_and_off_for_each_cuda_trial(restore_flags):
    cuda = torch.device("cuda")  # the flags need no GPU to be set
    cuda_settings.apply(cuda, deterministic=True, cudnn_benchmark=False)
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == cuda_settings.CUBLAS_WORKSPACE
    cuda_settings.apply(cuda, deterministic=False, cudnn_benchmark=True)  # the next trial on a reused worker
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.benchmark


def test_a_cpu_trial_leaves_the_process_flags_alone(restore_flags):
    cuda_settings.apply(torch.device("cpu"), deterministic=True, cudnn_benchmark=True)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_deterministic_with_cudnn_benchmark_is_refused_in_one_line():
    with pytest.raises(DrltuneError, match=r"^cudnn_benchmark: cannot be on with deterministic [^\n]*$"):
        resolve(TrialConfig(deterministic=True, cudnn_benchmark=True))


def test_the_settings_are_off_unless_set():
    resolved = resolve(TrialConfig())
    assert not resolved.cudnn_benchmark and not resolved.channels_last and not resolved.deterministic


def test_channels_last_puts_the_convolutions_in_channels_last(tiny_config):
    trainer = Trainer(tiny_config(channels_last=True, epochs=1))
    convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                         for w in convs if w.shape[1] > 1 and w.shape[-1] > 1)  # else both layouts agree
    assert np.isfinite(trainer.fit().test_acc)


# ---- 6. the CUDA RNG state in checkpoints ---------------------------------------------------------
def _fake_cuda(monkeypatch, gpus: int) -> list:
    """torch.cuda with `gpus` devices whose RNG states are recorded, on a machine without CUDA."""
    states = [torch.ByteTensor([i] * 16) for i in range(gpus)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(states))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((device, state)))
    return restored


def test_the_cuda_rng_state_round_trips_through_a_checkpoint(tmp_path, monkeypatch, tiny_config):
    trainer = Trainer(tiny_config())
    restored = _fake_cuda(monkeypatch, 2)
    trainer._save(tmp_path, [{"epoch": 0, "val_acc": 0.5}], 0.5, 0, trainer.model.state_dict())
    saved = checkpoint.load(tmp_path, trainer.cfg.config.to_dict())
    assert [s.tolist() for s in saved["rng"]["cuda"]] == [[0] * 16, [1] * 16]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # a retry that sees one GPU
    checkpoint.set_rng_states(saved["rng"])
    assert [(d, s.tolist()) for d, s in restored] == [(0, [0] * 16)]


def test_a_cuda_rng_state_is_ignored_where_cuda_is_absent(tmp_path, monkeypatch, tiny_config):
    """Saved on a GPU, resumed on a CPU: the CPU generators come back, the CUDA ones are not needed."""
    trainer = Trainer(tiny_config())
    _fake_cuda(monkeypatch, 1)
    trainer._save(tmp_path, [{"epoch": 0, "val_acc": 0.5}], 0.5, 0, trainer.model.state_dict())
    expected = torch.rand(3)  # what follows the saved state
    monkeypatch.undo()
    saved = checkpoint.load(tmp_path, trainer.cfg.config.to_dict())
    assert len(saved["rng"]["cuda"]) == 1
    torch.manual_seed(123)
    checkpoint.set_rng_states(saved["rng"])  # no CUDA here: no error, and the CPU generator is back
    assert torch.equal(torch.rand(3), expected)
    assert checkpoint.rng_states()["cuda"] == []  # CUDA never used here: nothing saved


def test_a_checkpoint_from_before_the_gpu_settings_still_loads(tmp_path, tiny_config):
    trainer = Trainer(tiny_config())
    old_config = {k: v for k, v in trainer.cfg.config.to_dict().items()
                  if k not in ("cudnn_benchmark", "channels_last", "deterministic")}
    state = checkpoint.rng_states()
    del state["cuda"]  # written before CUDA states were saved
    checkpoint.save(tmp_path, {"config": old_config, "history": [], "best_acc": -1.0, "best_epoch": -1, "rng": state})
    loaded = checkpoint.load(tmp_path, trainer.cfg.config.to_dict())
    checkpoint.set_rng_states(loaded["rng"])
    with pytest.raises(DrltuneError, match="differs in deterministic"):
        checkpoint.load(tmp_path, trainer.cfg.config.replace(deterministic=True).to_dict())


# ---- 2/5. the GPU plan ---------------------------------------------------------------------------
def test_cpus_per_trial_default_divides_a_gpu_nodes_cores_by_its_trials():
    assert gpu_plan.default_cpus_per_trial([(16, 1)], 0.25, 4) == 4
    assert gpu_plan.default_cpus_per_trial([(16, 1)], 0.25, 2) == 8  # --concurrent caps the trials per node
    assert gpu_plan.default_cpus_per_trial([(16, 1)], 0.1, 16) == 1
    assert gpu_plan.default_cpus_per_trial([(32, 8), (16, 1)], 1.0, 9) == 4  # the tightest GPU node decides
    assert gpu_plan.default_cpus_per_trial([(16, 0)], 0.0, 4) == 1  # no GPU: as before
    assert gpu_plan.cpus_split([(16, 1)], 0.25, 4) == (4, "16 cores / 4 trials per node")
    assert gpu_plan.cpus_split([(2, 0)], 0.0, 2) == (1, "")


def test_device_cuda_n_is_refused_in_a_search():
    gpu_plan.check_device_for_ray("cuda")
    gpu_plan.check_device_for_ray("auto")
    with pytest.raises(DrltuneError, match=r"^device: cuda:1 cannot be used in a search: Ray assigns"):
        gpu_plan.check_device_for_ray("cuda:1")


def test_a_search_with_device_cuda_n_stops_before_the_study_exists(tmp_path):
    from drltune.search.runner import SearchSpec, run_search

    url = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(DrltuneError, match=r"^device: cuda:1 cannot be used in a search"):
        run_search(SearchSpec(storage=url, trials=1, max_epochs=1, overrides=["device=cuda:1"]), echo=lambda s: None)
    assert not (tmp_path / "s.db").exists()


def test_the_memory_estimate_grows_with_batch_and_width():
    args = dict(num_classes=6, audio_shape=(1, 64, 48), visual_shape=(2, 3, 32, 32), fusion="concat",
                optimizer="sgd", eval_batch_size=64)
    small = gpu_plan.trial_memory(batch_size=8, encoder_width=8, **args)
    assert gpu_plan.trial_memory(batch_size=32, encoder_width=8, **args).bytes > small.bytes
    assert gpu_plan.trial_memory(batch_size=8, encoder_width=16, **args).bytes > small.bytes
    assert gpu_plan.trial_memory(batch_size=8, encoder_width=8, **{**args, "optimizer": "adam"}).bytes > small.bytes


def test_the_memory_estimate_counts_what_autograd_really_keeps():
    """The meta-device count equals the bytes of the distinct tensors a real CPU forward saves."""
    from drltune.models import AVClassifier

    torch.manual_seed(0)
    model = AVClassifier(6, "concat", 8)
    own, kept = {p.data_ptr() for p in model.parameters()}, {}

    def pack(t):
        if t.data_ptr() not in own:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(4, 1, 64, 48), torch.randn(4, 2, 3, 32, 32))
    largest = []
    hooks = [m.register_forward_hook(lambda m, i, o: largest.append(o.numel() * o.element_size())
                                     if isinstance(o, torch.Tensor) else None) for m in model.modules()]
    with torch.no_grad():
        model(torch.randn(1, 1, 64, 48), torch.randn(1, 2, 3, 32, 32))  # the evaluation batch: 1 clip
    for h in hooks:
        h.remove()
    params = sum(p.numel() * 4 for p in model.parameters())
    inputs = 2 * 4 * (64 * 48 + 2 * 3 * 32 * 32) * 4
    expected = (params * 3 + sum(kept.values()) + 2 * max(largest) + inputs) * gpu_plan.SLACK
    assert gpu_plan.trial_memory(6, (1, 64, 48), (2, 3, 32, 32), "concat", 4, 8, "sgd", 1).bytes == int(expected)


def test_an_over_full_gpu_is_refused_in_one_line():
    need = gpu_plan.MemoryEstimate(9 * gpu_plan.GiB, 64, 64)
    gpu_plan.check_memory_fits(need, 0.25, 80 * gpu_plan.GiB, 1, 4)  # 20 GiB each: fits
    gpu_plan.check_memory_fits(need, 1.0, 8 * gpu_plan.GiB, 1, 1)  # whole GPUs share nothing: the cap is the GPU
    with pytest.raises(DrltuneError) as err:
        gpu_plan.check_memory_fits(need, 0.0625, 80 * gpu_plan.GiB, 1, 16)
    message = str(err.value)
    assert "\n" not in message and "--concurrent 16 would run out of GPU memory" in message
    assert message.endswith("give each trial at least --gpus-per-trial 0.1219 (with the default share: "
                            "--concurrent 8 at most)")


def test_largest_reads_the_space():
    from drltune.search.space_file import parse_space

    space = parse_space({"fixed": {"encoder_width": 16}, "space": {"batch_size": {"choices": [16, 64, 32]}},
                         "methods": {"baseline": {}}}, 8)
    assert gpu_plan.largest(space, "batch_size", 8) == 64
    assert gpu_plan.largest(space, "encoder_width", 8) == 16
    assert gpu_plan.largest(space, "lr", 3) == 3


def test_the_cap_is_a_cpu_no_op():
    assert cuda_settings.cap_memory(0.25, torch.device("cpu"), gpu_plan.CONTEXT_BYTES) is None


# ---- on a GPU ----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_prefetched_cuda_batches_equal_the_plain_path(tiny_config):
    from drltune.data.prefetch import device_batches

    trainer = Trainer(tiny_config(device="cuda", augment=False))
    split, cuda = trainer.data.train, torch.device("cuda")
    rows = list(split.batches(8, shuffle=False))
    for got, rows_ in zip(device_batches(split, rows, cuda, False, None), rows):
        for a, b in zip(got, to_device_batch(split, rows_, cuda, False, None)):
            assert torch.equal(a, b)


@pytest.mark.gpu
def test_the_memory_cap_refuses_more_than_the_share():
    fraction = cuda_settings.cap_memory(0.25, torch.device("cuda"), gpu_plan.CONTEXT_BYTES)
    total = torch.cuda.get_device_properties(0).total_memory
    try:
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(int(total * fraction) + 2**30, dtype=torch.uint8, device="cuda")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


@pytest.mark.gpu
def test_deterministic_cuda_runs_are_bit_identical(tiny_config):
    cfg = tiny_config(device="cuda", deterministic=True, method="ogm_ge", augment=True, epochs=2)
    first, second = Trainer(cfg).fit(), Trainer(cfg).fit()
    strip = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r.history]  # noqa: E731
    assert strip(first) == strip(second) and first.test_acc == second.test_acc


@pytest.mark.gpu
def test_a_resumed_cuda_trial_continues_the_gpu_noise(tiny_config, tmp_path):
    """OGM-GE draws its noise on the GPU: the CUDA RNG state in the checkpoint makes a resume exact."""
    cfg = tiny_config(device="cuda", deterministic=True, method="ogm_ge", epochs=2)
    whole = Trainer(cfg).fit()

    def stop_after_first(epoch, record):
        if epoch == 0:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).fit(report=stop_after_first, checkpoint_dir=tmp_path)
    resumed = Trainer(cfg).fit(checkpoint_dir=tmp_path)  # a new trainer reseeds: the stream of epoch 0 again
    assert [e["val_acc"] for e in resumed.history] == [e["val_acc"] for e in whole.history]
    assert resumed.test_acc == whole.test_acc


def test_the_start_line_says_how_the_cpus_were_chosen():
    from types import SimpleNamespace

    from drltune.search.tune_run import trial_cpus

    ray = SimpleNamespace(nodes=lambda: [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}},
                                         {"Alive": False, "Resources": {"CPU": 2.0, "GPU": 1.0}}])
    assert trial_cpus(None, 4, ray, 0.25) == (4.0, " (16 cores / 4 trials per node; --cpus-per-trial to change)")
    assert trial_cpus(2.0, 4, ray, 0.25) == (2.0, "")
    cpu_only = SimpleNamespace(nodes=lambda: [{"Alive": True, "Resources": {"CPU": 16.0}}])
    assert trial_cpus(None, 4, cpu_only, 0.0) == (1.0, "")


@pytest.mark.gpu
def test_a_finished_trials_cached_gpu_memory_is_given_back():
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    del block
    assert torch.cuda.memory_reserved() >= 256 * 2**20  # cached by the allocator, not yet returned
    cuda_settings.release_cached_memory()
    assert torch.cuda.memory_reserved() < 256 * 2**20


def test_a_trial_process_gets_the_cuda_environment_before_cuda_starts(monkeypatch):
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cuda_settings.prepare_process(deterministic=False)
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")  # the user's own wins
    cuda_settings.prepare_process(deterministic=True)
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
