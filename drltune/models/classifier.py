"""Audio encoder + visual encoder + fusion head: the one model every method trains."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from drltune.models.encoders import AudioEncoder, VisualEncoder
from drltune.models.fusion import FUSIONS

ENCODER_PREFIXES = {"audio": "audio_net.", "visual": "visual_net."}


@dataclass
class ModelOutput:
    logits: torch.Tensor
    feat_a: torch.Tensor
    feat_v: torch.Tensor


class AVClassifier(nn.Module):
    """`modality` "audio"/"visual" trains a unimodal model: the other encoder is skipped and fed as
    zeros."""

    def __init__(
        self,
        num_classes: int,
        fusion: str = "concat",
        width: int = 64,
        modality: str = "both",
        audio_channels: int = 1,
    ) -> None:
        super().__init__()
        self.audio_net = AudioEncoder(width, audio_channels)
        self.visual_net = VisualEncoder(width)
        self.fusion = FUSIONS.get(fusion)(self.audio_net.out_dim, num_classes)
        self.modality = modality
        self.num_classes = num_classes

    def encode(
        self, audio: torch.Tensor, visual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.modality == "visual":
            v = self.visual_net(visual)
            return torch.zeros_like(v), v
        a = self.audio_net(audio)
        if self.modality == "audio":
            return a, torch.zeros_like(a)
        return a, self.visual_net(visual)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> ModelOutput:
        a, v = self.encode(audio, visual)
        return ModelOutput(self.fusion(a, v), a, v)

    def unimodal_logits(self, out: ModelOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Each modality's own logits for methods that compare modalities (OGM-GE, PMR, AGM).

        The fusion's official decomposition where it has one (concat halves with bias/2, sum
        branches); otherwise (FiLM, gated) the zero-padding path f(a, 0), f(0, v), which is
        well defined where slicing the head is not (docs/methods.md §1.2, §9).
        """
        split = self.fusion.unimodal_logits(out.feat_a, out.feat_v)
        if split is not None:
            return split
        audio_only = self.fusion(out.feat_a, torch.zeros_like(out.feat_v))
        return audio_only, self.fusion(torch.zeros_like(out.feat_a), out.feat_v)

    def encoder_parameters(self, modality: str) -> list[tuple[str, nn.Parameter]]:
        prefix = ENCODER_PREFIXES[modality]
        return [(n, p) for n, p in self.named_parameters() if n.startswith(prefix)]
