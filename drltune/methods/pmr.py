"""PMR: prototypical modal rebalance (Fan et al., CVPR 2023), as the released code does it.

Why: the slower modality gets an extra, encoder-only training signal — a prototype classifier
on its own features — so it can catch up without slowing the fused head (docs/methods.md §4).

* Prototypes c_k^m: mean pooled feature of class k for modality m over the first
  floor(N_batches * proto_fraction) (at least 1) shuffled training batches, in eval mode, with
  the training augmentation (`cfg.augment`). Computed once before epoch 0 and after every
  epoch; after epoch e > 0 they are an EMA: c <- (1 - momentum_coef) c_new + momentum_coef c_old.
  A class absent from those batches keeps its previous prototype (the repo would divide by 0).
* Prototype logits: -||z_m - c_k^m||_2 (Euclidean, no temperature); PCE_m = CE(-dist_m, y).
* rho = s_a / s_v, s_m = batch sum of softmax(-dist_m)[y].
* Inside [modulation_starts, modulation_ends]: L = CE(fused) + beta PCE_a + lam PCE_v, where the
  weaker modality's coefficient is alpha and the other's 0 (`coef_mode` "hard", the code), or
  alpha (rho' - 1) with rho' = strong/weak score ratio (`coef_mode` "continuous": the paper's form,
  UNVERIFIED). Outside the window: plain CE.
* `entropy_weight` mu > 0 adds -mu H(softmax(-dist)) of the *dominant* modality up to epoch
  `entropy_ends`, raising its prototype entropy to slow it: the paper's early-epoch entropy
  regularisation in its UNVERIFIED form; 0 (default) is the released code, which has none.
* BalanceMM's `eta` only acts with three or more modalities (an OGM-style fallback), so it has
  no meaning for audio-visual pairs and is not declared.

Features are the pooled encoder outputs for every fusion (the repo uses gated fusion's
projections; drltune's fusions do not expose them). PMR needs no unimodal head, so every fusion
works.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.methods.base import METHODS, Method
from drltune.methods.common import StepMeans, autocast, in_window, mean_entropy, true_class_score
from drltune.params import Param


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """(B, K) negative Euclidean distances of each feature to each class prototype."""
    return -torch.cdist(features.float(), prototypes.float())


def class_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, fallback: torch.Tensor
) -> torch.Tensor:
    """Per-class mean feature; classes without samples take their row of `fallback`."""
    sums = torch.zeros(num_classes, features.shape[1], device=features.device).index_add_(
        0, labels, features.float()
    )
    counts = torch.bincount(labels, minlength=num_classes).to(features.device)
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return torch.where((counts > 0).unsqueeze(1), means, fallback.to(means))


def ema(new: torch.Tensor, old: torch.Tensor, momentum: float) -> torch.Tensor:
    return (1.0 - momentum) * new + momentum * old


def pmr_coefficients(ratio: float, alpha: float, mode: str = "hard") -> tuple[float, float]:
    """(beta_audio, lam_visual) for rho = s_a / s_v: only the weaker modality gets a weight."""
    if ratio > 1:  # audio dominant: help visual
        return 0.0, alpha if mode == "hard" else alpha * (ratio - 1.0)
    if ratio < 1:
        return (alpha if mode == "hard" else alpha * (1.0 / max(ratio, 1e-12) - 1.0)), 0.0
    return 0.0, 0.0


@METHODS.register
class PMR(Method):
    name = "pmr"
    description = (
        "PMR: prototype (nearest class-mean) CE on the weaker modality, prototypes refreshed each "
        "epoch"
    )
    params = (
        Param(
            "alpha",
            "float",
            1.0,
            "prototype-loss weight for the weaker modality (repo 1.0; CREMA-D 2-3)",
            0.01,
            10.0,
            log=True,
            search=(0.1, 5.0),
        ),
        Param(
            "momentum_coef",
            "float",
            0.2,
            "EMA weight of the previous prototypes (repo 0.2; bash.sh 0.0)",
            0.0,
            0.99,
            search=(0.0, 0.9),
        ),
        Param(
            "proto_fraction",
            "float",
            0.1,
            "fraction of shuffled train batches the prototypes average",
            0.01,
            1.0,
        ),
        Param(
            "modulation_starts",
            "int",
            0,
            "first epoch with the prototype loss (inclusive)",
            0,
            1000,
            is_epoch=True,
            search=(0, 10),
        ),
        Param(
            "modulation_ends",
            "int",
            70,
            "last epoch with the prototype loss (inclusive; bash.sh 70)",
            0,
            1000,
            is_epoch=True,
            search=(30, 100),
        ),
        Param(
            "coef_mode",
            "choice",
            "hard",
            "hard: constant alpha (code); continuous: alpha*(ratio-1) (paper)",
            choices=("hard", "continuous"),
        ),
        Param(
            "entropy_weight",
            "float",
            0.0,
            "weight of the dominant modality's prototype-entropy bonus "
            "(paper, UNVERIFIED form; 0 = released code)",
            0.0,
            1.0,
            search=(0.0, 0.1),
        ),
        Param(
            "entropy_ends",
            "int",
            10,
            "last epoch (inclusive) of the entropy term",
            0,
            1000,
            is_epoch=True,
            search=(5, 20),
        ),
    )
    metric_keys = ("pmr_score_ratio", "pmr_coeff_audio", "pmr_coeff_visual")

    windows = (("modulation_starts", "modulation_ends"),)

    def setup(self) -> None:
        seed = self.trainer.cfg.seed
        # own generators, so that PMR sees the same training batches as every other method
        self.shuffle_gen = torch.Generator().manual_seed(seed + 7919)
        self.augment_gen = torch.Generator().manual_seed(seed + 7920)
        self.means = StepMeans(self.metric_keys)
        dim, k = self.trainer.model.audio_net.out_dim, self.trainer.data.num_classes
        zeros = torch.zeros(k, dim, device=self.trainer.device)
        self.proto_a, self.proto_v = self.compute_prototypes(zeros, zeros)

    @torch.no_grad()
    def compute_prototypes(
        self, old_a: torch.Tensor, old_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t, c = self.trainer, self.trainer.cfg
        split = t.data.train
        take = max(1, math.floor(math.ceil(len(split) / c.batch_size) * self.p["proto_fraction"]))
        feats_a, feats_v, labels = [], [], []
        t.model.eval()
        for i, rows in enumerate(
            split.batches(c.batch_size, shuffle=True, generator=self.shuffle_gen)
        ):
            if i >= take:
                break
            audio, visual, y = to_device_batch(split, rows, t.device, c.augment, self.augment_gen)
            with autocast(t):
                out = t.model(audio, visual)
            feats_a.append(out.feat_a.float())
            feats_v.append(out.feat_v.float())
            labels.append(y)
        y = torch.cat(labels)
        k = t.data.num_classes
        return (
            class_means(torch.cat(feats_a), y, k, old_a),
            class_means(torch.cat(feats_v), y, k, old_v),
        )

    def loss(self, out, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        ce = F.cross_entropy(out.logits, labels)
        if not in_window(epoch, self.p["modulation_starts"], self.p["modulation_ends"]):
            return ce
        logits_a = prototype_logits(out.feat_a, self.proto_a)
        logits_v = prototype_logits(out.feat_v, self.proto_v)
        ratio = true_class_score(logits_a, labels) / max(true_class_score(logits_v, labels), 1e-12)
        beta, lam = pmr_coefficients(ratio, self.p["alpha"], self.p["coef_mode"])
        loss = (
            ce + beta * F.cross_entropy(logits_a, labels) + lam * F.cross_entropy(logits_v, labels)
        )
        if self.p["entropy_weight"] > 0 and epoch <= self.p["entropy_ends"] and ratio != 1:
            dominant = logits_a if ratio > 1 else logits_v
            loss = loss - self.p["entropy_weight"] * mean_entropy(dominant)
        self.means.add(pmr_score_ratio=ratio, pmr_coeff_audio=beta, pmr_coeff_visual=lam)
        return loss

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        new_a, new_v = self.compute_prototypes(self.proto_a, self.proto_v)
        if epoch > 0:  # the repo passes the finished epoch: no EMA after epoch 0
            new_a = ema(new_a, self.proto_a, self.p["momentum_coef"])
            new_v = ema(new_v, self.proto_v, self.p["momentum_coef"])
        self.proto_a, self.proto_v = new_a, new_v
        return self.means.pop()

    def state_dict(self) -> dict[str, Any]:
        return {
            "proto_a": self.proto_a,
            "proto_v": self.proto_v,
            "shuffle_gen": self.shuffle_gen.get_state(),
            "augment_gen": self.augment_gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.proto_a, self.proto_v = (
            state["proto_a"].to(self.trainer.device),
            state["proto_v"].to(self.trainer.device),
        )
        self.shuffle_gen.set_state(state["shuffle_gen"])
        self.augment_gen.set_state(state["augment_gen"])
