"""Cross-entropy against soft (probability) targets, with a lean forward and backward over many prototypes.

``H(t, softmax(z / T)) = (sum_k t_k) * logsumexp(z / T) - (t . z) / T`` per row. Written as an autograd function
because the composite ``-(t * log_softmax(z / T)).sum(-1)`` allocates and walks four ``[N, K]`` tensors forward
and four backward; with the DINOv2 head's 65,536 prototypes those passes cost as much as the student's backbone
on the CPU (measured with ``bench/train_step.py``). Here the forward works in one float32 ``[N, K]`` buffer
that ends as the softmax backward needs (the memory log_softmax keeps too), and the backward allocates only the
gradient.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def _shifted_float(logits: torch.Tensor) -> torch.Tensor:
    """A fresh float32 ``logits - row max``: as log_softmax, the max goes first, so that every term
    stays at the loss's scale whatever the logits' offset. One pass for float32 logits, two for half ones."""
    row_max = logits.amax(dim=-1, keepdim=True).float()
    if logits.dtype == torch.float32:
        return logits - row_max
    return logits.float().sub_(row_max)


class _SoftCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
        probs = _shifted_float(logits).div_(temperature)
        dot = (targets * probs).sum(dim=-1)
        sum_exp = probs.exp_().sum(dim=-1, keepdim=True)
        mass = targets.sum(dim=-1)
        ctx.temperature, ctx.logits_dtype = temperature, logits.dtype
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(probs.div_(sum_exp), targets, mass)
        return mass * sum_exp.squeeze(-1).log() - dot

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows: torch.Tensor):
        probs, targets, mass = ctx.saved_tensors
        # d/dz = (mass * softmax(z / T) - t) / T
        grad = probs.mul(mass.unsqueeze(-1)).sub_(targets).mul_((grad_rows / ctx.temperature).unsqueeze(-1))
        return grad.to(ctx.logits_dtype), None, None


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-row cross-entropy ``-sum_k targets_k * log_softmax(logits / temperature)_k``, in float32.

    Args:
        logits: student scores ``[..., K]`` (any float dtype; the gradient comes back in that dtype).
        targets: teacher probabilities broadcastable to ``logits`` (``[B, K]`` against ``[L, B, K]`` compares
            every one of ``L`` student rows with the same target, without copying it). Rows need not sum to 1
            (a sum of several teachers' targets gives the sum of their cross-entropies). No gradient flows to
            them.
        temperature: the student temperature (positive).

    Returns:
        ``logits.shape[:-1]`` losses.
    """
    if targets.requires_grad:
        raise ValueError("soft_cross_entropy: targets must not require gradients (they are teacher outputs)")
    if logits.shape[-1] != targets.shape[-1]:
        raise ValueError(f"soft_cross_entropy: {logits.shape[-1]} logits per row but {targets.shape[-1]} targets")
    if torch.broadcast_shapes(logits.shape, targets.shape) != logits.shape:
        raise ValueError(f"soft_cross_entropy: targets {tuple(targets.shape)} do not broadcast to the logits "
                         f"{tuple(logits.shape)}")
    return _SoftCrossEntropy.apply(logits, targets.float(), temperature)
