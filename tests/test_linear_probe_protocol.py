"""The linear probe's protocols: epochs of a fixed iteration count, val scored during training, the paper preset."""

import pytest
import torch

from dinov2.eval import linear, linear_probe
from dinov2.eval.features import FeatureSet
from dinov2.eval.results import load_result
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from tests.test_eval_linear import _blobs


def _settings(**overrides) -> linear_probe.ProbeSettings:
    values = dict(epochs=3, batch_size=16, base_learning_rates=(1e-3, 1e-1), n_last_blocks=(1,), seed=0)
    return linear_probe.ProbeSettings(**{**values, **overrides})


def test_an_epoch_of_fixed_length_runs_across_passes_and_scores_val_each_period():
    fit, val = _blobs(10, 3, 0), _blobs(4, 3, 1)  # 30 images: 2 batches of 16 per pass
    passes = []
    source = linear_probe.cached_epochs(fit, 16, seed=0)

    def counted(data_pass):
        passes.append(data_pass)
        return source(data_pass)

    settings = _settings(epoch_length=5, eval_period=5)
    assert settings.total_iterations(len(fit)) == 15
    result = linear_probe.run_linear_probe(settings, 6, 3, torch.device("cpu"), None, None, val,
                                           epoch_batches=counted, num_fit=len(fit), progress=False)
    assert passes == list(range(8))  # 15 steps of 2 per pass end inside the eighth pass
    assert [point["iteration"] for point in result["val_curve"]] == [5, 10, 15]
    assert result["best_on_val"]["iteration"] in (5, 10, 15)
    last = result["val_curve"][-1]
    assert max(head["val"]["top1"] for head in result["heads"].values()) == last["top1"]


def test_scoring_val_during_training_leaves_the_heads_unchanged():
    fit, holdout, val = _blobs(12, 3, 0), _blobs(4, 3, 1), _blobs(4, 3, 2)
    plain = linear_probe.run_linear_probe(_settings(), 6, 3, torch.device("cpu"), fit, holdout, val, progress=False)
    scored = linear_probe.run_linear_probe(_settings(eval_period=1), 6, 3, torch.device("cpu"), fit, holdout, val,
                                           progress=False)
    assert scored["heads"] == plain["heads"] and scored["final"] == plain["final"]
    assert "val_curve" not in plain and len(scored["val_curve"]) == _settings().total_iterations(len(fit))


def test_best_on_val_is_the_best_evaluation_and_head_ties_to_the_earlier():
    order = ["a", "b"]
    curve = [(10, {"a": {"top1": 50.0, "top5": 90.0}, "b": {"top1": 70.0, "top5": 95.0}}),
             (20, {"a": {"top1": 70.0, "top5": 95.0}, "b": {"top1": 60.0, "top5": 99.0}}),
             (30, {"a": {"top1": 40.0, "top5": 80.0}, "b": {"top1": 65.0, "top5": 90.0}})]
    assert linear_probe.best_over_curve(curve, order) == (10, "b")
    assert linear_probe.best_over_curve(curve, ["b", "a"]) == (10, "b")
    assert linear_probe.best_over_curve(curve[1:], order) == (20, "a")


def test_an_empty_training_set_is_an_error_not_an_endless_loop():
    empty = FeatureSet(torch.zeros(0, 4, 6), torch.zeros(0, 6), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="no batch"):
        linear_probe.run_linear_probe(_settings(epoch_length=2), 6, 3, torch.device("cpu"), None, None,
                                      _blobs(2, 3, 1), epoch_batches=linear_probe.cached_epochs(empty, 16, 0),
                                      num_fit=0, progress=False)


@pytest.fixture(scope="module")
def probe_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    make_teacher_export(root / "run", 19)
    make_separable_tree(root / "data", num_classes=3, train_per_class=8, val_per_class=4)
    return root


def _argv(root, out, *extra):
    return ["--train-dataset", str(root / "data" / "train"), "--val-dataset", str(root / "data" / "val"),
            "--pretrained-weights", str(root / "run"), "--output-dir", str(out), "--crop-size", "32",
            "--num-workers", "0", "--batch-size", "8", "--epochs", "2", "--learning-rates", "1e-2", "1e-1",
            "--no-knn", "--quiet", *extra]


def test_the_paper_protocol_augments_scores_val_every_epoch_and_keeps_no_holdout(probe_tree):
    out = probe_tree / "paper"
    assert linear.main(_argv(probe_tree, out, "--protocol", "paper", "--epoch-length", "3")) == 0
    result = load_result(out / "linear_training_19.json")
    settings, results = result["settings"], result["results"]
    assert settings["protocol"] == "paper" and settings["mode"] == "augment"
    assert settings["num_holdout"] == 0 and settings["iterations"] == 6 and settings["eval_period"] == 3
    assert [point["iteration"] for point in results["val_curve"]] == [3, 6]
    assert results["selected"]["selected_on"].startswith("val")
    assert results["best_on_val"]["top1"] >= results["final"]["top1"]
    assert results["best_on_val"]["iteration"] in (3, 6)


def test_the_cached_protocol_is_the_default_and_options_override_a_protocol(probe_tree):
    default = probe_tree / "cached"
    assert linear.main(_argv(probe_tree, default)) == 0
    settings = load_result(default / "linear_training_19.json")["settings"]
    assert settings["protocol"] == "cached" and settings["mode"] == "cached"
    assert settings["num_holdout"] == 3 and settings["iterations"] == 2 * 3 and settings["eval_period"] is None
    held_out = probe_tree / "paper_holdout"
    assert linear.main(_argv(probe_tree, held_out, "--protocol", "paper", "--epoch-length", "2",
                             "--holdout-fraction", "0.25")) == 0
    results = load_result(held_out / "linear_training_19.json")["results"]
    assert results["selected"]["selected_on"].startswith("holdout") and len(results["val_curve"]) == 2


@pytest.mark.parametrize("option", ["--epoch-length", "--eval-period"])
def test_a_bad_iteration_count_is_refused_before_work(probe_tree, option, capsys):
    out = probe_tree / "bad"
    assert linear.main(_argv(probe_tree, out, "--protocol", "paper", option, "0")) == 2
    assert option in capsys.readouterr().err and not out.exists()
