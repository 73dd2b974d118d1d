"""InfoReg: information acquisition regulation (Huang, Wei, Yang & Hu, CVPR 2025), as its official
code (GeWu-Lab/InfoReg_CVPR2025 main.py @ ea7b9d5) trains.

Why: early in training (the "prime learning window") the information-sufficient modality learns
fastest and suppresses the other. InfoReg slows the stronger encoder during that window only, by
pulling it back towards where it stood at the start of the epoch (a proximal term).

Per batch, after backward:
  S_m     = sum over the batch of softmax(unimodal logits_m)[true class]   (a SUM, as in the code)
  inside the window (k > threshold) the stronger modality m gets
  beta_m  = coeff_m * exp(tanh(S_m - S_other))   (coeff: 0.95 audio, 0.10 visual in the code)
  g       <- g + beta_m * (theta - theta_bar)      for every parameter of encoder m
  theta_bar = the weights at the start of the epoch.
The window: F(e) = trace of the gradient-squared (Fisher diagonal) accumulated over epoch e on the
`trace_modality` encoder's conv/linear weights (sum over layers of the per-layer mean), after the
proximal term; with T = [0] * W + [F(0), ..., F(e-1)],
  k_e = (mean(T[-W:]) - mean(T[-W-1:-1])) / mean(T[-W:])   (k_0 = 1),
i.e. the relative growth of the W-epoch moving average of the trace. docs/methods.md §6d.
`unimodal_loss` (the released code: on) adds CE(z_a) + CE(z_v) to the fused CE: the paper's
"InfoReg with unimodal loss" variant.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from drltune.methods.base import METHODS, Method, TrialView
from drltune.methods.common import StepMeans, autocast
from drltune.params import Param


def window_signal(traces: list[float], window: int) -> float:
    """k for the next epoch from the per-epoch traces so far (official: zero-padded by `window`)."""
    if not traces:
        return 1.0
    padded = [0.0] * window + list(traces)
    recent = sum(padded[-window:]) / window
    before = sum(padded[-window - 1 : -1]) / window
    return (recent - before) / recent if recent > 0 else 0.0


def regulation_strengths(
    score_a: float,
    score_v: float,
    k: float,
    threshold: float,
    coeff_audio: float,
    coeff_visual: float,
) -> tuple[float, float]:
    """(beta_audio, beta_visual): only the stronger modality is pulled, only while k > threshold."""
    if k > threshold and score_a > score_v:
        return coeff_audio * math.exp(math.tanh(score_a - score_v)), 0.0
    if k > threshold and score_v > score_a:
        return 0.0, coeff_visual * math.exp(math.tanh(score_v - score_a))
    return 0.0, 0.0


@torch.no_grad()
def pull_towards_(params: list[nn.Parameter], anchor: list[torch.Tensor], beta: float) -> None:
    """In place: grad += beta * (theta - theta_bar), the gradient of (beta/2) |theta -
    theta_bar|^2."""
    if beta == 0.0:
        return
    for p, ref in zip(params, anchor):
        if p.grad is not None:
            p.grad.add_(p.detach() - ref, alpha=beta)


def weight_layers(encoder: nn.Module) -> list[torch.Tensor]:
    """The conv and linear weights whose squared gradients make the Fisher trace (as in the
    code)."""
    return [m.weight for m in encoder.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear))]


@METHODS.register
class InfoReg(Method):
    name = "inforeg"
    label = "InfoReg"
    description = (
        "InfoReg: pull the stronger encoder back to its epoch-start weights while the Fisher trace "
        "still grows (prime learning window)"
    )
    params = (
        Param(
            "unimodal_loss",
            "bool",
            True,
            "add CE of each modality's head slice (released code: on; off = InfoReg without "
            "unimodal loss)",
        ),
        Param(
            "threshold",
            "float",
            0.05,
            "regulate while the window signal k exceeds it (code 0.05; Mar-2025 0.04)",
            0.0,
            1.0,
            search=(0.01, 0.2),
        ),
        Param(
            "coeff_audio",
            "float",
            0.95,
            "pull strength on audio when it leads (code 0.95)",
            0.0,
            20.0,
            search=(0.1, 3.0),
        ),
        Param(
            "coeff_visual",
            "float",
            0.10,
            "pull strength on visual when it leads (code 0.10)",
            0.0,
            20.0,
            search=(0.01, 1.0),
        ),
        Param(
            "trace_window",
            "int",
            10,
            "epochs in the moving average of the Fisher trace (code 10)",
            1,
            1000,
            is_epoch=True,
            search=(3, 15),
        ),
        Param(
            "trace_modality",
            "choice",
            "audio",
            "encoder whose Fisher trace gates both (code: audio)",
            choices=("audio", "visual"),
        ),
        Param(
            "score",
            "choice",
            "sum",
            "S over the batch: sum (code; tanh saturates) or mean",
            choices=("sum", "mean"),
        ),
    )
    metric_keys = ("inforeg_k", "inforeg_trace", "inforeg_beta_audio", "inforeg_beta_visual")

    def __init__(self, params: dict[str, Any], trainer: TrialView) -> None:
        super().__init__(params, trainer)
        self.traces: list[
            float
        ] = []  # F(e) of every finished epoch: the state carried across epochs
        self.epoch: int | None = None  # the epoch whose anchor and k are current
        self.k = 1.0
        self.anchor: dict[str, list[torch.Tensor]] = {}
        self.fisher: list[torch.Tensor] = []
        self.means = StepMeans(("inforeg_beta_audio", "inforeg_beta_visual"))

    @classmethod
    def epoch_text(cls, record: dict[str, Any]) -> str:
        beta_a, beta_v = record["inforeg_beta_audio"], record["inforeg_beta_visual"]
        if beta_a is None:
            return ""
        return f"window k {record['inforeg_k']:.3f} pull a {beta_a:.2f} v {beta_v:.2f}"

    def _start_epoch(self, epoch: int) -> None:
        """Snapshot theta_bar before the epoch's first step and fix the epoch's k (official
        L237-259)."""
        model = self.trainer.model
        self.epoch = epoch
        self.k = window_signal(self.traces, self.p["trace_window"])
        self.anchor = {
            m: [p.detach().clone() for _, p in model.encoder_parameters(m)]
            for m in ("audio", "visual")
        }
        encoder = model.audio_net if self.p["trace_modality"] == "audio" else model.visual_net
        self.fisher = [torch.zeros_like(w) for w in weight_layers(encoder)]

    def loss(self, out, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        if epoch != self.epoch:
            self._start_epoch(epoch)
        loss = F.cross_entropy(out.logits, labels)
        if self.p["unimodal_loss"]:
            logits_a, logits_v = self.trainer.model.unimodal_logits(out)
            loss = loss + F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_v, labels)
        return loss

    def _score(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        probs = torch.softmax(logits.detach().float(), dim=1).gather(1, labels.view(-1, 1))
        return (probs.sum() if self.p["score"] == "sum" else probs.mean()).item()

    @torch.no_grad()
    def after_backward(self, out, labels: torch.Tensor, epoch: int) -> None:
        model = self.trainer.model
        with autocast(self.trainer):
            logits_a, logits_v = model.unimodal_logits(out)
        beta_a, beta_v = regulation_strengths(
            self._score(logits_a, labels),
            self._score(logits_v, labels),
            self.k,
            self.p["threshold"],
            self.p["coeff_audio"],
            self.p["coeff_visual"],
        )
        for modality, beta in (("audio", beta_a), ("visual", beta_v)):
            pull_towards_(
                [p for _, p in model.encoder_parameters(modality)], self.anchor[modality], beta
            )
        encoder = model.audio_net if self.p["trace_modality"] == "audio" else model.visual_net
        for acc, w in zip(self.fisher, weight_layers(encoder)):  # after the pull, as in the code
            if w.grad is not None:
                acc.add_(w.grad.float() ** 2)
        self.means.add(inforeg_beta_audio=beta_a, inforeg_beta_visual=beta_v)

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        trace = sum(acc.mean().item() for acc in self.fisher)
        self.traces.append(trace)
        return {"inforeg_k": self.k, "inforeg_trace": trace, **self.means.pop()}

    def state_dict(self) -> dict[str, Any]:
        return {"traces": list(self.traces)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.traces = [float(t) for t in state.get("traces", [])]
