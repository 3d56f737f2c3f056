"""A user model small enough to validate behind 100 Mbit/s links: the same kind as
``wide_mlp.py`` (almost no compute per byte moved) with 512-wide layers, 3x32x32 -> 512
-> 512 -> 10 (1.84 M parameters, 7.4 MB of gradients: 0.6 s per transfer at 100 Mbit/s,
where WideMLP's 42 MB take 3.5 s). ``--model suites/models/narrow_mlp.py:NarrowMLP``."""

from __future__ import annotations

import torch
from torch import nn


class NarrowMLP(nn.Module):
    default_input_size = 32
    default_channels = 3

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * 32 * 32, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
