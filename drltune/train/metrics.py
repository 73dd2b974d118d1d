"""Classification metrics computed once per evaluation."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float((pred == labels).mean()) if len(labels) else 0.0


def macro_f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    return float(
        f1_score(labels, pred, labels=list(range(num_classes)), average="macro", zero_division=0)
    )
