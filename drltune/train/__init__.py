from drltune.train.trainer import NonFiniteLoss, Report, Trainer, TrainResult

__all__ = ["NonFiniteLoss", "Report", "Trainer", "TrainResult"]
