"""iBOT loss on masked patch tokens: the student predicts the teacher's distribution at each masked patch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.distributed import all_reduce_sum
from dinov2.loss.sinkhorn import sinkhorn_knopp
from dinov2.loss.soft_cross_entropy import soft_cross_entropy


class iBOTPatchLoss(nn.Module):  # noqa: N801 (upstream's public name)
    """Owns the EMA ``center`` buffer ``[1, 1, patch_out_dim]`` of the teacher's patch scores."""

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if patch_out_dim < 1:
            raise ValueError(f"iBOTPatchLoss: patch_out_dim must be positive, got {patch_out_dim}")
        self.patch_out_dim = patch_out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, 1, patch_out_dim))

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_patch_tokens: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Teacher probabilities ``softmax((t - center) / teacher_temp)``; accepts ``[..., patch_out_dim]``."""
        center = self.center.reshape(-1) if teacher_patch_tokens.dim() < 3 else self.center
        return F.softmax(torch.sub(teacher_patch_tokens, center).div_(teacher_temp), dim=-1)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self,
        teacher_output: torch.Tensor,
        teacher_temp: float,
        n_masked_patches_tensor: torch.Tensor,
        n_iterations: int = 3,
    ) -> torch.Tensor:
        """Sinkhorn-Knopp probabilities for ``[n_masked, K]`` scores; the row count is all-reduced first."""
        n_total = all_reduce_sum(n_masked_patches_tensor.detach().clone().float())
        return sinkhorn_knopp(teacher_output, teacher_temp, n_iterations, n_samples=n_total)

    def forward_masked(
        self,
        student_patch_tokens_masked: torch.Tensor,
        teacher_patch_tokens_masked: torch.Tensor,
        student_masks_flat: torch.Tensor,
        n_masked_patches: int | None = None,
        masks_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Weighted cross-entropy over masked tokens ``[M, K]`` (student logits, teacher probabilities).

        Each image's masked tokens weigh ``1 / (#masked in that image)`` (``masks_weight``, computed from
        ``student_masks_flat [n_images, N]`` when not given); the weighted sum is divided by the number of
        images, so every image counts once whatever its mask size. ``n_masked_patches`` drops padding rows.
        """
        if n_masked_patches is not None:
            student_patch_tokens_masked = student_patch_tokens_masked[:n_masked_patches]
            teacher_patch_tokens_masked = teacher_patch_tokens_masked[:n_masked_patches]
        per_token = soft_cross_entropy(student_patch_tokens_masked, teacher_patch_tokens_masked, self.student_temp)
        if masks_weight is None:
            masks = student_masks_flat.bool()
            per_image = 1.0 / masks.sum(dim=-1).clamp(min=1.0)
            masks_weight = per_image.unsqueeze(-1).expand_as(masks)[masks]
        if per_token.shape[0] != masks_weight.shape[0]:
            raise ValueError(
                f"iBOTPatchLoss: {per_token.shape[0]} masked tokens but {masks_weight.shape[0]} mask weights"
            )
        return (per_token * masks_weight).sum() / student_masks_flat.shape[0]

    @torch.no_grad()
    def update_center(self, teacher_patch_tokens: torch.Tensor) -> None:
        """EMA of the center towards the mean teacher patch score, over all ranks.

        ``[G, N, K]`` tokens are averaged within each group then over groups (upstream's convention); plain
        ``[N, K]`` tokens count as one group. Groups without tokens (no masked patch on a rank: tiny crops)
        say nothing about the center and are left out; when no rank has any, the center is kept.
        """
        tokens = teacher_patch_tokens.float()
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(0)
        has_tokens = tokens.shape[1] > 0
        group_means = tokens.mean(dim=1) if has_tokens else tokens.new_zeros(tokens.shape[0], tokens.shape[2])
        sums = torch.cat([group_means.sum(dim=0), tokens.new_tensor([tokens.shape[0] if has_tokens else 0])])
        all_reduce_sum(sums)
        groups = float(sums[-1])
        if groups == 0:
            return
        batch_center = (sums[:-1] / groups).view(1, 1, -1)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)
