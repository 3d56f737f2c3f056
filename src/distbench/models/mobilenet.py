"""MobileNetV2 (Sandler et al. 2018), width 1.0, torchvision's layout.

``mobilenetv2`` builds it (3,504,872 parameters at 1000 classes). Each ``InvertedResidual``
(1x1 expand, 3x3 depthwise, 1x1 linear projection, residual when shapes match) is one block.
Below 64x64 input the stem conv and the first stride-2 stage run at stride 1, as in the
common CIFAR variant, so a 32x32 image ends at 4x4 (same parameters).
Initialisation as torchvision: kaiming-normal (fan_out) convs, BatchNorm 1/0,
normal(0, 0.01) linear.
"""

from __future__ import annotations

import torch
from torch import nn

from distbench.models.blocks import (
    Block,
    BlockSequential,
    conv_bn_act,
    init_kaiming_fan_out,
    is_small_input,
)

#: (expand ratio t, output channels c, repeats n, first stride s) per stage.
MOBILENETV2_STAGES: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, no activation); skip if shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(in_ch, hidden, 1, activation=nn.ReLU6))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            conv_bn_act(hidden, out_ch, 1, activation=None),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


def _stages(small: bool) -> list[Block]:
    blocks: list[Block] = []
    channels = 32
    for stage, (t, c, n, s) in enumerate(MOBILENETV2_STAGES, start=1):
        first_stride = 1 if small and stage == 2 else s
        for i in range(n):
            unit = InvertedResidual(channels, c, first_stride if i == 0 else 1, t)
            blocks.append((f"stage{stage}_{i}", unit))
            channels = c
    return blocks


class MobileNetV2(BlockSequential):
    """MobileNetV2 as named blocks: stem, stage{s}_{i}, head, pool, flatten, dropout, fc."""

    def __init__(
        self, num_classes: int = 1000, input_size: int = 224, in_channels: int = 3
    ) -> None:
        small = is_small_input(input_size)
        super().__init__(
            [
                ("stem", conv_bn_act(in_channels, 32, 3, 1 if small else 2, activation=nn.ReLU6)),
                *_stages(small),
                ("head", conv_bn_act(320, 1280, 1, activation=nn.ReLU6)),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("dropout", nn.Dropout(0.2)),
                ("fc", nn.Linear(1280, num_classes)),
            ]
        )
        init_kaiming_fan_out(self, linear_std=0.01)


def mobilenetv2(num_classes: int, input_size: int, in_channels: int) -> MobileNetV2:
    """Build MobileNetV2 (width multiplier 1.0)."""
    return MobileNetV2(num_classes, input_size, in_channels)
