"""A rerun into a finished output never passes off the old result as the new request's: the request is stored with
each result and compared, and a different one is refused with exit 2 naming what differs."""

import pytest

from dinov2.eval import linear
from dinov2.eval.results import load_result
from tests.eval_fixtures import make_separable_tree, make_teacher_export


@pytest.fixture(scope="module")
def probe_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("stale")
    make_teacher_export(root / "run", 9)
    make_teacher_export(root / "other_run", 9, seed=1)
    make_separable_tree(root / "data", num_classes=2, train_per_class=6, val_per_class=2)
    make_separable_tree(root / "other_data", num_classes=2, train_per_class=6, val_per_class=2, seed=1)
    return root


def _argv(root, out, *extra, weights="run", data="data"):
    return ["--train-dataset", str(root / data / "train"), "--val-dataset", str(root / data / "val"),
            "--pretrained-weights", str(root / weights), "--output-dir", str(out), "--crop-size", "32",
            "--num-workers", "0", "--batch-size", "4", "--epochs", "1", "--learning-rates", "1e-2",
            "--holdout-fraction", "0.25", "--quiet", *extra]


@pytest.mark.parametrize("change, named", [
    (dict(extra=("--epochs", "2")), "--epochs"),
    (dict(extra=("--learning-rates", "1e-1")), "--learning-rates"),
    (dict(data="other_data"), "--train-dataset"),
    (dict(weights="other_run"), "--pretrained-weights"),
    (dict(extra=("--method", "nc")), "--method"),
])
def test_a_rerun_with_another_request_is_refused_naming_the_option(probe_tree, tmp_path, capsys, change, named):
    out = tmp_path / "out"
    assert linear.main(_argv(probe_tree, out)) == 0
    before = (out / "linear_training_9.json").read_bytes()
    capsys.readouterr()
    assert linear.main(_argv(probe_tree, out, *change.get("extra", ()), weights=change.get("weights", "run"),
                             data=change.get("data", "data"))) == 2
    error = capsys.readouterr().err
    assert named in error and "--overwrite" in error and "linear_training_9.json" in error
    assert (out / "linear_training_9.json").read_bytes() == before  # the old result is kept as it was


def test_the_same_request_skips_and_overwrite_replaces(probe_tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert linear.main(_argv(probe_tree, out)) == 0
    assert linear.main(_argv(probe_tree, out, "--num-workers", "1")) == 0  # workers change no number
    assert "skip" in capsys.readouterr().out
    assert linear.main(_argv(probe_tree, out, "--epochs", "2", "--overwrite")) == 0
    assert load_result(out / "linear_training_9.json")["request"]["epochs"] == 2
