"""Time the DINO + iBOT loss over many prototypes: the fused soft cross-entropy against the composite formula.

    python bench/prototype_loss.py [--prototypes 65536] [--batch 40] [--local-crops 8] [--masked 2400]
                                   [--repeats 10] [--device auto]

Both compute the same terms from the same head outputs (forward and backward): DINO on every local crop against
both global targets, DINO on the global crops (crop-swapped), iBOT on the masked patch tokens. The composite
formula is ``-(t * log_softmax(s / T)).sum(-1)`` for every (student, teacher) pair, as the losses were written
before :mod:`dinov2.loss.soft_cross_entropy`. The defaults are the ImageNet-100 recipe's per-GPU shapes (batch 40,
8 local crops, about 2,400 masked patch tokens per batch). Prints the median times and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F

from bench.train_step import timed
from dinov2.loss import DINOLoss, iBOTPatchLoss
from utils.cpu_memory import keep_freed_memory
from utils.device import resolve_device

STUDENT_TEMP = 0.1


def composite_loss(local: torch.Tensor, global_: torch.Tensor, masked: torch.Tensor, dino_targets: torch.Tensor,
                   ibot_targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The loss terms pair by pair through log_softmax (``local [L, B, K]``, ``dino_targets [2, B, K]``)."""
    def cross_entropy(scores, targets):
        return -(targets * F.log_softmax(scores.float() / STUDENT_TEMP, dim=-1)).sum(dim=-1)

    total = sum(cross_entropy(view, target).mean() for view in local for target in dino_targets)
    total = total + cross_entropy(global_, dino_targets.flatten(0, 1)).mean()
    return total + (cross_entropy(masked, ibot_targets) * weights).sum()


def fused_loss(local, global_, masked, dino_targets, ibot_targets, weights) -> torch.Tensor:
    """The same terms through the project's losses."""
    dino = DINOLoss(dino_targets.shape[-1], student_temp=STUDENT_TEMP).to(local.device)
    ibot = iBOTPatchLoss(dino_targets.shape[-1], student_temp=STUDENT_TEMP).to(local.device)
    total = dino(local, dino_targets) + dino([global_], [dino_targets.flatten(0, 1)])
    n_images = torch.ones(1, masked.shape[0], dtype=torch.bool, device=local.device)
    return total + ibot.forward_masked(masked, ibot_targets, n_images, masks_weight=weights)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prototypes", type=int, default=65536)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--local-crops", type=int, default=8)
    parser.add_argument("--masked", type=int, default=2400, help="masked patch tokens in the batch")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()
    g = torch.Generator(device=device).manual_seed(0)
    k, b = args.prototypes, args.batch
    heads = torch.randn(args.local_crops * b + 2 * b + args.masked, k, device=device, generator=g)
    dino_targets = F.softmax(torch.randn(2, b, k, device=device, generator=g) / 0.04, dim=-1)
    ibot_targets = F.softmax(torch.randn(args.masked, k, device=device, generator=g) / 0.04, dim=-1)
    weights = torch.full((args.masked,), 1.0 / args.masked, device=device)

    def step(loss_fn) -> float:
        scores = heads.detach().requires_grad_(True)
        local, global_, masked = scores.split([args.local_crops * b, 2 * b, args.masked])
        loss = loss_fn(local.unflatten(0, (args.local_crops, b)), global_, masked, dino_targets, ibot_targets, weights)
        loss.backward()
        return float(loss.detach())

    times: dict[str, list[float]] = {"composite": [], "fused": []}
    values = {name: step(fn) for name, fn in (("composite", composite_loss), ("fused", fused_loss))}  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("composite", composite_loss), ("fused", fused_loss)):
            times[name].append(timed(lambda: step(fn), device))
    composite, fused = (statistics.median(times[name]) for name in ("composite", "fused"))
    print(f"{heads.shape[0]} rows x {k} prototypes on {device}: loss {values['fused']:.6f} "
          f"(composite {values['composite']:.6f})")
    print(f"forward + backward: composite {composite * 1e3:.1f} ms, fused {fused * 1e3:.1f} ms, "
          f"speed-up {composite / fused:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
