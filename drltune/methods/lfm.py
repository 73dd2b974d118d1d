"""LFM: "Dynamically Learning Modality Gap" (NeurIPS 2024), as njustkmg/NeurIPS24-LFM @ ad44fa0
trains.

Why: a classification loss alone lets one modality's predictions run ahead; LFM adds a loss that
pulls the two modalities' predictions together and moves the balance between the two losses
during training: mostly alignment early, mostly classification late (docs/methods.md §6e).

* Model (`head` "late", the code): two linear heads (D -> K), fused logits z = (z_a + z_v) / 2
  for training and evaluation; it replaces the trial's fusion head. `head` "fusion" keeps the
  trial's fusion head and its unimodal decomposition (BalanceBenchmark's port uses concat).
* Loss per batch: 2 [a_cls CE(z, y) + a_align D(z_a, z_v)], a_align = 1 - a_cls.
  D (`align_loss` "code") = 1/2 [KL(m||p) + KL(m||q)] with p, q the two softmaxes and m their
  mean, which is not the Jensen-Shannon divergence; "js" = 1/2 [KL(p||m) + KL(q||m)].
* `schedule` "fitted": a_cls follows the code's degree-5 polynomial of the epoch (fitted on a
  200-epoch run); `fitted_clock` says whether it reads the raw epoch (the code) or the run
  stretched onto those 200 epochs.
  `schedule` "learned": `holdout` random training clips are removed from training; at the start
  of every epoch the first half of them give h = H_tot g_cls (a Hessian-vector product of
  L_tot = a_cls L_cls + a_align D with the gradient of L_cls) and
  a_align <- clip(a_align - lr_e * mean(h), 0.05, 0.95), lr_e = `alpha_lr` / 2^(epoch // 20).
  `hypergrad_scope` "first" takes the mean over the first parameter tensor only (the code:
  the audio conv1 weight), "all" over every parameter.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drltune.config import TrialConfig
from drltune.data.batches import to_device_batch
from drltune.errors import DrltuneError
from drltune.methods.base import METHODS, Method, TrialView
from drltune.methods.common import StepMeans
from drltune.models.fusion import Fusion
from drltune.params import Param

if TYPE_CHECKING:
    from drltune.models import AVClassifier

# a_cls(e) of Crema_epoch.py (a_align's coefficients are the exact complements)
FITTED_COEFFS = (
    2.04623704e-01,
    3.35472727e-03,
    1.22989557e-04,
    -2.92947416e-06,
    2.23835486e-08,
    -5.39717505e-11,
)
FITTED_LAST_EPOCH = 199  # the polynomial was fitted on epochs 0..199; it diverges after them
ALIGN_CLIP = (0.05, 0.95)


def fitted_alpha_cls(t: float) -> float:
    """The code's fitted a_cls at (possibly fractional) epoch t, held at its epoch-199 value after
    it."""
    t = min(max(t, 0.0), FITTED_LAST_EPOCH)
    return sum(c * t**i for i, c in enumerate(FITTED_COEFFS))


def fitted_time(epoch: int, epochs: int, clock: str) -> float:
    """Where on the polynomial's 200-epoch axis an epoch reads: itself ("epoch", the code) or the
    run stretched onto it ("run": the first epoch reads 0, the last 199)."""
    if clock == "epoch":
        return float(epoch)
    return FITTED_LAST_EPOCH * epoch / max(epochs - 1, 1)


def alignment(logits_a: torch.Tensor, logits_v: torch.Tensor, form: str = "code") -> torch.Tensor:
    """Batch mean of the divergence between the two modalities' softmax predictions.

    "code": 1/2 [KL(m||p) + KL(m||q)] as the code's Alignment (F.kl_div(p.log(), m, 'batchmean'));
    "js": 1/2 [KL(p||m) + KL(q||m)], the Jensen-Shannon divergence. Logs come from log_softmax,
    so the value is finite where the code's p.log() would give -inf."""
    log_p = F.log_softmax(logits_a.float(), dim=1)
    log_q = F.log_softmax(logits_v.float(), dim=1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    m, p, q = log_m.exp(), log_p.exp(), log_q.exp()
    if form == "code":
        kl_p, kl_q = (m * (log_m - log_p)).sum(1), (m * (log_m - log_q)).sum(1)
    else:
        kl_p, kl_q = (p * (log_p - log_m)).sum(1), (q * (log_q - log_m)).sum(1)
    return 0.5 * (kl_p.mean() + kl_q.mean())


def lfm_loss(
    fused: torch.Tensor,
    logits_a: torch.Tensor,
    logits_v: torch.Tensor,
    labels: torch.Tensor,
    alpha_cls: float,
    form: str = "code",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(2 [a_cls CE + (1 - a_cls) D], CE, D): the training loss of both code paths."""
    cls = F.cross_entropy(fused, labels)
    align = alignment(logits_a, logits_v, form)
    return 2 * (alpha_cls * cls + (1 - alpha_cls) * align), cls, align


def alpha_hypergrad(
    model: AVClassifier,
    audio: torch.Tensor,
    visual: torch.Tensor,
    labels: torch.Tensor,
    alpha_cls: float,
    form: str,
    scope: str,
) -> float:
    """mean(H_tot g_cls) as getAlpha_Learnable computes it: the Hessian of L_tot (no factor 2)
    times the gradient of L_cls, averaged over the first parameter tensor ("first") or all
    ("all")."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(audio, visual)
    logits_a, logits_v = model.unimodal_logits(out)
    cls = F.cross_entropy(out.logits.float(), labels)
    total = alpha_cls * cls + (1 - alpha_cls) * alignment(logits_a, logits_v, form)
    g_tot = torch.autograd.grad(total, params, create_graph=True, allow_unused=True)
    g_cls = torch.autograd.grad(cls, params, retain_graph=True, allow_unused=True)
    pairs = [
        (t, c) for t, c in zip(g_tot, g_cls) if t is not None and c is not None and t.requires_grad
    ]
    raw = torch.autograd.grad(
        [t for t, _ in pairs], params, grad_outputs=[c for _, c in pairs], allow_unused=True
    )
    hvp = [h if h is not None else torch.zeros_like(p) for h, p in zip(raw, params)]
    if scope == "first":
        return hvp[0].float().mean().item()
    return torch.cat([h.flatten().float() for h in hvp]).mean().item()


def updated_alpha_align(alpha_align: float, grad: float, lr: float) -> float:
    """One step of the learned weight, clipped to [0.05, 0.95] as the code."""
    return min(ALIGN_CLIP[1], max(ALIGN_CLIP[0], alpha_align - lr * grad))


class LateAverageHead(Fusion):
    """LFM's model: a linear head per modality, fused logits their plain average."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.head_a = nn.Linear(dim, num_classes)
        self.head_v = nn.Linear(dim, num_classes)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.head_a(a) + 0.5 * self.head_v(v)

    def unimodal_logits(
        self, a: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head_a(a), self.head_v(v)

    probe_logits = auxiliary_logits = unimodal_logits


@METHODS.register
class LFM(Method):
    name = "lfm"
    label = "LFM"
    description = (
        "LFM: fused CE + prediction alignment between the modalities, balanced by a weight that "
        "follows the code's fitted schedule or is learned on held-out training clips; "
        "head late replaces the fusion head"
    )
    params = (
        Param(
            "schedule",
            "choice",
            "fitted",
            "fitted: the code's polynomial of the epoch; learned: a hypergradient "
            "step per epoch on held-out clips",
            choices=("fitted", "learned"),
        ),
        Param(
            "fitted_clock",
            "choice",
            "epoch",
            "fitted schedule read at the raw epoch (code; fitted on 200 "
            "epochs) or with the run stretched onto those 200",
            choices=("epoch", "run"),
        ),
        Param(
            "align_loss",
            "choice",
            "code",
            "code: 1/2[KL(m||p)+KL(m||q)] as released; js: the Jensen-Shannon divergence",
            choices=("code", "js"),
        ),
        Param(
            "head",
            "choice",
            "late",
            "late: two linear heads averaged (code; replaces the fusion head); "
            "fusion: the trial's fusion head and its unimodal logits",
            choices=("late", "fusion"),
        ),
        Param(
            "alpha_init",
            "float",
            0.95,
            "learned: the alignment weight at the start (code 0.95; BalanceBenchmark 0.05)",
            0.05,
            0.95,
        ),
        Param(
            "alpha_lr",
            "float",
            1e-4,
            "learned: step size of the alignment weight (code 1e-4)",
            1e-7,
            10.0,
            log=True,
            search=(1e-5, 1e-2),
        ),
        Param(
            "alpha_lr_halving",
            "int",
            20,
            "learned: the step size halves every this many epochs (code 20)",
            1,
            100_000,
            is_epoch=True,
            search=(10, 40),
        ),
        Param(
            "holdout",
            "int",
            16,
            "learned: training clips held out of training; the first half drive the "
            "weight (code 16)",
            2,
            1024,
            search=(8, 64),
        ),
        Param(
            "hypergrad_scope",
            "choice",
            "first",
            "learned: hypergradient mean over the first parameter tensor "
            "(code: audio conv1) or over all",
            choices=("first", "all"),
        ),
    )
    metric_keys = ("lfm_alpha_cls", "lfm_loss_cls", "lfm_loss_align", "lfm_hypergrad")

    @classmethod
    def epoch_text(cls, record: dict[str, Any]) -> str:
        value = record.get("lfm_alpha_cls")
        return f"a_cls {value:.3f}" if value is not None else ""

    @classmethod
    def check(cls, params: dict[str, Any], cfg: TrialConfig) -> None:
        super().check(params, cfg)
        if params["head"] == "fusion" and cfg.fusion in ("film", "gated"):
            raise DrltuneError(
                f"params.head: fusion needs unimodal logits, which fusion {cfg.fusion} does not "
                "have; use head late or fusion concat/sum"
            )

    def __init__(self, params: dict[str, Any], trainer: TrialView) -> None:
        super().__init__(params, trainer)
        self.means = StepMeans(self.metric_keys[1:])
        self.alpha_align = params["alpha_init"]
        self.hypergrad: float | None = None
        self.holdout_batch: np.ndarray | None = None

    def extend_model(self, model: AVClassifier) -> None:
        if self.p["head"] == "late":
            model.fusion = LateAverageHead(model.audio_net.out_dim, model.num_classes)

    def setup(self) -> None:
        """Learned schedule: hold `holdout` training clips out of training, drawn from the seed (as
        the code's randperm), so a resumed trial holds out the same ones; the trainer's bundle is
        replaced, never changed, because it may be shared with other trials."""
        self.means.reset()
        if self.p["schedule"] != "learned" or self.holdout_batch is not None:
            return
        data = self.trainer.data
        n, k = len(data.train), self.p["holdout"]
        if k >= n:
            raise DrltuneError(f"params.holdout: {k} clips held out of a training split of {n}")
        gen = torch.Generator().manual_seed(self.trainer.cfg.seed)
        held = torch.randperm(n, generator=gen)[:k].numpy()
        self.holdout_batch = held[: k // 2]
        self.holdout_split = data.train
        self.trainer.data = dataclasses.replace(
            data, train=data.train.subset(np.setdiff1d(np.arange(n), held))
        )

    def alpha_cls(self, epoch: int) -> float:
        if self.p["schedule"] == "learned":
            return 1.0 - self.alpha_align
        return fitted_alpha_cls(fitted_time(epoch, self.trainer.cfg.epochs, self.p["fitted_clock"]))

    def learn_alpha(self, epoch: int) -> None:
        """The code's getAlpha_Learnable, before the epoch's first batch. The model is in train mode
        at epoch 0 and in eval mode afterwards, as in the code (its val() leaves it in eval)."""
        trainer, model = self.trainer, self.trainer.model
        assert self.holdout_batch is not None  # setup() drew it
        audio, visual, labels = to_device_batch(
            self.holdout_split, self.holdout_batch, trainer.device, False, None
        )
        model.train(epoch == 0)
        try:
            self.hypergrad = alpha_hypergrad(
                model,
                audio,
                visual,
                labels,
                1.0 - self.alpha_align,
                self.p["align_loss"],
                self.p["hypergrad_scope"],
            )
        finally:
            model.train()
        lr = self.p["alpha_lr"] / 2 ** (epoch // self.p["alpha_lr_halving"])
        self.alpha_align = updated_alpha_align(self.alpha_align, self.hypergrad, lr)

    def train_step(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[float | torch.Tensor, torch.Tensor]:
        if step == 0 and self.p["schedule"] == "learned":
            self.learn_alpha(epoch)
        return self.trainer.joint_step(audio, visual, labels, epoch, step)

    def loss(self, out, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        logits_a, logits_v = self.trainer.model.unimodal_logits(out)
        loss, cls, align = lfm_loss(
            out.logits, logits_a, logits_v, labels, self.alpha_cls(epoch), self.p["align_loss"]
        )
        self.means.add(lfm_loss_cls=cls.item(), lfm_loss_align=align.item())
        return loss

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return {
            "lfm_alpha_cls": self.alpha_cls(epoch),
            **self.means.pop(),
            "lfm_hypergrad": self.hypergrad,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"alpha_align": self.alpha_align, "hypergrad": self.hypergrad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha_align, self.hypergrad = state["alpha_align"], state["hypergrad"]
