"""Pieces shared by the peer balancing methods (OGM-GE, PMR, ARL, AGM)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch

if TYPE_CHECKING:
    from drltune.methods.base import TrialView


def autocast(trainer: TrialView) -> torch.autocast:
    """The trainer's mixed precision, for extra passes that run outside its training step
    (after backward the features are bfloat16 on CUDA while the head's weights are float32)."""
    return torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.amp)


def true_class_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over the batch of the softmax probability of the true class (OGM-GE/PMR's score s)."""
    probs = torch.softmax(logits.detach().float(), dim=1)
    return probs.gather(1, labels.view(-1, 1)).sum().item()


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of the softmax entropy, -sum p log(p + 1e-16) as in the ARL code."""
    probs = torch.softmax(logits, dim=1)
    return -(probs * torch.log(probs + 1e-16)).sum(1).mean()


def in_window(epoch: int, starts: int, ends: int) -> bool:
    """Modulation windows are inclusive at both ends, as `starts <= epoch <= ends` in the repos."""
    return starts <= epoch <= ends


class StepMeans:
    """Per-step values averaged into one per-epoch metric each (None for a key never added)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] += float(value)
            self.counts[key] += 1

    def pop(self) -> dict[str, Any]:
        """The epoch's means, then start over for the next epoch."""
        out = {k: (self.sums[k] / self.counts[k] if self.counts[k] else None) for k in self.keys}
        self.reset()
        return out


def grads_in_scope(
    params: Iterable[tuple[str, torch.nn.Parameter]], scope: str
) -> list[torch.Tensor]:
    """Encoder gradients a modulation touches: 4-D conv weights only ("conv") or every one
    ("all")."""
    grads = [p.grad for _, p in params if p.grad is not None]
    return [g for g in grads if g.dim() == 4] if scope == "conv" else grads


def build_optimizer(cfg: Any, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The trial's optimiser from its config: the trainer's, and a fresh one for a method that
    trains copies of the model (G-Blending); `type(opt)(**opt.defaults)` fails for AdamW, whose
    defaults carry Adam's `decoupled_weight_decay`."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
