"""A toy balancing method, as a newcomer would add one: one class in one file (tests/test_toy_method.py
imports it; in the package it would be one import line in drltune/methods/__init__.py)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from drltune.methods import METHODS, Method
from drltune.params import Param


@METHODS.register
class ToyScaledLoss(Method):
    name = "toy"
    description = "toy: cross-entropy scaled by a constant (a test of the method contract)"
    params = (Param("scale", "float", 1.0, "loss multiplier", 0.1, 10.0, search=(0.5, 2.0)),
              Param("warmup", "int", 0, "epochs before the scale applies", 0, 1000, is_epoch=True))
    metric_keys = ("toy_scale",)
    label = "Toy"
    report_axes = {"scale": "loss scale"}

    @classmethod
    def epoch_text(cls, record: dict[str, Any]) -> str:
        return f"toy scale {record['toy_scale']:.2f}"

    def loss(self, out, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        scale = self.p["scale"] if epoch >= self.p["warmup"] else 1.0
        return scale * F.cross_entropy(out.logits, labels)

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return {"toy_scale": self.p["scale"] if epoch >= self.p["warmup"] else 1.0}
