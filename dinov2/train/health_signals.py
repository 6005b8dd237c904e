"""Signals of whether a run learns, as pure functions of embeddings: effective rank (RankMe) and leave-one-out
k-NN top-1 on a labelled held-out set; the DINO targets' entropy comes from the training step itself.

RankMe (Garrido et al., 2023) is ``exp(H(p))`` with ``p`` the singular values of the embedding matrix divided by
their sum: 1 when every image gets the same embedding (up to scale), up to ``min(N, D)`` when they spread evenly.
It is written here (a few lines over ``torch.linalg.svdvals``): lightly and torchmetrics do not ship it, and
stable-pretraining's RankMe is a Lightning callback that would bring Lightning's trainer into this one.
"""

from __future__ import annotations

import math

import torch

from dinov2.eval.knn_classifier import knn_accuracies

RANKME_EPSILON = 1e-7  # the RankMe paper's: keeps log(p) finite for the zero singular values


@torch.no_grad()
def effective_rank(embeddings: torch.Tensor, epsilon: float = RANKME_EPSILON) -> float:
    """RankMe of ``embeddings [N, D]`` (N >= 2): between 1 (collapse) and ``min(N, D)``; features are not
    centred, as in the paper (a common offset counts as one direction)."""
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"effective rank needs [N >= 2, D] embeddings, got {tuple(embeddings.shape)}")
    singular = torch.linalg.svdvals(embeddings.double())
    if float(singular.sum()) == 0.0:
        return 1.0  # every embedding is zero: one (degenerate) direction
    p = singular / singular.sum() + epsilon
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def leave_one_out_knn_top1(features: torch.Tensor, labels: torch.Tensor, k: int, temperature: float,
                           num_classes: int) -> float:
    """k-NN top-1 (%) of every sample against all the others (the DINO protocol's weighted vote): a held-out set
    scores itself, so no second labelled set is needed."""
    accuracies = knn_accuracies(features, labels, features, labels, ks=[k], temperature=temperature,
                                num_classes=num_classes, exclude_self=True)
    return accuracies[str(k)]["top1"]


def uniform_entropy(n_prototypes: int) -> float:
    """The entropy (nats) of uniform targets over ``n_prototypes``: ln(K)."""
    return math.log(n_prototypes)
