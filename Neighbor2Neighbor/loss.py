"""The Neighbor2Neighbor objective: reconstruction between neighbour sub-images plus a consistency regulariser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from Neighbor2Neighbor.subsampler import generate_mask_pair, generate_subimages


@dataclass(frozen=True)
class LossTerms:
    """The total loss and its two parts (the parts are detached, for logging)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    regularizer: torch.Tensor


def regularizer_weight(epoch: int, epochs: int, increase_ratio: float = 2.0) -> float:
    """The regulariser weight of 1-based ``epoch``: rises linearly to ``increase_ratio`` at the last epoch."""
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch {epoch} is outside 1..{epochs}")
    return epoch / epochs * increase_ratio


def neighbor2neighbor_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    denoised_first: torch.Tensor,
    denoised_second: torch.Tensor,
    gamma: float,
    lambda_rec: float = 1.0,
    lambda_reg: float = 1.0,
) -> LossTerms:
    """L = lambda_rec * mean((f(g1 y) - g2 y)^2) + lambda_reg * gamma * mean((f(g1 y) - g2 y - (g1 f(y) - g2 f(y)))^2).

    ``output`` is f(g1(y)), ``target`` is g2(y), and ``denoised_first`` / ``denoised_second`` are g1(f(y)) /
    g2(f(y)) computed without gradient. Means are taken over every value, in float32.
    """
    output, target = output.float(), target.float()
    difference = output - target
    reconstruction = difference.square().mean()
    regularizer = (difference - (denoised_first.float() - denoised_second.float())).square().mean()
    total = lambda_rec * reconstruction + lambda_reg * gamma * regularizer
    return LossTerms(total, reconstruction.detach(), regularizer.detach())


def training_loss(
    denoise: Callable[[torch.Tensor], torch.Tensor],
    noisy: torch.Tensor,
    generator: torch.Generator,
    gamma: float,
    lambda_rec: float = 1.0,
    lambda_reg: float = 1.0,
    share: tuple[int, int] = (0, 1),
) -> LossTerms:
    """One Neighbor2Neighbor loss evaluation on a noisy batch; ``denoise`` maps any-size batches to the same size.
    Under DDP, ``noisy`` is share (rank, world size) of the global batch (see ``generate_mask_pair``)."""
    first_mask, second_mask = generate_mask_pair(noisy, generator, share)
    with torch.no_grad():
        denoised = denoise(noisy)
        denoised_first = generate_subimages(denoised, first_mask)
        denoised_second = generate_subimages(denoised, second_mask)
    output = denoise(generate_subimages(noisy, first_mask))
    target = generate_subimages(noisy, second_mask)
    return neighbor2neighbor_loss(output, target, denoised_first, denoised_second, gamma, lambda_rec, lambda_reg)
