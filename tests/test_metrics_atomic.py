"""utils/metrics.py and utils/atomic.py."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from utils.atomic import atomic_torch_save, atomic_write, atomic_write_json, is_temporary_file
from utils.metrics import psnr, psnr_and_snr, snr_db


def test_psnr_and_snr_by_hand():
    clean = np.full((4, 4, 3), 0.5)
    noisy = clean + 0.1
    assert psnr(clean, noisy) == pytest.approx(20.0)
    assert snr_db(clean, noisy) == pytest.approx(10 * math.log10(0.25 / 0.01))
    assert psnr(clean, clean) == math.inf


def test_integer_path_equals_float_path():
    rng = np.random.default_rng(0)
    clean, noisy = rng.integers(0, 256, (2, 33, 17, 3), dtype=np.uint8)
    exact = psnr_and_snr(clean, noisy)
    as_float = psnr_and_snr(clean / 255.0, noisy / 255.0)
    assert exact == pytest.approx(as_float, rel=1e-12)


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write('{"v": 2, "trunc')
            raise RuntimeError("crash mid-write")
    assert target.read_text().strip() == '{\n  "v": 1\n}'
    assert [name for name in os.listdir(tmp_path) if name != "result.json"] == []


def test_atomic_torch_save_survives_a_failing_save(tmp_path: Path, monkeypatch):
    import torch

    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"step": 1}, target)

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        atomic_torch_save({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert not any(is_temporary_file(name) for name in os.listdir(tmp_path))


def test_equal_contents_give_equal_checkpoint_bytes_whatever_objects_they_share(tmp_path: Path):
    import torch

    model = torch.nn.BatchNorm1d(3)  # its state dict carries _metadata (the module version)
    state = model.state_dict()
    name = "".join(["l", "r"])  # a string made at run time: equal to the literal, not the same object
    shared = {"args": {"lr": 0.1}, "group": {"lr": 0.1}, "mode": ("train", "train"), "model": state}
    fresh = {"args": {name: 0.1}, "group": {"lr": 0.1}, "mode": ("train", "".join(["tr", "ain"])),
             "model": state}
    assert pickle.dumps(shared) != pickle.dumps(fresh)  # plain pickling depends on the sharing
    atomic_torch_save(shared, tmp_path / "a.pt")
    atomic_torch_save(fresh, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    loaded = torch.load(tmp_path / "b.pt", weights_only=True)
    assert loaded["model"]._metadata == state._metadata and torch.equal(loaded["model"]["weight"], state["weight"])
    assert type(loaded["mode"]) is tuple and loaded["args"] == {"lr": 0.1}
