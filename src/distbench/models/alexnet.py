"""AlexNet (Krizhevsky et al. 2012) in torchvision's single-tower layout.

``alexnet`` builds it: five convs, adaptive average pool to 6x6, then the 9216-4096-4096
classifier with dropout (61,100,840 parameters at 1000 classes). Below 64x64 input the first
conv runs at stride 1 (padding 5) instead of 4, otherwise three max-pools would shrink a
32x32 image to nothing; the parameter count does not change.
Initialisation follows torchvision's VGG: kaiming-normal convs, normal(0, 0.01) linears.
"""

from __future__ import annotations

from torch import nn

from distbench.models.blocks import BlockSequential, init_kaiming_fan_out, is_small_input


def _conv(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, pad: int = 1, pool: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, pad), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


class AlexNet(BlockSequential):
    """AlexNet as named blocks: conv1..conv5, pool, flatten, fc6, fc7, fc8."""

    def __init__(
        self, num_classes: int = 1000, input_size: int = 224, in_channels: int = 3
    ) -> None:
        stride, pad = (1, 5) if is_small_input(input_size) else (4, 2)
        super().__init__(
            [
                ("conv1", _conv(in_channels, 64, 11, stride, pad, pool=True)),
                ("conv2", _conv(64, 192, 5, pad=2, pool=True)),
                ("conv3", _conv(192, 384, 3)),
                ("conv4", _conv(384, 256, 3)),
                ("conv5", _conv(256, 256, 3, pool=True)),
                ("pool", nn.AdaptiveAvgPool2d(6)),
                ("flatten", nn.Flatten()),
                ("fc6", nn.Sequential(nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU())),
                ("fc7", nn.Sequential(nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU())),
                ("fc8", nn.Linear(4096, num_classes)),
            ]
        )
        init_kaiming_fan_out(self)


def alexnet(num_classes: int, input_size: int, in_channels: int) -> AlexNet:
    """Build AlexNet."""
    return AlexNet(num_classes, input_size, in_channels)
