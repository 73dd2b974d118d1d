"""drltune: hyperparameter search for multimodal-imbalance training (DR and its peers)."""

__version__ = "0.1.0"
