"""LeNet-5 (LeCun et al. 1998), the smallest model in the zoo.

``lenet5`` builds it. Layout: conv6-5x5, pool, conv16-5x5, pool, fc120, fc84, fc-classes
(61,706 parameters on 1x32x32 with 10 classes). Two modern choices, as in most teaching
versions: ReLU instead of scaled tanh and max- instead of trainable average pooling.
An adaptive pool to 5x5 before the classifier lets other input sizes through unchanged in
parameter count; inputs of 28 or less (MNIST) get the classic padding of 2 on the first conv.
Initialisation is PyTorch's default (uniform, scaled by fan-in, as in the original paper).
"""

from __future__ import annotations

from torch import nn

from distbench.models.blocks import BlockSequential


class LeNet5(BlockSequential):
    """LeNet-5 as named blocks: conv1, conv2, pool, flatten, fc1, fc2, fc."""

    def __init__(self, num_classes: int = 10, input_size: int = 32, in_channels: int = 1) -> None:
        pad = 2 if input_size <= 28 else 0
        super().__init__(
            [
                (
                    "conv1",
                    nn.Sequential(
                        nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2)
                    ),
                ),
                ("conv2", nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))),
                ("pool", nn.AdaptiveAvgPool2d(5)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU())),
                ("fc2", nn.Sequential(nn.Linear(120, 84), nn.ReLU())),
                ("fc", nn.Linear(84, num_classes)),
            ]
        )


def lenet5(num_classes: int, input_size: int, in_channels: int) -> LeNet5:
    """Build LeNet-5."""
    return LeNet5(num_classes, input_size, in_channels)
