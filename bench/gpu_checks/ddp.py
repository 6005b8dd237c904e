"""The DDP check's worker, one per rank under torchrun (launched by ``bench/gpu_check.sh``).

Every rank builds the Trainer of the check recipe (DDP over NCCL on GPUs, gloo on the CPU), trains a few steps on
its own synthetic batch, and the ranks compare their whole model state (student, EMA teacher, centers): gradient
all-reduce and identical updates leave it bit-identical. Rank 0 writes the result as one JSON entry.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bench.gpu_checks.common import (
    Settings, check_recipe, device_batch, make_trainer, peak_lr_iteration,
)
from bench.train_step import synchronize
from utils import distributed
from utils.atomic import atomic_write_json
from utils.cli import one_line
from utils.distributed import DistributedContext


def run_worker(smoke: bool, quick: bool, tolerance_scale: float, result_path: Path) -> int:
    """One rank of the check; returns its exit status (0 when the check passed)."""
    ctx = distributed.setup("cpu" if smoke else "cuda")
    try:
        if not dist.is_initialized():
            # one process (a single GPU): no DDP wrapper, but the backend's collectives still run
            backend = "nccl" if ctx.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, rank=0, world_size=1,
                                    device_id=ctx.device if ctx.device.type == "cuda" else None)
        with tempfile.TemporaryDirectory() as scratch:
            settings = Settings(ctx.device, smoke, quick, tolerance_scale, Path(scratch))
            entry = ddp_steps(settings, ctx)
    except Exception as error:  # reported in the JSON; torchrun stops the other ranks
        traceback.print_exc()
        entry = {"ok": False, "error": f"rank {ctx.rank}: {type(error).__name__}: {one_line(error)}"}
    if ctx.is_main:
        atomic_write_json(result_path, entry)
    distributed.cleanup()
    return 0 if entry["ok"] else 1


def flat_state(module: torch.nn.Module) -> torch.Tensor:
    """Every floating-point tensor of ``module``'s state, flattened into one float32 vector."""
    return torch.cat([t.detach().float().flatten() for t in module.state_dict().values() if t.is_floating_point()])


def rank_spread(values: torch.Tensor) -> float:
    """The largest difference between ranks of any element of ``values`` (0 when every rank holds the same)."""
    high, low = values.clone(), values.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max())


def ddp_steps(settings: Settings, ctx: DistributedContext) -> dict:
    """Train a few steps from the learning rate's peak, each rank on its own batch; compare the ranks' states."""
    cfg = check_recipe(settings)
    trainer = make_trainer(cfg, ctx, settings, settings.training_precision)
    batch = device_batch(cfg, ctx.device, seed=1 + ctx.rank)  # each rank its own crops, as the sampler shares a batch
    initial = flat_state(trainer.model.student)
    steps = settings.pick(gpu=3, quick=2, smoke=2)
    synchronize(ctx.device)
    started = time.perf_counter()
    for step in range(steps):
        trainer.train_step(batch, peak_lr_iteration(trainer, step))
    synchronize(ctx.device)
    step_s = (time.perf_counter() - started) / steps
    moved = float((flat_state(trainer.model.student) - initial).abs().max())
    spread = rank_spread(flat_state(trainer.model))
    batch_sums = distributed.all_gather_object(float(batch["collated_global_crops"].sum()))
    distinct = len(set(batch_sums)) == len(batch_sums)
    wrapped = isinstance(trainer.model.student_forward["backbone"], DistributedDataParallel)
    entry = {
        "ok": spread == 0.0 and moved > 0.0 and distinct and wrapped == ctx.enabled, "backend": dist.get_backend(),
        "world_size": ctx.world_size, "ddp_wrapped": wrapped, "device": str(ctx.device),
        "precision": trainer.precision, "steps": steps, "step_s": step_s, "max_rank_difference": spread,
        "max_student_weight_change": moved, "ranks_had_different_batches": distinct,
    }
    if not ctx.enabled:
        entry["detail"] = "one GPU: the backend ran, but there is no second rank to compare (no DDP wrapper)"
    return entry
