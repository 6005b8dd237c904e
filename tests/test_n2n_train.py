"""train.py: exact resume, checkpoint contents, the noisy-only data path and clear errors."""

import json
from pathlib import Path

import numpy as np
import torch

from Neighbor2Neighbor import train as train_module
from Neighbor2Neighbor.weights import load_checkpoint, load_denoiser
from utils.image_io import save_png_atomic


def _noisy_folder(root: Path, count: int = 8, size: int = 20) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        save_png_atomic(rng.integers(0, 256, (size, size + 2 * (i % 2), 3), dtype=np.uint8),
                        root / f"class{i % 2}" / f"img{i}.png")
    return root


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data-dir", str(data), "--output-dir", str(out), "--epochs", "2", "--batch-size", "4",
            "--patch-size", "16", "--n-feature", "8", "--workers", "0", "--device", "cpu", "--no-progress", *extra]


def test_two_epochs_straight_equal_one_epoch_then_resume(tmp_path):
    data = _noisy_folder(tmp_path / "noisy")
    assert train_module.main(_args(data, tmp_path / "straight")) == 0
    assert train_module.main(_args(data, tmp_path / "resumed", "--stop-after-epochs", "1")) == 0
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    assert train_module.main(_args(data, tmp_path / "resumed")) == 0
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert straight["epoch"] == resumed["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert torch.equal(straight["mask_generator"], resumed["mask_generator"])
    assert straight["optimizer"]["state"][0]["step"] == resumed["optimizer"]["state"][0]["step"]
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert [r["loss"] for r in lines] == [r["loss"] for r in reference]
    # a finished run returns at once, and the weights load into a fresh model with plain key names
    assert train_module.main(_args(data, tmp_path / "resumed")) == 0
    assert not any(key.startswith("module.") for key in resumed["model"])
    assert isinstance(load_denoiser(tmp_path / "resumed" / "last.pt"), torch.nn.Module)


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    data = _noisy_folder(tmp_path / "noisy")
    assert train_module.main(_args(data, tmp_path / "run", "--stop-after-epochs", "1")) == 0
    assert train_module.main(_args(data, tmp_path / "run", "--lr", "1e-2")) == 2
    assert "lr" in capsys.readouterr().err


def test_resume_with_another_validation_setting_is_refused(tmp_path, capsys):
    """metrics.jsonl would mix two settings' PSNR and best.pt would be chosen across them."""
    data, clean = _noisy_folder(tmp_path / "noisy"), _noisy_folder(tmp_path / "clean", count=2, size=24)
    validation = ["--val-clean", str(clean), "--val-noise", "gauss50"]
    assert train_module.main(_args(data, tmp_path / "run", *validation, "--stop-after-epochs", "1")) == 0
    assert train_module.main(_args(data, tmp_path / "run", "--val-clean", str(clean), "--val-noise", "gauss25")) == 2
    assert "val_noise: 'gauss50' -> 'gauss25'" in capsys.readouterr().err
    assert train_module.main(_args(data, tmp_path / "run", *validation)) == 0  # the same setting resumes


def test_validation_metrics_and_small_image_policies(tmp_path, capsys):
    data = _noisy_folder(tmp_path / "noisy", size=20)
    clean = _noisy_folder(tmp_path / "clean", count=2, size=24)
    out = tmp_path / "run"
    assert train_module.main(_args(data, out, "--epochs", "1", "--val-clean", str(clean),
                                   "--val-noise", "gauss50")) == 0
    record = json.loads((out / "metrics.jsonl").read_text())
    assert {"loss", "loss_rec", "loss_reg", "reg_weight", "lr", "val_psnr", "val_ssim"} <= record.keys()
    assert (out / "best.pt").is_file() and (out / "config.json").is_file()
    # crops of 24 px: every 20 px image is skipped on request, which leaves nothing to train on
    assert train_module.main(_args(data, tmp_path / "skip", "--patch-size", "24", "--small-images", "skip")) == 2
    assert "all 8 skipped" in capsys.readouterr().err


def test_bad_inputs_fail_before_any_work(tmp_path, capsys):
    data = _noisy_folder(tmp_path / "noisy")
    assert train_module.main(_args(tmp_path / "missing", tmp_path / "a")) == 2
    assert "missing" in capsys.readouterr().err
    assert train_module.main(_args(data, tmp_path / "b", "--patch-size", "15")) == 2
    assert "--patch-size" in capsys.readouterr().err
    (data / "class0" / "broken.png").write_bytes(b"not a png")
    assert train_module.main(_args(data, tmp_path / "c")) == 2
    assert "broken.png" in capsys.readouterr().err
    assert not (tmp_path / "c" / "last.pt").exists()


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    data = _noisy_folder(tmp_path / "noisy")
    out = tmp_path / "run"
    assert train_module.main(_args(data, out, "--stop-after-epochs", "1", "--save-every", "1")) == 0
    assert (out / "epoch_001.pt").is_file()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    assert train_module.main(_args(data, out)) == 2  # an unwritable output folder: one line, exit status 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: disk full"
    monkeypatch.undo()
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    expected = [".lock", "config.json", "epoch_001.pt", "last.pt", "log.txt", "metrics.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == expected
    assert train_module.main(_args(data, out)) == 0  # the rerun resumes from epoch 1 and drops the stale log line
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_non_finite_loss_stops_before_the_step_and_the_checkpoint(tmp_path, monkeypatch, capsys):
    data = _noisy_folder(tmp_path / "noisy")
    real_loss = train_module.training_loss

    def poisoned(*args, **kwargs):
        terms = real_loss(*args, **kwargs)
        return type(terms)(terms.total * float("nan"), terms.reconstruction, terms.regularizer)

    monkeypatch.setattr(train_module, "training_loss", poisoned)
    assert train_module.main(_args(data, tmp_path / "run")) == 1
    assert "non-finite loss at epoch 1, step 1" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_the_number_of_workers_does_not_change_the_run(tmp_path):
    data = _noisy_folder(tmp_path / "noisy")
    assert train_module.main(_args(data, tmp_path / "w0", "--epochs", "1")) == 0
    assert train_module.main(_args(data, tmp_path / "w2", "--epochs", "1", "--workers", "2")) == 0
    first = load_checkpoint(tmp_path / "w0" / "last.pt")["model"]
    second = load_checkpoint(tmp_path / "w2" / "last.pt")["model"]
    assert all(torch.equal(first[key], second[key]) for key in first)
