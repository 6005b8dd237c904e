"""Benchmark: denoising throughput of 2 processes (torchrun ranks, one thread each) vs 1 process on this machine,
and the byte-identity of the sharded output.

    python bench/denoise_shards.py [--images 16] [--features 48]

Makes ImageNet-sized JPEGs (as bench/noise_generation.py) and a randomly initialised U-Net of the paper's width,
then denoises ``noisy:gauss100:ROOT`` (noise on the fly) with Neighbor2Neighbor/denoise.py three ways, in turn:
one process with one thread (the per-core baseline), one process with two threads, and torchrun with two
processes of one thread each. Rates are images per second of wall time, start-up included. The sharded tree must
equal the one-process tree byte for byte.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.noise_generation import make_photo_tree
from Neighbor2Neighbor.arch_unet import UNet
from utils.image_io import iter_image_files

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], threads: int) -> float:
    """Wall seconds of ``command`` with ``threads`` OpenMP threads per process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--features", type=int, default=48, help="U-Net width (the paper's: 48)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_photo_tree(tmp / "clean", args.images)
        torch.manual_seed(0)
        torch.save(UNet(features=args.features).state_dict(), tmp / "unet.pt")
        denoise = [str(REPO / "Neighbor2Neighbor" / "denoise.py"), "--weights", str(tmp / "unet.pt"), "--src",
                   f"noisy:gauss100:{tmp / 'clean'}", "--workers", "0", "--batch-size", "4", "--block-images", "4",
                   "--device", "cpu", "--no-progress", "--dst"]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        seconds = {
            "1 process, 1 thread": run([sys.executable, *denoise, str(tmp / "one_thread")], 1),
            "1 process, 2 threads": run([sys.executable, *denoise, str(tmp / "two_threads")], 2),
            "2 processes (torchrun), 1 thread each": run([*torchrun, *denoise, str(tmp / "two_ranks")], 1),
        }
        files = sorted(iter_image_files(tmp / "one_thread"))
        identical = files == sorted(iter_image_files(tmp / "two_ranks")) and all(
            (tmp / "one_thread" / rel).read_bytes() == (tmp / "two_ranks" / rel).read_bytes() for rel in files)
        base = seconds["1 process, 1 thread"]
        print(f"{args.images} images of about 375 x 500, U-Net width {args.features}, {os.cpu_count()} cores")
        for name, value in seconds.items():
            print(f"{name:<40} {args.images / value:6.2f} images/s  {base / value:5.2f}x")
        print(f"2-process tree byte-identical to the 1-process tree: {identical} ({len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
