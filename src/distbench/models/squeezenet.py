"""SqueezeNet 1.1 (Iandola et al. 2016), torchvision's layout.

``squeezenet`` builds it (1,235,496 parameters at 1000 classes). Each ``Fire`` module
(squeeze 1x1, then expand 1x1 and 3x3 concatenated) is one block; the classifier is a 1x1
conv followed by global average pooling. Below 64x64 input the first conv runs at stride 1
(same parameters), so a 32x32 image still ends at 4x4 before the classifier.
Initialisation as torchvision: kaiming-uniform convs, normal(0, 0.01) for the final conv,
zero biases.
"""

from __future__ import annotations

import torch
from torch import nn

from distbench.models.blocks import Block, BlockSequential, is_small_input

#: (squeeze, expand1x1, expand3x3) per Fire module; None is a max-pool.
FIRE_CONFIG: list[tuple[int, int, int] | None] = [
    (16, 64, 64),
    (16, 64, 64),
    None,
    (32, 128, 128),
    (32, 128, 128),
    None,
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    (64, 256, 256),
]


class Fire(nn.Module):
    """Squeeze to few channels with 1x1, then expand with parallel 1x1 and 3x3 convs."""

    def __init__(self, in_ch: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_ch, squeeze, 1), nn.ReLU())
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand1x1, 1), nn.ReLU())
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand3x3, 3, padding=1), nn.ReLU())
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], dim=1)


def _features(in_channels: int, small: bool) -> list[Block]:
    stride = 1 if small else 2
    blocks: list[Block] = [
        (
            "conv1",
            nn.Sequential(nn.Conv2d(in_channels, 64, 3, stride, padding=int(small)), nn.ReLU()),
        ),
        ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
    ]
    channels, fire, pool = 64, 2, 2
    for row in FIRE_CONFIG:
        if row is None:
            blocks.append((f"pool{pool}", nn.MaxPool2d(3, 2, ceil_mode=True)))
            pool += 1
            continue
        module = Fire(channels, *row)
        blocks.append((f"fire{fire}", module))
        channels, fire = module.out_channels, fire + 1
    return blocks


class SqueezeNet(BlockSequential):
    """SqueezeNet 1.1 as named blocks: conv1, pools, fire2 .. fire9, classifier, avgpool."""

    def __init__(
        self, num_classes: int = 1000, input_size: int = 224, in_channels: int = 3
    ) -> None:
        final_conv = nn.Conv2d(512, num_classes, 1)
        super().__init__(
            [
                *_features(in_channels, is_small_input(input_size)),
                ("classifier", nn.Sequential(nn.Dropout(0.5), final_conv, nn.ReLU())),
                ("avgpool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
            ]
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final_conv:
                    nn.init.normal_(module.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def squeezenet(num_classes: int, input_size: int, in_channels: int) -> SqueezeNet:
    """Build SqueezeNet 1.1."""
    return SqueezeNet(num_classes, input_size, in_channels)
