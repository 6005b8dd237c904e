"""DINO loss on the class token: cross-entropy between centred, sharpened teacher and student distributions."""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.distributed import all_reduce_sum, world_size
from dinov2.loss.sinkhorn import sinkhorn_knopp
from dinov2.loss.soft_cross_entropy import soft_cross_entropy


class DINOLoss(nn.Module):
    """Owns the EMA ``center`` buffer ``[1, out_dim]`` of the teacher's prototype scores."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"DINOLoss: out_dim must be positive, got {out_dim}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_output: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Teacher probabilities ``softmax((t - center) / teacher_temp)`` over the last dimension."""
        return F.softmax(torch.sub(teacher_output, self.center).div_(teacher_temp), dim=-1)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self, teacher_output: torch.Tensor, teacher_temp: float, n_iterations: int = 3
    ) -> torch.Tensor:
        """Teacher probabilities from Sinkhorn-Knopp instead of centering (rows sum to 1)."""
        return sinkhorn_knopp(teacher_output, teacher_temp, n_iterations)

    def forward(
        self,
        student_output_list: Sequence[torch.Tensor] | torch.Tensor,
        teacher_out_softmaxed_centered_list: Sequence[torch.Tensor] | torch.Tensor,
    ) -> torch.Tensor:
        """Sum over every (student, teacher) pair of the batch-mean cross-entropy ``H(t, softmax(s / T_s))``.

        Each side is a sequence of ``[B, K]`` tensors or one ``[n, B, K]`` tensor holding ``n`` views of the same
        ``B`` images (the local crops: no copy, no split). No pair is excluded here: the caller decides which
        views face which (crop swapping, locals vs globals). The teachers are summed first: ``sum_t H(t, p) =
        H(sum_t t, p)``, one cross-entropy per student instead of one per pair.
        """
        teachers = teacher_out_softmaxed_centered_list
        if torch.is_tensor(teachers) and teachers.dim() == 3:
            target = teachers.sum(dim=0)
        else:
            target = functools.reduce(torch.add, teachers)
        students = student_output_list
        if torch.is_tensor(students) and students.dim() == 3:
            students = [students]
        total = torch.zeros((), device=target.device)
        for student in students:
            total = total + soft_cross_entropy(student, target, self.student_temp).mean(dim=-1).sum()
        return total

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """EMA of the center towards the batch mean of ``teacher_output [B, out_dim]`` over all ranks."""
        batch_sum = all_reduce_sum(teacher_output.float().sum(dim=0, keepdim=True))
        batch_center = batch_sum / (teacher_output.shape[0] * world_size())
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)
