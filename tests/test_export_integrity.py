"""Exports are never torn nor stale: config.json carries the digest of the weights it was written with (a kill
between the two files of a re-export is named on load), and a run directory is never taken for an export."""

import json
import shutil

import pytest
import torch

from dinov2.eval import linear
from dinov2.export import main as export_main
from dinov2.hub import EXPORT_CONFIG, EXPORT_WEIGHTS, load_backbone
from dinov2.models.backbone_weights import BackboneWeightsError
from tests.eval_fixtures import make_separable_tree, make_teacher_export


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, b.state_dict()[k]) for k, x in a.state_dict().items())


def test_weights_of_a_re_export_beside_the_old_config_are_refused_naming_the_files(tmp_path, capsys):
    make_teacher_export(tmp_path / "run_a", 9)
    make_teacher_export(tmp_path / "run_b", 19, seed=1)
    assert export_main(["--weights", str(tmp_path / "run_a"), "--output-dir", str(tmp_path / "export")]) == 0
    assert export_main(["--weights", str(tmp_path / "run_b"), "--output-dir", str(tmp_path / "newer")]) == 0
    # the re-export from run_b killed after its weights landed and before its config did
    shutil.copyfile(tmp_path / "newer" / EXPORT_WEIGHTS, tmp_path / "export" / EXPORT_WEIGHTS)
    with pytest.raises(BackboneWeightsError, match="interrupted"):
        load_backbone(tmp_path / "export")
    make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2)
    capsys.readouterr()
    probe = ["--pretrained-weights", str(tmp_path / "export"), "--train-dataset", str(tmp_path / "data" / "train"),
             "--val-dataset", str(tmp_path / "data" / "val"), "--output-dir", str(tmp_path / "eval"),
             "--crop-size", "32", "--num-workers", "0", "--epochs", "1", "--quiet", "--holdout-fraction", "0.5"]
    assert linear.main(probe) == 2
    assert f"{tmp_path / 'export' / EXPORT_WEIGHTS}" in capsys.readouterr().err
    assert not list((tmp_path / "eval").glob("linear_*.json"))  # nothing labelled with the old iteration


def test_an_export_written_before_digests_still_loads(tmp_path):
    make_teacher_export(tmp_path / "run", 9)
    assert export_main(["--weights", str(tmp_path / "run"), "--output-dir", str(tmp_path / "export")]) == 0
    config = json.loads((tmp_path / "export" / EXPORT_CONFIG).read_text())
    del config["weights_sha256"]
    (tmp_path / "export" / EXPORT_CONFIG).write_text(json.dumps(config))
    assert _same_weights(load_backbone(tmp_path / "export"), load_backbone(tmp_path / "run"))


def test_an_export_into_a_run_directory_is_refused_and_one_found_there_is_ignored(tmp_path, capsys):
    run = tmp_path / "run"
    make_teacher_export(run, 9)
    assert export_main(["--weights", str(run), "--output-dir", str(run)]) == 2
    assert "run directory" in capsys.readouterr().err
    # an export left inside the run by an earlier version, then the run resumed and exported a newer teacher
    assert export_main(["--weights", str(run), "--output-dir", str(tmp_path / "export")]) == 0
    for name in (EXPORT_WEIGHTS, EXPORT_CONFIG):
        shutil.copyfile(tmp_path / "export" / name, run / name)
    make_teacher_export(run, 19, seed=1)
    with pytest.warns(UserWarning, match="run directory"):
        model = load_backbone(run)
    assert _same_weights(model, load_backbone(run / "eval" / "training_19" / "teacher_checkpoint.pth"))
    assert not _same_weights(model, load_backbone(run / EXPORT_WEIGHTS))  # the stale one, asked for by its file
