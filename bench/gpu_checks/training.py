"""DINOv2 training-step numerics: mixed precision against fp32, the fused AdamW step, torch.compile against eager."""

from __future__ import annotations

import statistics
from typing import Optional

import torch

from bench.gpu_checks.common import (
    Settings, all_finite, check_recipe, device_batch, global_norm, gradients, loss_terms, make_trainer,
    peak_lr_iteration, single_process, worst_difference,
)
from bench.train_step import timed
from dinov2.train.trainer import Trainer

# an overflowing fp16 step is retried at 1/16 of the scale (4 halvings at once: fewer retries, same outcome)
LOSS_SCALE_RETRY_FACTOR = 1 / 16
MAX_LOSS_SCALE_RETRIES = 4
# A fused AdamW step against the for-loop one on the same gradients: the same formula in another order, so each
# weight agrees to about one float32 ulp of itself (weights near 1, such as LayerNorm scales, differ by 6e-8 on the
# CPU for updates of 2e-4). Allowed per weight: 4 ulps of it plus 1e-3 of the step's largest update. A wrong term (a
# missed bias correction, weight decay) moves weights by at least a sizeable part of an update: far more.
FUSED_ULPS = 4
FUSED_UPDATE_FRACTION = 1e-3
OPTIMIZER_IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")
CPU_FUSED_DETAIL = "CPU: the trainer's AdamW is unfused by design; a fused CPU AdamW with its groups was compared"


def check_precision(settings: Settings) -> dict[str, dict]:
    """One training step from the same weights on the same batch in fp32, fp16 (with loss scaling) and bf16: the loss
    terms of fp16 / bf16 within :data:`~bench.gpu_checks.common.LOSS_TOLERANCE` of fp32, every gradient finite."""
    cfg = check_recipe(settings)
    ctx = single_process(settings)
    batch = device_batch(cfg, settings.device)
    reference: Optional[dict[str, float]] = None
    entry: dict = {"ok": True, "tolerance": {}}
    for precision in ("fp32", "fp16", "bf16"):
        trainer = make_trainer(cfg, ctx, settings, precision)
        record, loss_scale = _step_with_loss_scaling(trainer, batch, 0)
        grads = gradients(trainer.model.student)
        terms = loss_terms(record)
        result = {"loss_terms": terms, "gradients_finite": all_finite(grads), "gradient_norm": global_norm(grads)}
        if precision == "fp16":
            result["loss_scale"] = loss_scale
        if reference is None:
            reference = terms
        else:
            tolerance = settings.tolerance(precision)
            difference, term = worst_difference(terms, reference)
            result.update(max_relative_difference=difference, worst_term=term)
            entry["tolerance"][precision] = tolerance
            entry["ok"] &= difference <= tolerance
        entry["ok"] &= result["gradients_finite"]
        entry[precision] = result
        del trainer
    return {"precision": entry}


def _step_with_loss_scaling(trainer: Trainer, batch: dict, iteration: int) -> tuple[dict[str, float], Optional[float]]:
    """``train_step``; in fp16, repeated from the same state at a smaller loss scale while the scaler skips the step
    (an overflow at the initial scale of 2^16 is normal: training skips such steps the same way)."""
    if not trainer.scaler.is_enabled():
        return trainer.train_step(batch, iteration), None
    initial = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    for _ in range(MAX_LOSS_SCALE_RETRIES + 1):
        scale = trainer.scaler.get_scale()
        record = trainer.train_step(batch, iteration)
        if trainer.scaler.get_scale() >= scale:
            return record, scale
        trainer.model.load_state_dict(initial)  # the skipped step still moved the centers and the EMA teacher
        trainer.optimizer.state.clear()
        trainer.scaler = torch.amp.GradScaler(trainer.ctx.device.type, init_scale=scale * LOSS_SCALE_RETRY_FACTOR)
    raise FloatingPointError(f"fp16 gradients overflow at every loss scale down to {scale:g}")


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """True when every parameter group of ``optimizer`` takes the fused kernel."""
    return bool(optimizer.defaults.get("fused")) and all(group.get("fused") for group in optimizer.param_groups)


def _implementation_free(groups: list[dict]) -> list[dict]:
    """Copies of parameter groups without the implementation choices (fused / foreach), which groups override."""
    return [{k: v for k, v in group.items() if k not in OPTIMIZER_IMPLEMENTATION_KEYS} for group in groups]


def check_fused_adamw(settings: Settings) -> dict[str, dict]:
    """The trainer's AdamW is fused on CUDA, and its step equals the for-loop AdamW step on the same gradients.

    The CPU trainer keeps the unfused kernel (the fused one is for CUDA); the smoke run swaps in a fused CPU AdamW
    with the same groups, so that the comparison itself still runs."""
    cfg = check_recipe(settings, ["optim.fused=true"])
    trainer = make_trainer(cfg, single_process(settings), settings, settings.training_precision)
    trainer_fused = is_fused(trainer.optimizer)
    if settings.device.type != "cuda":
        trainer.optimizer = torch.optim.AdamW(_implementation_free(trainer.optimizer.param_groups), fused=True)
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    before = [p.detach().clone() for p in params]
    trainer.train_step(device_batch(cfg, settings.device), peak_lr_iteration(trainer))
    # the gradients the fused step used stay in .grad (the next step zeroes them)
    copies = {id(p): b.clone().requires_grad_() for p, b in zip(params, before)}
    for p in params:
        copies[id(p)].grad = p.grad.detach().clone()
    groups = _implementation_free(trainer.optimizer.param_groups)
    for group in groups:
        group["params"] = [copies[id(p)] for p in group["params"]]
    torch.optim.AdamW(groups, fused=False, foreach=False).step()
    update = max(float((p.detach() - b).abs().max()) for p, b in zip(params, before))
    ulp = torch.finfo(torch.float32).eps
    difference = excess = 0.0
    for p in params:
        fused, reference = p.detach().float(), copies[id(p)].detach().float()
        gap = (fused - reference).abs()
        allowed = settings.tolerance_scale * (FUSED_ULPS * ulp * reference.abs() + FUSED_UPDATE_FRACTION * update)
        difference, excess = max(difference, float(gap.max())), max(excess, float((gap - allowed).max()))
    used_fused = is_fused(trainer.optimizer)
    ok = used_fused and update > 0 and excess <= 0 and (trainer_fused or settings.device.type != "cuda")
    return {"fused_adamw": {
        "ok": ok, "trainer_optimizer_fused": trainer_fused, "compared_optimizer_fused": used_fused,
        "max_update": update, "max_difference": difference,
        "tolerance": f"{FUSED_ULPS} float32 ulps of each weight + {FUSED_UPDATE_FRACTION:g} x max_update",
        "within_tolerance": excess <= 0,
        **({} if settings.device.type == "cuda" else {"detail": CPU_FUSED_DETAIL}),
    }}


def check_compile(settings: Settings) -> dict[str, dict]:
    """``train.compile=true`` steps against eager ones from the same weights on the same batch: every loss term of
    every step within the precision's tolerance. Inductor on CUDA; on the smoke run ``aot_eager``, the cheapest
    backend that still goes through dynamo and AOT autograd."""
    # no stochastic depth: compiled graphs draw their random numbers from another generator than eager code
    backend = "aot_eager" if settings.smoke else "inductor"
    cfg = check_recipe(settings, ["student.drop_path_rate=0.0", f"train.compile_backend={backend}"])
    ctx = single_process(settings)
    precision = settings.training_precision
    batch = device_batch(cfg, settings.device)
    steps = settings.pick(gpu=3, quick=2, smoke=2)
    runs = {}
    for mode in ("eager", "compiled"):
        cfg.train.compile = mode == "compiled"
        trainer = make_trainer(cfg, ctx, settings, precision)
        runs[mode] = _timed_steps(trainer, batch, steps)
        del trainer
    torch._dynamo.reset()  # drop the compiled graphs and their guards before the next check
    (eager_terms, eager_times), (compiled_terms, compiled_times) = runs["eager"], runs["compiled"]
    difference, term = max((worst_difference(c, e) for c, e in zip(compiled_terms, eager_terms)),
                           key=lambda found: found[0])
    tolerance = settings.tolerance(precision)
    return {"compile": {
        "ok": difference <= tolerance, "backend": backend, "precision": precision,
        "steps": steps, "max_relative_difference": difference, "worst_term": term, "tolerance": tolerance,
        # the first step's extra time over eager's first step (which has its own warm-up) is the compilation
        "first_compiled_step_s": compiled_times[0], "compile_s": max(compiled_times[0] - eager_times[0], 0.0),
        "eager_step_s": statistics.median(eager_times[1:] or eager_times),
        "compiled_step_s": statistics.median(compiled_times[1:] or compiled_times),
        "total_loss": {"eager": [t["total_loss"] for t in eager_terms],
                       "compiled": [t["total_loss"] for t in compiled_terms]},
    }}


def _timed_steps(trainer: Trainer, batch: dict, steps: int) -> tuple[list[dict[str, float]], list[float]]:
    """The loss terms and wall times of ``steps`` training steps from the learning rate's peak."""
    records: list[dict[str, float]] = []
    times = []
    for step in range(steps):
        torch.manual_seed(step)
        iteration = peak_lr_iteration(trainer, step)
        times.append(timed(lambda: records.append(trainer.train_step(batch, iteration)), trainer.ctx.device))
    return [loss_terms(record) for record in records], times
