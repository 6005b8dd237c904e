"""Benchmark the Neighbor2Neighbor stage against the paper's way of running the same U-Net, in one run.

    python bench/n2n.py [--size 32] [--train-images 192] [--denoise-images 384] [--batch-size 32]
                        [--features 48] [--device auto] [--out bench_n2n.json]

Training: images per second of the loss + optimizer step at --batch-size (autocast and channels-last on CUDA)
against the paper's batch of 4 in fp32. Denoising: images per second when images of equal size are batched
against the paper's eval.py way (one image at a time, reflect-padded to a square multiple of 32, fp32).
Inputs are the embedded MNIST digits padded to --size and noised with Gaussian sigma=50 (in memory, no files).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from Neighbor2Neighbor.arch_unet import UNet, memory_format
from Neighbor2Neighbor.inference import denoise_uint8, to_uint8
from Neighbor2Neighbor.loss import training_loss
from Neighbor2Neighbor.padding import apply_padded, padded_size, reflect_pad
from utils.atomic import atomic_write_json
from utils.device import autocast, resolve_device, resolve_precision
from utils.embedded_mnist import load_mnist5k, pad_to
from utils.noise import noisy_image, parse_noise

PAPER_TRAIN_BATCH = 4


def noisy_digits(count: int, size: int) -> np.ndarray:
    """``count`` embedded digits, padded to ``size`` (tiled if larger than 32), RGB, noised with gauss50."""
    images, _ = load_mnist5k()
    digits = pad_to(images[:count], 32)
    if size > 32:
        digits = np.tile(digits, (1, -(-size // 32), -(-size // 32)))[:, :size, :size]
    elif size < 32:
        raise ValueError(f"--size must be at least 32, got {size}")
    rgb = np.repeat(digits[..., None], 3, axis=3)
    spec = parse_noise("gauss50")
    return np.stack([noisy_image(im, spec, 42, f"bench/{i}.png") for i, im in enumerate(rgb)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(run: Callable[[int], None], total: int, step: int, device: torch.device, label: str) -> float:
    """Time ``run(start)`` over ``total`` images in chunks of ``step`` after one warm-up chunk."""
    run(0)
    _sync(device)
    started = time.perf_counter()
    for start in tqdm(range(0, total - step + 1, step), desc=label, unit="batch", leave=False,
                      disable=not sys.stderr.isatty()):
        run(start)
    _sync(device)
    return (total // step) * step / (time.perf_counter() - started)


def bench_training(data: np.ndarray, features: int, batch_size: int, device: torch.device, precision: str,
                   channels_last: bool, label: str) -> float:
    """Training images/s of the N2N step (sub-sampler, no-grad full pass, loss, Adam) at ``batch_size``."""
    torch.manual_seed(0)
    fmt = memory_format(device) if channels_last else torch.contiguous_format
    model = UNet(features=features).to(device, memory_format=fmt).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    generator = torch.Generator().manual_seed(0)
    tensors = torch.from_numpy(data).permute(0, 3, 1, 2).float().div(255.0)

    def step(start: int) -> None:
        batch = tensors[start:start + batch_size].to(device).contiguous(memory_format=fmt)
        with autocast(device, precision):
            terms = training_loss(lambda x: apply_padded(model, x.contiguous(memory_format=fmt)), batch, generator,
                                  gamma=1.0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms.total).backward()
        scaler.step(optimizer)
        scaler.update()

    return images_per_second(step, len(tensors), batch_size, device, label)


@torch.no_grad()
def paper_denoise_one(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """The paper's eval.py inference: one image, reflect-padded to a square multiple of 32, fp32."""
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div(255.0)
    height, width = x.shape[-2:]
    side = padded_size(max(height, width))
    out = model(reflect_pad(x, side - height, side - width))[..., :height, :width]
    return to_uint8(out)[0]


def bench_denoising(data: np.ndarray, features: int, batch_size: int, device: torch.device, precision: str
                    ) -> tuple[float, float, float]:
    """(batched images/s, one-at-a-time images/s, max abs difference of the uint8 outputs)."""
    torch.manual_seed(0)
    model = UNet(features=features).to(device).eval()
    baseline = images_per_second(lambda s: paper_denoise_one(model, data[s], device), len(data), 1, device,
                                 "denoise one by one")
    model_cl = model.to(memory_format=memory_format(device))
    ours = images_per_second(lambda s: denoise_uint8(model_cl, data[s:s + batch_size], device, precision),
                             len(data), batch_size, device, "denoise batched")
    check = slice(0, min(8, len(data)))
    batched = denoise_uint8(model_cl, data[check], device, precision).astype(int)
    single = np.stack([paper_denoise_one(model, im, device) for im in data[check]]).astype(int)
    return ours, baseline, float(np.abs(batched - single).max())


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, print the table and ratios, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32, help="image side (the embedded digits are 32)")
    parser.add_argument("--train-images", type=int, default=192)
    parser.add_argument("--denoise-images", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32, help="our batch for training and denoising")
    parser.add_argument("--features", type=int, default=48)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    precision = resolve_precision("auto", device)
    if min(args.train_images, args.denoise_images) < args.batch_size:
        parser.error("--train-images and --denoise-images must be at least --batch-size")
    data = noisy_digits(max(args.train_images, args.denoise_images), args.size)
    train_data = data[:args.train_images]
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "torch_threads": torch.get_num_threads(), "size": args.size, "features": args.features,
               "batch_size": args.batch_size, "precision": precision}
    results["train_paper_img_s"] = bench_training(train_data, args.features, PAPER_TRAIN_BATCH, device, "fp32",
                                                  False, "train batch 4 fp32")
    results["train_ours_img_s"] = bench_training(train_data, args.features, args.batch_size, device, precision,
                                                 True, f"train batch {args.batch_size}")
    ours, baseline, difference = bench_denoising(data[:args.denoise_images], args.features,
                                                 args.batch_size, device, precision)
    results.update(denoise_ours_img_s=ours, denoise_paper_img_s=baseline, denoise_max_abs_diff_uint8=difference)
    results["train_speedup"] = results["train_ours_img_s"] / results["train_paper_img_s"]
    results["denoise_speedup"] = ours / baseline
    print(f"device {results['device']} ({precision}), {args.size}x{args.size} images, U-Net width {args.features}")
    print(f"{'stage':<10} {'paper way img/s':>16} {'ours img/s':>12} {'ratio':>7}")
    print(f"{'train':<10} {results['train_paper_img_s']:>16.1f} {results['train_ours_img_s']:>12.1f} "
          f"{results['train_speedup']:>6.2f}x   (batch 4 fp32 vs batch {args.batch_size})")
    print(f"{'denoise':<10} {baseline:>16.1f} {ours:>12.1f} {results['denoise_speedup']:>6.2f}x   "
          f"(one at a time vs batches of {args.batch_size}; max output difference {difference:g} DN)")
    if args.out is not None:
        atomic_write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
