"""Throughput: the ImageNet-100 DINOv2 step (with FLOP utilisation) and the probes' feature extraction."""

from __future__ import annotations

import re
import statistics
import time
from typing import Optional

import torch

from bench.gpu_checks.common import (
    Settings, device_batch, load_recipe, make_trainer, single_process,
)
from bench.gpu_checks.training import is_fused
from bench.train_step import matmul_flops_per_s, step_flops, synchronize, timed
from dinov2.eval.features import block_features
from dinov2.eval.linear_heads import N_LAST_BLOCKS
from dinov2.models import vit_small, vit_tiny_4blocks
from dinov2.utils.config import CONFIGS_DIR
from utils.device import AUTOCAST_DTYPES, autocast

IMAGENET100_RECIPE = CONFIGS_DIR / "train" / "imagenet100_vits16.yaml"
SMOKE_RECIPE = CONFIGS_DIR / "train" / "tiny_cpu.yaml"
IMAGENET100_BATCH, SMOKE_BATCH = 40, 4
# Dense (no sparsity) bf16 tensor-core peaks of the datasheets, FLOP/s, matched in order against the device name
# (e.g. "NVIDIA H100 80GB HBM3" is the SXM part). NVL parts have their own clocks: unknown here.
DATASHEET_BF16_PEAKS: tuple[tuple[str, Optional[float]], ...] = (
    (r"NVL", None),
    (r"H200", 989e12),
    (r"H100.*PCIe", 756e12),
    (r"H100.*(SXM|HBM3)", 989e12),
    (r"A100", 312e12),
    (r"L40S", 362e12),
    (r"A10(?![0-9A-Z])", 125e12),
)


def datasheet_bf16_peak(device_name: str) -> Optional[float]:
    """The datasheet's dense bf16 FLOP/s of a GPU named ``device_name``; None when the table does not know it."""
    for pattern, peak in DATASHEET_BF16_PEAKS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None


def measure_dinov2_imagenet100(settings: Settings) -> dict[str, dict]:
    """Full training steps of the ImageNet-100 recipe (ViT-S/16, 2x224 + 8x96 crops, batch 40, bf16, fused AdamW;
    the tiny CPU recipe at batch 4 in fp32 on the smoke run): images/s, step time, peak CUDA memory, FLOPs per step
    and the model FLOP utilisation against the measured matmul rate and the datasheet peak."""
    device = settings.device
    precision = settings.training_precision
    if settings.smoke:
        recipe, batch_size = SMOKE_RECIPE, SMOKE_BATCH
        cfg = load_recipe(recipe, [f"train.batch_size_per_gpu={batch_size}"])
    else:
        recipe, batch_size = IMAGENET100_RECIPE, IMAGENET100_BATCH
        cfg = load_recipe(recipe, [f"train.batch_size_per_gpu={batch_size}",
                                   f"compute_precision.autocast_dtype={precision}", "optim.fused=true"])
    trainer = make_trainer(cfg, single_process(settings), settings, precision)
    batch = device_batch(cfg, device)
    flops = step_flops(trainer, batch)
    # one product of 8192 squares keeps a GPU busy for milliseconds, well above the timer's resolution
    matmul_rate = matmul_flops_per_s(device, AUTOCAST_DTYPES[precision], size=8192 if device.type == "cuda" else 2048)
    warmup, steps = settings.pick(gpu=3, quick=2, smoke=1), settings.pick(gpu=10, quick=4, smoke=3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        logged = step % cfg.train.log_period == 0  # diagnostics are computed on logged iterations only, as in training
        seconds = timed(lambda: trainer.train_step(batch, step % len(trainer.schedules), diagnose=logged), device)
        if step >= warmup:
            times.append(seconds)
    step_s = statistics.median(times)
    achieved = flops / step_s
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = datasheet_bf16_peak(name) if name and precision == "bf16" else None
    return {"dinov2_imagenet100": {
        "ok": step_s > 0 and flops > 0, "recipe": recipe.name, "arch": cfg.student.arch, "batch_size": batch_size,
        "precision": precision, "optimizer_fused": is_fused(trainer.optimizer), "timed_steps": steps,
        "images_per_s": batch_size / step_s, "step_s": step_s,
        "peak_cuda_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "step_tflop": flops / 1e12, "achieved_tflop_per_s": achieved / 1e12,
        "matmul_tflop_per_s": matmul_rate / 1e12, "mfu_vs_matmul": achieved / matmul_rate,
        "datasheet_bf16_tflop_per_s": peak / 1e12 if peak else None,
        "mfu_vs_datasheet": achieved / peak if peak else None,
    }}


def measure_feature_extraction(settings: Settings) -> dict[str, dict]:
    """Images/s of the probes' feature extraction (``dinov2.eval.features.block_features``: class tokens of the last
    4 blocks and the patch mean, copied to the host) with a ViT-S/16 at 224 px in bf16 autocast, on batches already
    on the device: the model's side of extraction, without image decoding (ViT-Ti 4 blocks, patch 8, 32 px on the
    smoke run)."""
    device, precision = settings.device, settings.low_precision
    if settings.smoke:
        arch, size, patch, batch_size = "vit_tiny_4blocks", 32, 8, 8
        backbone = vit_tiny_4blocks(patch_size=patch, img_size=size)
    else:
        arch, size, patch, batch_size = "vit_small", 224, 16, 128
        backbone = vit_small(patch_size=patch, img_size=size)
    backbone = backbone.to(device).eval()
    n_blocks = max(N_LAST_BLOCKS)
    images = torch.randn(batch_size, 3, size, size, device=device)
    batches = settings.pick(gpu=20, quick=5, smoke=3)

    def extract() -> None:
        class_tokens, patch_means = block_features(backbone, images, n_blocks, autocast(device, precision))
        class_tokens.cpu(), patch_means.cpu()

    for _ in range(2):  # warm-up
        extract()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        extract()
    synchronize(device)
    throughput = batches * batch_size / (time.perf_counter() - start)
    return {"feature_extraction": {
        "ok": throughput > 0, "images_per_s": throughput, "arch": arch, "patch_size": patch, "size": size,
        "precision": precision, "batch_size": batch_size, "n_last_blocks": n_blocks,
        "timed_images": batches * batch_size,
    }}
