"""LayerScale (CaiT): a learned per-channel scale on each residual branch."""

from __future__ import annotations

import torch
from torch import nn


class LayerScale(nn.Module):
    """Multiply by ``gamma`` (``dim`` values initialised to ``init_values``)."""

    def __init__(self, dim: int, init_values: float = 1e-5, inplace: bool = False) -> None:
        super().__init__()
        self.init_values = init_values
        self.inplace = inplace
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(self.gamma) if self.inplace else x * self.gamma
