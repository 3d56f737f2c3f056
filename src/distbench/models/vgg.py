"""VGG (Simonyan & Zisserman 2015) without batch norm, as in torchvision: configuration D
(``vgg16``) and configuration E (``vgg16e``: sixteen convolutions, torchvision's VGG-19,
143,667,240 parameters at 1000 classes; the network of the parameter-server thesis).

``vgg16`` builds D: thirteen 3x3 convs in five stages, adaptive average pool to 7x7, then
the 25088-4096-4096 classifier with dropout (138,357,544 parameters at 1000 classes). The
7x7 pool is kept even for 32x32 inputs (it replicates the 1x1 map), which is what makes the
published parameter count hold at every input size.
Initialisation as torchvision: kaiming-normal convs, normal(0, 0.01) linears, zero biases.
"""

from __future__ import annotations

from torch import nn

from distbench.models.blocks import Block, BlockSequential, init_kaiming_fan_out

#: Output channels of each conv, stage by stage (configuration "D").
VGG16_STAGES: list[list[int]] = [
    [64, 64],
    [128, 128],
    [256, 256, 256],
    [512, 512, 512],
    [512, 512, 512],
]
#: Configuration "E": a fourth conv in each of the last three stages.
VGG16E_STAGES: list[list[int]] = [
    [64, 64],
    [128, 128],
    [256, 256, 256, 256],
    [512, 512, 512, 512],
    [512, 512, 512, 512],
]


def _features(in_channels: int, stages: list[list[int]]) -> list[Block]:
    """One block per conv (conv + ReLU), and one per max-pool, named conv{stage}_{i}/pool{stage}."""
    blocks: list[Block] = []
    channels = in_channels
    for stage, widths in enumerate(stages, start=1):
        for i, width in enumerate(widths, start=1):
            conv = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU())
            blocks.append((f"conv{stage}_{i}", conv))
            channels = width
        blocks.append((f"pool{stage}", nn.MaxPool2d(2, 2)))
    return blocks


class VGG16(BlockSequential):
    """VGG-16 as named blocks: conv1_1 .. pool5, avgpool, flatten, fc6, fc7, fc8."""

    def __init__(
        self,
        num_classes: int = 1000,
        input_size: int = 224,
        in_channels: int = 3,
        stages: list[list[int]] | None = None,
    ) -> None:
        del input_size  # the adaptive pool makes the layout independent of it
        super().__init__(
            [
                *_features(in_channels, stages or VGG16_STAGES),
                ("avgpool", nn.AdaptiveAvgPool2d(7)),
                ("flatten", nn.Flatten()),
                ("fc6", nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5))),
                ("fc7", nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5))),
                ("fc8", nn.Linear(4096, num_classes)),
            ]
        )
        init_kaiming_fan_out(self)


def vgg16(num_classes: int, input_size: int, in_channels: int) -> VGG16:
    """Build VGG-16."""
    return VGG16(num_classes, input_size, in_channels)


def vgg16e(num_classes: int, input_size: int, in_channels: int) -> VGG16:
    """Build VGG configuration E (sixteen convolutions)."""
    return VGG16(num_classes, input_size, in_channels, VGG16E_STAGES)
