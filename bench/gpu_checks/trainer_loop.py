"""The real training command on the device: a short run stopped and resumed against a straight one, and NCT steps.

Both go through ``python -m dinov2.train``'s entry point (loader, autocast, loss scaling, checkpoints with the
device's RNG states, encoder exports) on the smoke recipe's tiny ViT and the embedded digits, with
``train.device`` set to the device under test: the part of a GPU run the synthetic-batch checks never reach.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from bench.gpu_checks.common import SMOKE_CHECK_RECIPE, Settings
from dinov2.train.run_files import read_metrics
from dinov2.train.train import main as train_main
from dinov2.utils.checkpoint import list_checkpoints, load_checkpoint
from utils.image_io import iter_image_files, load_rgb, save_png_atomic
from utils.make_toy_dataset import build_toy_dataset

# per-iteration total loss of the resumed run against the straight one, as |x - ref| / max(|ref|, 1): on the CPU
# resuming is bit-exact (a test checks it); on CUDA, attention backward kernels may add in another order each run
RESUME_TOLERANCE = 1e-3
LOSS_KEYS = ("total_loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss")


def _digits(settings: Settings) -> Path:
    root = settings.scratch / "trainer_loop" / "digits"
    if not (root / "labels.txt").is_file():
        build_toy_dataset(root, limit=2)
    return root


def _train(settings: Settings, out: Path, epoch_length: int, *overrides: str) -> None:
    precision = "fp32" if settings.device.type != "cuda" else settings.low_precision
    argv = ["--config-file", str(SMOKE_CHECK_RECIPE), "--output-dir", str(out),
            f"train.device={settings.device.type}", f"compute_precision.autocast_dtype={precision}",
            f"train.OFFICIAL_EPOCH_LENGTH={epoch_length}", "train.checkpoint_period=2", *overrides]
    code = train_main(argv)
    if code != 0:
        raise RuntimeError(f"python -m dinov2.train {' '.join(argv)} exited with {code}")


def _losses(out: Path) -> list[float]:
    return [record["total_loss"] for record in read_metrics(out)]


def check_trainer_resume(settings: Settings) -> dict[str, dict]:
    """Six iterations straight against four, a stop, and the rest resumed from the checkpoint: the same losses at
    every iteration and the same final weights (bit-exact or within the tolerance, both reported)."""
    digits, root = _digits(settings), settings.scratch / "trainer_loop"
    straight, resumed = root / "straight", root / "resumed"
    data = f"train.dataset_path={digits}"
    _train(settings, straight, 3, data)  # 2 epochs of 3
    _train(settings, resumed, 3, data, "train.stop_after_iterations=4")
    _train(settings, resumed, 3, data)
    a, b = _losses(straight), _losses(resumed)
    difference = max((abs(x - y) / max(abs(x), 1.0) for x, y in zip(a, b)), default=math.inf)
    final = list_checkpoints(straight)[0].name
    state_a, state_b = load_checkpoint(straight / final)["model"], load_checkpoint(resumed / final)["model"]
    weight_gap = max(float((state_a[k].float() - state_b[k].float()).abs().max()) for k in state_a)
    bit_exact = all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    return {"trainer_resume": {
        "ok": len(a) == len(b) == 6 and difference <= RESUME_TOLERANCE * settings.tolerance_scale,
        "iterations": len(a), "resumed_after": 4, "max_relative_loss_difference": difference,
        "tolerance": RESUME_TOLERANCE, "max_weight_difference": weight_gap, "bit_exact": bit_exact,
        "checkpoint": final,
    }}


def _denoised_copy(noisy: Path, out: Path) -> Path:
    """A stand-in denoised tree: the same relative paths, other pixels (the check tests the paired path)."""
    if not (out / "labels.txt").is_file():
        (out / "labels.txt").parent.mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            for relpath in iter_image_files(noisy / split):
                image = load_rgb(noisy / split / relpath)
                save_png_atomic((255 - image // 2).astype(np.uint8), out / split / relpath)
        (out / "labels.txt").write_text((noisy / "labels.txt").read_text())
    return out


def check_nct_step(settings: Settings) -> dict[str, dict]:
    """A denoised phase then an NCT phase (frozen denoised teacher, paired crops) on the device: finite losses,
    NCT terms logged, the frozen teacher bit-identical to the denoised phase's last teacher after the NCT steps."""
    noisy = _digits(settings)
    denoised = _denoised_copy(noisy, settings.scratch / "trainer_loop" / "denoised")
    out = settings.scratch / "trainer_loop" / "nct"
    phases = (f"curriculum.phases=[{{dataset_path: '{denoised}', epochs: 1}}, {{dataset_path: '{noisy}', "
              f"epochs: 1, nct: true, denoised_dataset_path: '{denoised}'}}]")
    _train(settings, out, 2, phases, "nct.enabled=true", "nct.weight=2.0")  # 2 denoised + 2 NCT iterations
    records = read_metrics(out)
    nct_records = [r for r in records if "nct_dino_global_crops_loss" in r]
    finite = all(math.isfinite(r[key]) for r in records for key in LOSS_KEYS if key in r)
    final = load_checkpoint(out / "model_0000003.pth")["model"]
    end_of_denoised = load_checkpoint(out / "model_0000001.pth")["model"]
    frozen = {key[len("nct.teacher."):]: value for key, value in final.items() if key.startswith("nct.teacher.")}
    teacher_kept = bool(frozen) and all(torch.equal(value, end_of_denoised[f"teacher.{key}"])
                                        for key, value in frozen.items())
    return {"nct_step": {
        "ok": bool(nct_records) and finite and teacher_kept, "iterations": len(records),
        "nct_iterations": len(nct_records), "finite_losses": finite, "frozen_teacher_is_denoised_teacher": teacher_kept,
        "nct_global_loss": [r["nct_dino_global_crops_loss"] for r in nct_records],
    }}
