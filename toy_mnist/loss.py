"""The toy SSL objective: VICReg-like invariance plus covariance-to-identity, with no projector."""

from __future__ import annotations

from typing import NamedTuple

import torch

DEFAULT_COVARIANCE_WEIGHT = 0.5


class ToyLoss(NamedTuple):
    total: torch.Tensor
    invariance: torch.Tensor
    covariance: torch.Tensor


def invariance_term(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared L2 distance between paired embeddings (summed over dimensions)."""
    return (z1 - z2).pow(2).sum(dim=1).mean()


def covariance_term(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance between the covariance of both views stacked and the identity.

    The diagonal is included, so it also pulls every dimension's variance to 1 (no separate variance term).
    """
    z = torch.cat([z1, z2], dim=0)
    z = z - z.mean(dim=0, keepdim=True)
    cov = z.T @ z / z.shape[0]
    eye = torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)
    return (cov - eye).pow(2).sum()


def toy_ssl_loss(z1: torch.Tensor, z2: torch.Tensor, covariance_weight: float = DEFAULT_COVARIANCE_WEIGHT) -> ToyLoss:
    """``invariance + covariance_weight * covariance`` for two views' embeddings of shape [B, D]."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"expected two [B, D] embeddings of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    invariance = invariance_term(z1, z2)
    covariance = covariance_term(z1, z2)
    return ToyLoss(invariance + covariance_weight * covariance, invariance, covariance)
