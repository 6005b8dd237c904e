"""Expected failures end with one line naming the file, key or option and exit status 2 (1 for a run that fails on
its own), no traceback, nothing partial; a rerun after the cause is fixed completes."""

import errno
import io
import os
import re
import subprocess
from pathlib import Path

import pytest

from dinov2.eval import knn, linear
from dinov2.train.train import main as dinov2_main
from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor import train as n2n
from Neighbor2Neighbor.evaluate_psnr import main as psnr_main
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from tests.imagetrees import make_tree
from utils import atomic
from utils.generate_noise import main as generate_main
from utils.image_io import iter_image_files
from utils.make_toy_dataset import build_toy_dataset


def _n2n(data: str, out: Path) -> list[str]:
    return ["--data-dir", data, "--output-dir", str(out), "--epochs", "1", "--batch-size", "4", "--patch-size", "16",
            "--n-feature", "8", "--num-workers", "0", "--device", "cpu", "--quiet"]


def _one_error_line(stderr: str, *named: str) -> None:
    lines = [line for line in re.split(r"[\r\n]", stderr) if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    assert all(name in lines[0] for name in named), lines[0]


class FullDisk(io.FileIO):
    """A file whose writes fail as on a full disk (every atomic write of the project goes through one)."""

    def __init__(self, path, mode, encoding=None):
        super().__init__(path, "w")

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_a_rerun_completes(digits, tmp_path, monkeypatch, capsys):
    clean = make_tree(tmp_path / "clean", classes=2, per_class=4)
    make_teacher_export(tmp_path / "export", 9)
    data = make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2)
    jobs = {
        "n2n": lambda out: n2n.main(_n2n(f"noisy:gauss50:{clean}:train", out)),
        "dinov2": lambda out: dinov2_main(["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"),
                                           "--output-dir", str(out), f"train.dataset_path={digits}",
                                           "optim.epochs=1"]),
        "knn": lambda out: knn.main(["--pretrained-weights", str(tmp_path / "export"), "--train-dataset",
                                     str(data / "train"), "--val-dataset", str(data / "val"), "--output-dir",
                                     str(out), "--crop-size", "32", "--num-workers", "0", "--device", "cpu",
                                     "--quiet"]),
    }
    for name, job in jobs.items():
        out = tmp_path / name
        monkeypatch.setattr(atomic, "open", FullDisk, raising=False)
        assert job(out) == 2, name
        _one_error_line(capsys.readouterr().err, "No space left on device")
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name], name
        monkeypatch.undo()
        assert job(out) == 0, name  # the cause is fixed: the rerun completes


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs where the machine allows mounting one (as root), else the test is skipped."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the ENOSPC injection test covers the full disk)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_noise_generation_on_a_real_full_disk(tmp_path, small_tmpfs, capsys):
    clean = tmp_path / "photos"
    for i in range(12):  # noisy 128 x 128 PNGs barely compress: 12 of them overflow 256 KiB
        make_tree(clean / f"part{i}", classes=1, per_class=1, splits=("train",), labels=False)
    from PIL import Image
    import numpy as np
    for i, rel in enumerate(iter_image_files(clean)):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(clean / rel)
    args = ["--src", str(clean), "--noise", "gauss100", "--out-prefix", str(small_tmpfs / "noisy"),
            "--num-workers", "0", "--quiet"]
    assert generate_main(args) == 2
    _one_error_line(capsys.readouterr().err, "No space left on device")
    written = small_tmpfs / "noisy-gauss100"
    assert not [name for _, _, files in os.walk(written) for name in files if ".tmp-" in name]
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_tmpfs)], check=True)
    assert generate_main(args) == 0
    assert len(list(iter_image_files(written))) == 12


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("failures") / "digits"
    build_toy_dataset(root, limit=2)
    return root


@pytest.mark.parametrize("override, key", [
    ("teacher.teacher_temp=0", "teacher.teacher_temp"), ("optim.base_lr=-0.1", "optim.base_lr"),
    ("optim.weight_decay=-0.01", "optim.weight_decay"), ("teacher.warmup_teacher_temp=0", "warmup_teacher_temp"),
])
def test_impossible_training_values_are_refused(digits, tmp_path, capsys, override, key):
    argv = ["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir", str(tmp_path / "run"),
            f"train.dataset_path={digits}", override]
    assert dinov2_main(argv) == 2
    _one_error_line(capsys.readouterr().err, key)
    assert not (tmp_path / "run").exists()


def test_an_unreadable_training_image_is_named_in_one_line(digits, tmp_path, capsys):
    tree = tmp_path / "digits"
    os.system(f"cp -r {digits} {tree}")
    for relpath in iter_image_files(tree / "train"):  # whichever image the sampler draws first
        (tree / "train" / relpath).write_bytes(b"not an image")
    argv = ["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir", str(tmp_path / "run"),
            f"train.dataset_path={tree}", "optim.epochs=1"]
    assert dinov2_main(argv) == 2
    _one_error_line(capsys.readouterr().err, "cannot read image", str(tree / "train"))


def test_probe_options_that_cannot_work_are_refused(tmp_path, capsys):
    make_teacher_export(tmp_path / "run", 9)  # vit_tiny_4blocks, patch 8
    data = make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2)
    base = ["--pretrained-weights", str(tmp_path / "run"), "--train-dataset", str(data / "train"), "--val-dataset",
            str(data / "val"), "--output-dir", str(tmp_path / "out"), "--crop-size", "32", "--num-workers", "0",
            "--device", "cpu", "--quiet", "--epochs", "1", "--no-knn"]
    cases = {"--holdout-fraction": ["--holdout-fraction", "0.01"], "--crop-size 36": ["--crop-size", "36"],
             "--n-last-blocks 6": ["--n-last-blocks", "6"], "--learning-rates": ["--learning-rates", "-0.1"]}
    for named, extra in cases.items():
        assert linear.main(base + extra) == 2, named
        _one_error_line(capsys.readouterr().err, named)
    assert not list((tmp_path / "out").glob("*.json"))
    assert linear.main(base + ["--learning-rates", "1e39", "--holdout-fraction", "0"]) == 1  # every head diverges
    assert "every linear head diverged" in capsys.readouterr().err and not list((tmp_path / "out").glob("*.json"))
    (data / "val" / "class1" / "001.png").write_bytes(b"broken")
    assert linear.main(base + ["--holdout-fraction", "0.5"]) == 2
    _one_error_line(capsys.readouterr().err, "001.png")


def test_negative_blur_sigmas_are_refused(tmp_path, capsys):
    clean = make_tree(tmp_path / "clean", classes=1, per_class=1)
    with pytest.raises(SystemExit) as exit_info:
        psnr_main(["--clean", str(clean), "--noisy", f"noisy:gauss50:{clean}", "--blur-sigmas", "-1"])
    assert exit_info.value.code == 2 and "--blur-sigmas" in capsys.readouterr().err
