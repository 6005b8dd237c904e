"""Label-efficient protocols: few-shot draws, k-NN and logistic regression against direct computations, the
regression on all labels with C chosen on held-out training images, and the command line end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from dinov2.eval.few_shot import main as few_shot_main
from dinov2.eval.label_efficient import (ONE_SHOT_C, choose_c_by_folds, few_shot_indices, few_shot_scores,
                                         logistic_regression_all)
from dinov2.eval.results import load_result
from exps import report
from tests.eval_fixtures import make_separable_tree, make_teacher_export


def _clusters(per_class: int, classes: int = 3, seed: int = 0, spread: float = 1.5) -> tuple[torch.Tensor, ...]:
    centres = torch.randn(classes, 8, generator=torch.Generator().manual_seed(99)) * 2  # shared by every split
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return centres[labels] + spread * torch.randn(len(labels), 8, generator=generator), labels


def test_few_shot_draws_take_that_many_images_of_each_class_by_seed():
    labels = np.repeat(np.arange(4), [5, 7, 3, 9])
    draw = few_shot_indices(labels, 3, seed=1)
    assert np.bincount(labels[draw]).tolist() == [3, 3, 3, 3] and len(set(draw)) == 12
    assert np.array_equal(draw, few_shot_indices(labels, 3, seed=1))
    assert not np.array_equal(draw, few_shot_indices(labels, 3, seed=2))
    with pytest.raises(ValueError, match="class 2 has 3 training image"):
        few_shot_indices(labels, 4, seed=0)


def _direct_knn_top1(train_x, train_y, val_x, val_y, k, temperature):
    train_u, val_u = F.normalize(train_x, dim=1), F.normalize(val_x, dim=1)
    hits = 0
    for query, label in zip(val_u, val_y):
        top = (train_u @ query).topk(k)
        weights = (top.values / temperature).exp()
        votes = torch.zeros(int(train_y.max()) + 1).index_add_(0, train_y[top.indices], weights)
        hits += int(votes.argmax() == label)
    return 100.0 * hits / len(val_y)


def _direct_logistic_top1(train_x, train_y, val_x, val_y, c):
    unit = lambda x: F.normalize(x, dim=1).double().numpy()  # noqa: E731
    model = LogisticRegression(C=c, max_iter=1000).fit(unit(train_x), train_y.numpy())
    return 100.0 * float((model.predict(unit(val_x)) == val_y.numpy()).mean())


def test_few_shot_scores_match_a_direct_computation_of_every_draw():
    (train, train_y), (val, val_y) = _clusters(12, seed=0), _clusters(10, seed=1)
    scores = few_shot_scores(train, train_y, val, val_y, 3, shots=[1, 4], draws=3, k=5, temperature=0.1, seed=7)
    for n_shots in (1, 4):
        block = scores[str(n_shots)]
        for draw in range(3):
            idx = torch.as_tensor(few_shot_indices(train_y.numpy(), n_shots, 7000 + draw))
            assert block["knn"]["values"][draw] == pytest.approx(
                _direct_knn_top1(train[idx], train_y[idx], val, val_y, min(5, len(idx)), 0.1))
            assert block["logreg"]["values"][draw] == pytest.approx(
                _direct_logistic_top1(train[idx], train_y[idx], val, val_y, block["C"][draw]))
        values = block["knn"]["values"]
        half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
        assert block["knn"]["mean"] == pytest.approx(np.mean(values))
        assert block["knn"]["high"] - block["knn"]["mean"] == pytest.approx(half)
    assert scores["1"]["C"] == [ONE_SHOT_C] * 3  # a single image per class cannot be split
    assert scores["4"]["logreg"]["mean"] > 100 / 3 + 20  # clusters: well above chance from 4 shots


def test_the_c_of_a_draw_is_chosen_on_its_own_folds():
    x, y = _clusters(6, seed=3, spread=0.2)
    unit = F.normalize(x, dim=1).double().numpy()
    assert choose_c_by_folds(unit, y.numpy(), [1e-4, 1.0, 100.0], seed=0) != 1e-4  # separable: weak penalties win
    assert choose_c_by_folds(unit[::6], y.numpy()[::6], [1e-4, 1.0], seed=0) == ONE_SHOT_C


def test_logistic_regression_on_all_labels_chooses_c_on_held_out_training_images():
    (train, train_y), (val, val_y) = _clusters(30, seed=4, spread=4.0), _clusters(30, seed=5, spread=4.0)
    cs = [1e-3, 1.0, 100.0]
    result = logistic_regression_all(train, train_y, val, val_y, cs, holdout_fraction=0.2, seed=3)
    fit, held = train_test_split(np.arange(90), test_size=0.2, stratify=train_y.numpy(), random_state=3)
    holdout = {c: _direct_logistic_top1(train[fit], train_y[fit], train[held], train_y[held], c) for c in cs}
    best = max(cs, key=lambda c: (holdout[c], -c))
    assert result["holdout_top1"] == {str(c): pytest.approx(v) for c, v in holdout.items()} and result["C"] == best
    assert result["top1"] == pytest.approx(_direct_logistic_top1(train, train_y, val, val_y, best))
    assert result["top1"] != pytest.approx(_direct_logistic_top1(train[fit], train_y[fit], val, val_y, best))


def test_the_command_line_writes_one_valid_result_per_checkpoint(tmp_path, capsys):
    checkpoint = make_teacher_export(tmp_path / "run", 9)
    data = make_separable_tree(tmp_path / "data", num_classes=3, train_per_class=6, val_per_class=3)
    out = tmp_path / "out"
    argv = ["--pretrained-weights", str(checkpoint), "--train-dataset", str(data / "train"), "--val-dataset",
            str(data / "val"), "--output-dir", str(out), "--crop-size", "32", "--shots", "1", "3", "--draws", "2",
            "--nb-knn", "5", "--logreg-c", "1", "100", "--holdout-fraction", "0.34", "--num-workers", "0", "--quiet"]
    assert few_shot_main(argv) == 0
    (path,) = out.glob("few_shot_*.json")
    result = load_result(path)
    assert result["protocol"] == "few_shot" and set(result["results"]["shots"]) == {"1", "3"}
    assert len(result["results"]["shots"]["3"]["logreg"]["values"]) == 2 and "logreg_all" in result["results"]
    assert result["settings"]["shots"] == [1, 3] and result["request"]["draws"] == 2
    assert report.main([str(out), "--output-dir", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "few_shot.md").read_text()
    assert "| 3-shot k-NN | 3-shot logreg |" in table and "| logreg, all |" in table
    assert f"{result['results']['shots']['3']['logreg']['mean']:.1f} [" in table
    assert few_shot_main(argv) == 0 and "skip" in capsys.readouterr().out  # done: read back, not recomputed
    assert few_shot_main([*argv, "--draws", "3"]) == 2  # another request into the same folder
    assert "--draws" in capsys.readouterr().err
    assert few_shot_main([*argv, "--shots", "7", "--output-dir", str(tmp_path / "seven")]) == 2  # 6 per class
    assert "fewer than 7 shots" in capsys.readouterr().err
