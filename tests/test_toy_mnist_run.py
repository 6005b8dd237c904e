"""End-to-end tests of the toy MLP experiment: arms, curriculum hand-over, results files, resume, script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import toy_mnist.experiment as experiment
from toy_mnist import aggregate, run
from toy_mnist.budget import make_budget
from toy_mnist.data import ToyData
from toy_mnist.experiment import ARMS, new_encoder, run_repetition
from toy_mnist.train import NonFiniteLossError, checkpoint_path, pretrain
from tests.environment import command_env
from tests.test_toy_mnist_units import write_idx

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def tiny_data(n_train: int = 48, n_test: int = 20) -> ToyData:
    generator = torch.Generator().manual_seed(0)
    return ToyData(torch.rand(n_train, 784, generator=generator), torch.arange(n_train) % 10,
                   torch.rand(n_test, 784, generator=generator), torch.arange(n_test) % 10, source="synthetic")


def write_tiny_mnist(root: Path, n_train: int = 64, n_test: int = 20) -> Path:
    rng = np.random.default_rng(1)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(n_train) % 10)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10)
    return root


def test_curriculum_starts_from_the_clean_switch_checkpoint(tmp_path, monkeypatch):
    started: dict[str, dict[str, torch.Tensor]] = {}
    real_pretrain = experiment.pretrain

    def spy(model, images, **kwargs):
        started[kwargs["arm"]] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_pretrain(model, images, **kwargs)

    monkeypatch.setattr(experiment, "pretrain", spy)
    budget = make_budget("epochs", 48, batch_size=16, epochs=4, switch_epoch=2, probe_epochs=1)
    summary = run_repetition(tiny_data(), 0, budget, tmp_path, CPU, batch_size=16, progress=False)
    assert set(summary["accuracy"]) == set(ARMS)
    switch = torch.load(checkpoint_path(tmp_path, "clean", 2), weights_only=True)
    final = torch.load(checkpoint_path(tmp_path, "clean", 4), weights_only=True)
    for name, tensor in switch.items():
        assert torch.equal(started["curriculum"][name], tensor)
        assert not torch.equal(tensor, final[name])  # the clean arm kept training after the switch
        assert torch.equal(started["clean"][name], started["noisy"][name])  # same initialisation
        assert not torch.equal(tensor, started["clean"][name])
    assert json.loads((tmp_path / "curriculum.json").read_text())["initialised_from"] == "clean_epoch2.pt"


def test_finished_arms_are_not_rerun(tmp_path, monkeypatch):
    budget = make_budget("epochs", 48, batch_size=16, epochs=2, probe_epochs=1)
    first = run_repetition(tiny_data(), 3, budget, tmp_path, CPU, batch_size=16, progress=False)
    calls = []
    monkeypatch.setattr(experiment, "pretrain", lambda *a, **k: calls.append(k["arm"]))
    (tmp_path / "result.json").unlink()
    again = run_repetition(tiny_data(), 3, budget, tmp_path, CPU, batch_size=16, progress=False)
    assert calls == [] and again["accuracy"] == first["accuracy"]


def test_same_seed_same_losses_other_seed_other_losses():
    data = tiny_data()
    histories = [pretrain(new_encoder(s), data.train_images, epochs=2, seed=s, arm="noisy", noise_std=0.4,
                          device=CPU, batch_size=16, progress=False)["loss"] for s in (5, 5, 6)]
    assert histories[0] == histories[1] and histories[0] != histories[2]


def test_non_finite_loss_stops_before_the_step_and_the_checkpoint(tmp_path):
    images = tiny_data().train_images.clone()
    images[3, 10] = float("nan")
    model = new_encoder(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="clean: non-finite loss=nan.*epoch 1, batch 0"):
        pretrain(model, images, epochs=1, seed=0, arm="clean", noise_std=None, device=CPU, batch_size=48,
                 checkpoint_dir=tmp_path, checkpoint_epochs=[1], progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert list(tmp_path.iterdir()) == []


def test_two_epoch_run_writes_results_with_all_arms(tmp_path, capsys):
    data_root = write_tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    args = ["--out", str(out), "--reps", "1", "--epochs", "2", "--probe-epochs", "1", "--budget", "epochs",
            "--device", "cpu", "--data-root", str(data_root), "--batch-size", "32", "--no-progress"]
    assert run.main(args) == 0
    assert aggregate.main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MNIST IDX files" in printed and "budget 'epochs'" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["arms"]) == set(ARMS) and all(results["arms"][a]["n"] == 1 for a in ARMS)
    assert results["budget"]["pretrain_epochs"] == 2 and "MNIST IDX files" in results["data_source"]
    assert results["paper_accuracy"] == {"noisy": 64.55, "curriculum": 83.05}
    assert "64.55 %" in (out / "results.md").read_text(encoding="utf-8")
    assert (out / "probe_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Other settings into the same folder are refused instead of mixing two experiments.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run.main([*args[:5], "3", *args[6:]])
    assert exit_info.value.code == 2 and "other settings" in capsys.readouterr().err


def test_a_rerun_with_another_learning_rate_before_any_summary_is_refused(tmp_path, capsys):
    """No figure or summary yet (only the repetition's files): the settings must still stand."""
    data_root = write_tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    args = ["--out", str(out), "--reps", "1", "--epochs", "2", "--probe-epochs", "1", "--budget", "epochs",
            "--device", "cpu", "--data-root", str(data_root), "--batch-size", "32", "--no-progress"]
    assert run.main(args) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run.main([*args, "--lr", "1e-2"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "lr: 0.0001 there, 0.01 now" in error


@pytest.mark.slow
def test_mlp_exp_script_runs_resumes_and_keeps_foreign_files(tmp_path):
    data_root = write_tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    command = ["bash", str(REPO / "toy_mnist" / "mlp_exp.sh"), "--out", str(out), "--reps", "1", "--epochs", "2",
               "--budget", "epochs", "--device", "cpu", "--data-root", str(data_root), "--threads", "1",
               "--", "--probe-epochs", "1", "--batch-size", "32", "--no-progress"]
    env = command_env(PYTHON=sys.executable)
    subprocess.run(command, check=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert set(json.loads((out / "results.json").read_text())["arms"]) == set(ARMS)
    second = subprocess.run(command, check=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "seed 0: finished earlier, skipped" in second.stdout
    assert (out / "notes.txt").read_text() == "mine"
    bad = subprocess.run(["bash", str(REPO / "toy_mnist" / "mlp_exp.sh"), "--reps", "zero"], cwd=tmp_path,
                         env=command_env(), capture_output=True, text=True)
    assert bad.returncode == 2 and "--reps" in bad.stderr


def test_missing_data_root_fails_before_any_output(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--output-dir", str(out), "--reps", "1", "--data-root", str(tmp_path / "absent"), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert re.search("train-images-idx3-ubyte.*not found", capsys.readouterr().err)
    assert not out.exists()
