"""ResNet-18/34/50 (He et al. 2016) and ResNeXt-50 32x4d (Xie et al. 2017).

Start at ``ResNet``: a stem, then one block per residual unit (``layer1_0`` .. ``layer4_k``),
then pool, flatten, fc. ``BasicBlock`` (two 3x3 convs) serves ResNet-18/34, ``Bottleneck``
(1x1, 3x3, 1x1; stride on the 3x3 as in torchvision's "v1.5"; grouped 3x3 for ResNeXt)
serves ResNet-50 and ResNeXt-50. At 224x224 the stem is the ImageNet one (7x7 stride-2 conv
and a max-pool); below 64x64 it is the CIFAR one (3x3 stride-1 conv, no max-pool).
Initialisation as torchvision: kaiming-normal (fan_out) convs, BatchNorm 1/0, and PyTorch's
default for the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from distbench.models.blocks import Block, BlockSequential, init_kaiming_fan_out, is_small_input


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """1x1 projection shortcut when the shape changes, else None (identity shortcut)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1, base_width=64")
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = _downsample(in_ch, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, optionally grouped), 1x1 expand by 4, plus the shortcut."""

    expansion = 4

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stem(in_channels: int, small: bool) -> nn.Sequential:
    if small:
        return nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 7, 2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),
    )


class ResNet(BlockSequential):
    """ResNet / ResNeXt as named blocks: stem, layer{stage}_{i}, pool, flatten, fc."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        input_size: int = 224,
        in_channels: int = 3,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        blocks: list[Block] = [("stem", _stem(in_channels, is_small_input(input_size)))]
        channels = 64
        for stage, (count, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                unit = block(channels, planes, stride, groups, width_per_group)
                blocks.append((f"layer{stage + 1}_{i}", unit))
                channels = planes * block.expansion
        blocks += [
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(channels, num_classes)),
        ]
        super().__init__(blocks)
        init_kaiming_fan_out(self, linear_std=None)


def resnet18(num_classes: int, input_size: int, in_channels: int) -> ResNet:
    """Build ResNet-18."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, input_size, in_channels)


def resnet34(num_classes: int, input_size: int, in_channels: int) -> ResNet:
    """Build ResNet-34."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, input_size, in_channels)


def resnet50(num_classes: int, input_size: int, in_channels: int) -> ResNet:
    """Build ResNet-50."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, input_size, in_channels)


def resnext50(num_classes: int, input_size: int, in_channels: int) -> ResNet:
    """Build ResNeXt-50 (32x4d): ResNet-50 with 32 groups of width 4 in the first stage."""
    return ResNet(
        Bottleneck, [3, 4, 6, 3], num_classes, input_size, in_channels, groups=32, width_per_group=4
    )
