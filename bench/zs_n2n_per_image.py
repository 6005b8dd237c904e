"""What Zero-Shot Noise2Noise costs fitted per image, as the method does, against one fit on the training images.

    python bench/zs_n2n_per_image.py [--images 3] [--steps 3000] [--tree-images 5000] [--epochs 3]
                                     [--batch-size 16] [--out bench_zs_n2n.json]

Per image: the method's schedule (Adam lr 1e-3 halved at half the steps, --steps full-batch steps on one image)
on --images embedded digits (32x32, gauss100), timed, then projected to --tree-images images (the quick start's
tree holds 5,000). Baseline, in the same run: the network fitted once on --tree-images digits' crops for --epochs
epochs at --batch-size, as ``Neighbor2Neighbor/train.py --objective zs_n2n`` does. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from Neighbor2Neighbor.zs_n2n import ZeroShotNet, zs_n2n_loss
from utils.atomic import atomic_write_json
from utils.embedded_mnist import load_mnist5k, pad_to
from utils.noise import noisy_image, parse_noise


def noisy_digits(count: int) -> torch.Tensor:
    """``count`` embedded digits (32x32 RGB) noised with gauss100, as a float N x 3 x 32 x 32 batch in [0, 1]."""
    images, _ = load_mnist5k()
    rgb = np.repeat(pad_to(images[:count], 32)[..., None], 3, axis=3)
    spec = parse_noise("gauss100")
    noisy = np.stack([noisy_image(im, spec, 42, f"bench/{i}.png") for i, im in enumerate(rgb)])
    return torch.from_numpy(noisy).permute(0, 3, 1, 2).float() / 255.0


def fit_seconds(batches: list[torch.Tensor], steps: int) -> float:
    """Seconds to fit a fresh network for ``steps`` Adam steps cycling over ``batches`` (lr halved at half)."""
    torch.manual_seed(0)
    model = ZeroShotNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, steps // 2), gamma=0.5)
    started = time.perf_counter()
    for step in range(steps):
        loss = zs_n2n_loss(model, batches[step % len(batches)]).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run both fits and print the projected per-image cost against the one fit on the tree."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3, help="images fitted one by one (timed)")
    parser.add_argument("--steps", type=int, default=3000, help="steps per image (the method's default)")
    parser.add_argument("--tree-images", type=int, default=5000, help="images of the tree both costs are for")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the one fit on the tree")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    digits = noisy_digits(max(args.images, args.tree_images))
    per_image = [fit_seconds([digits[i:i + 1]], args.steps) for i in range(args.images)]
    seconds_per_image = float(np.mean(per_image))
    batches = list(torch.split(digits[:args.tree_images], args.batch_size))
    once = fit_seconds(batches, args.epochs * len(batches))
    projected = seconds_per_image * args.tree_images
    result = {"threads": torch.get_num_threads(), "steps_per_image": args.steps,
              "seconds_per_image": seconds_per_image, "tree_images": args.tree_images,
              "per_image_projected_seconds": projected, "one_fit_epochs": args.epochs,
              "one_fit_seconds": once, "ratio": projected / once}
    print(f"per image: {seconds_per_image:.2f} s x {args.tree_images} images = {projected:.0f} s; one fit on the "
          f"tree ({args.epochs} epochs): {once:.1f} s; ratio {projected / once:.0f}x "
          f"({torch.get_num_threads()} threads)")
    if args.out is not None:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
