"""Weighted k-NN classification on L2-normalised class tokens (the DINO protocol).

Each test sample takes its k most cosine-similar training samples; neighbour j votes for its class with
weight ``exp(sim_j / T)`` (T = 0.07); the class scores give top-1 and top-5 accuracy.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

DEFAULT_KS = (10, 20)
DEFAULT_TEMPERATURE = 0.07


@torch.no_grad()
def knn_accuracies(
    train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
    test_labels: torch.Tensor, ks: Sequence[int] = DEFAULT_KS, temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None, device: torch.device | str = "cpu", chunk_size: int = 1024,
    exclude_self: bool = False,
) -> dict[str, dict[str, float]]:
    """Top-1/top-5 accuracy (%) for each k; features are L2-normalised here. ``exclude_self``: the test samples are
    the training samples (same rows, same order) and none is its own neighbour (leave-one-out)."""
    if temperature <= 0:
        raise ValueError(f"k-NN temperature must be positive, got {temperature}")
    if not ks or min(ks) < 1:
        raise ValueError(f"k-NN needs k >= 1, got {list(ks)}")
    num_train = train_features.shape[0]
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    if exclude_self and test_features.shape[0] != num_train:
        raise ValueError(f"leave-one-out k-NN needs the same samples twice, got {num_train} and "
                         f"{test_features.shape[0]}")
    max_k = min(max(ks), num_train - 1 if exclude_self else num_train)
    train = F.normalize(train_features.float().to(device), dim=1)
    train_labels = train_labels.to(device)
    top_k = min(5, num_classes)
    correct = {k: [0, 0] for k in ks}
    for start in range(0, test_features.shape[0], chunk_size):
        query = F.normalize(test_features[start:start + chunk_size].float().to(device), dim=1)
        target = test_labels[start:start + chunk_size].to(device)
        similarity = query @ train.T
        if exclude_self:
            rows = torch.arange(query.shape[0], device=similarity.device)
            similarity[rows, rows + start] = -float("inf")
        similarity, neighbours = similarity.topk(max_k, dim=1)
        votes = F.one_hot(train_labels[neighbours], num_classes).float() * (similarity / temperature).exp().unsqueeze(2)
        for k in ks:
            scores = votes[:, : min(k, max_k)].sum(dim=1)
            best = scores.topk(top_k, dim=1).indices
            hits = best == target.view(-1, 1)
            correct[k][0] += int(hits[:, 0].sum())
            correct[k][1] += int(hits.any(dim=1).sum())
    total = max(int(test_labels.shape[0]), 1)
    return {str(k): {"top1": 100.0 * c1 / total, "top5": 100.0 * c5 / total} for k, (c1, c5) in correct.items()}
