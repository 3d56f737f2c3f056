"""A deliberately unbalanced model for ``pipeline_partition.py``: six light blocks, one heavy.

Every block is a 3x3 convolution at 32 channels and 32x32 resolution, except ``heavy``,
which is six of them in one block (so no cut can split it), and the tiny ``head``. Costs are
roughly ``[1, 1, 1, 1, 1, 1, 6, 0]``: equal block counts (4 + 4) put ``8`` units on the
second stage; the best cut (6 + 2) puts ``6`` on each. Use it as
``--model benchmarks/unbalanced_model.py:Unbalanced``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

WIDTH = 32


def conv(in_channels: int = WIDTH) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, WIDTH, 3, padding=1), nn.ReLU())


class Unbalanced(nn.Sequential):
    """stem, light1..light5, heavy (6 convs), head."""

    default_input_size = 32
    default_channels = 3

    def __init__(self, num_classes: int = 10) -> None:
        blocks: list[tuple[str, nn.Module]] = [("stem", conv(3))]
        blocks += [(f"light{i}", conv()) for i in range(1, 6)]
        blocks.append(("heavy", nn.Sequential(*(conv() for _ in range(6)))))
        blocks.append(
            (
                "head",
                nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, num_classes)),
            )
        )
        super().__init__(OrderedDict(blocks))
