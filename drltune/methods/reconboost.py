"""ReconBoost (ICML 2024), as huacong/ReconBoost @ 14ab57a trains (docs/methods.md §6f).

Why: trained jointly, the stronger modality's encoder dominates. ReconBoost never trains the two
encoders on one loss at first: it alternates, like gradient boosting, between the modalities,
and each new learner is pushed hardest on the clips the other modality gets wrong
("reconcilement"); a joint phase then corrects the whole ensemble.

* Model: one head shared by the modalities (`head` "mlp": D -> 256 -> ReLU -> K, the code;
  "linear": BalanceBenchmark's), ensemble logits F = beta (f(a) + f(v)) with beta a learned
  scalar starting at `boost_rate`. It replaces the trial's fusion head.
* Stages of `stage_epochs` + `correct_epochs` epochs; stage s trains audio when s is even,
  visual when odd. An epoch's position in its stage picks the phase:
  1. modality update (first `stage_epochs`): only that encoder and the head learn, with the loss
     mean_i ((w1 - w2 q_i) / K) CE_i, q_i = softmax(beta f_other(x_i))[y_i] under no_grad (1 while
     the other modality has no learner yet), w1 = `weight1`, w2 = `weight2`;
  2. global rectification (`correct_epochs`): CE(F(x), y) over both encoders, head and beta.
  With `reset_optimizer` each phase starts with a fresh optimiser state (the code builds a new
  SGD per phase), so momentum does not carry across phases.
* `consolidation` "code": the released "memory consolidation" term, alpha MSE(softmax f_m,
  softmax f_other) with BOTH sides detached, so it adds no gradient; its one effect is an extra
  train-mode forward of the other encoder per batch, which moves that encoder's BatchNorm
  running statistics. "off" skips it.
* `init_audio` / `init_visual`: the official route starts from pretrained unimodal encoders. They
  name a saved drltune run (a `modality: audio` / `visual` run's checkpoint folder or weights
  file, see models/pretrained.py); only the encoder is read, the head starts fresh. Empty: train
  from scratch (BalanceBenchmark's port); that modality joins the ensemble at its first stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.methods.base import METHODS, Method, TrialView
from drltune.methods.common import StepMeans, autocast
from drltune.models.fusion import Fusion
from drltune.models.pretrained import load_encoder, weights_file
from drltune.params import Param

if TYPE_CHECKING:
    from drltune.models import AVClassifier

MODALITIES = ("audio", "visual")
GA_ALPHA = 0.5  # the code's --alpha: it only scales a term that has no gradient


def stage_position(epoch: int, stage_epochs: int, correct_epochs: int) -> tuple[int, str, int]:
    """(stage, the modality that stage trains, phase 1 or 2) of a 0-based epoch."""
    stage, pos = divmod(epoch, stage_epochs + correct_epochs)
    return stage, MODALITIES[stage % 2], 1 if pos < stage_epochs else 2


def boosting_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    other: torch.Tensor | None,
    weight1: float,
    weight2: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the batch's reconcilement loss, per-sample weights (w1 - w2 q_y) / K) of a new learner's
    logits.

    The code writes -w1 mean_c(y_c log p_c) + w2 mean_c(y_c q_c log p_c) with one-hot y; both terms
    only keep the true class, so this is the per-sample CE reweighted. `other` is the ensemble
    without this modality (beta f_other); None (no learner yet) gives q = 1, as the code's c0."""
    k = logits.shape[1]
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    if other is None:
        q_true = torch.ones_like(ce)
    else:
        q_true = (
            torch.softmax(other.detach().float(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
        )
    weights = (weight1 - weight2 * q_true) / k
    return (weights * ce).mean(), weights


class BoostHead(Fusion):
    """beta (f(a) + f(v)) through one shared head, over the modalities in the ensemble so far
    (the `members` buffer, saved with the model)."""

    members: torch.Tensor  # a registered buffer

    def __init__(self, dim: int, num_classes: int, head: str, boost_rate: float) -> None:
        super().__init__()
        self.head = (
            nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Linear(256, num_classes))
            if head == "mlp"
            else nn.Linear(dim, num_classes)
        )
        self.boost_rate = nn.Parameter(torch.tensor(float(boost_rate)))
        self.register_buffer("members", torch.zeros(len(MODALITIES), dtype=torch.bool))

    def member(self, modality: str) -> bool:
        return bool(self.members[MODALITIES.index(modality)])

    def join(self, modality: str) -> None:
        self.members[MODALITIES.index(modality)] = True

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mask = self.members.to(a.dtype)
        return self.boost_rate * (mask[0] * self.head(a) + mask[1] * self.head(v))

    def unimodal_logits(
        self, a: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(a), self.head(v)

    probe_logits = auxiliary_logits = unimodal_logits


@METHODS.register
class ReconBoost(Method):
    name = "reconboost"
    label = "ReconBoost"
    description = (
        "ReconBoost: alternating boosting, one modality per stage reweighted by the other's "
        "true-class confidence, then a joint rectification; shared head replaces the fusion head. "
        "Starts from saved unimodal runs named by init_audio/init_visual (the official route), "
        "else from scratch"
    )
    params = (
        Param(
            "weight1",
            "float",
            5.0,
            "w1 of the per-sample weight (w1 - w2 q) / K (CREMA-D 5, AVE 4)",
            0.0,
            100.0,
            search=(2.0, 8.0),
        ),
        Param(
            "weight2",
            "float",
            1.0,
            "w2: how much the other modality's confidence q lowers a clip's weight",
            0.0,
            100.0,
            search=(0.0, 2.0),
        ),
        Param(
            "stage_epochs",
            "int",
            4,
            "epochs of a stage's modality update (code epochs_per_stage 4)",
            1,
            1000,
            is_epoch=True,
            search=(1, 4),
        ),
        Param(
            "correct_epochs",
            "int",
            4,
            "epochs of a stage's global rectification (code correct_epoch 4)",
            1,
            1000,
            is_epoch=True,
            search=(1, 4),
        ),
        Param(
            "boost_rate",
            "float",
            1.0,
            "initial ensemble scale beta, learned in rectification (code 1.0; "
            "BalanceBenchmark 0.01)",
            1e-3,
            10.0,
            log=True,
            search=(0.01, 2.0),
        ),
        Param(
            "head",
            "choice",
            "mlp",
            "shared head: mlp D-256-K (code) or linear (BalanceBenchmark)",
            choices=("mlp", "linear"),
        ),
        Param(
            "reset_optimizer",
            "bool",
            True,
            "fresh optimiser state (momentum) at each phase start, as the code",
        ),
        Param(
            "consolidation",
            "choice",
            "code",
            "code: the released no-gradient consolidation term (an extra "
            "train-mode forward of the other encoder); off: skip it",
            choices=("code", "off"),
        ),
        Param(
            "init_audio",
            "str",
            "",
            "saved modality-audio run (checkpoint folder or weights file) to start "
            "the audio encoder from; empty: from scratch",
        ),
        Param(
            "init_visual",
            "str",
            "",
            "saved modality-visual run to start the visual encoder from; empty: from scratch",
        ),
    )
    metric_keys = (
        "recon_stage",
        "recon_phase",
        "recon_boost_rate",
        "recon_sample_weight",
        "recon_ga_loss",
    )

    @classmethod
    def epoch_text(cls, record: dict[str, Any]) -> str:
        stage, phase = record.get("recon_stage"), record.get("recon_phase")
        if stage is None or phase is None:
            return ""
        what = MODALITIES[int(stage) % 2] if phase == 1 else "rectify"
        return f"stage {int(stage)} {what}  beta {record['recon_boost_rate']:.3f}"

    @classmethod
    def check(cls, params: dict[str, Any], cfg: TrialConfig) -> None:
        super().check(params, cfg)
        if params["weight2"] > params["weight1"]:
            raise DrltuneError(
                f"params.weight2: {params['weight2']} is above params.weight1 "
                f"({params['weight1']}), which makes some clips' loss weights negative"
            )
        for key in ("init_audio", "init_visual"):
            if params[key]:
                try:
                    weights_file(params[key])
                except DrltuneError as exc:
                    raise DrltuneError(f"params.{key}: {exc}") from None

    def __init__(self, params: dict[str, Any], trainer: TrialView) -> None:
        super().__init__(params, trainer)
        self.means = StepMeans(("recon_sample_weight", "recon_ga_loss"))

    def extend_model(self, model: AVClassifier) -> None:
        """The shared head, then the saved unimodal encoders: a pretrained modality is in the
        ensemble from the start (the code adds both pretrained models before stage 0)."""
        head = BoostHead(
            model.audio_net.out_dim, model.num_classes, self.p["head"], self.p["boost_rate"]
        )
        model.fusion = head
        for modality in MODALITIES:
            path = self.p[f"init_{modality}"]
            if path:
                load_encoder(getattr(model, f"{modality}_net"), path, f"{modality}_net.")
                head.join(modality)

    def setup(self) -> None:
        self.means.reset()

    def train_step(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[float, torch.Tensor]:
        trainer, model = self.trainer, self.trainer.model
        stage, modality, phase = stage_position(
            epoch, self.p["stage_epochs"], self.p["correct_epochs"]
        )
        if (
            step == 0
            and self.p["reset_optimizer"]
            and (epoch == 0 or phase != self._phase(epoch - 1))
        ):
            trainer.optimizer.state.clear()  # the code builds a new optimiser for every phase
        if phase == 1:
            model.fusion.join(
                modality
            )  # changes no training signal; lets evaluation see the new learner
            loss, logits = self._modality_update(modality, audio, visual, labels, stage)
        else:
            loss, logits = self._rectify(audio, visual, labels)
        trainer.check_finite(loss, epoch, step)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer_step()
        return loss.item(), logits

    def _phase(self, epoch: int) -> int:
        return stage_position(epoch, self.p["stage_epochs"], self.p["correct_epochs"])[2]

    def _modality_update(
        self,
        modality: str,
        audio: torch.Tensor,
        visual: torch.Tensor,
        labels: torch.Tensor,
        stage: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Phase 1: the new learner's reweighted CE; the other encoder runs in train mode under
        no_grad, as the code's ensemble forward (its BatchNorm statistics move, its weights do
        not)."""
        model, fusion = self.trainer.model, self.trainer.model.fusion
        inputs = {"audio": (model.audio_net, audio), "visual": (model.visual_net, visual)}
        other = MODALITIES[1 - MODALITIES.index(modality)]
        with autocast(self.trainer):
            logits = fusion.head(inputs[modality][0](inputs[modality][1]))
            with torch.no_grad():
                rest = (
                    fusion.boost_rate * fusion.head(inputs[other][0](inputs[other][1]))
                    if fusion.member(other)
                    else None
                )
            loss, weights = boosting_loss(
                logits, labels, rest, self.p["weight1"], self.p["weight2"]
            )
            if self.p["consolidation"] == "code" and stage > 0:
                with torch.no_grad():
                    other_logits = fusion.head(inputs[other][0](inputs[other][1]))
                    ga = F.mse_loss(
                        torch.softmax(logits.float(), 1), torch.softmax(other_logits.float(), 1)
                    )
                self.means.add(recon_ga_loss=GA_ALPHA * ga.item())
        self.means.add(recon_sample_weight=weights.mean().item())
        ensemble = fusion.boost_rate.detach() * logits.detach() + (rest if rest is not None else 0)
        return loss, ensemble

    def _rectify(
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Phase 2: CE of the ensemble over the modalities in it (a modality without a learner yet
        is neither run nor trained, as in the code)."""
        model, fusion = self.trainer.model, self.trainer.model.fusion
        inputs = {"audio": (model.audio_net, audio), "visual": (model.visual_net, visual)}
        with autocast(self.trainer):
            logits = sum(fusion.head(enc(x)) for m, (enc, x) in inputs.items() if fusion.member(m))
            logits = fusion.boost_rate * logits
            loss = F.cross_entropy(logits.float(), labels)
        return loss, logits.detach()

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        stage, _, phase = stage_position(epoch, self.p["stage_epochs"], self.p["correct_epochs"])
        return {
            "recon_stage": stage,
            "recon_phase": phase,
            "recon_boost_rate": self.trainer.model.fusion.boost_rate.item(),
            **self.means.pop(),
        }
