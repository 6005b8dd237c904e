"""KoLeo regulariser: spreads features by penalising small nearest-neighbour distances (Kozachenko-Leonenko)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """``-mean_i log(||x_i - x_nn(i)|| + eps)`` over L2-normalised rows, computed in fp32."""

    def __init__(self) -> None:
        super().__init__()
        self.pairwise_distance = nn.PairwiseDistance(p=2, eps=1e-8)

    @staticmethod
    def nearest_neighbours(x: torch.Tensor) -> torch.Tensor:
        """Index of each row's nearest other row (largest inner product of unit vectors)."""
        similarities = x @ x.t()
        similarities.fill_diagonal_(-2.0)  # below any cosine similarity: a row is never its own neighbour
        return similarities.argmax(dim=1)

    def forward(self, student_output: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """Loss for ``student_output [B, D]``; ``B`` must be at least 2 (one image has no neighbour)."""
        if student_output.dim() != 2 or student_output.shape[0] < 2:
            raise ValueError(
                f"KoLeoLoss needs a [B, D] batch with B >= 2 per rank, got shape {tuple(student_output.shape)}"
            )
        with torch.autocast(device_type=student_output.device.type, enabled=False):
            x = F.normalize(student_output.float(), p=2, dim=-1, eps=eps)
            with torch.no_grad():
                neighbours = self.nearest_neighbours(x)
            distances = self.pairwise_distance(x, x[neighbours])
            return -torch.log(distances + eps).mean()
