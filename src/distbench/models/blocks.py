"""Shared pieces of the model zoo: the block-list base class, conv-BN-activation, init helpers.

Start with ``BlockSequential``: every zoo model subclasses it, so its top-level children are
the blocks that pipeline parallelism cuts between. ``is_small_input`` decides when a builder
swaps the ImageNet stem for the CIFAR-style one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

#: Inputs smaller than this get the small (CIFAR-style) stem where the architecture has one.
SMALL_INPUT_LIMIT = 64

Block = tuple[str, nn.Module]


def is_small_input(input_size: int) -> bool:
    """True for CIFAR-sized inputs, where an ImageNet stem would shrink the image to nothing."""
    return input_size < SMALL_INPUT_LIMIT


class BlockSequential(nn.Sequential):
    """An ``nn.Sequential`` built from named blocks; ``model(x)`` is the blocks applied in order.

    Subclassing (rather than returning a bare ``nn.Sequential``) keeps a readable class name
    in reprs and profiles while preserving the block structure the pipeline code relies on.
    """

    def __init__(self, blocks: list[Block]) -> None:
        names = [name for name, _ in blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate block names in {names}")
        super().__init__(OrderedDict(blocks))


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    activation: Callable[[], nn.Module] | None = nn.ReLU,
    bn_eps: float = 1e-5,
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm + optional activation, the modern conv unit."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels, eps=bn_eps),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


def init_kaiming_fan_out(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """He et al. init as torchvision uses it for ResNet, VGG and MobileNetV2.

    Convs: kaiming normal (fan_out, ReLU gain), bias 0. BatchNorm: weight 1, bias 0.
    Linear: normal(0, ``linear_std``) with bias 0, or PyTorch's default when ``linear_std``
    is None (torchvision's ResNet leaves the classifier at the default).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)
