"""Neighbor2Neighbor on the device: fp16 denoising against fp32 (and its throughput), training throughput."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.gpu_checks.common import Settings
from bench.n2n import bench_training, images_per_second, noisy_digits
from Neighbor2Neighbor.arch_unet import NEGATIVE_SLOPE, UNet, memory_format
from Neighbor2Neighbor.inference import denoise_uint8
from utils.device import resolve_precision

# fp16 against fp32 on the same uint8 inputs, in uint8 levels. Measured on the CPU (64 px, widths 16 and 48): at most
# 1 level, on under 8 % of the values. cuDNN may choose other convolution algorithms per precision, hence 3.
MAX_LEVEL_DIFFERENCE = 3
# the comparison means something only where the fp32 output is not clipped to 0 or 255
MIN_UNCLIPPED_FRACTION = 0.25
PAPER_WIDTH = 48


def sizes(settings: Settings) -> tuple[int, int]:
    """(image side, U-Net width): 256 px and the paper's width on CUDA; 64 px and width 16 on the smoke run, where
    fp16 convolutions take the CPU's slow generic path."""
    return (64, 16) if settings.smoke else (256, PAPER_WIDTH)


def working_unet(features: int, device: torch.device, seed: int = 0) -> nn.Module:
    """A U-Net whose activations have a trained network's scale, in the device's fastest layout.

    The paper's initialisation scales every convolution by 0.1, so an untrained U-Net outputs ~1e-6: fp16 and fp32
    would both round it to 0. Kaiming weights (for LeakyReLU) and an output bias of 0.5 give outputs spread over
    [0, 1], where fp16 rounding shows."""
    torch.manual_seed(seed)
    model = UNet(features=features)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE)
            nn.init.uniform_(module.bias, -0.1, 0.1)
    with torch.no_grad():
        model.output_stage[-1].bias.fill_(0.5)
    return model.to(device, memory_format=memory_format(device)).eval()


def check_n2n_fp16_denoise(settings: Settings) -> dict[str, dict]:
    """Denoise noisy digits (Gaussian sigma 50) with ``denoise_uint8`` in fp32 and under fp16 autocast: the uint8
    outputs differ by at most :data:`MAX_LEVEL_DIFFERENCE`; then fp16 denoising images/s (the ``n2n_denoising``
    measurement)."""
    device = settings.device
    size, features = sizes(settings)
    batch = settings.pick(gpu=32, quick=32, smoke=2)
    batches = settings.pick(gpu=8, quick=3, smoke=2)
    images = noisy_digits(batch * batches, size)
    model = working_unet(features, device)
    compared = images[:batch]
    fp32 = denoise_uint8(model, compared, device, "fp32").astype(np.int16)
    fp16 = denoise_uint8(model, compared, device, "fp16").astype(np.int16)
    difference = np.abs(fp32 - fp16)
    unclipped = float(((fp32 > 0) & (fp32 < 255)).mean())
    limit = MAX_LEVEL_DIFFERENCE * settings.tolerance_scale
    check = {
        "ok": bool(difference.max() <= limit and unclipped >= MIN_UNCLIPPED_FRACTION),
        "images": len(compared), "size": size, "features": features,
        "max_level_difference": int(difference.max()), "mean_level_difference": float(difference.mean()),
        "tolerance_levels": limit, "unclipped_fraction": unclipped,
    }
    throughput = images_per_second(lambda start: denoise_uint8(model, images[start:start + batch], device, "fp16"),
                                   len(images), batch, device, "denoise fp16")
    measurement = {"ok": throughput > 0, "images_per_s": throughput, "precision": "fp16", "size": size,
                   "features": features, "batch_size": batch, "timed_images": batch * batches}
    return {"n2n_fp16_denoise": check, "n2n_denoising": measurement}


def measure_n2n_training(settings: Settings) -> dict[str, dict]:
    """Training images/s of the N2N step (sub-sampler, no-grad full pass, loss, Adam) as ``Neighbor2Neighbor/train.py``
    runs it: ``--precision auto`` (bf16 on CUDA, fp32 on the CPU), channels-last on CUDA."""
    device = settings.device
    size, features = sizes(settings)
    batch = settings.pick(gpu=16, quick=16, smoke=4)
    batches = settings.pick(gpu=10, quick=4, smoke=2)
    precision = resolve_precision("auto", device)
    images = noisy_digits(batch * batches, size)
    throughput = bench_training(images, features, batch, device, precision, True, "n2n training")
    return {"n2n_training": {"ok": throughput > 0, "images_per_s": throughput, "precision": precision, "size": size,
                             "features": features, "batch_size": batch, "timed_images": batch * batches}}
