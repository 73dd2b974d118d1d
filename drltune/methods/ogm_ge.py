"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022).

Why: in joint training the modality that is learnt faster dominates the fused loss and starves
the other encoder. OGM-GE slows the *dominant* encoder per batch, in proportion to how much it
dominates, and adds Gaussian noise to keep its generalisation (docs/methods.md §3).

Per step, after backward (as the OGM repo's main.py does it):
  s_m   = sum over the batch of softmax(unimodal logits_m)[true class]
  rho_v = s_v / s_a, rho_a = 1 / rho_v
  k     = 1 - tanh(alpha * rho) for the dominant modality (rho > 1), 1 for the other
  inside [modulation_starts, modulation_ends] (inclusive), for each encoder gradient in `scope`:
    OGM:    g <- k * g
    OGM_GE: g <- k * g + N(0, (std(g) + 1e-8)^2)  -- std of the *unscaled* g, noise on BOTH
            encoders.

Unimodal logits come from `AVClassifier.unimodal_logits`: the concat halves with bias/2 and the
sum branches (the repo's own decomposition); for film and gated fusion, which have none, the
zero-padding path f(a, 0), f(0, v) — so the method runs with every fusion.
`scope` "conv" modulates only 4-D conv weights (the repo; for ResNet encoders this is also
BalanceMM's "every non-1-D grad"); "all" adds BN affine grads.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from drltune.methods.base import METHODS, Method
from drltune.methods.common import StepMeans, autocast, grads_in_scope, in_window, true_class_score
from drltune.params import Param

EPS = 1e-12  # keeps the ratio finite if every true-class probability underflows


def ogm_coefficients(score_a: float, score_v: float, alpha: float) -> tuple[float, float]:
    """(k_audio, k_visual): 1 - tanh(alpha * rho) on the dominant modality only (paper Eq. 10)."""
    ratio_v = score_v / max(score_a, EPS)
    if ratio_v > 1:
        return 1.0, 1.0 - math.tanh(alpha * ratio_v)
    ratio_a = score_a / max(score_v, EPS)
    return 1.0 - math.tanh(alpha * ratio_a), 1.0


@torch.no_grad()
def modulate_(grads: list[torch.Tensor], coeff: float, noise: bool) -> None:
    """In place: g <- coeff * g (+ Gaussian noise with the unscaled g's std when `noise`)."""
    for g in grads:
        if noise:
            std = g.std() + 1e-8  # a tensor: no device sync per parameter
            g.mul_(coeff).add_(torch.randn_like(g) * std)
        else:
            g.mul_(coeff)


@METHODS.register
class OGMGE(Method):
    name = "ogm_ge"
    description = (
        "OGM-GE: slow the dominant encoder's grads by 1 - tanh(alpha * score ratio), plus Gaussian "
        "noise"
    )
    params = (
        Param(
            "alpha",
            "float",
            0.8,
            "modulation strength (README: 0.8 CREMA-D, 0.1 VGGSound; BalanceMM 0.3)",
            0.01,
            5.0,
            log=True,
            search=(0.05, 1.5),
        ),
        Param(
            "variant",
            "choice",
            "OGM_GE",
            "OGM scales only; OGM_GE also adds the generalisation noise",
            choices=("OGM_GE", "OGM"),
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
            50,
            "last modulated epoch (inclusive)",
            0,
            1000,
            is_epoch=True,
            search=(30, 80),
        ),
        Param(
            "scope",
            "choice",
            "conv",
            "encoder grads modulated: 4-D conv weights (official) or all",
            choices=("conv", "all"),
        ),
    )
    metric_keys = ("ogm_score_ratio", "ogm_coeff_audio", "ogm_coeff_visual")

    windows = (("modulation_starts", "modulation_ends"),)

    def setup(self) -> None:
        self.means = StepMeans(self.metric_keys)

    def after_backward(self, out, labels: torch.Tensor, epoch: int) -> None:
        model = self.trainer.model
        with torch.no_grad(), autocast(self.trainer):
            logits_a, logits_v = model.unimodal_logits(out)
        score_a, score_v = true_class_score(logits_a, labels), true_class_score(logits_v, labels)
        k_a, k_v = ogm_coefficients(score_a, score_v, self.p["alpha"])
        if not in_window(epoch, self.p["modulation_starts"], self.p["modulation_ends"]):
            k_a = k_v = 1.0
        else:
            noise = self.p["variant"] == "OGM_GE"
            for modality, k in (("audio", k_a), ("visual", k_v)):
                modulate_(
                    grads_in_scope(model.encoder_parameters(modality), self.p["scope"]), k, noise
                )
        self.means.add(
            ogm_score_ratio=score_a / max(score_v, EPS), ogm_coeff_audio=k_a, ogm_coeff_visual=k_v
        )

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return self.means.pop()
