"""Joint training with cross-entropy on the fused logits: the reference every method is compared
with."""

from drltune.methods.base import METHODS, Method


@METHODS.register
class Baseline(Method):
    name = "baseline"
    description = "joint training, CE on the fused logits (no balancing)"
    both_modalities = False  # modality audio/visual trains the unimodal reference models
