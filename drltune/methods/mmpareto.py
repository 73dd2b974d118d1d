"""MMPareto (Wei & Hu, ICML 2024), as its official code (MMPareto.py) trains.

Two extra unimodal heads and three cross-entropies (fused, audio, visual). For each encoder the
gradients of the fused loss and of its own unimodal loss are compared: when they agree (cosine
above 0) both get weight 1/2, otherwise the weights of the minimum-norm point of the segment
between them (the Pareto-stationary direction). The encoder's gradient becomes
2 * (k_mm * g_mm + k_uni * g_uni), scaled up per tensor to at least the norm of the summed
loss's gradient, times `gamma` (1.5 in the code). Heads keep the summed loss's gradient.
docs/methods.md §6b.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from drltune.methods.base import METHODS, Method, TrialView
from drltune.methods.common import StepMeans
from drltune.params import Param

if TYPE_CHECKING:
    from drltune.models import AVClassifier

MODALITIES = ("audio", "visual")


def min_norm_weights(v1v1: float, v1v2: float, v2v2: float) -> tuple[float, float]:
    """(c, 1 - c) minimising |c g1 + (1 - c) g2|^2 from the three dot products, with the
    official solver's end points: 0.999 / 0.001 instead of exactly 1 / 0."""
    if v1v2 >= v1v1:
        c = 0.999
    elif v1v2 >= v2v2:
        c = 0.001
    else:
        c = (v2v2 - v1v2) / (v1v1 + v2v2 - 2 * v1v2)
    return c, 1.0 - c


def pareto_weights(
    g_mm: list[torch.Tensor], g_uni: list[torch.Tensor]
) -> tuple[float, float, float]:
    """(k_mm, k_uni, cosine) for one encoder from its per-tensor gradient lists."""
    flat_mm = torch.cat([g.flatten().float() for g in g_mm])
    flat_uni = torch.cat([g.flatten().float() for g in g_uni])
    cos = F.cosine_similarity(flat_mm, flat_uni, dim=0).item()
    if cos > 0:
        return 0.5, 0.5, cos
    k_mm, k_uni = min_norm_weights(
        flat_mm.dot(flat_mm).item(), flat_mm.dot(flat_uni).item(), flat_uni.dot(flat_uni).item()
    )
    return k_mm, k_uni, cos


def combined_grad(
    g_mm: torch.Tensor,
    g_uni: torch.Tensor,
    g_sum: torch.Tensor,
    k_mm: float,
    k_uni: float,
    gamma: float,
    rescale: bool = True,
) -> torch.Tensor:
    """One tensor's new gradient: 2 (k_mm g_mm + k_uni g_uni), lifted to |g_sum| if it is shorter, x
    gamma."""
    new = 2 * k_mm * g_mm + 2 * k_uni * g_uni
    if rescale:
        new_norm = new.norm()
        if new_norm > 0:  # an all-zero combination stays zero (the official code would produce NaN)
            ratio = g_sum.norm() / new_norm
            if ratio > 1:
                new = ratio * new
    return new * gamma


@METHODS.register
class MMPareto(Method):
    name = "mmpareto"
    description = (
        "MMPareto: fused + unimodal losses, per-encoder gradients combined by a Pareto rule and "
        "enlarged"
    )
    params = (
        Param(
            "gamma",
            "float",
            1.5,
            "factor on the combined encoder gradients (1.5 hard-coded in the code)",
            0.1,
            10.0,
            search=(1.0, 2.0),
        ),
        Param(
            "rescale",
            "bool",
            True,
            "lift each combined gradient to the summed loss's gradient norm (code: on)",
        ),
    )
    metric_keys = (
        "cos_audio",
        "cos_visual",
        "pareto_share_audio",
        "pareto_share_visual",
        "loss_audio",
        "loss_visual",
    )

    def __init__(self, params: dict[str, Any], trainer: TrialView) -> None:
        super().__init__(params, trainer)
        self.means = StepMeans(self.metric_keys)
        self.grads: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def extend_model(self, model: AVClassifier) -> None:
        """The official model's unimodal heads (Linear 512 -> K each), trained by their own
        losses."""
        dim, k = model.audio_net.out_dim, model.num_classes
        model.add_module(
            "unimodal_heads", nn.ModuleDict({m: nn.Linear(dim, k) for m in MODALITIES})
        )

    def loss(self, out, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        model = self.trainer.model
        heads = model.unimodal_heads
        assert isinstance(heads, nn.ModuleDict)  # added by extend_model
        loss_mm = F.cross_entropy(out.logits, labels)
        loss_uni = {
            "audio": F.cross_entropy(heads["audio"](out.feat_a), labels),
            "visual": F.cross_entropy(heads["visual"](out.feat_v), labels),
        }
        self.grads = {}
        for (
            m
        ) in MODALITIES:  # the two gradients to compare, on this encoder only (backward runs later)
            params = [p for _, p in model.encoder_parameters(m)]
            g_mm = torch.autograd.grad(loss_mm, params, retain_graph=True, allow_unused=True)
            g_uni = torch.autograd.grad(loss_uni[m], params, retain_graph=True, allow_unused=True)
            self.grads[m] = (
                [g if g is not None else torch.zeros_like(p) for g, p in zip(g_mm, params)],
                [g if g is not None else torch.zeros_like(p) for g, p in zip(g_uni, params)],
            )
        self.means.add(loss_audio=loss_uni["audio"].item(), loss_visual=loss_uni["visual"].item())
        return loss_mm + loss_uni["audio"] + loss_uni["visual"]

    @torch.no_grad()
    def after_backward(self, out, labels: torch.Tensor, epoch: int) -> None:
        model = self.trainer.model
        for m in MODALITIES:
            g_mm, g_uni = self.grads[m]
            k_mm, k_uni, cos = pareto_weights(g_mm, g_uni)
            self.means.add(**{f"cos_{m}": cos, f"pareto_share_{m}": float(cos <= 0)})
            for (_, p), a, b in zip(model.encoder_parameters(m), g_mm, g_uni):
                g_sum = p.grad if p.grad is not None else torch.zeros_like(p)
                p.grad = combined_grad(a, b, g_sum, k_mm, k_uni, self.p["gamma"], self.p["rescale"])
        self.grads = {}

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return self.means.pop()
