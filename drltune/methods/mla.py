"""MLA: multimodal learning with alternating unimodal adaptation (Zhang et al., CVPR 2024).

Why: when both encoders are trained through one fused loss the stronger modality dominates;
MLA never trains them jointly. Each batch is one optimiser step per modality, in turn (audio,
then visual): that encoder's features pass a head shared by all modalities, and only that
modality's cross-entropy is minimised. The shared head is what ties the modalities together, so
its weight gradient may be modified so that learning one modality disturbs what it learnt for
the other ("gradient modification", an orthogonal-weight projector). At inference the shared
head's logits for each modality are combined with weights from their prediction entropies.
docs/methods.md §6c gives the official code's quirks and the switch for each:

* `head_projection`: the official code's projector never acts (its parameter-name check never
  matches), so `off` is what it computes; `add` is BalanceBenchmark's working version (gradient
  + gradient x P^T); `replace` is what the official text writes (gradient x P^T).
* `fusion_weights`: `batch_entropy` as the official code (softmax over the *batch* axis, one
  entropy and so one weight per modality per batch); `sample_entropy` one weight per sample;
  `fixed` uses `audio_weight` (the official fixed-fusion run passes 0.55).

The model's fusion head is replaced by the shared head (Linear 512 -> K), so `fusion` has no
effect on an MLA trial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from drltune.methods.base import METHODS, Method
from drltune.methods.common import StepMeans, autocast
from drltune.models.fusion import Fusion
from drltune.params import Param

if TYPE_CHECKING:
    from drltune.models import AVClassifier

MODALITIES = ("audio", "visual")


def modality_weights(
    logits_a: torch.Tensor, logits_v: torch.Tensor, mode: str, audio_weight: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_audio, w_visual), each broadcastable to the (B, K) logits and summing to 1.

    The entropy modes give the less uncertain modality more weight: w = softmax(-H) over the
    modalities, which equals the code's exp(max H - H_m) / sum. `batch_entropy` takes H as the
    entropy of the softmax over the batch axis, summed over the whole batch (the code's
    calculate_entropy); `sample_entropy` takes each sample's entropy over the classes.
    """
    if mode == "fixed":
        return torch.tensor(audio_weight), torch.tensor(1.0 - audio_weight)
    dim = 0 if mode == "batch_entropy" else 1
    entropy = [torch.special.entr(torch.softmax(x.float(), dim=dim)) for x in (logits_a, logits_v)]
    entropy = [h.sum() if mode == "batch_entropy" else h.sum(1, keepdim=True) for h in entropy]
    w = torch.softmax(-torch.stack(entropy), dim=0)
    return w[0], w[1]


def projection_alpha(step: int, steps_per_epoch: int) -> float:
    """The projector's regulariser, 0.1 ** (step / steps_per_epoch + 1): 0.1 at an epoch's first
    batch, falling towards 0.01 at its last."""
    return 0.1 ** (step / steps_per_epoch + 1)


def update_projector(projector: torch.Tensor, features: torch.Tensor, alpha: float) -> torch.Tensor:
    """One recursive update with the batch's mean feature r (1 x D), as both codes write it:
    k = P r^T, P <- P - (k k^T) / (alpha + k r), where k r is the D x D outer product, so the
    division is element by element (the textbook orthogonal-weight update divides by the scalar
    r k instead); then P is scaled to Frobenius norm 1."""
    r = features.detach().float().mean(0, keepdim=True)
    k = projector @ r.T
    updated = projector - (k @ k.T) / (alpha + k @ r)
    return updated / updated.norm()


def projected_grad(grad: torch.Tensor, projector: torch.Tensor, mode: str) -> torch.Tensor:
    """The head weight's gradient (K x D) after the projection: `replace` g P^T, `add` g + g P^T."""
    moved = grad @ projector.T
    return moved if mode == "replace" else grad + moved


class SharedHead(Fusion):
    """One Linear(D -> K) for every modality; fused logits weight the modalities' logits."""

    def __init__(self, dim: int, num_classes: int, weights: str, audio_weight: float) -> None:
        super().__init__()
        self.head = nn.Linear(dim, num_classes)
        self.weights, self.audio_weight = weights, audio_weight

    def fuse(self, logits_a: torch.Tensor, logits_v: torch.Tensor) -> torch.Tensor:
        w_a, w_v = modality_weights(logits_a, logits_v, self.weights, self.audio_weight)
        return w_a.to(logits_a.device) * logits_a + w_v.to(logits_v.device) * logits_v

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.head(a), self.head(v))

    def unimodal_logits(
        self, a: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(a), self.head(v)

    probe_logits = auxiliary_logits = unimodal_logits


@METHODS.register
class MLA(Method):
    name = "mla"
    description = (
        "MLA: one optimiser step per modality through a shared head (projected head gradient), "
        "entropy-weighted fusion at inference; replaces the fusion head"
    )
    params = (
        Param(
            "head_projection",
            "choice",
            "add",
            "shared head's gradient: add g P^T (BalanceBenchmark), replace by g P^T (official "
            "text), off (the official code as it runs)",
            choices=("add", "replace", "off"),
        ),
        Param(
            "fusion_weights",
            "choice",
            "batch_entropy",
            "inference weights: batch_entropy (official code), sample_entropy, fixed "
            "(audio_weight)",
            choices=("batch_entropy", "sample_entropy", "fixed"),
        ),
        Param(
            "audio_weight",
            "float",
            0.55,
            "audio's weight under fusion_weights fixed (official run 0.55)",
            0.0,
            1.0,
            search=(0.3, 0.7),
        ),
    )
    metric_keys = ("loss_audio", "loss_visual", "mla_weight_audio")

    def extend_model(self, model: AVClassifier) -> None:
        model.fusion = SharedHead(
            model.audio_net.out_dim,
            model.num_classes,
            self.p["fusion_weights"],
            self.p["audio_weight"],
        )

    def setup(self) -> None:
        dim = self.trainer.model.audio_net.out_dim
        self.projector = torch.eye(dim, device=self.trainer.device)
        self.updates = (
            0  # optimiser steps so far: the very first one is never projected (as the code)
        )
        self.means = StepMeans(self.metric_keys)

    def train_step(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[float | torch.Tensor, torch.Tensor]:
        trainer, model = self.trainer, self.trainer.model
        inputs = {"audio": (model.audio_net, audio), "visual": (model.visual_net, visual)}
        losses, logits = {}, {}
        for m in MODALITIES:
            encoder, x = inputs[m]
            with autocast(trainer):
                features = encoder(x)
                out = model.fusion.head(features)
                loss = F.cross_entropy(out, labels)
            trainer.check_finite(loss, epoch, step)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.p["head_projection"] != "off":
                self._project_head_grad(features, step)
            trainer.optimizer_step()
            self.updates += 1
            losses[m], logits[m] = loss.item(), out.detach().float()
        trainer.optimizer.zero_grad(set_to_none=True)
        w_a, _ = modality_weights(
            logits["audio"], logits["visual"], self.p["fusion_weights"], self.p["audio_weight"]
        )
        self.means.add(
            loss_audio=losses["audio"],
            loss_visual=losses["visual"],
            mla_weight_audio=w_a.mean().item(),
        )
        return (losses["audio"] + losses["visual"]) / 2, model.fusion.fuse(
            logits["audio"], logits["visual"]
        )

    @torch.no_grad()
    def _project_head_grad(self, features: torch.Tensor, step: int) -> None:
        """Update the projector with this modality's batch and move the head weight's gradient
        (the bias keeps its own); skipped for the first optimiser step of the run, as the code."""
        if self.updates == 0:
            return
        alpha = projection_alpha(step, self.trainer.steps_per_epoch())
        self.projector = update_projector(self.projector, features, alpha)
        weight = self.trainer.model.fusion.head.weight
        weight.grad = projected_grad(weight.grad, self.projector, self.p["head_projection"])

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return self.means.pop()

    def state_dict(self) -> dict[str, Any]:
        return {"projector": self.projector.cpu(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.projector = state["projector"].to(self.trainer.device)
        self.updates = state["updates"]
