"""Weighted k-NN classification and the k-NN command line."""

import pytest
import torch

from dinov2.eval import knn, linear
from dinov2.eval.knn_classifier import knn_accuracies
from dinov2.eval.results import load_result
from tests.eval_fixtures import make_separable_tree, make_teacher_export


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


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_knn_help_lists_no_linear_probe_flag_and_linear_help_lists_both(capsys):
    knn_help = _help(knn.main, capsys)
    assert "--nb-knn" in knn_help and "--temperature" in knn_help and "--run-dir" in knn_help
    for flag in ("--learning-rates", "--augment", "--epochs", "--holdout-fraction", "--no-knn", "linear probe:"):
        assert flag not in knn_help, flag
    linear_help = _help(linear.main, capsys)
    for flag in ("--learning-rates", "--augment", "--holdout-fraction", "--no-knn", "--nb-knn", "--temperature"):
        assert flag in linear_help, flag


def test_knn_cli_writes_a_result_without_linear_probe_settings(tmp_path):
    checkpoint = make_teacher_export(tmp_path / "run", 9)
    data = make_separable_tree(tmp_path / "data", num_classes=3, train_per_class=6, val_per_class=3)
    argv = ["--pretrained-weights", str(checkpoint), "--train-dataset", str(data / "train"),
            "--val-dataset", str(data / "val"), "--output-dir", str(tmp_path / "out"), "--crop-size", "32",
            "--num-workers", "0", "--batch-size", "8", "--nb-knn", "1", "5", "--device", "cpu", "--quiet"]
    assert knn.main(argv) == 0
    result = load_result(tmp_path / "out" / "knn_training_9.json")
    assert result["protocol"] == "knn" and set(result["results"]["k"]) == {"1", "5"}
    assert result["settings"]["precision"] == "fp32" and result["settings"]["nb_knn"] == [1, 5]
    assert "epochs" not in result["settings"] and "mode" not in result["settings"]
