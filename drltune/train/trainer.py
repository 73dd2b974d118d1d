"""One trial: build data, model, optimiser and method, then the epoch loop (read it top to
bottom)."""

from __future__ import annotations

import math
import os
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from drltune import faults
from drltune.config import TrialConfig
from drltune.data import DataBundle, Split, load_dataset
from drltune.data.prefetch import device_batches
from drltune.errors import DrltuneError, RuntimeFailure
from drltune.methods import METHODS
from drltune.methods.common import build_optimizer
from drltune.models import AVClassifier
from drltune.resolve import ResolvedConfig, resolve
from drltune.train import checkpoint, cuda_settings
from drltune.train.metrics import accuracy, macro_f1

Report = Callable[[int, dict[str, Any]], "bool | None"]  # return True to stop the trial early


class NonFiniteLoss(RuntimeFailure):
    """The loss became NaN or infinite: the trial stops instead of wasting epochs."""


@dataclass
class SavedCheckpoint:
    """What one checkpoint save wrote (a search copies these files to shared storage)."""

    epoch: int
    files: list[Path]
    seconds: float


@dataclass
class TrainResult:
    history: list[dict[str, Any]]
    best_val_acc: float
    best_epoch: int
    test_acc: float
    test_f1: float
    test_acc_audio: float
    test_acc_visual: float
    stopped_early: bool
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DrltuneError(f"device: {name} requested but CUDA is not available")
    return torch.device(name)


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A snapshot of tensors in host memory (a copy even when they already live there)."""
    out = OrderedDict((k, v.detach().to("cpu", copy=True)) for k, v in state.items())
    # load_state_dict reads it
    out._metadata = getattr(state, "_metadata", None)  # type: ignore[attr-defined]
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(
        self, config: TrialConfig | ResolvedConfig, data: DataBundle | None = None
    ) -> None:
        self.cfg = config if isinstance(config, ResolvedConfig) else resolve(config)
        c = self.cfg
        self.device = pick_device(c.device)
        if (
            c.threads is not None
        ):  # on every device: a GPU trial's k-means and data work use them too
            torch.set_num_threads(c.threads)
        self.cpu_threads = (
            torch.get_num_threads()
        )  # the trial's CPU share (DR's k-means runs on it)
        self.data = (
            data if data is not None else load_dataset(c.dataset, c.data_root, c.dataset_params)
        )
        seed_everything(c.seed)
        cuda_settings.apply(self.device, bool(c.deterministic), bool(c.cudnn_benchmark))
        self.model = AVClassifier(
            self.data.num_classes,
            c.fusion,
            c.encoder_width,
            c.modality,
            audio_channels=self.data.audio_shape[0],
        ).to(self.device)
        self.method = METHODS.get(c.method)(c.params, self)
        self.method.extend_model(self.model)
        self.model.to(self.device)
        if c.channels_last:
            self.model.to(
                memory_format=torch.channels_last
            )  # 4-d weights; conv outputs follow them
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.shuffle_gen = torch.Generator().manual_seed(c.seed)
        self.augment_gen = torch.Generator().manual_seed(c.seed + 1)
        self.amp = self.device.type == "cuda"
        self.defer_finite_checks = self.device.type == "cuda"  # see check_finite
        self._unchecked_losses: list[tuple[int, torch.Tensor]] = []
        self._eval_cache: dict[int, tuple[Split, tuple[int, ...], Any]] = {}  # see _forward_split
        self.last_checkpoint: SavedCheckpoint | None = None
        self.restored: list[
            dict[str, Any]
        ] = []  # the epochs a checkpoint held when fit began (report skips them)

    # ---- construction -------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.cfg, self.model.parameters())

    def _build_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        c = self.cfg
        if c.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(
                self.optimizer, step_size=c.lr_step, gamma=c.lr_gamma
            )
        if c.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=c.epochs)
        return None

    # ---- the loop -----------------------------------------------------------------
    def fit(
        self,
        report: Report | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        checkpoint_owner: str | None = None,
    ) -> TrainResult:
        """Train `epochs` epochs. With `checkpoint_dir`, the state is saved there after every
        `checkpoint_every`-th epoch (before `report` sees it: `last_checkpoint`
        then says what that epoch wrote), and a checkpoint already there is resumed after its epoch
        (refused when another `checkpoint_owner`, i.e. another study, saved it)."""
        c, start = self.cfg, time.perf_counter()
        self.method.setup()
        history: list[dict[str, Any]] = []
        best_acc, best_epoch, best_state = -1.0, -1, None
        stopped = False
        saved = (
            checkpoint.load(checkpoint_dir, c.config.to_dict(), checkpoint_owner)
            if checkpoint_dir is not None
            else None
        )
        if saved is not None:
            history, best_acc, best_epoch, best_state = self._restore(saved)
            self.restored = list(history)
        best_on_disk = best_epoch  # the epoch whose weights the checkpoint folder holds
        for epoch in range(len(history), c.epochs):
            t0, self.last_checkpoint = time.perf_counter(), None
            faults.inject("epoch_start", epoch, self.model)
            train_loss, train_acc = self.train_epoch(epoch)
            val = self.evaluate(self.data.val)
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_acc": val["acc"],
                "val_f1": val["f1"],
                "val_loss": val["loss"],
                "val_acc_audio": val["acc_audio"],
                "val_acc_visual": val["acc_visual"],
                "lr": self.optimizer.param_groups[0]["lr"],
            }
            selected_acc = val["acc"]
            if c.selection == "test":  # paper-faithful (and optimistic): select on test
                selected_acc = record["test_acc"] = self.evaluate(self.data.test)["acc"]
            if selected_acc > best_acc:  # before the method's end-of-epoch hook, as in the DR code
                best_acc, best_epoch = selected_acc, epoch
                best_state = cpu_copy(self.model.state_dict())  # not a second model on the GPU
            record.update(self.method.on_epoch_end(epoch))
            if self.scheduler is not None:
                self.scheduler.step()
            record["val_acc_best"] = max(r["val_acc"] for r in [*history, record])
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            if (
                checkpoint_dir is not None
                and checkpoint_every > 0
                and (epoch + 1) % checkpoint_every == 0
            ):
                t_save = time.perf_counter()
                written = self._save(
                    checkpoint_dir,
                    history,
                    best_acc,
                    best_epoch,
                    best_state if best_epoch != best_on_disk else None,
                    checkpoint_owner,
                )
                best_on_disk = best_epoch
                self.last_checkpoint = SavedCheckpoint(epoch, written, time.perf_counter() - t_save)
            if report is not None and report(epoch, record):
                stopped = True
                break
            faults.inject("epoch_end", epoch)
        assert best_state is not None, (
            "set by the first epoch (any accuracy beats -1) or by the checkpoint"
        )
        self.model.load_state_dict(best_state)
        test = self.evaluate(self.data.test)
        return TrainResult(
            history=history,
            best_val_acc=history[best_epoch]["val_acc"],
            best_epoch=best_epoch,
            test_acc=test["acc"],
            test_f1=test["f1"],
            test_acc_audio=test["acc_audio"],
            test_acc_visual=test["acc_visual"],
            stopped_early=stopped,
            seconds=time.perf_counter() - start,
            config=c.config.to_dict(),
        )

    # ---- checkpoints ---------------------------------------------------------------
    def _save(
        self,
        directory: str | os.PathLike,
        history: list[dict[str, Any]],
        best_acc: float,
        best_epoch: int,
        new_best_state: dict[str, torch.Tensor] | None,
        owner: str | None = None,
    ) -> list[Path]:
        """The epoch's state; the selected weights only when they changed since the last save."""
        return checkpoint.save(
            directory,
            {
                **({"owner": owner} if owner is not None else {}),
                "config": self.cfg.config.to_dict(),
                "history": history,
                "best_acc": best_acc,
                "best_epoch": best_epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "method": self.method.state_dict(),
                "shuffle_gen": self.shuffle_gen.get_state(),
                "augment_gen": self.augment_gen.get_state(),
                "rng": checkpoint.rng_states(),
            },
            new_best_state,
        )

    def _restore(
        self, saved: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], float, int, dict[str, torch.Tensor]]:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.method.load_state_dict(saved["method"])
        self.shuffle_gen.set_state(saved["shuffle_gen"])
        self.augment_gen.set_state(saved["augment_gen"])
        checkpoint.set_rng_states(saved["rng"])
        return saved["history"], saved["best_acc"], saved["best_epoch"], saved["best_state"]

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the shuffled training split. The loss and accuracy are summed on the device
        (float64, as the Python floats they replace) and read once, at the end of the epoch."""
        c = self.cfg
        self.model.train()
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        rows = self.data.train.batches(c.batch_size, shuffle=True, generator=self.shuffle_gen)
        for step, (audio, visual, labels) in enumerate(
            device_batches(self.data.train, rows, self.device, c.augment, self.augment_gen)
        ):
            loss, logits = self.method.train_step(audio, visual, labels, epoch, step)
            n = len(labels)
            total_loss += (loss.detach().double() if isinstance(loss, torch.Tensor) else loss) * n
            correct += (logits.argmax(1) == labels).sum()
            seen += n
        self.raise_deferred_nonfinite(epoch)
        return total_loss.item() / max(seen, 1), correct.item() / max(seen, 1)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.cfg.batch_size)

    def joint_step(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The usual step: both encoders forward, the method's loss, one backward, one optimiser
        step. Returns the loss (a detached tensor: reading it would wait for the GPU) and the fused
        logits (for the epoch's training accuracy)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(audio, visual)
            loss = self.method.loss(out, labels, epoch)
        self.check_finite(loss, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.method.after_backward(out, labels, epoch)
        self.optimizer_step()
        return loss.detach(), out.logits.detach()

    def check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Stop on a NaN or infinite loss. On a CPU at once, before it reaches the weights; on a GPU
        (`defer_finite_checks`) the losses are checked together at the end of the epoch, before its
        evaluation and checkpoint, since reading one per step would stall the GPU every step."""
        if self.defer_finite_checks:
            self._unchecked_losses.append((step, loss.detach()))
            return
        if not math.isfinite(loss.item()):
            raise NonFiniteLoss(
                f"loss became {loss.item()} at epoch {epoch}, step {step}; lower the lr"
            )

    def raise_deferred_nonfinite(self, epoch: int) -> None:
        """The deferred check: the first non-finite loss of the epoch, named as the immediate check
        does."""
        pending, self._unchecked_losses = self._unchecked_losses, []
        if not pending:
            return
        losses = torch.stack([loss.float().reshape(()) for _, loss in pending])
        bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()  # one read for the whole epoch
        if bad:
            step, loss = pending[bad[0]]
            raise NonFiniteLoss(
                f"loss became {loss.item()} at epoch {epoch}, step {step}; lower the lr"
            )

    def optimizer_step(self) -> None:
        """Clip (the config's `grad_clip`), then step."""
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()

    # ---- evaluation ---------------------------------------------------------------
    def eval_batch_size(self) -> int:
        """A GPU wants large batches to fill it; a CPU gains nothing from them (each conv is already
        big enough for its cores) and loses cache locality, so there the training batch is used."""
        return max(self.cfg.batch_size, 256) if self.device.type == "cuda" else self.cfg.batch_size

    def _weights_version(self) -> tuple[int, ...]:
        """Changes whenever any parameter or buffer is modified in place (optimiser step, BN
        statistics, a DR blend, load_state_dict) or replaced: tensors count their in-place
        writes."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return tuple(t._version for t in tensors) + tuple(t.data_ptr() for t in tensors)

    def _forward_split(self, split: Split) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
        """Eval-mode pass without augmentation: pooled features, fused logits, mean CE.

        Remembered per split until the weights change, so the DR diagnosis reuses the features
        of the epoch's own validation pass (the same eval-mode model) instead of recomputing them.
        """
        version = self._weights_version()
        cached = self._eval_cache.get(id(split))
        if cached is not None and cached[0] is split and cached[1] == version:
            return cached[2]
        result = self._forward_split_uncached(split)
        self._eval_cache[id(split)] = (split, version, result)
        return result

    @torch.inference_mode()
    def _forward_split_uncached(
        self, split: Split
    ) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
        """In float32 whatever the training precision: autocast is switched off here (also one a
        caller opened), so DR's k-means sees the features the official fp32 code sees, and a GPU's
        validation accuracy is a CPU's. Outputs stay on the device until the split is done."""
        self.model.eval()
        outs: dict[str, list[torch.Tensor]] = {
            "a": [],
            "v": [],
            "logits": [],
            "logits_a": [],
            "logits_v": [],
        }
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        labels_all = []
        rows = split.batches(self.eval_batch_size(), shuffle=False)
        for audio, visual, labels in device_batches(split, rows, self.device, False, None):
            with torch.autocast(self.device.type, enabled=False):
                out = self.model(audio, visual)
                logits_a, logits_v = self.model.fusion.probe_logits(out.feat_a, out.feat_v)
            loss += F.cross_entropy(out.logits.float(), labels, reduction="sum").double()
            for key, t in (
                ("a", out.feat_a),
                ("v", out.feat_v),
                ("logits", out.logits),
                ("logits_a", logits_a),
                ("logits_v", logits_v),
            ):
                outs[key].append(t.float())
            labels_all.append(labels)
        feats = {k: torch.cat(v).cpu().numpy() for k, v in outs.items()}
        return feats, torch.cat(labels_all).cpu().numpy(), loss.item() / len(split)

    def evaluate(self, split: Split) -> dict[str, float]:
        """Fused accuracy and macro-F1, and each modality's accuracy (the fusion's `probe_logits`:
        the other modality zeroed, or the head's own unimodal logits where it has them)."""
        out, labels, loss = self._forward_split(split)
        k = self.data.num_classes
        pred = out["logits"].argmax(1)
        return {
            "acc": accuracy(pred, labels),
            "f1": macro_f1(pred, labels, k),
            "loss": loss,
            "acc_audio": accuracy(out["logits_a"].argmax(1), labels),
            "acc_visual": accuracy(out["logits_v"].argmax(1), labels),
        }

    def features(self, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pooled audio and visual encoder features of a split (no augmentation), with labels."""
        out, labels, _ = self._forward_split(split)
        return out["a"], out["v"], labels
