"""Sinkhorn-Knopp normalisation of teacher scores (the SwAV / DINOv2 alternative to centering)."""

from __future__ import annotations

import torch

from utils.distributed import all_reduce_sum


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor, temperature: float, n_iterations: int = 3, n_samples: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Turn teacher scores ``[B, K]`` into soft assignments ``[B, K]`` with balanced prototypes.

    ``Q = exp(scores / temperature)`` is alternately rescaled so that every prototype (column) receives
    ``1/K`` of the mass and every sample (row) ``1/B``; at the end each row is a probability vector.
    Sums run over all ranks under torch.distributed. ``n_samples`` is the global number of rows (defaults to
    ``B`` times the world size; iBOT passes the all-reduced number of masked patches).
    """
    q = torch.exp(scores.float() / temperature).t()  # [K, B]
    if n_samples is None:
        n_rows = torch.tensor(float(q.shape[1]), device=q.device)
        n_samples = all_reduce_sum(n_rows)
    elif not isinstance(n_samples, torch.Tensor):
        n_samples = torch.tensor(float(n_samples), device=q.device)
    n_prototypes = q.shape[0]
    q /= all_reduce_sum(q.sum())
    for _ in range(n_iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= n_samples
    q *= n_samples
    return q.t()
