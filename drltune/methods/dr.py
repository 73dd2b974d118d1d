"""Diagnosing & Re-learning (Wei et al., ECCV 2024), as the official code (ours.py) does it.

Every `reinit_epoch` epochs (after the epoch's training and evaluation, 0-indexed, epoch > 0,
at most `reinit_num` times) each encoder is diagnosed: k-means (k = classes) on its pooled
features of the training and the validation split, purity of each, gap = |P_train - P_val|,
w = tanh(alpha * gap); then every encoder *parameter* becomes w * initial + (1 - w) * current.
Faithful defaults (docs/methods.md §2.2): BN buffers, the fusion head and the optimiser state are
left alone; float32 features min-max scaled to [-1, 1] per matrix; KMeans(n_init=10,
random_state=0); diagnosis without augmentation. Each quirk is a parameter (docs/methods.md §2.3).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from threadpoolctl import threadpool_limits

from drltune import faults
from drltune.errors import DrltuneError
from drltune.methods.base import METHODS, Method
from drltune.params import Param

MODALITIES = ("audio", "visual")


def purity(
    features: np.ndarray,
    labels: np.ndarray,
    n_clusters: int,
    n_init: int | str = 10,
    seed: int = 0,
    scaling: str = "minmax",
    dtype: str = "float32",
) -> float:
    """Accuracy of labelling each k-means cluster with its majority true class.

    `dtype` is what scaling and k-means compute in: float32 as the official code (its features
    are float32 torch tensors, and sklearn keeps float32); float64 as earlier drltune versions.
    k-means++ seeding depends on the row order, so the caller decides that (docs/methods.md).
    """
    x = np.asarray(features, dtype=np.dtype(dtype))
    if (
        len(x) < n_clusters
    ):  # k-means cannot make one cluster per class: say which split is too small
        raise DrltuneError(
            f"DR's diagnosis clusters a split's features into {n_clusters} clusters (one per "
            f"class), but the split has {len(x)} clips: give it at least {n_clusters}"
        )
    if scaling == "minmax":
        x = MinMaxScaler(feature_range=(-1, 1)).fit_transform(x)
    elif scaling == "standardize":
        x = StandardScaler().fit_transform(x)
    clusters = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init).fit_predict(x)
    _, y = np.unique(labels, return_inverse=True)
    votes = sum(np.bincount(y[clusters == c]).max() for c in np.unique(clusters))
    return float(votes) / len(y)


def _fmt3(value: Any) -> str:
    return (
        f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"
    )


def reinit_weight(gap: float, alpha: float) -> float:
    return math.tanh(alpha * gap)


@torch.no_grad()
def blend_(
    params: list[tuple[str, torch.nn.Parameter]], initial: dict[str, torch.Tensor], weight: float
) -> None:
    """In place, so the optimiser keeps tracking the same Parameter objects."""
    for name, p in params:
        p.copy_(weight * initial[name].to(p.device, p.dtype) + (1.0 - weight) * p)


@METHODS.register
class DiagnosingRelearning(Method):
    name = "dr"
    epoch_limits = (
        ("reinit_epoch", lambda e: e - 2, "re-init interval"),
    )  # after the last epoch: no effect
    description = (
        "Diagnosing & Re-learning: k-means purity gap per encoder -> soft re-init toward initial "
        "weights"
    )
    params = (
        Param(
            "reinit_epoch",
            "int",
            20,
            "re-init after every this many epochs",
            1,
            1000,
            is_epoch=True,
            search=(5, 30),
        ),
        Param("reinit_num", "int", 3, "at most this many re-inits", 0, 100, search=(1, 5)),
        Param(
            "alpha",
            "float",
            3.0,
            "strength scaling: w = tanh(alpha * purity gap) (move_lambda)",
            0.0,
            100.0,
            log=True,
            search=(0.3, 10.0),
        ),
        Param(
            "diag_split",
            "choice",
            "val",
            "split compared with train in the diagnosis (test: BalanceMM)",
            choices=("val", "test"),
        ),
        Param(
            "kmeans_n_init",
            "choice",
            10,
            "KMeans restarts (10 = the official, pre-sklearn-1.4 default)",
            choices=(10, 1, "auto"),
        ),
        Param(
            "kmeans_dtype",
            "choice",
            "float32",
            "float type of the scaling and k-means (float32 = the official code; float64 = earlier "
            "drltune)",
            choices=("float32", "float64"),
        ),
        Param(
            "kmeans_rows",
            "choice",
            "fixed",
            "row order k-means sees for train: fixed (split order) or shuffled (a fresh "
            "permutation, like the official shuffled loader; k-means++ depends on it)",
            choices=("fixed", "shuffled"),
        ),
        Param(
            "feature_scaling",
            "choice",
            "minmax",
            "per-matrix feature scaling before k-means",
            choices=("minmax", "none", "standardize"),
        ),
        Param(
            "blend_scope",
            "choice",
            "all",
            "encoder parameters blended: all (official) or conv weights only",
            choices=("all", "conv"),
        ),
        Param(
            "reset_bn_buffers",
            "bool",
            False,
            "also restore BN running stats to their initial values",
        ),
        Param(
            "reset_optimizer_state",
            "bool",
            False,
            "also clear the optimiser state (momentum) of the encoders",
        ),
    )
    metric_keys = (
        "reinit",
        "purity_train_audio",
        "purity_val_audio",
        "purity_train_visual",
        "purity_val_visual",
        "reinit_weight_audio",
        "reinit_weight_visual",
    )
    label = "DR"
    report_axes = {
        "reinit_epoch": "re-init interval (epochs)",
        "alpha": "alpha (strength)",
        "reinit_num": "re-init count (max)",
    }

    @classmethod
    def epoch_text(cls, record: dict[str, Any]) -> str:
        if not record.get("reinit"):
            return ""
        return (
            f"re-init w_a {record['reinit_weight_audio']:.3f} w_v "
            f"{record['reinit_weight_visual']:.3f} (purity a "
            f"{record['purity_train_audio']:.3f}/{record['purity_val_audio']:.3f} v "
            f"{record['purity_train_visual']:.3f}/{record['purity_val_visual']:.3f})"
        )

    @classmethod
    def note_rows(cls, history: list[dict[str, Any]]) -> list[str]:
        """The re-inits as a table: when, the purities that triggered them, and their weights."""
        rows = [r for r in history if r.get("reinit")]
        if not rows:
            return []

        out = [
            "",
            "**DR re-inits** (purity: k-means purity of train / val features; weight: how far the "
            "encoder is pulled back to its initial weights)",
            "",
            "| after epoch | purity audio (train / val) | purity visual (train / val) | weight "
            "audio | weight visual |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            a_train, a_val, v_train, v_val, w_a, w_v = (
                _fmt3(r.get(k))
                for k in (
                    "purity_train_audio",
                    "purity_val_audio",
                    "purity_train_visual",
                    "purity_val_visual",
                    "reinit_weight_audio",
                    "reinit_weight_visual",
                )
            )
            out.append(
                f"| {r['epoch']} | {a_train} / {a_val} | {v_train} / {v_val} | {w_a} | {w_v} |"
            )
        return out

    def setup(self) -> None:
        model = self.trainer.model
        # in host memory: on a GPU two more encoders there would only take room from other trials
        self.initial = {
            n: t.detach().to("cpu", copy=True)
            for n, t in model.state_dict().items()
            if n.startswith(("audio_net.", "visual_net."))
        }
        self.count = 0

    def due(self, epoch: int) -> bool:
        """Official schedule: the counter ticks on every multiple, re-init only while count <=
        reinit_num."""
        return epoch > 0 and epoch % self.p["reinit_epoch"] == 0

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        record: dict[str, Any] = {k: None for k in self.metric_keys}
        record["reinit"] = False
        if not self.due(epoch):
            return record
        self.count += 1
        if self.count > self.p["reinit_num"]:
            return record
        faults.inject("dr_reinit", epoch)  # tests kill or stall a search right here
        t = self.trainer
        train_a, train_v, train_y = t.features(t.data.train)
        other = t.data.val if self.p["diag_split"] == "val" else t.data.test
        val_a, val_v, val_y = t.features(other)  # the epoch's validation pass, reused (same model)
        if self.p["kmeans_rows"] == "shuffled":
            order = self.row_order(len(train_y), epoch)
            train_a, train_v, train_y = train_a[order], train_v[order], train_y[order]
        kw = dict(
            n_clusters=t.data.num_classes,
            n_init=self.p["kmeans_n_init"],
            scaling=self.p["feature_scaling"],
            dtype=self.p["kmeans_dtype"],
        )
        with threadpool_limits(limits=t.cpu_threads):  # the trial's CPU share, on every device
            purities = {
                m: (purity(train_x, train_y, **kw), purity(val_x, val_y, **kw))
                for m, train_x, val_x in (("audio", train_a, val_a), ("visual", train_v, val_v))
            }
        for modality, (p_train, p_val) in purities.items():
            weight = reinit_weight(abs(p_train - p_val), self.p["alpha"])
            self.reinit(modality, weight)
            record.update(
                {
                    f"purity_train_{modality}": p_train,
                    f"purity_val_{modality}": p_val,
                    f"reinit_weight_{modality}": weight,
                }
            )
        record["reinit"] = True
        return record

    def row_order(self, n: int, epoch: int) -> np.ndarray:
        """The training rows in the order a shuffled loader would yield them: a permutation drawn
        from the trial seed and the epoch (reproducible, and independent of the training RNG)."""
        return np.random.default_rng([self.trainer.cfg.seed, epoch]).permutation(n)

    def reinit(self, modality: str, weight: float) -> None:
        model = self.trainer.model
        params = model.encoder_parameters(modality)
        if self.p["blend_scope"] == "conv":
            params = [(n, p) for n, p in params if p.dim() == 4]
        blend_(params, self.initial, weight)
        if self.p["reset_bn_buffers"]:
            with torch.no_grad():
                for name, buf in model.named_buffers():
                    if name in self.initial and name.startswith(f"{modality}_net."):
                        buf.copy_(self.initial[name])
        if self.p["reset_optimizer_state"]:
            for _, p in params:
                self.trainer.optimizer.state.pop(p, None)

    def state_dict(self) -> dict[str, Any]:
        # `initial` is not saved: setup() on a trainer built from the same seed snapshots the same
        # weights, so a checkpoint stays one model's worth.
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = state["count"]
