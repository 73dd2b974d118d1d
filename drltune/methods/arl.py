"""ARL: asymmetric re-weighting via unimodal auxiliary learning (ICCV 2025, arXiv 2507.10203).

Why: instead of equalising the modalities, ARL lets each encoder depend on its modality in
proportion to how reliable it is, and trains every encoder also through its own unimodal head
so that no encoder is starved (docs/methods.md §5).

* Unimodal heads share the fusion head's parameters: `fusion.auxiliary_logits(a, v)` gives the
  *_AUXI paths (concat: fc_out([a;0]) and fc_out([0;v]) with the full bias; sum: fc_x(a), fc_y(v);
  gated: fc_out(sigmoid(o)*o); film: the zero-padding path), so every fusion works.
* Loss: CE(fused) + gamma_t (CE(audio) + CE(visual)), gamma_t = 1 for epochs <= `start`, then
  `gamma` (argparse default 1; the CREMA-D script uses 4). Then grad-norm clip at `grad_clip` (40).
* GradScale: after epoch `start`, each encoder's layer4 output passes an identity whose backward
  multiplies the gradient by (1 + w_m), so the whole encoder gets (1 + w_m) x its gradient from
  every loss while the head is unaffected. Installed as forward hooks in `setup`.
* Weights, per batch from the detached auxiliary logits (the code's proxy for the paper's
  "inverse variance ratio", whose exact form is UNVERIFIED): magnitude m = sum_k mean_batch |logit|,
  normalised over the two modalities; entropy H = batch-mean softmax entropy, normalised and
  clamped to >= `entropy_floor`, inverted and normalised; (w_a, w_v) =
  softmax(T * [m_v / H_a', m_a / H_v']). As in the released loop, a batch's weights are set after
  its forward pass and so scale the *next* batch's backward.
* `weight_mode` "intended" uses those weights; "released" keeps both at 0.5 (the shipped script
  never assigns them), i.e. a constant symmetric 1.5x after `start`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from drltune.methods.base import METHODS, Method
from drltune.methods.common import StepMeans, mean_entropy
from drltune.params import Param


class GradScale(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by `scale`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


@torch.no_grad()
def arl_weights(
    logits_a: torch.Tensor, logits_v: torch.Tensor, temperature: float, entropy_floor: float = 0.3
) -> tuple[float, float]:
    """(w_audio, w_visual): softmax(T * [m_v * inv_H_a, m_a * inv_H_v]), as main_arl_variance.py."""
    logits_a, logits_v = logits_a.detach().float(), logits_v.detach().float()
    mag_a, mag_v = logits_a.abs().mean(0).sum(), logits_v.abs().mean(0).sum()
    mag_a, mag_v = mag_a / (mag_a + mag_v), mag_v / (mag_a + mag_v)
    h_a, h_v = mean_entropy(logits_a), mean_entropy(logits_v)
    h_a, h_v = (
        (h_a / (h_a + h_v)).clamp(min=entropy_floor),
        (h_v / (h_a + h_v)).clamp(min=entropy_floor),
    )
    inv_a, inv_v = 1.0 / h_a, 1.0 / h_v
    inv_a, inv_v = inv_a / (inv_a + inv_v), inv_v / (inv_a + inv_v)
    w = torch.softmax(torch.stack([mag_v * inv_a, mag_a * inv_v]) * temperature, dim=0)
    return w[0].item(), w[1].item()


@METHODS.register
class ARL(Method):
    name = "arl"
    epoch_limits = (
        ("start", lambda e: e - 2, "warm-up end"),
    )  # scaling starts after epoch `start`
    description = (
        "ARL: unimodal auxiliary CE + encoder grads scaled by (1 + w) from logit size x inverse "
        "entropy"
    )
    params = (
        Param(
            "gamma",
            "float",
            1.0,
            "weight of the unimodal CE terms after `start` (CREMA-D script 4, KS 3)",
            0.0,
            10.0,
            search=(0.5, 6.0),
        ),
        Param(
            "T",
            "float",
            8.0,
            "softmax temperature of the modality weights (CREMA-D 8, KS 4)",
            0.1,
            32.0,
            log=True,
            search=(1.0, 16.0),
        ),
        Param(
            "start",
            "int",
            5,
            "warm-up: gamma 1 and no gradient scaling for epochs <= start",
            0,
            1000,
            is_epoch=True,
            search=(0, 10),
        ),
        Param(
            "weight_mode",
            "choice",
            "intended",
            "intended: computed weights; released: constant 0.5 (shipped code)",
            choices=("intended", "released"),
        ),
        Param(
            "entropy_floor",
            "float",
            0.3,
            "lower clamp of the normalised entropies",
            0.0,
            0.5,
            search=(0.1, 0.45),
        ),
        Param(
            "grad_clip",
            "float",
            40.0,
            "grad-norm clip after backward (0: none)",
            0.0,
            1e6,
            search=(20.0, 80.0),
        ),
    )
    metric_keys = ("arl_weight_audio", "arl_weight_visual")

    def setup(self) -> None:
        self.epoch = 0  # the epoch whose forwards the hooks see
        self.weights = {"audio": 0.5, "visual": 0.5}
        self.means = StepMeans(self.metric_keys)
        model = self.trainer.model
        for handle in getattr(self, "handles", ()):  # setup twice must not scale twice
            handle.remove()
        self.handles = [
            encoder.net.layer4.register_forward_hook(self._scale_hook(modality))
            for modality, encoder in (("audio", model.audio_net), ("visual", model.visual_net))
        ]

    def _scale_hook(self, modality: str):
        def hook(module, inputs, output):
            if self.scaling_active(self.epoch) and output.requires_grad:
                return GradScale.apply(output, 1.0 + self.weights[modality])
            return None

        return hook

    def scaling_active(self, epoch: int) -> bool:
        return epoch > self.p["start"]

    def loss(self, out, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        logits_a, logits_v = self.trainer.model.fusion.auxiliary_logits(out.feat_a, out.feat_v)
        after_warmup = self.scaling_active(epoch)
        gamma = self.p["gamma"] if after_warmup else 1.0
        loss = F.cross_entropy(out.logits, labels) + gamma * (
            F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_v, labels)
        )
        if after_warmup and self.p["weight_mode"] == "intended":
            w_a, w_v = arl_weights(logits_a, logits_v, self.p["T"], self.p["entropy_floor"])
            self.weights = {"audio": w_a, "visual": w_v}
        if after_warmup:
            self.means.add(
                arl_weight_audio=self.weights["audio"], arl_weight_visual=self.weights["visual"]
            )
        return loss

    def after_backward(self, out, labels: torch.Tensor, epoch: int) -> None:
        if self.p["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.trainer.model.parameters(), self.p["grad_clip"])

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        self.epoch = epoch + 1
        return self.means.pop()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "weights": dict(self.weights)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.weights = state["epoch"], dict(state["weights"])
