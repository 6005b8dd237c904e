"""Weighted k-NN classification."""

import pytest
import torch

from dinov2.eval.knn import knn_accuracies


def test_knn_separates_trivial_clusters():
    generator = torch.Generator().manual_seed(0)
    train_labels = torch.arange(3).repeat_interleave(15)
    test_labels = torch.arange(3).repeat_interleave(5)
    centres = torch.eye(3, 8) * 5
    train = centres[train_labels] + 0.3 * torch.randn(45, 8, generator=generator)
    test = centres[test_labels] + 0.3 * torch.randn(15, 8, generator=generator)
    scores = knn_accuracies(train, train_labels, test, test_labels, ks=(10, 20))
    assert scores == {"10": {"top1": 100.0, "top5": 100.0}, "20": {"top1": 100.0, "top5": 100.0}}
    wrong = knn_accuracies(train, (train_labels + 1) % 3, test, test_labels, ks=(10,))
    assert wrong["10"]["top1"] == 0.0


def test_votes_are_weighted_by_similarity():
    # one very close neighbour of class 0 against two distant ones of class 1
    train = torch.tensor([[1.0, 0.0], [0.5, 0.866], [0.5, -0.866]])
    train_labels = torch.tensor([0, 1, 1])
    query, target = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    assert knn_accuracies(train, train_labels, query, target, ks=(3,), temperature=0.07)["3"]["top1"] == 100.0
    # a very high temperature makes the vote a plain majority
    assert knn_accuracies(train, train_labels, query, target, ks=(3,), temperature=100.0)["3"]["top1"] == 0.0


def test_knn_rejects_bad_arguments():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracies(x, y, x, y, temperature=0)
    with pytest.raises(ValueError, match="k >= 1"):
        knn_accuracies(x, y, x, y, ks=(0,))
