"""MoCo v3's contrastive loss: each query against the keys of the other view, from every rank.

lightly's ``NTXentLoss`` (used for SimCLR) compares each view with both views of the other images (2N - 2
negatives); MoCo v3 compares a query only with the momentum keys of the other view (N - 1 negatives per rank, all
ranks' keys gathered) and scales the cross-entropy by ``2 * temperature``. lightly has no loss of that form, so it is
written here (a dozen lines; checked against a hand-computed reference in the tests).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_keys(keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's keys concatenated in rank order (no gradient flows to keys), and this rank's offset in them."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys, 0
    gathered = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, keys.contiguous())
    return torch.cat(gathered), dist.get_rank() * keys.shape[0]


def moco_v3_infonce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """``2T * CE(q_i . k_j / T, j = i)`` over l2-normalised ``queries [N, D]`` and (detached) ``keys [N, D]``."""
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must both be [N, D]")
    queries = F.normalize(queries.float(), dim=1)
    all_keys, offset = gather_keys(F.normalize(keys.detach().float(), dim=1))
    logits = queries @ all_keys.T / temperature
    labels = torch.arange(queries.shape[0], device=queries.device) + offset
    return F.cross_entropy(logits, labels) * (2.0 * temperature)
