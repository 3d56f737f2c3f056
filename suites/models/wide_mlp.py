"""A user model of the kind distbench must predict beyond its zoo: a communication-heavy
MLP, 3x32x32 -> 2048 -> 2048 -> 10 (10.5 M parameters, 42 MB of gradients, almost no
compute per byte). ``--model suites/models/wide_mlp.py:WideMLP`` (in a suite file,
relative to it)."""

from __future__ import annotations

import torch
from torch import nn


class WideMLP(nn.Module):
    default_input_size = 32
    default_channels = 3

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * 32 * 32, 2048),
            nn.ReLU(),
            nn.Linear(2048, 2048),
            nn.ReLU(),
            nn.Linear(2048, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
