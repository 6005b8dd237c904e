"""SIGKILL at seeded random events of each long job, then reruns: the outputs equal an uninterrupted run's
(bit-identical for noise generation, Neighbor2Neighbor and DINOv2; identical results for probes and the toy).

Each job runs once uninterrupted, counting its events (optimizer steps and atomic writes about to land, see
tests/stop_at.py); then in a fresh folder it is killed at a random one of them, rerun and killed again at a random
event of what is left, then rerun to the end. Kills land at events, not after a delay, so both land on every
machine however fast it runs.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

from dinov2.utils.config import CONFIGS_DIR
from tests.environment import REPO, command_env
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from tests.imagetrees import make_tree
from utils.image_io import iter_image_files
from utils.make_toy_dataset import build_toy_dataset

ENV = command_env(OMP_NUM_THREADS="1")
KILLS_PER_JOB = 2


def _run(command: list[str], *stop: str) -> int:
    """Run ``command`` (a script or ``-m module`` and its arguments) under tests/stop_at.py with ``stop``; returns
    its exit status."""
    helper = [sys.executable, "-m", "tests.stop_at", *stop, "--", *command]
    result = subprocess.run(helper, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, -signal.SIGKILL), result.stderr[-3000:]
    return result.returncode


def _killed_then_finished(command: list[str], folder: Path, events: int, rng: random.Random) -> list[int]:
    """Kill ``command`` (which writes into ``folder``) at KILLS_PER_JOB random events, each rerun resuming from where
    the last stopped, then finish it; returns the events killed at. A kill before event n leaves at least
    ``events - n + 1`` events to the rerun (what was not done is still to do), so each kill drawn here must land."""
    shutil.rmtree(folder, ignore_errors=True)
    kills, left = [], events
    while len(kills) < KILLS_PER_JOB and left >= 1:
        kills.append(rng.randint(1, left))
        status = _run(command, "--event", "any", "--at", str(kills[-1]), "--how", "sigkill")
        assert status == -signal.SIGKILL, f"the job ended before event {kills[-1]} (kills so far: {kills})"
        left -= kills[-1]
    assert _run(command) == 0
    return kills


def _files(root: Path, pattern: str = "*") -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern)) if p.is_file()}


def _check(job: Callable[[Path], list[str]], compare: Callable[[Path, Path], None], tmp_path: Path, seed: int) -> None:
    counts = tmp_path / "events.json"
    assert _run(job(tmp_path / "reference"), "--count", str(counts)) == 0
    events = sum(json.loads(counts.read_text()).values())
    kills = _killed_then_finished(job(tmp_path / "killed"), tmp_path / "killed", events, random.Random(seed))
    compare(tmp_path / "reference", tmp_path / "killed")
    assert kills  # the job was interrupted at least once


@pytest.mark.slow
def test_noise_generation(tmp_path):
    clean = make_tree(tmp_path / "clean", classes=4, per_class=15)
    job = lambda out: ["utils/generate_noise.py", "--src", str(clean), "--noise", "gauss100",  # noqa
                       "shot3", "--out-prefix", str(out / "noisy"), "--num-workers", "0", "--quiet"]

    def compare(a: Path, b: Path) -> None:
        for tree in ("noisy-gauss100", "noisy-shot3"):
            files = sorted(iter_image_files(a / tree))
            assert files == sorted(iter_image_files(b / tree)) and len(files) == 120
            assert all((a / tree / rel).read_bytes() == (b / tree / rel).read_bytes() for rel in files)

    _check(job, compare, tmp_path, seed=1)


@pytest.mark.slow
def test_neighbor2neighbor_training(tmp_path):
    clean = make_tree(tmp_path / "clean", classes=2, per_class=8)
    job = lambda out: ["Neighbor2Neighbor/train.py", "--data-dir", f"noisy:gauss50:{clean}:train",  # noqa
                       "--output-dir", str(out), "--epochs", "4", "--batch-size", "4", "--patch-size", "16",
                       "--n-feature", "8", "--num-workers", "0", "--device", "cpu", "--quiet"]

    def compare(a: Path, b: Path) -> None:
        ca, cb = (torch.load(root / "last.pt", weights_only=False) for root in (a, b))
        assert ca.pop("args").pop("output_dir") != cb.pop("args").pop("output_dir")  # the only difference
        _assert_equal(ca, cb)

    _check(job, compare, tmp_path, seed=2)


def _assert_equal(a: object, b: object, where: str = "") -> None:
    """Bit-identical nested checkpoints (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_dinov2_training(tmp_path):
    build_toy_dataset(tmp_path / "digits", limit=2)
    job = lambda out: ["-m", "dinov2.train", "--config-file",  # noqa: E731
                       str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir", str(out),
                       f"train.dataset_path={tmp_path / 'digits'}", "optim.epochs=2", "train.checkpoint_period=1"]

    def compare(a: Path, b: Path) -> None:
        final_a, final_b = (torch.load(sorted(r.glob("model_*.pth"))[-1], weights_only=True) for r in (a, b))
        assert final_a["iteration"] == final_b["iteration"]
        for key, value in final_a["model"].items():
            assert torch.equal(value, final_b["model"][key]), key
        assert _files(a / "eval", "*.pth") .keys() == _files(b / "eval", "*.pth").keys()

    _check(job, compare, tmp_path, seed=3)


def _results(folder: Path) -> dict[str, dict]:
    """The result JSONs of a folder without their wall-clock fields."""
    results = {}
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        result["results"].pop("timing", None)
        result["results"].pop("train_seconds", None)
        result.pop("created", None)
        results[path.name] = result
    return results


@pytest.mark.slow
def test_linear_probe(tmp_path):
    for iteration in (4, 9):
        make_teacher_export(tmp_path / "run", iteration, seed=iteration)
    data = make_separable_tree(tmp_path / "data", num_classes=3, train_per_class=10, val_per_class=3)
    job = lambda out: ["-m", "dinov2.eval.linear", "--run-dir", str(tmp_path / "run"),  # noqa
                       "--train-dataset", str(data / "train"), "--val-dataset", str(data / "val"), "--output-dir",
                       str(out), "--crop-size", "32", "--num-workers", "0", "--device", "cpu", "--quiet",
                       "--epochs", "3", "--holdout-fraction", "0.3"]

    def compare(a: Path, b: Path) -> None:
        assert _results(a) == _results(b) and len(_results(a)) == 2

    _check(job, compare, tmp_path, seed=4)


@pytest.mark.slow
def test_toy_experiment(tmp_path):
    job = lambda out: ["-m", "toy_mnist.run", "--output-dir", str(out), "--seeds", "0",  # noqa
                       "--epochs", "2", "--probe-epochs", "1", "--budget", "epochs", "--device", "cpu",
                       "--batch-size", "64", "--threads", "1", "--quiet"]

    def compare(a: Path, b: Path) -> None:
        for seed in ("seed_0",):
            ra, rb = (json.loads((root / seed / "result.json").read_text()) for root in (a, b))
            assert ra["accuracy"] == rb["accuracy"]

    _check(job, compare, tmp_path, seed=5)
