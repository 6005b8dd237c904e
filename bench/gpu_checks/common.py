"""What every check shares: the run's settings, the tolerances, DINOv2 trainers fed with synthetic batches."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
from omegaconf import DictConfig

from bench.train_step import synthetic_batch
from dinov2.train.data_setup import batch_to_device
from dinov2.train.trainer import Trainer
from dinov2.utils.checks import check_config
from dinov2.utils.config import CONFIGS_DIR, load_config
from utils.distributed import DistributedContext

GPU_CHECK_RECIPE = CONFIGS_DIR / "train" / "imagenet100_vits16.yaml"
SMOKE_CHECK_RECIPE = CONFIGS_DIR / "train" / "smoke_cpu.yaml"
# the checks test numerics, not speed: the real ViT-S/16 shapes at a small batch keep them quick
GPU_CHECK_BATCH = 8

# Loss terms of one step against fp32, as |x - x_fp32| / max(|x_fp32|, 1). Measured on the CPU (first step): the
# smoke ViT (4 blocks) at most 7e-3 in bf16 and 3e-3 in fp16, ViT-S/16 at batch 2 at most 1e-4 and 1e-5, KoLeo (log
# of nearest-neighbour distances) being the worst term. GPU kernels (flash attention, cuBLAS reductions) round in
# their own order, so the limits keep ~7x room over the worst measurement: a real regression (a softmax or a loss in
# half precision, fp16 without loss scaling) moves the losses by far more. fp32 serves torch.compile against eager:
# only the operation order differs (2e-8 on the CPU).
LOSS_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 2e-2}


@dataclass(frozen=True)
class Settings:
    """One run of the checks: the device, the size profile and how strict the tolerances are."""

    device: torch.device
    smoke: bool  # toy sizes on the CPU, the same code paths
    quick: bool  # fewer timed iterations
    tolerance_scale: float  # multiplies every tolerance (0 makes any numerical difference a failure)
    scratch: Path  # trainers need an output folder; nothing is written there

    @property
    def low_precision(self) -> str:
        """The autocast precision of mixed-precision runs: bf16 (fp16 on CUDA GPUs without bf16)."""
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "fp16"
        return "bf16"

    @property
    def training_precision(self) -> str:
        """The precision the training recipes use here: bf16 autocast on CUDA, fp32 on the CPU."""
        return self.low_precision if self.device.type == "cuda" else "fp32"

    def tolerance(self, precision: str) -> float:
        """The relative loss tolerance of ``precision``, scaled."""
        return LOSS_TOLERANCE[precision] * self.tolerance_scale

    def pick(self, gpu: int, quick: int, smoke: int) -> int:
        """A count (iterations, batches) for this profile."""
        return smoke if self.smoke else quick if self.quick else gpu


def check_recipe(settings: Settings, overrides: Iterable[str] = ()) -> DictConfig:
    """The DINOv2 config of the checks: ImageNet-100's ViT-S/16 at batch 8 on CUDA, the smoke recipe on the CPU."""
    if settings.smoke:
        return load_recipe(SMOKE_CHECK_RECIPE, overrides)
    return load_recipe(GPU_CHECK_RECIPE, [f"train.batch_size_per_gpu={GPU_CHECK_BATCH}", *overrides])


def load_recipe(path: Path, overrides: Iterable[str] = ()) -> DictConfig:
    """A checked training config (the same checks as ``python -m dinov2.train``)."""
    cfg = load_config(path, list(overrides))
    check_config(cfg)
    return cfg


def make_trainer(cfg: DictConfig, ctx: DistributedContext, settings: Settings, precision: str,
                 init_scale: float = 2.0 ** 16) -> Trainer:
    """A Trainer (``dataset=None``: batches are given to ``train_step``) computing in ``precision``."""
    trainer = Trainer(cfg, ctx, settings.scratch, dataset=None)
    # the Trainer computes in fp32 on the CPU; setting its precision (and loss scaler) afterwards sends the smoke run
    # through the same autocast and grad-scaler code as CUDA
    trainer.precision = precision
    trainer.scaler = torch.amp.GradScaler(ctx.device.type, init_scale=init_scale, enabled=precision == "fp16")
    return trainer


def device_batch(cfg: DictConfig, device: torch.device, seed: int = 0) -> dict:
    """A synthetic collated batch (random crops, real iBOT masks) on ``device``."""
    return batch_to_device(synthetic_batch(cfg, seed=seed), device)


def peak_lr_iteration(trainer: Trainer, step: int = 0) -> int:
    """The ``step``-th iteration from the first one after the warm-up, where the learning rate is at its peak (it is
    0 at iteration 0, where an optimizer step would change nothing); wraps around at the schedule's end."""
    cfg = trainer.cfg
    start = min(cfg.optim.warmup_epochs * cfg.train.OFFICIAL_EPOCH_LENGTH, len(trainer.schedules) - 1)
    return (start + step) % len(trainer.schedules)


def loss_terms(record: dict[str, float]) -> dict[str, float]:
    """The loss terms (and their total) of a ``train_step`` record."""
    return {key: value for key, value in record.items() if key.endswith("_loss")}


def worst_difference(terms: dict[str, float], reference: dict[str, float]) -> tuple[float, Optional[str]]:
    """The largest ``|x - ref| / max(|ref|, 1)`` over the terms, and the term it comes from."""
    worst, name = 0.0, None
    for key, ref in reference.items():
        difference = abs(terms[key] - ref) / max(abs(ref), 1.0)
        if not math.isfinite(difference):
            return math.inf, key
        if difference > worst:
            worst, name = difference, key
    return worst, name


def gradients(module: torch.nn.Module) -> list[torch.Tensor]:
    """The gradients held by ``module``'s parameters."""
    return [p.grad for p in module.parameters() if p.grad is not None]


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """True when every value of every tensor is finite (one device-to-host copy)."""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all().item()) if tensors else True


def global_norm(tensors: list[torch.Tensor]) -> float:
    """The L2 norm of all the tensors together."""
    return float(torch.linalg.vector_norm(torch.stack([t.float().norm() for t in tensors])).item())


def release(device: torch.device) -> None:
    """Free what the previous check left behind, so that one check's memory never counts against the next."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def single_process(settings: Settings) -> DistributedContext:
    """The context of a one-process run on the settings' device."""
    return DistributedContext(rank=0, world_size=1, local_rank=0, device=settings.device)
