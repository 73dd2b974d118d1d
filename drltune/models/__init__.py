from drltune.models.classifier import AVClassifier, ModelOutput
from drltune.models.fusion import FUSIONS

__all__ = ["AVClassifier", "ModelOutput", "FUSIONS"]
