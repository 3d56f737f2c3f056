"""GoogLeNet / Inception v1 (Szegedy et al. 2015) with batch-norm convs, as torchvision builds it.

``googlenet`` builds it (6,624,904 parameters at 1000 classes, no auxiliary heads). Each
``Inception`` module is one block. As in torchvision, the "5x5" branch uses a 3x3 conv and
every conv is conv + BatchNorm(eps=1e-3) + ReLU. Below 64x64 input the first conv runs at
stride 1 and the first max-pool is dropped (the usual CIFAR variant; same parameters).
Initialisation as torchvision: truncated normal(0, 0.01) for convs and the linear layer.
"""

from __future__ import annotations

import torch
from torch import nn

from distbench.models.blocks import Block, BlockSequential, conv_bn_act, is_small_input

#: (name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) per inception module;
#: a None row is a max-pool between stages.
INCEPTION_CONFIG: list[tuple[str, int, int, int, int, int, int] | None] = [
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    None,
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    None,
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
]


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return conv_bn_act(in_ch, out_ch, kernel, stride, bn_eps=1e-3)


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-3x3; pool-1x1) concatenated on channels."""

    def __init__(
        self,
        in_ch: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = _conv(in_ch, ch1x1, 1)
        self.branch2 = nn.Sequential(_conv(in_ch, ch3x3red, 1), _conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(_conv(in_ch, ch5x5red, 1), _conv(ch5x5red, ch5x5, 3))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), _conv(in_ch, pool_proj, 1)
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


def _stem(in_channels: int, small: bool) -> list[Block]:
    blocks: list[Block] = [("conv1", _conv(in_channels, 64, 7, stride=1 if small else 2))]
    if not small:
        blocks.append(("maxpool1", nn.MaxPool2d(3, 2, ceil_mode=True)))
    blocks += [
        ("conv2", _conv(64, 64, 1)),
        ("conv3", _conv(64, 192, 3)),
        ("maxpool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
    ]
    return blocks


def _inceptions() -> list[Block]:
    blocks: list[Block] = []
    channels, pools = 192, 3
    for row in INCEPTION_CONFIG:
        if row is None:
            kernel = 3 if pools == 3 else 2
            blocks.append((f"maxpool{pools}", nn.MaxPool2d(kernel, 2, ceil_mode=True)))
            pools += 1
            continue
        name, *widths = row
        module = Inception(channels, *widths)
        blocks.append((name, module))
        channels = module.out_channels
    return blocks


class GoogLeNet(BlockSequential):
    """GoogLeNet as named blocks: stem convs and pools, inception3a .. 5b, avgpool, fc."""

    def __init__(
        self, num_classes: int = 1000, input_size: int = 224, in_channels: int = 3
    ) -> None:
        super().__init__(
            [
                *_stem(in_channels, is_small_input(input_size)),
                *_inceptions(),
                ("avgpool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("dropout", nn.Dropout(0.2)),
                ("fc", nn.Linear(1024, num_classes)),
            ]
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def googlenet(num_classes: int, input_size: int, in_channels: int) -> GoogLeNet:
    """Build GoogLeNet (no auxiliary classifiers)."""
    return GoogLeNet(num_classes, input_size, in_channels)
