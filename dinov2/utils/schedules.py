"""Training schedules as plain per-iteration arrays, built from (config, number of iterations).

A schedule is a function of the config and the length of the stretch it covers, so a training phase can build
its own schedules (restarting warm-up and cosine) or slice a longer one (continuing them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_iters: int,
    warmup_iters: int = 0,
    start_warmup_value: float = 0.0,
    freeze_iters: int = 0,
) -> np.ndarray:
    """``freeze_iters`` zeros, a linear warm-up ``start_warmup_value -> base_value`` (both ends included), then a
    half cosine from ``base_value`` towards ``final_value`` over the remaining iterations (DINOv2's shape: the
    last value is one step short of ``final_value``). Length ``total_iters``."""
    if min(total_iters, warmup_iters, freeze_iters) < 0:
        raise ValueError("schedule lengths must not be negative")
    if freeze_iters + warmup_iters > total_iters:
        raise ValueError(f"freeze ({freeze_iters}) + warm-up ({warmup_iters}) exceed the {total_iters} iterations")
    freeze = np.zeros(freeze_iters)
    warmup = np.linspace(start_warmup_value, base_value, warmup_iters)
    steps = np.arange(total_iters - warmup_iters - freeze_iters)
    cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * steps / max(len(steps), 1)))
    return np.concatenate((freeze, warmup, cosine)).astype(np.float64)


def warmup_then_constant(start_value: float, value: float, warmup_iters: int, total_iters: int) -> np.ndarray:
    """Linear ``start_value -> value`` over ``warmup_iters`` (capped at the length), then ``value``."""
    warmup_iters = min(warmup_iters, total_iters)
    return np.concatenate(
        (np.linspace(start_value, value, warmup_iters), np.full(total_iters - warmup_iters, value, dtype=np.float64))
    )


@dataclass
class Schedules:
    """Per-iteration values; index ``i`` is what iteration ``i`` of the stretch uses."""

    lr: np.ndarray
    last_layer_lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray

    def __len__(self) -> int:
        return len(self.lr)

    def at(self, iteration: int) -> dict[str, float]:
        """The values of one iteration as plain floats."""
        if not 0 <= iteration < len(self):
            raise IndexError(f"iteration {iteration} is outside the schedule of {len(self)} iterations")
        return {
            "lr": float(self.lr[iteration]),
            "last_layer_lr": float(self.last_layer_lr[iteration]),
            "wd": float(self.weight_decay[iteration]),
            "momentum": float(self.momentum[iteration]),
            "teacher_temp": float(self.teacher_temp[iteration]),
        }


def build_schedules(cfg: DictConfig, peak_lr: float, total_iters: int) -> Schedules:
    """All schedules of a stretch of ``total_iters`` iterations (epochs of ``train.OFFICIAL_EPOCH_LENGTH``)."""
    epoch_length = cfg.train.OFFICIAL_EPOCH_LENGTH
    warmup_iters = min(cfg.optim.warmup_epochs * epoch_length, total_iters)
    lr = cosine_schedule(peak_lr, cfg.optim.min_lr, total_iters, warmup_iters, 0.0)
    last_layer_lr = lr.copy()
    last_layer_lr[: cfg.optim.freeze_last_layer_epochs * epoch_length] = 0.0
    return Schedules(
        lr=lr,
        last_layer_lr=last_layer_lr,
        weight_decay=cosine_schedule(cfg.optim.weight_decay, cfg.optim.weight_decay_end, total_iters),
        momentum=cosine_schedule(cfg.teacher.momentum_teacher, cfg.teacher.final_momentum_teacher, total_iters),
        teacher_temp=warmup_then_constant(
            cfg.teacher.warmup_teacher_temp,
            cfg.teacher.teacher_temp,
            cfg.teacher.warmup_teacher_temp_epochs * epoch_length,
            total_iters,
        ),
    )
