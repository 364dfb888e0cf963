"""MobileFaceNet (Chen et al., 2018): a light 2D backbone (~0.22 GMAC) for fast CPU runs and tests.

Trunk ends at the 1x1 "conv_6_sep" expansion (512 x 7 x 7 for a 112 chip), so JAM sees the same
map size as IR-18; the head is the global depthwise conv (GDC) + linear + BN of the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from pose3dfr.models.backbones import Backbone
from pose3dfr.models.iresnet import Flatten


class ConvBlock(nn.Module):
    """Conv + BN (+ PReLU unless linear)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, linear: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.Identity() if linear else nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand, 3x3 depthwise (stride), 1x1 linear project, optional residual."""

    def __init__(self, cin: int, cout: int, expanded: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.conv = ConvBlock(cin, expanded, 1)
        self.conv_dw = ConvBlock(expanded, expanded, 3, stride, 1, groups=expanded)
        self.project = ConvBlock(expanded, cout, 1, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


def _residual(channels: int, expanded: int, count: int) -> nn.Sequential:
    return nn.Sequential(*[DepthWise(channels, channels, expanded, 1, residual=True) for _ in range(count)])


class MobileFaceNet(Backbone):
    """MobileFaceNet for 112 x 112 ArcFace-aligned chips; fmap 512 x 7 x 7, embedding 128 by default."""

    input_size = 112
    template = "arcface"
    feature_channels = 512
    feature_size = 7
    # Stride-2 convolutions are 3 x 3 padded by 1 (output i centred on input 2 i): cell i on chip pixel 16 i.
    cell_stride = 16.0
    cell_offset = 0.0
    head_affine = True  # head(): depthwise conv, batch norm, flatten, linear, batch norm

    def __init__(self, embedding_dim: int = 128) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.features = nn.Sequential(
            ConvBlock(3, 64, 3, 2, 1),                      # 56
            ConvBlock(64, 64, 3, 1, 1, groups=64),
            DepthWise(64, 64, 128, 2),                      # 28
            _residual(64, 128, 4),
            DepthWise(64, 128, 256, 2),                     # 14
            _residual(128, 256, 6),
            DepthWise(128, 128, 512, 2),                    # 7
            _residual(128, 256, 2),
            ConvBlock(128, self.feature_channels, 1),       # conv_6_sep
        )
        c = self.feature_channels
        self.output_layer = nn.Sequential(
            ConvBlock(c, c, self.feature_size, groups=c, linear=True),  # GDC
            Flatten(),
            nn.Linear(c, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x 112 x 112 RGB [0, 1] -> B x 512 x 7 x 7 (input scaled to [-1, 1])."""
        return self.features((x - 0.5) / 0.5)

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """B x 512 x 7 x 7 -> B x D embedding (not normalised)."""
        return self.output_layer(fmap)

    def head_modules(self) -> list[nn.Module]:
        """The modules head() runs (trainable when training freezes only the trunk)."""
        return [self.output_layer]

    def head_layers(self) -> list[nn.Module]:
        """head() as a chain of layers (pose3dfr.models.attribution): the GDC block opened."""
        gdc = self.output_layer[0]
        return [gdc.conv, gdc.bn, gdc.prelu, *self.output_layer[1:]]


def mobilefacenet(**kw) -> MobileFaceNet:
    """Factory entry for get_backbone("mobilefacenet")."""
    return MobileFaceNet(**kw)
