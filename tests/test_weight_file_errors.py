"""One error path for weight files of any kind: empty, truncated, text, a pickle that would run code, or a file of
another kind is one line naming the file and what was expected (exit 2), for every reader."""

import os
import pickle

import pytest
import torch

from dinov2.eval import linear
from dinov2.export import main as export_main
from dinov2.train.train import main as train_main
from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor import denoise
from Neighbor2Neighbor.arch_unet import UNet
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from utils.make_toy_dataset import build_toy_dataset
from utils.weights_file import WeightsFileError, load_torch_file

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    teacher = make_teacher_export(root / "run", 9)
    torch.save({"model": UNet(features=8).state_dict(), "model_config": {"features": 8}}, root / "n2n.pt")
    found = {"empty": b"", "truncated": teacher.read_bytes()[:2000], "text": b"not weights\n",
             "runs_code": pickle.dumps({"teacher": RunsCode(root / "RAN")}, protocol=2)}
    paths = {}
    for name, data in found.items():
        paths[name] = root / f"{name}.pth"
        paths[name].write_bytes(data)
    paths.update(n2n=root / "n2n.pt", teacher=teacher, root=root)
    make_separable_tree(root / "data", num_classes=2, train_per_class=4, val_per_class=2)
    build_toy_dataset(root / "digits", limit=1)
    return paths


@pytest.mark.parametrize("kind, says", [("empty", "is empty"), ("truncated", "truncated"),
                                        ("text", "not a torch"), ("runs_code", "posix.system")])
def test_every_damage_is_one_line_naming_the_file(files, kind, says):
    with pytest.raises(WeightsFileError) as error:
        load_torch_file(files[kind], "a test file")
    message = str(error.value)
    assert str(files[kind]) in message and says in message and "expected a test file" in message
    assert "\n" not in message and not (files["root"] / "RAN").exists()


def _one_error_line(capsys, path) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("kind", ["empty", "truncated", "runs_code", "n2n"])
def test_the_probe_and_the_export_name_the_file(files, kind, capsys, tmp_path):
    root = files["root"]
    probe = ["--pretrained-weights", str(files[kind]), "--train-dataset", str(root / "data" / "train"),
             "--val-dataset", str(root / "data" / "val"), "--output-dir", str(tmp_path / "eval"), "--crop-size", "32",
             "--num-workers", "0", "--quiet"]
    assert linear.main(probe) == 2
    _one_error_line(capsys, files[kind])
    assert export_main(["--weights", str(files[kind]), "--output-dir", str(tmp_path / "export")]) == 2
    _one_error_line(capsys, files[kind])


@pytest.mark.parametrize("key, kind", [("MODEL.WEIGHTS", kind) for kind in ("truncated", "teacher", "n2n")]
                         + [(key, kind) for key in ("nct.teacher", "student.pretrained_weights")
                            for kind in ("truncated", "n2n")])  # an encoder export is a backbone the anchor takes
def test_training_names_the_config_key_and_the_file(files, key, kind, capsys, tmp_path):
    digits = files["root"] / "digits"
    extra = [f"{key}={files[kind]}"]
    if key == "nct.teacher":
        extra += ["nct.enabled=true", f"curriculum.phases=[{{dataset_path: '{digits}', epochs: 1, nct: true, "
                                      f"denoised_dataset_path: '{digits}'}}]"]
    argv = ["--config-file", SMOKE, "--output-dir", str(tmp_path / "run"), f"train.dataset_path={digits}",
            "optim.epochs=1", *extra]
    assert train_main(argv) == 2
    line = _one_error_line(capsys, files[kind])
    assert f"config key '{key}'" in line and line.count("config key") == 1
    if kind == "teacher":
        assert "holds an encoder export" in line and "RUN@EPOCH" in line


@pytest.mark.parametrize("kind", ["text", "runs_code", "teacher"])
def test_the_denoiser_names_the_file(files, kind, capsys, tmp_path):
    argv = ["--weights", str(files[kind]), "--src", str(files["root"] / "data"), "--output-dir", str(tmp_path / "d"),
            "--num-workers", "0", "--quiet"]
    assert denoise.main(argv) == 2
    _one_error_line(capsys, files[kind])
