"""ResNet-18 encoders as in every DR/OGM/PMR/ARL repo, built on torchvision's ResNet, with a width
knob."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet


class ResNet18Encoder(ResNet):
    """ResNet-18 trunk (no avgpool/fc) returning the layer4 map; width 64 is the papers' network.

    Init follows the DR code: conv Kaiming-normal (fan_out, relu), BN weight ~ N(1, 0.02), bias 0.
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, width * 2, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, width * 4, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, width * 8, 2, stride=2)
        self.out_dim = width * 8
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class AudioEncoder(nn.Module):
    """(B,C,F,T) spectrogram -> (B,D): layer4 map, global average pool.

    C is 1 for audio; a dataset whose first modality has more channels (UCF-101's 2-channel
    optical flow) gets a conv1 with that many inputs.
    """

    def __init__(self, width: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        self.net = ResNet18Encoder(in_channels, width)
        self.out_dim = self.net.out_dim

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(audio).mean(dim=(2, 3))


class VisualEncoder(nn.Module):
    """(B,T,3,H,W) frames -> (B,D): frames folded into the batch, then one mean over time and
    space."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = ResNet18Encoder(3, width)
        self.out_dim = self.net.out_dim

    def forward(self, visual: torch.Tensor) -> torch.Tensor:
        b, t = visual.shape[:2]
        maps = self.net(visual.flatten(0, 1))  # (B*T, D, h, w)
        return maps.view(b, t, *maps.shape[1:]).mean(dim=(1, 3, 4))
