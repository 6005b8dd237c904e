"""Linear probe: the head grid, its optimiser, honest selection and the command line."""

import json

import numpy as np
import pytest
import torch

from dinov2.eval import linear, linear_probe
from dinov2.eval.features import FeatureSet
from dinov2.eval.linear_heads import (BASE_LEARNING_RATES, GridTrainer, HeadSpec, LinearHeadGrid, head_grid,
                                      linear_input, scale_learning_rate)
from dinov2.eval.results import ResultError, load_result, make_result, validate_result
from tests.eval_fixtures import make_separable_tree, make_teacher_export


def test_grid_is_the_dinov2_grid_with_scaled_rates():
    assert len(BASE_LEARNING_RATES) == 13
    specs = head_grid([scale_learning_rate(lr, 128) for lr in BASE_LEARNING_RATES])
    assert len(specs) == 52
    assert {(s.n_last_blocks, s.avgpool) for s in specs} == {(1, False), (1, True), (4, False), (4, True)}
    assert min(s.lr for s in specs) == pytest.approx(0.5e-5) and max(s.lr for s in specs) == pytest.approx(0.05)


def test_heads_follow_torch_sgd_with_cosine_schedule():
    torch.manual_seed(0)
    # heads of different inputs share one masked weight: each must still be exactly its own linear layer
    specs = [HeadSpec(1, True, 0.3), HeadSpec(2, False, 0.05), HeadSpec(1, False, 0.1), HeadSpec(2, True, 0.2)]
    grid = LinearHeadGrid(specs, embed_dim=4, num_classes=3)
    references = []
    for i, spec in enumerate(specs):
        weight, bias = grid.head_parameters(i)
        layer = torch.nn.Linear(weight.shape[1], 3)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        optimizer = torch.optim.SGD(layer.parameters(), lr=spec.lr, momentum=0.9, weight_decay=0)
        references.append((layer, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 6, eta_min=0)))
    trainer = GridTrainer(grid, total_iterations=6)
    for step in range(6):
        cls, means, labels = torch.randn(5, 2, 4), torch.randn(5, 4), torch.randint(0, 3, (5,))
        trainer.step(cls, means, labels)
        for spec, (layer, optimizer, scheduler) in zip(specs, references):
            optimizer.zero_grad()
            inputs = linear_input(cls, means, spec.n_last_blocks, spec.avgpool)
            torch.nn.functional.cross_entropy(layer(inputs), labels).backward()
            optimizer.step()
            scheduler.step()
    for i, (layer, _, _) in enumerate(references):
        weight, bias = grid.head_parameters(i)
        torch.testing.assert_close(weight, layer.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bias, layer.bias, rtol=1e-5, atol=1e-6)
    logits = grid(cls, means)
    for i, (spec, (layer, _, _)) in enumerate(zip(specs, references)):
        torch.testing.assert_close(logits[i], layer(linear_input(cls, means, spec.n_last_blocks, spec.avgpool)),
                                   rtol=1e-5, atol=1e-5)


def _blobs(n_per_class, num_classes, seed, dim=6):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    centres = torch.eye(num_classes, dim) * 3
    cls = centres[labels].unsqueeze(1).repeat(1, 4, 1) + torch.randn(len(labels), 4, dim, generator=generator)
    return FeatureSet(cls, torch.randn(len(labels), dim, generator=generator), labels)


def test_selection_uses_the_holdout_and_never_val():
    settings = linear_probe.ProbeSettings(epochs=3, batch_size=16, base_learning_rates=(1e-4, 1e-2, 1.0), seed=0)
    fit, holdout, val = _blobs(20, 3, 0), _blobs(6, 3, 1), _blobs(8, 3, 2)
    first = linear_probe.run_linear_probe(settings, 6, 3, torch.device("cpu"), fit, holdout, val, progress=False)
    holdout_scores = {name: head["holdout"] for name, head in first["heads"].items()}
    order = list(first["heads"])
    assert first["selected"]["name"] == linear_probe.select_head(holdout_scores, order)
    assert first["final"] == first["heads"][first["selected"]["name"]]["val"]
    # scramble val labels: the selection cannot move, only the val scores do
    scrambled = FeatureSet(val.class_tokens, val.patch_means, val.labels[torch.randperm(len(val))])
    second = linear_probe.run_linear_probe(settings, 6, 3, torch.device("cpu"), fit, holdout, scrambled, progress=False)
    assert second["selected"]["name"] == first["selected"]["name"]
    assert second["final"]["top1"] < first["final"]["top1"]


def test_holdout_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), 10)
    fit, held_out = linear_probe.holdout_split(labels, 0.2, seed=3)
    assert len(held_out) == 8 and sorted(np.bincount(labels[held_out])) == [2, 2, 2, 2]
    assert not set(fit) & set(held_out)
    again, _ = linear_probe.holdout_split(labels, 0.2, seed=3)
    other, _ = linear_probe.holdout_split(labels, 0.2, seed=4)
    assert np.array_equal(fit, again) and not np.array_equal(fit, other)


@pytest.fixture(scope="module")
def probe_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    make_teacher_export(root / "run", 9)
    make_teacher_export(root / "run", 19, seed=1)
    make_separable_tree(root / "data", num_classes=3, train_per_class=10, val_per_class=4)
    return root


def _argv(root, *extra):
    return ["--train-dataset", str(root / "data" / "train"), "--val-dataset", str(root / "data" / "val"),
            "--crop-size", "32", "--num-workers", "0", "--batch-size", "8", "--epochs", "4",
            "--learning-rates", "1e-3", "1e-2", "1e-1", "--holdout-fraction", "0.2", "--quiet", *extra]


def test_cli_learns_a_separable_problem_and_writes_valid_json(probe_setup, capsys):
    out = probe_setup / "out"
    argv = _argv(probe_setup, "--run-dir", str(probe_setup / "run"), "--output-dir", str(out),
                 "--method", "dinov2", "--noise-label", "gauss100")
    assert linear.main(argv) == 0
    files = sorted(p.name for p in out.glob("*.json"))
    assert files == ["linear_training_19.json", "linear_training_9.json"]
    result = load_result(out / "linear_training_19.json")
    assert result["results"]["final"]["top1"] == 100.0
    assert result["method"] == "dinov2" and result["noise"] == "gauss100" and result["epoch"] == pytest.approx(2.0)
    assert len(result["results"]["heads"]) == 2 * 2 * 3
    assert set(result["results"]["knn"]["k"]) == {"10", "20"}
    assert result["settings"]["num_holdout"] == 6
    before = (out / "linear_training_19.json").stat().st_mtime_ns
    assert linear.main(argv) == 0  # everything done: skipped, files untouched
    assert "skip" in capsys.readouterr().out
    assert (out / "linear_training_19.json").stat().st_mtime_ns == before


def test_cli_augment_mode(probe_setup):
    out = probe_setup / "out_augment"
    argv = _argv(probe_setup, "--pretrained-weights", str(probe_setup / "run"), "--output-dir", str(out),
                 "--augment", "--no-knn")
    assert linear.main(argv) == 0
    result = load_result(out / "linear_training_19.json")
    assert result["settings"]["mode"] == "augment" and "knn" not in result["results"]
    assert result["settings"]["augment_scale"] == [0.08, 1.0] and result["settings"]["augment_hflip"] == 0.5
    assert result["results"]["final"]["top1"] >= 75.0


def test_cli_augment_strength_is_an_option_checked_before_work(probe_setup, capsys):
    out = probe_setup / "out_mild"
    argv = _argv(probe_setup, "--pretrained-weights", str(probe_setup / "run"), "--output-dir", str(out),
                 "--augment", "--no-knn", "--augment-scale", "0.5", "1", "--augment-hflip", "0")
    assert linear.main(argv) == 0
    settings = load_result(out / "linear_training_19.json")["settings"]
    assert settings["augment_scale"] == [0.5, 1.0] and settings["augment_hflip"] == 0.0
    bad = _argv(probe_setup, "--pretrained-weights", str(probe_setup / "run"), "--output-dir",
                str(probe_setup / "out_bad"), "--augment", "--augment-scale", "0.5", "1.5")
    assert linear.main(bad) == 2
    assert "augment scale" in capsys.readouterr().err
    assert not (probe_setup / "out_bad").exists()


def test_cli_rejects_bad_input_before_work(probe_setup, tmp_path, capsys):
    argv = ["--train-dataset", str(tmp_path / "missing" / "train"), "--val-dataset", str(tmp_path / "v"),
            "--pretrained-weights", str(probe_setup / "run"), "--output-dir", str(tmp_path / "o")]
    assert linear.main(argv) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_validator_names_the_broken_key():
    settings = linear_probe.ProbeSettings(epochs=1, batch_size=16, base_learning_rates=(1e-2,), n_last_blocks=(1,))
    results = linear_probe.run_linear_probe(settings, 6, 3, torch.device("cpu"), _blobs(4, 3, 0), _blobs(2, 3, 1),
                                      _blobs(2, 3, 2), progress=False)
    result = json.loads(json.dumps(make_result("linear", "ckpt.pth", {}, results, method="m", noise="gauss50")))
    validate_result(result)
    del result["results"]["best_on_val"]
    with pytest.raises(ResultError, match="best_on_val"):
        validate_result(result, "x.json")
