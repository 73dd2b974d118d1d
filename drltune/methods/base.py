"""The hooks a balancing method gives the trainer. A method is one file: a subclass +
`@METHODS.register`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import torch
import torch.nn.functional as F

from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.params import Param
from drltune.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from drltune.data.base import DataBundle, Split
    from drltune.models import AVClassifier, ModelOutput

METHODS: Registry = Registry("method")


class TrialView(Protocol):
    """What a method may use of the trial it balances (the Trainer provides it); a method needs
    nothing else, so it can be built and tested on any object with these members."""

    # A drltune.resolve.ResolvedConfig (a layer above): TrialConfig's fields with every default
    # filled in, so none is None; it reads them through __getattr__, typed Any.
    cfg: Any
    model: AVClassifier
    data: DataBundle
    optimizer: torch.optim.Optimizer
    device: torch.device
    amp: bool  # bf16 autocast on (CUDA); extra passes outside the training step follow it
    cpu_threads: int  # the trial's CPU share: threads for CPU-side work such as k-means

    def features(self, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Eval-mode pooled audio and visual features of a split, and its labels."""
        ...

    def joint_step(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[float | torch.Tensor, torch.Tensor]:
        """The usual training step (the method's loss, one backward, one optimiser step)."""
        ...

    def check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Stop the trial on a NaN or infinite loss."""
        ...

    def optimizer_step(self) -> None:
        """Clip the gradients as the config says, then step the optimiser."""
        ...

    def steps_per_epoch(self) -> int: ...


class Method:
    """Default behaviour is the plain multimodal baseline: CE on the fused logits, nothing else.

    Hooks, in the order the trainer calls them: `extend_model` once, before the optimiser is
    built (modules the method adds are trained and checkpointed with the model); `setup` once
    after the model and optimiser exist; per batch `train_step`, whose default (the trainer's
    `joint_step`) calls `loss` then (after backward) `after_backward`; `on_epoch_end` after the
    epoch's validation, returning extra metrics for that epoch's record (keys from
    `metric_keys`, so that every epoch has the same keys). A method that needs another kind of
    step (several optimiser steps per batch) overrides `train_step`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    metric_keys: ClassVar[tuple[str, ...]] = ()
    both_modalities: ClassVar[bool] = True  # it balances audio against visual: no unimodal runs
    windows: ClassVar[
        tuple[tuple[str, str], ...]
    ] = ()  # (starts, ends) params: an empty window is an error
    # (epoch param, the largest value that still acts in a run of E epochs, what it is): beyond it
    # the param changes nothing, which `epoch_budget` says out loud
    epoch_limits: ClassVar[tuple[tuple[str, Callable[[int], int], str], ...]] = ()
    # How reports name it, and the parameters `drltune explore`'s report plots against accuracy
    # (parameter -> axis label; none: no such figure).
    label: ClassVar[str] = ""
    report_axes: ClassVar[dict[str, str]] = {}

    def __init__(self, params: dict[str, Any], trainer: TrialView) -> None:
        self.p = params
        self.trainer = trainer

    @classmethod
    def title(cls) -> str:
        return cls.label or cls.name

    @classmethod
    def epoch_text(cls, record: dict[str, Any]) -> str:
        """What `drltune train` adds to an epoch's line from this method's metrics ("" for
        nothing)."""
        return ""

    @classmethod
    def note_rows(cls, history: list[dict[str, Any]]) -> list[str]:
        """Markdown lines a trial's dashboard Note adds from this method's per-epoch metrics."""
        return []

    @classmethod
    def check(cls, params: dict[str, Any], cfg: TrialConfig) -> None:
        """Reject combinations the method cannot run (after each value was checked on its own)."""
        if cls.both_modalities and cfg.modality != "both":
            raise DrltuneError(
                f"modality: {cls.name} balances audio against visual; use modality both"
            )
        for starts, ends in cls.windows:  # an empty window would silently disable the method
            if params[starts] > params[ends]:
                raise DrltuneError(
                    f"params.{starts}: {params[starts]} is after params.{ends} ({params[ends]})"
                )

    def extend_model(self, model: AVClassifier) -> None:
        pass

    def setup(self) -> None:
        pass

    def train_step(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[float | torch.Tensor, torch.Tensor]:
        """One batch of training: (its loss, a float or a detached tensor, and logits for the
        training accuracy). A tensor is summed on the device: no wait for the GPU every step."""
        return self.trainer.joint_step(audio, visual, labels, epoch, step)

    def loss(self, out: "ModelOutput", labels: torch.Tensor, epoch: int) -> torch.Tensor:
        return F.cross_entropy(out.logits, labels)

    def after_backward(self, out: "ModelOutput", labels: torch.Tensor, epoch: int) -> None:
        pass

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
