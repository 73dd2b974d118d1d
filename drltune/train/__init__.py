from drltune.train.saved_model import load_model, load_saved_config, predict
from drltune.train.trainer import NonFiniteLoss, Report, Trainer, TrainResult

__all__ = [
    "NonFiniteLoss",
    "Report",
    "Trainer",
    "TrainResult",
    "load_model",
    "load_saved_config",
    "predict",
]
