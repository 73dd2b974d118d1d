"""G-Blending: gradient blending (Wang, Tran & Feiszli, CVPR 2020), as BalanceBenchmark trains it
(GeWu-Lab/BalanceBenchmark @ 4c1482f, balancemm/trainer/GBlending_trainer.py).

Why: a multimodal network overfits faster than its unimodal parts, so the fused loss alone is a
poor teacher. G-Blending trains with L = w_a CE(z_a) + w_v CE(z_v) + w_fused CE(z), giving each
head a weight that grows with how much it generalises per unit of overfitting:
  for each head h in (audio, visual, fused): copy the model, train the copy `estimate_epochs`
  epochs on the train split with CE of the fused output (for a unimodal head the other encoder
  is skipped and its features are zeros) and a fresh optimiser of the trial's kind at the
  initial lr; L_tr(e) = the running training loss of epoch e, L_val(e) = the validation loss
  after epoch e, at e = first and last:
    G = L_val(last) - L_val(first),  O = (L_val - L_tr)(last) - (L_val - L_tr)(first),
    w_h = |G / O^2|, then normalised to sum 1.
`mode` online re-estimates at every epoch that is a multiple of `super_epoch` from the current
weights; offline estimates once, at epoch 0. z_a, z_v are the fusion's own unimodal logits (concat
halves with bias/2, as BalanceBenchmark). docs/methods.md §6g.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.methods.base import METHODS, Method, TrialView
from drltune.methods.common import autocast, build_optimizer
from drltune.params import Param

HEADS = ("audio", "visual", "fused")
EPS = 1e-12  # an O of exactly 0 (no change in the generalisation gap) gives a huge, finite weight


def blend_weights(estimates: dict[str, tuple[float, float, float, float]]) -> dict[str, float]:
    """Per head (L_tr first, L_val first, L_tr last, L_val last) -> normalised |G / O^2| weights."""
    raw = {}
    for head, (tr0, val0, tr1, val1) in estimates.items():
        g = val1 - val0
        o = (val1 - tr1) - (val0 - tr0)
        raw[head] = abs(g / max(o * o, EPS))
    total = sum(raw.values())
    if total <= 0:  # no head generalised at all: fall back to equal weights
        return {head: 1.0 / len(raw) for head in raw}
    return {head: value / total for head, value in raw.items()}


def due(epoch: int, mode: str, super_epoch: int) -> bool:
    """Whether the weights are (re-)estimated before this epoch (BalanceBenchmark: epoch %
    super_epoch == 0)."""
    return epoch == 0 if mode == "offline" else epoch % super_epoch == 0


@METHODS.register
class GBlending(Method):
    name = "gblending"
    label = "G-Blending"
    description = (
        "G-Blending: fused + unimodal CE weighted by each head's generalisation / overfitting^2, "
        "estimated on copies of the model"
    )
    params = (
        Param(
            "mode",
            "choice",
            "online",
            "online: re-estimate every super_epoch epochs; offline: once at epoch 0",
            choices=("online", "offline"),
        ),
        Param(
            "super_epoch",
            "int",
            10,
            "epochs between estimates in online mode (BalanceBenchmark 10)",
            1,
            1000,
            is_epoch=True,
            search=(3, 15),
        ),
        Param(
            "estimate_epochs",
            "int",
            10,
            "epochs each estimate trains its copy (BalanceBenchmark: super_epoch; min 2)",
            2,
            1000,
            search=(2, 10),
        ),  # the copies' length, not a point of the schedule: not rescaled
        Param(
            "loss_reduction",
            "choice",
            "sum",
            "L_tr, L_val: sum of batch means (BalanceBenchmark) or mean over batches (the paper's "
            "losses)",
            choices=("sum", "mean"),
        ),
    )
    metric_keys = ("gblend_weight_audio", "gblend_weight_visual", "gblend_weight_fused")

    def __init__(self, params: dict[str, Any], trainer: TrialView) -> None:
        super().__init__(params, trainer)
        self.weights = {head: 1.0 / len(HEADS) for head in HEADS}
        self.estimated_at: int | None = None

    @classmethod
    def epoch_text(cls, record: dict[str, Any]) -> str:
        return "blend a/v/fused " + "/".join(f"{record[f'gblend_weight_{h}']:.2f}" for h in HEADS)

    def train_step(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[float | torch.Tensor, torch.Tensor]:
        if (
            step == 0
            and due(epoch, self.p["mode"], self.p["super_epoch"])
            and self.estimated_at != epoch
        ):
            self.weights = self.estimate(epoch)
            self.estimated_at = epoch
        return self.trainer.joint_step(audio, visual, labels, epoch, step)

    def loss(self, out, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        logits_a, logits_v = self.trainer.model.unimodal_logits(out)
        w = self.weights
        return (
            w["audio"] * F.cross_entropy(logits_a, labels)
            + w["visual"] * F.cross_entropy(logits_v, labels)
            + w["fused"] * F.cross_entropy(out.logits, labels)
        )

    def estimate(self, epoch: int) -> dict[str, float]:
        """Each head's (L_tr, L_val) at the first and last estimation epoch -> blend weights."""
        return blend_weights({head: self._losses_of_copy(head, epoch) for head in HEADS})

    def copy_for(self, head: str) -> torch.nn.Module:
        """The model as it stands, seeing only `head`'s modality: the other encoder is skipped and
        its features are zeros (drltune's unimodal route). Zero-filled *inputs* instead would run a
        constant batch through the other encoder's BatchNorm layers, whose backward then grows
        by 1/sqrt(eps) per layer and overflows."""
        model = copy.deepcopy(self.trainer.model)
        model.modality = "both" if head == "fused" else head
        return model

    def _losses_of_copy(self, head: str, epoch: int) -> tuple[float, float, float, float]:
        t = self.trainer
        model = self.copy_for(head)
        optimizer = build_optimizer(t.cfg, model.parameters())  # fresh, initial lr
        # its own generator: the estimate does not move the trial's shuffling, so resumes stay exact
        gen = torch.Generator().manual_seed(t.cfg.seed * 1000 + epoch * 10 + HEADS.index(head))
        points = []
        last = self.p["estimate_epochs"] - 1
        for e in range(self.p["estimate_epochs"]):
            train_loss = self._train_copy_epoch(model, optimizer, gen)
            if e in (0, last):
                points += [train_loss, self._val_loss(model)]
        return points[0], points[1], points[2], points[3]

    def _reduce(self, total: float, batches: int) -> float:
        return total if self.p["loss_reduction"] == "sum" else total / max(batches, 1)

    def _train_copy_epoch(self, model, optimizer, gen: torch.Generator) -> float:
        t, c = self.trainer, self.trainer.cfg
        model.train()
        total, batches = 0.0, 0
        for rows in t.data.train.batches(c.batch_size, shuffle=True, generator=gen):
            audio, visual, labels = to_device_batch(t.data.train, rows, t.device, c.augment, gen)
            with autocast(t):
                loss = F.cross_entropy(model(audio, visual).logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        return self._reduce(total, batches)

    @torch.no_grad()
    def _val_loss(self, model) -> float:
        t = self.trainer
        model.eval()
        total, batches = 0.0, 0
        for rows in t.data.val.batches(t.cfg.batch_size, shuffle=False):
            audio, visual, labels = to_device_batch(t.data.val, rows, t.device, False, None)
            with autocast(t):
                logits = model(audio, visual).logits
            total, batches = total + F.cross_entropy(logits.float(), labels).item(), batches + 1
        return self._reduce(total, batches)

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return {f"gblend_weight_{head}": self.weights[head] for head in HEADS}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "estimated_at": self.estimated_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = {head: float(state["weights"][head]) for head in HEADS}
        self.estimated_at = state.get("estimated_at")
