"""Fusion heads of the papers (docs/methods.md §1.2); `a` is audio, `v` visual, both (B,D)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from drltune.registry import Registry

FUSIONS: Registry = Registry("fusion")


class Fusion(nn.Module):
    """Fused logits, plus the unimodal logits that OGM-GE/PMR read (None where undefined).

    A fusion is a subclass with a `name`, registered with `@FUSIONS.register`; it is built as
    `cls(dim, num_classes)` from two (B, dim) embeddings."""

    name: ClassVar[str]

    def unimodal_logits(
        self, a: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def auxiliary_logits(
        self, a: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ARL's *_AUXI unimodal paths: the fused head fed one modality with the other zeroed."""
        return self(a, torch.zeros_like(v)), self(torch.zeros_like(a), v)

    def probe_logits(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What evaluation's per-modality accuracies read: the fused head with the other modality
        zeroed, for every fusion of the papers; a head with its own unimodal outputs overrides
        it."""
        return self(a, torch.zeros_like(v)), self(torch.zeros_like(a), v)


@FUSIONS.register
class ConcatFusion(Fusion):
    """fc_out([a; v]); unimodal logits are the weight halves with half the bias each."""

    name = "concat"

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc_out = nn.Linear(2 * dim, num_classes)
        self.dim = dim

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.fc_out(torch.cat([a, v], dim=1))

    def unimodal_logits(self, a, v):
        w, b = self.fc_out.weight, self.fc_out.bias
        return a @ w[:, : self.dim].T + b / 2, v @ w[:, self.dim :].T + b / 2


@FUSIONS.register
class SumFusion(Fusion):
    """fc_x(a) + fc_y(v); each branch is its modality's logits."""

    name = "sum"

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc_x = nn.Linear(dim, num_classes)
        self.fc_y = nn.Linear(dim, num_classes)

    def forward(self, a, v):
        return self.fc_x(a) + self.fc_y(v)

    def unimodal_logits(self, a, v):
        return self.fc_x(a), self.fc_y(v)

    def auxiliary_logits(self, a, v):
        return self.fc_x(a), self.fc_y(v)


@FUSIONS.register
class FiLMFusion(Fusion):
    """Audio conditions visual: fused = gamma(a) * v + beta(a)."""

    name = "film"

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 2 * dim)
        self.fc_out = nn.Linear(dim, num_classes)
        self.dim = dim

    def forward(self, a, v):
        gamma, beta = self.fc(a).split(self.dim, dim=1)
        return self.fc_out(gamma * v + beta)


@FUSIONS.register
class GatedFusion(Fusion):
    """Audio gates visual: logits = fc_out(sigmoid(fc_x(a)) * fc_y(v))."""

    name = "gated"

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc_x = nn.Linear(dim, dim)
        self.fc_y = nn.Linear(dim, dim)
        self.fc_out = nn.Linear(dim, num_classes)

    def forward(self, a, v):
        return self.fc_out(torch.sigmoid(self.fc_x(a)) * self.fc_y(v))

    def auxiliary_logits(self, a, v):
        ox, oy = self.fc_x(a), self.fc_y(v)
        return self.fc_out(torch.sigmoid(ox) * ox), self.fc_out(torch.sigmoid(oy) * oy)
