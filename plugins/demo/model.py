"""The demo model: a 3-layer MLP, 64 inputs -> 10 class scores (the benchmark's model).

This file goes into the demo archive as its ``--model-file``: it defines exactly one class.
"""

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int = 64, hidden: int = 128, classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
