"""The same Neighbor2Neighbor command gives the same last.pt bytes on every path (CPU, one thread): twice from
scratch, stopped after an epoch and rerun, interrupted by SIGINT inside the first epoch (the rerun starts afresh)
and inside the second (the rerun resumes from the first epoch's last.pt); equal weights give equal digests.
The interrupts land at a chosen optimizer step (tests/stop_at.py), so every path runs on every machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from Neighbor2Neighbor.weights import load_checkpoint, load_denoiser, model_digest
from tests.environment import REPO, command_env
from utils.image_io import save_png_atomic

IMAGES, BATCH = 48, 2
EPOCH_STEPS = IMAGES // BATCH


def _noisy_folder(root: Path, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        save_png_atomic(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), root / f"c{i % 3}" / f"{i}.png")
    return root


def _train(data: Path, out: Path, *options: str, stop: tuple[str, ...] = (), check: bool = True
           ) -> subprocess.CompletedProcess:
    """Two epochs of training into ``out`` (plus ``options``); ``stop``: tests/stop_at.py options (where to
    interrupt it)."""
    command = [sys.executable, "-m", "tests.stop_at", *stop, "--", "Neighbor2Neighbor/train.py", "--data-dir",
               str(data), "--output-dir", str(out), "--epochs", "2", "--batch-size", str(BATCH), "--patch-size", "32",
               "--n-feature", "16", "--workers", "0", "--device", "cpu", *options]
    return subprocess.run(command, cwd=REPO, env=command_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"),
                          check=check, capture_output=True, text=True)


def _from_scratch(data: Path, out: Path) -> bytes:
    shutil.rmtree(out, ignore_errors=True)
    _train(data, out)
    return (out / "last.pt").read_bytes()


@pytest.mark.slow
def test_last_checkpoint_bytes_are_the_same_on_every_path(tmp_path):
    data = _noisy_folder(tmp_path / "noisy")
    out = tmp_path / "n2n"
    first = _from_scratch(data, out)
    assert _from_scratch(data, out) == first

    shutil.rmtree(out)
    _train(data, out, "--stop-after-epochs", "1")  # a time-limited job: one epoch, then a rerun
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    _train(data, out)
    assert (out / "last.pt").read_bytes() == first

    for step, saved_epoch in ((5, None), (EPOCH_STEPS + 6, 1)):  # SIGINT in epoch 1, then in epoch 2
        shutil.rmtree(out)
        interrupted = _train(data, out, stop=("--event", "step", "--at", str(step), "--how", "sigint"), check=False)
        assert interrupted.returncode != 0 and "KeyboardInterrupt" in interrupted.stderr
        last = out / "last.pt"
        assert (load_checkpoint(last)["epoch"] if last.exists() else None) == saved_epoch
        rerun = _train(data, out)
        assert ("resuming" in rerun.stdout) == (saved_epoch is not None)
        assert last.read_bytes() == first, f"SIGINT at step {step}"

    model = load_denoiser(out / "last.pt")
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)  # the same weights in another kind of file
    assert model_digest(load_denoiser(plain)) == model_digest(model)
