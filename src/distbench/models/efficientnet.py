"""EfficientNet-B0 (Tan & Le 2019), torchvision's layout.

``efficientnet_b0`` builds it (5,288,548 parameters at 1000 classes). Each ``MBConv``
(1x1 expand, kxk depthwise, squeeze-and-excitation, 1x1 projection, residual with
stochastic depth) is one block. Stochastic depth grows linearly from 0 to 0.2 over the
16 blocks, as in the original; it is active only in training mode, where it draws from
torch's RNG like dropout does. Below 64x64 input the stem and the first stride-2 stage run
at stride 1 (same parameters), so a 32x32 image ends at 4x4.
Initialisation as torchvision: kaiming-normal (fan_out) convs, BatchNorm 1/0, linear
uniform(+-1/sqrt(out_features)) with zero bias.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distbench.models.blocks import Block, BlockSequential, conv_bn_act, is_small_input

#: (expand ratio, kernel, first stride, in channels, out channels, repeats) per stage (B0).
EFFICIENTNET_B0_STAGES: list[tuple[int, int, int, int, int, int]] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
STOCHASTIC_DEPTH = 0.2
BN_EPS = 1e-5


class SqueezeExcitation(nn.Module):
    """Channel attention: global pool, 1x1 down, SiLU, 1x1 up, sigmoid, rescale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.act(self.fc1(self.pool(x))))
        return x * torch.sigmoid(scale)


class StochasticDepth(nn.Module):
    """Drop the whole residual branch per sample with probability ``p`` (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (SE ratio 1/4 of block input)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expand_ratio: int, drop_prob: float
    ) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(in_ch, hidden, 1, activation=nn.SiLU, bn_eps=BN_EPS))
        layers += [
            conv_bn_act(
                hidden, hidden, kernel, stride, groups=hidden, activation=nn.SiLU, bn_eps=BN_EPS
            ),
            SqueezeExcitation(hidden, max(1, in_ch // 4)),
            conv_bn_act(hidden, out_ch, 1, activation=None, bn_eps=BN_EPS),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.stochastic_depth = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.stochastic_depth(out) if self.use_residual else out


def _stages(small: bool) -> list[Block]:
    total = sum(stage[-1] for stage in EFFICIENTNET_B0_STAGES)
    blocks: list[Block] = []
    index = 0
    for stage, (t, k, s, c_in, c_out, n) in enumerate(EFFICIENTNET_B0_STAGES, start=1):
        first_stride = 1 if small and stage == 2 else s
        for i in range(n):
            unit = MBConv(
                c_in if i == 0 else c_out,
                c_out,
                k,
                first_stride if i == 0 else 1,
                t,
                STOCHASTIC_DEPTH * index / total,
            )
            blocks.append((f"stage{stage}_{i}", unit))
            index += 1
    return blocks


class EfficientNetB0(BlockSequential):
    """EfficientNet-B0 as named blocks: stem, stage{s}_{i}, head, pool, flatten, dropout, fc."""

    def __init__(
        self, num_classes: int = 1000, input_size: int = 224, in_channels: int = 3
    ) -> None:
        small = is_small_input(input_size)
        super().__init__(
            [
                (
                    "stem",
                    conv_bn_act(
                        in_channels, 32, 3, 1 if small else 2, activation=nn.SiLU, bn_eps=BN_EPS
                    ),
                ),
                *_stages(small),
                ("head", conv_bn_act(320, 1280, 1, activation=nn.SiLU, bn_eps=BN_EPS)),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("dropout", nn.Dropout(0.2)),
                ("fc", nn.Linear(1280, num_classes)),
            ]
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)


def efficientnet_b0(num_classes: int, input_size: int, in_channels: int) -> EfficientNetB0:
    """Build EfficientNet-B0."""
    return EfficientNetB0(num_classes, input_size, in_channels)
