"""Exact resume: N iterations straight == K iterations, stop, resume (mid-epoch, other worker count), and the
newest *loadable* checkpoint is chosen when the newest file is damaged."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dinov2.train.run_files import read_metrics
from dinov2.train.train import main
from dinov2.utils.checkpoint import list_checkpoints, load_checkpoint
from dinov2.utils.config import CONFIGS_DIR
from tests.environment import REPO, command_env
from utils.make_toy_dataset import build_toy_dataset

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")
DETERMINISTIC_KEYS = ("total_loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss",
                      "lr", "wd", "momentum", "teacher_temp", "iteration", "epoch")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    build_toy_dataset(root, limit=2)
    return root


def _train(tree: Path, out: Path, *overrides: str) -> None:
    argv = ["--config-file", SMOKE, "--output-dir", str(out), f"train.dataset_path={tree}",
            "student.drop_path_rate=0.2", *overrides]  # drop path: the global RNG state must resume too
    assert main(argv) == 0


def _losses(out: Path) -> list[dict]:
    return [{k: record[k] for k in DETERMINISTIC_KEYS} for record in read_metrics(out)]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["iteration"] == b["iteration"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for (pa, sa), (pb, sb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert pa == pb and all(torch.equal(sa[k], sb[k]) for k in sa), pa
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])


@pytest.mark.slow
def test_interrupted_and_resumed_run_is_bit_exact(tree, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(tree, straight)
    _train(tree, resumed, "train.stop_after_iterations=4")  # stops in the middle of the second epoch
    assert [r["iteration"] for r in read_metrics(resumed)] == [0, 1, 2, 3]
    _train(tree, resumed, "train.num_workers=2")  # continue with data loading in worker processes (capped to the CPUs)
    assert _losses(resumed) == _losses(straight)
    final = list_checkpoints(straight)[0].name
    _assert_same_state(load_checkpoint(straight / final), load_checkpoint(resumed / final))
    export_a = torch.load(straight / "eval/training_5/teacher_checkpoint.pth", weights_only=True)["teacher"]
    export_b = torch.load(resumed / "eval/training_5/teacher_checkpoint.pth", weights_only=True)["teacher"]
    assert all(torch.equal(export_a[k], export_b[k]) for k in export_a)


@pytest.mark.slow
def test_resume_skips_a_damaged_newest_checkpoint(tree, tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "run"
    _train(tree, straight, "optim.epochs=1")
    _train(tree, run, "optim.epochs=1", "train.stop_after_iterations=2")
    newest = list_checkpoints(run)[0]
    assert newest.name == "model_0000001.pth"
    (run / "model_0000002.pth").write_bytes(newest.read_bytes()[:1000])  # a newer, truncated file
    with pytest.warns(UserWarning, match="model_0000002.pth"):
        _train(tree, run, "optim.epochs=1")
    assert _losses(run) == _losses(straight)


@pytest.mark.slow
def test_a_run_interrupted_and_rerun_writes_the_bytes_of_a_straight_one(tree, tmp_path):
    """Ctrl-C at an optimizer step (tests/stop_at.py), then the same command: every checkpoint and export is the
    file an uninterrupted run writes, byte for byte (runs compare with sha256sum)."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "tests.stop_at", "--event", "step", "--how", "sigint", "--at", "0", "--",
               "-m", "dinov2.train", "--config-file", SMOKE, "--output-dir", str(out), f"train.dataset_path={tree}",
               "student.drop_path_rate=0.2", "train.checkpoint_period=1"]
    env = command_env(OMP_NUM_THREADS="1")
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    straight = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.pth"))}
    shutil.rmtree(out)
    command[command.index("--at") + 1] = "4"  # in the second epoch, after three checkpoints
    interrupted = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert interrupted.returncode != 0 and "KeyboardInterrupt" in interrupted.stderr
    assert list_checkpoints(out)[0].name == "model_0000002.pth"
    command[command.index("--at") + 1] = "0"
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    assert {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.pth"))} == straight
