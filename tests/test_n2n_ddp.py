"""Neighbor2Neighbor under torchrun (2 gloo processes on the CPU): the same training as one process, rank 0
writes the run folder, and an interrupted run resumes bit-identically."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from Neighbor2Neighbor import train as train_module
from Neighbor2Neighbor.training_data import rank_order
from Neighbor2Neighbor.weights import load_checkpoint
from tests.environment import command_env
from tests.imagetrees import make_tree

REPO = Path(__file__).resolve().parents[1]


def _args(data: str, out: Path, *extra: str) -> list[str]:
    return ["--data-dir", data, "--output-dir", str(out), "--epochs", "2", "--batch-size", "4",
            "--patch-size", "16", "--n-feature", "8", "--num-workers", "0", "--device", "cpu", "--quiet", *extra]


def _torchrun(args: list[str]) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "Neighbor2Neighbor" / "train.py"), *args]
    env = command_env(OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def noisy_data(tmp_path_factory) -> str:
    clean = make_tree(tmp_path_factory.mktemp("ddp") / "clean", classes=2, per_class=5)
    return f"noisy:gauss50:{clean}:train"  # 10 images noised on the fly


@pytest.mark.slow
def test_two_ranks_train_as_one_process_and_resume_exactly(noisy_data, tmp_path):
    assert train_module.main(_args(noisy_data, tmp_path / "one")) == 0
    _torchrun(_args(noisy_data, tmp_path / "two"))
    _torchrun(_args(noisy_data, tmp_path / "resumed", "--stop-after-epochs", "1"))
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    _torchrun(_args(noisy_data, tmp_path / "resumed"))
    one, two, resumed = (load_checkpoint(tmp_path / name / "last.pt") for name in ("one", "two", "resumed"))
    assert one["epoch"] == two["epoch"] == resumed["epoch"] == 2
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5)  # sums in another order
        assert torch.equal(two["model"][key], resumed["model"][key]), key
    assert torch.equal(one["mask_generator"], two["mask_generator"])
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-5)
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2


def test_ranks_share_every_global_batch():
    order = list(range(10))
    shares = [rank_order(order, 4, rank, 2) for rank in range(2)]
    assert shares == [[0, 1, 4, 5], [2, 3, 6, 7]]  # the incomplete last batch (8, 9) is dropped, as one process
    assert rank_order(order, 4, 0, 1) == order[:8]


def test_a_global_batch_that_does_not_split_is_refused(noisy_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert train_module.main(_args(noisy_data, tmp_path / "run")) == 2
    assert "multiple of the 3 torchrun processes" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
