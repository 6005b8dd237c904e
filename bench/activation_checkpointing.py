"""What train.activation_checkpointing saves: one training forward and backward of a ViT student with and without it.

    python bench/activation_checkpointing.py [--config dinov2/configs/train/imagenet1k_vitb16.yaml] [--batch 4]
        [--size 224] [--output-dir outputs/bench/activation_checkpointing]

Each variant runs in its own process (so its peak resident memory is its own): the recipe's student (ViT-B/16 for
the ImageNet-1k recipe, the paper's 4 x 128 images per step) forwards a batch of BATCH random SIZE px crops and
backpropagates. Printed per variant: the bytes autograd keeps for the backward pass (exact, counted by
saved-tensor hooks), the process's peak resident memory (ru_maxrss: weights, gradients and the allocator's slack
included) and the step's seconds, each with its ratio to the run without checkpointing measured in the same
invocation. Writes OUTPUT_DIR/activation_checkpointing.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from utils.atomic import atomic_write_json

VARIANTS = ("plain", "checkpointed")


def measure(config: Path, batch: int, size: int, checkpointing: bool) -> dict[str, float]:
    """One step of the recipe's student in this process: saved bytes, peak RSS (MiB) and seconds."""
    import torch
    from torch.autograd.graph import saved_tensors_hooks

    from dinov2.models import build_model_from_cfg
    from dinov2.utils.config import load_config

    cfg = load_config(config, [f"crops.global_crops_size={size}",
                               f"train.activation_checkpointing={str(checkpointing).lower()}"])
    torch.manual_seed(0)
    student, _, _ = build_model_from_cfg(cfg)
    images = torch.randn(batch, 3, size, size)
    saved = [0]

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    start = time.perf_counter()
    with saved_tensors_hooks(keep, lambda tensor: tensor):
        tokens = student(images, is_training=True)
    loss = tokens["x_norm_clstoken"].square().mean() + tokens["x_norm_patchtokens"].square().mean()
    loss.backward()
    seconds = time.perf_counter() - start
    return {"saved_mib": saved[0] / 2**20, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "dinov2/configs/train/imagenet1k_vitb16.yaml")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--output-dir", type=Path, default=REPO / "outputs/bench/activation_checkpointing")
    parser.add_argument("--variant", choices=VARIANTS, default=None, help=argparse.SUPPRESS)  # one child's run
    args = parser.parse_args(argv)
    if args.variant is not None:
        print(json.dumps(measure(args.config, args.batch, args.size, args.variant == "checkpointed")))
        return 0
    results = {}
    for variant in VARIANTS:
        child = subprocess.run([sys.executable, __file__, "--config", str(args.config), "--batch", str(args.batch),
                                "--size", str(args.size), "--variant", variant], capture_output=True, text=True,
                               check=True)
        results[variant] = json.loads(child.stdout.strip().splitlines()[-1])
    base = results["plain"]
    print(f"{args.config.name}: batch {args.batch} x {args.size} px, one forward and backward of the student")
    print(f"{'variant':<14}{'saved for backward (MiB)':>28}{'peak RSS (MiB)':>22}{'seconds':>18}")
    formats = {"saved_mib": ".0f", "peak_rss_mib": ".0f", "seconds": ".2f"}
    for variant, result in results.items():
        cells = [f"{result[key]:{form}} ({result[key] / base[key]:.2f}x)" for key, form in formats.items()]
        print(f"{variant:<14}{cells[0]:>28}{cells[1]:>22}{cells[2]:>18}")
    atomic_write_json(args.output_dir / "activation_checkpointing.json",
                      {"config": str(args.config), "batch": args.batch, "size": args.size, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
