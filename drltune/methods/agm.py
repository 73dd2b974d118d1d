"""AGM: adaptive gradient modulation (Li et al., ICCV 2023), as BalanceBenchmark's AGM trainer does
it.

Why: OGM-GE only ever slows the dominant modality. AGM measures each modality's contribution with
Shapley-style zero-padding passes and *both* boosts the lagging encoder and slows the leading one,
steering the per-modality losses towards their running-average ratio (docs/methods.md §6).

Per step, after the ordinary CE backward on the fused logits:
  m_a = 1/2 (f(a,v) - f(0,v) + f(a,0)), m_v = 1/2 (f(a,v) - f(a,0) + f(0,v))   (`shapley` "agm")
     or m_a = 1/2 (f(a,v) - f(0,v)), m_v = 1/2 (f(a,v) - f(a,0))   (`shapley` "balancemm": its
     current newGrad, which leaves out the one-modality coalition)
  s_m   = batch mean of -log max(softmax(m_m)[y], 1e-8)
  r_m   = exp(n/(n-1) (s_m - mean s)); r*_m the same from the running means of s over all steps
  k_m   = exp(alpha * min(r*_m - r_m, 7)); every non-1-D encoder grad of modality m is multiplied
          by k_m inside [modulation_starts, modulation_ends]; then, if any fusion-head gradient
          leaves [-5, 5], the whole gradient norm is clipped to 5.
`padding` "input" is BalanceMM's: the padded modality's *input* is zeroed and all these passes
run in eval mode without gradients (one extra forward per step); "feature" zeroes the pooled
feature of the training pass instead (no extra encoder pass). Inputs are captured with a
forward pre-hook on the model, so the trainer needs no special case; every fusion works.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from drltune.methods.base import METHODS, Method
from drltune.methods.common import StepMeans, autocast, in_window
from drltune.params import Param

MODALITIES = ("audio", "visual")


def shapley_logits(
    full: torch.Tensor, pad_audio: torch.Tensor, pad_visual: torch.Tensor, form: str = "agm"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(m_a, m_v) from f(a,v), f(0,v) (`pad_audio`) and f(a,0) (`pad_visual`)."""
    if form == "agm":
        return 0.5 * (full - pad_audio + pad_visual), 0.5 * (full - pad_visual + pad_audio)
    return 0.5 * (full - pad_audio), 0.5 * (full - pad_visual)


def agm_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Batch mean of -log p(true class), with p floored at 1e-8."""
    p = torch.softmax(logits.float(), dim=1).gather(1, labels.view(-1, 1)).clamp(min=1e-8)
    return -p.log().mean().item()


def agm_coefficients(
    scores: dict[str, float], running: dict[str, float], alpha: float
) -> dict[str, float]:
    """k_m = exp(alpha * min(r*_m - r_m, 7)), r_m = exp(n/(n-1) (s_m - mean s))."""
    n = len(scores)
    mean_s, mean_r = sum(scores.values()) / n, sum(running.values()) / n
    coeffs = {}
    for m in scores:
        ratio = math.exp(n / (n - 1) * (scores[m] - mean_s))
        optimal = math.exp(n / (n - 1) * (running[m] - mean_r))
        coeffs[m] = math.exp(alpha * min(optimal - ratio, 7.0))
    return coeffs


@METHODS.register
class AGM(Method):
    name = "agm"
    description = (
        "AGM: Shapley zero-padding scores -> boost the lagging and slow the leading encoder's grads"
    )
    params = (
        Param(
            "alpha",
            "float",
            0.1,
            "modulation strength (BalanceMM 0.1)",
            0.001,
            2.0,
            log=True,
            search=(0.01, 1.0),
        ),
        Param(
            "modulation_starts",
            "int",
            0,
            "first modulated epoch (inclusive)",
            0,
            1000,
            is_epoch=True,
            search=(0, 10),
        ),
        Param(
            "modulation_ends",
            "int",
            80,
            "last modulated epoch (inclusive)",
            0,
            1000,
            is_epoch=True,
            search=(30, 80),
        ),
        Param(
            "shapley",
            "choice",
            "agm",
            "agm: 1/2(f(a,v)-f(0,v)+f(a,0)); balancemm: 1/2(f(a,v)-f(0,v))",
            choices=("agm", "balancemm"),
        ),
        Param(
            "padding",
            "choice",
            "input",
            "input: zeroed inputs, eval-mode passes (BalanceMM); "
            "feature: zeroed features of the training pass",
            choices=("input", "feature"),
        ),
    )
    metric_keys = ("agm_coeff_audio", "agm_coeff_visual", "agm_score_audio", "agm_score_visual")

    windows = (("modulation_starts", "modulation_ends"),)
    handle: RemovableHandle | None = None  # the forward pre-hook, once setup() registered it

    def setup(self) -> None:
        self.running = {m: 0.0 for m in MODALITIES}
        self.iteration = 0
        self.means = StepMeans(self.metric_keys)
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.handle is not None:  # setup twice must not hook twice
            self.handle.remove()
        self.handle = self.trainer.model.register_forward_pre_hook(self._keep_inputs)

    def _keep_inputs(self, module, args) -> None:
        if module.training:
            self.inputs = args

    @torch.no_grad()
    def padded_logits(self, out) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f(a,v), f(0,v), f(a,0) — see `padding`."""
        with autocast(self.trainer):
            return self._padded_logits(out)

    def _padded_logits(self, out) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.trainer.model
        if self.p["padding"] == "feature":
            a, v = out.feat_a.detach(), out.feat_v.detach()
            return (
                out.logits.detach(),
                model.fusion(torch.zeros_like(a), v),
                model.fusion(a, torch.zeros_like(v)),
            )
        assert self.inputs is not None, "the forward pre-hook keeps every training pass's inputs"
        audio, visual = self.inputs
        model.eval()
        try:
            a, v = model.encode(audio, visual)
            zero_a, zero_v = model.encode(torch.zeros_like(audio[:1]), torch.zeros_like(visual[:1]))
            return (
                model.fusion(a, v),
                model.fusion(zero_a.expand_as(a), v),
                model.fusion(a, zero_v.expand_as(v)),
            )
        finally:
            model.train()

    def after_backward(self, out, labels: torch.Tensor, epoch: int) -> None:
        model = self.trainer.model
        m_a, m_v = shapley_logits(*self.padded_logits(out), form=self.p["shapley"])
        scores = {"audio": agm_score(m_a, labels), "visual": agm_score(m_v, labels)}
        coeffs = agm_coefficients(scores, self.running, self.p["alpha"])
        self.iteration += 1
        for m in MODALITIES:  # running mean over every step so far
            self.running[m] += (scores[m] - self.running[m]) / self.iteration
        if not in_window(epoch, self.p["modulation_starts"], self.p["modulation_ends"]):
            coeffs = {m: 1.0 for m in MODALITIES}
        with torch.no_grad():
            for m in MODALITIES:
                for _, p in model.encoder_parameters(m):
                    if p.grad is not None and p.grad.dim() != 1:
                        p.grad.mul_(coeffs[m])
            head = [p.grad for p in model.fusion.parameters() if p.grad is not None]
            if any(g.abs().max() > 5 for g in head):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        self.means.add(
            agm_coeff_audio=coeffs["audio"],
            agm_coeff_visual=coeffs["visual"],
            agm_score_audio=scores["audio"],
            agm_score_visual=scores["visual"],
        )

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return self.means.pop()

    def state_dict(self) -> dict[str, Any]:
        return {"running": dict(self.running), "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running, self.iteration = dict(state["running"]), state["iteration"]
