"""The same Neighbor2Neighbor command gives the same last.pt bytes: twice from scratch, and after a SIGINT in the
middle of an epoch followed by a rerun (CPU, one thread); equal weights give equal digests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from Neighbor2Neighbor.weights import load_denoiser, model_digest
from utils.image_io import save_png_atomic

REPO = Path(__file__).resolve().parents[1]


def _noisy_folder(root: Path, count: int = 48, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        save_png_atomic(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), root / f"c{i % 3}" / f"{i}.png")
    return root


def _command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "Neighbor2Neighbor/train.py", "--data-dir", str(data), "--output-dir", str(out),
            "--epochs", "2", "--batch-size", "2", "--patch-size", "32", "--n-feature", "16", "--workers", "0",
            "--device", "cpu"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _from_scratch(data: Path, out: Path) -> bytes:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(_command(data, out), cwd=REPO, env=ENV, check=True, capture_output=True)
    return (out / "last.pt").read_bytes()


def test_last_checkpoint_bytes_survive_a_rerun_and_an_interrupt(tmp_path):
    data = _noisy_folder(tmp_path / "noisy")
    out = tmp_path / "n2n"
    first = _from_scratch(data, out)
    assert _from_scratch(data, out) == first

    shutil.rmtree(out)
    # SIGINT's default action restored in the child: a test run started in the background of a non-interactive
    # shell inherits SIGINT ignored, and the signal would then never stop the run
    process = subprocess.Popen(_command(data, out), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    seen = ""
    while "batch" not in seen and time.monotonic() < deadline:  # a progress bar: the epoch has started
        seen += process.stderr.read(1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode != 0  # stopped mid-run
    subprocess.run(_command(data, out), cwd=REPO, env=ENV, check=True, capture_output=True)
    assert (out / "last.pt").read_bytes() == first

    model = load_denoiser(out / "last.pt")
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)  # the same weights in another kind of file
    assert model_digest(load_denoiser(plain)) == model_digest(model)
