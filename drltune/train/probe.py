"""Linear probes: how much class information an encoder's features hold, whatever head sits on
top."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from drltune.train.trainer import Trainer


def linear_probe(trainer: Trainer) -> dict[str, float]:
    """Test accuracy of a logistic regression fitted on each encoder's frozen train features."""
    train_a, train_v, train_y = trainer.features(trainer.data.train)
    test_a, test_v, test_y = trainer.features(trainer.data.test)
    out = {}
    for name, x_train, x_test in (("audio", train_a, test_a), ("visual", train_v, test_v)):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(x_train, train_y)
        out[f"probe_{name}"] = float(np.mean(clf.predict(x_test) == test_y))
    return out
