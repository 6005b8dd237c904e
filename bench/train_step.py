"""Time one DINOv2 training step against its unavoidable core, in the same process on the same crops.

    python bench/train_step.py [--config-file dinov2/configs/train/tiny_cpu.yaml] [--steps 10] [key=value ...]

Full step: everything ``python -m dinov2.train`` does per iteration (schedules, teacher on the global crops,
student on all crops, DINO/iBOT/KoLeo losses, centering, loss check, backward, clipping, AdamW, EMA).
Baseline: the student's forward (backbone, then the heads on the class tokens and the masked patch tokens) and
backward plus the teacher's forward alone on the same crops. The two are measured alternately and the medians
compared; the ratio is the cost of everything else (target on the CPU: at most 1.3x). Also prints images/s and
peak memory; ``--output-json`` writes the same figures to a file.

Efficiency: the FLOPs of one full step are counted with PyTorch's FLOP counter (matrix products and attention, as
PyTorch counts them), divided by the step's median time, and compared with this machine's dense matmul rate
measured in the same run (fp32, or the step's autocast dtype on CUDA: square products of 2048, best of several):
the practical limit. The ImageNet-100 recipe's shapes on a CPU-sized batch:

    python bench/train_step.py --config-file dinov2/configs/train/imagenet100_vits16.yaml train.batch_size_per_gpu=4
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from utils import distributed
from dinov2.data import MaskingGenerator, collate_data_and_cast
from dinov2.train.data_setup import batch_to_device, n_patch_tokens
from dinov2.train.trainer import Trainer
from dinov2.utils.checks import check_config
from dinov2.utils.config import CONFIGS_DIR, load_config
from utils.atomic import atomic_write_json
from utils.device import AUTOCAST_DTYPES, autocast

DEFAULT_CONFIG = CONFIGS_DIR / "train" / "tiny_cpu.yaml"


def synthetic_batch(cfg, seed: int = 0) -> dict:
    """A collated batch of random crops with real iBOT masks."""
    g = torch.Generator().manual_seed(seed)
    global_size, local_size = cfg.crops.global_crops_size, cfg.crops.local_crops_size
    samples = [
        (
            {
                "global_crops": [torch.randn(3, global_size, global_size, generator=g) for _ in range(2)],
                "local_crops": [torch.randn(3, local_size, local_size, generator=g)
                                for _ in range(cfg.crops.local_crops_number)],
            },
            0,
        )
        for _ in range(cfg.train.batch_size_per_gpu)
    ]
    side, n_tokens = n_patch_tokens(cfg)
    return collate_data_and_cast(
        samples, tuple(cfg.ibot.mask_ratio_min_max), cfg.ibot.mask_sample_probability, torch.float32, n_tokens,
        MaskingGenerator((side, side), max_num_patches=int(0.5 * side * side)), generator=seed,
    )


def _head_scores(model, branch: dict, cls_tokens: torch.Tensor, patch_tokens: torch.Tensor | None) -> list:
    """The heads on the class tokens and, with iBOT, on the masked patch tokens: the model's own output."""
    if patch_tokens is None:
        return [branch["dino_head"](cls_tokens)]
    if model.ibot_separate_head:
        return [branch["dino_head"](cls_tokens), branch["ibot_head"](patch_tokens)]
    return [branch["dino_head"](torch.cat((cls_tokens, patch_tokens)))]


def _masked_patches(output: dict, batch: dict, do_ibot: bool) -> torch.Tensor | None:
    if not do_ibot:
        return None
    return torch.index_select(output["x_norm_patchtokens"].flatten(0, 1), 0, batch["mask_indices_list"])


def baseline_step(trainer: Trainer, batch: dict) -> None:
    """Student forward + backward and teacher forward (backbones and heads on every token the losses use), nothing
    else: no targets, losses, centering, optimizer or EMA."""
    model = trainer.model
    with autocast(trainer.ctx.device, trainer.precision):
        with torch.no_grad():
            teacher = model.teacher["backbone"](batch["collated_global_crops"], is_training=True)
            _head_scores(model, model.teacher, teacher["x_norm_clstoken"],
                         _masked_patches(teacher, batch, model.do_ibot))
        crops = [batch["collated_global_crops"], batch["collated_local_crops"]]
        outputs = model.student["backbone"](crops, masks=[batch["collated_masks"], None], is_training=True)
        cls_tokens = torch.cat([out["x_norm_clstoken"] for out in outputs])
        scores = _head_scores(model, model.student, cls_tokens, _masked_patches(outputs[0], batch, model.do_ibot))
        loss = sum(score.float().mean() for score in scores)
    loss.backward()
    model.student.zero_grad(set_to_none=True)


def step_flops(trainer: Trainer, batch: dict) -> int:
    """FLOPs of one full training step (forward, backward and optimizer), as PyTorch's FLOP counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_step(batch, 0)
    return int(counter.get_total_flops())


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                       repeats: int = 5) -> float:
    """Dense matrix-product FLOP/s of this device: the best of ``repeats`` products of two ``size`` squares."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = min(timed(lambda: a @ b, device) for _ in range(repeats + 1))  # the first call warms up
    return 2 * size ** 3 / best


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds ``fn()`` takes on ``device``, its queued GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each kind (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output-json", type=Path, default=None)
    parser.add_argument("opts", nargs="*", default=[], help="config overrides section.key=value")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    check_config(cfg)
    ctx = distributed.setup()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(cfg, ctx, Path(scratch), dataset=None)
        batch = batch_to_device(synthetic_batch(cfg), ctx.device)
        flops = step_flops(trainer, batch)
        matmul_dtype = AUTOCAST_DTYPES.get(trainer.precision, torch.float32)
        limit = matmul_flops_per_s(ctx.device, matmul_dtype)
        full_times, base_times = [], []
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        for step in tqdm(range(args.warmup + args.steps), desc="bench", unit="step"):
            base = timed(lambda: baseline_step(trainer, batch), ctx.device)
            logged = step % cfg.train.log_period == 0  # the diagnostics are computed on logged iterations only
            full = timed(lambda: trainer.train_step(batch, step % len(trainer.schedules), diagnose=logged),
                         ctx.device)
            if step >= args.warmup:
                base_times.append(base)
                full_times.append(full)
        # measured again after the steps, the best of both: one slow moment on a shared machine must not lower it
        limit = max(limit, matmul_flops_per_s(ctx.device, matmul_dtype))
    full_s, base_s = statistics.median(full_times), statistics.median(base_times)
    if ctx.device.type == "cuda":
        peak = {"peak_cuda_memory_mib": torch.cuda.max_memory_allocated(ctx.device) / 2**20}
    else:
        peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    result = {
        "config": str(args.config_file), "overrides": args.opts, "device": str(ctx.device),
        "arch": cfg.student.arch, "batch_size": cfg.train.batch_size_per_gpu,
        "global_crops": f"2x{cfg.crops.global_crops_size}", "local_crops": f"{cfg.crops.local_crops_number}x{cfg.crops.local_crops_size}",
        "torch_threads": torch.get_num_threads(), "steps": args.steps,
        "full_step_s": full_s, "baseline_step_s": base_s, "ratio": full_s / base_s,
        "images_per_s": cfg.train.batch_size_per_gpu / full_s, **peak,
        "step_gflop": flops / 1e9, "achieved_gflop_per_s": flops / full_s / 1e9,
        "matmul_gflop_per_s": limit / 1e9, "fraction_of_matmul_limit": flops / full_s / limit,
    }
    print(json.dumps(result, indent=2))
    print(f"full SSL step {full_s * 1e3:.1f} ms vs student fwd+bwd + teacher fwd {base_s * 1e3:.1f} ms: "
          f"ratio {result['ratio']:.2f}x (target <= 1.3x on CPU), {result['images_per_s']:.1f} images/s")
    print(f"{result['step_gflop']:.2f} GFLOP per step, {result['achieved_gflop_per_s']:.1f} GFLOP/s achieved = "
          f"{100 * result['fraction_of_matmul_limit']:.0f} % of this device's dense matmul rate "
          f"({result['matmul_gflop_per_s']:.1f} GFLOP/s)")
    if args.output_json:
        atomic_write_json(args.output_json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
