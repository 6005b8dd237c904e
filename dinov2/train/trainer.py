"""The training loop: schedules, AdamW step, gradient clipping, EMA, metrics and exact resume; the run directory's
files are :class:`~dinov2.train.run_directory.RunDirectory`'s."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from utils import distributed
from utils.distributed import DistributedContext
from dinov2.train.curriculum import Phase, build_curriculum_schedules, build_phases, existing_checkpoint, phase_at
from dinov2.train.data_setup import batch_to_device, build_data_loader
from dinov2.train.health_monitor import HealthMonitor, RepresentationCollapsed
from dinov2.train.meta_arch import build_meta_arch
from dinov2.train.nct import freeze_backbone_anchor, split_model_state
from dinov2.train.run_directory import RunDirectory
from dinov2.train.run_files import git_sha
from dinov2.utils.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state
from dinov2.utils.choices import evaluated_encoder
from dinov2.utils.config import ConfigError, config_to_yaml, derived_values
from dinov2.utils.param_groups import apply_schedule_values, build_optimizer, build_param_groups
from utils.cpu_memory import keep_freed_memory
from utils.device import autocast
from utils.jsonl_log import JsonlLog
from utils.seeding import seed_everything, stable_seed, torch_seed
from utils.cli import squeezed
from utils.weights_file import WeightsFileError

MAX_SKIPPED_STEPS_IN_A_ROW = 20


class NonFiniteLossError(FloatingPointError):
    """A loss term is NaN or infinite; raised before the optimizer step and before any save."""


def checkpoint_of(path: Path, key: str) -> dict:
    """The full checkpoint a config key names; :class:`ConfigError` naming the key and the file otherwise."""
    try:
        return load_checkpoint(path)
    except WeightsFileError as error:
        raise ConfigError(f"config key '{key}': {error}") from None


class Trainer:
    """One training run in ``output_dir``; :meth:`run` trains (resuming when a checkpoint exists)."""

    def __init__(self, cfg: DictConfig, ctx: DistributedContext, output_dir: Path, dataset: Any,
                 phases: Optional[list[Phase]] = None) -> None:
        """``phases``: the run's curriculum as :func:`~dinov2.train.curriculum.check_curriculum` built it (built
        here from ``cfg`` when not given)."""
        self.cfg, self.ctx, self.output_dir, self.dataset = cfg, ctx, Path(output_dir), dataset
        self.phases = phases if phases is not None else build_phases(cfg)
        self.datasets = list(dataset) if isinstance(dataset, (list, tuple)) else [dataset]
        if len(self.datasets) != len(self.phases):
            raise ValueError(f"{len(self.phases)} curriculum phases but {len(self.datasets)} datasets")
        self.derived = {**derived_values(cfg, ctx.world_size), "git_sha": git_sha()}
        self.derived["total_iterations"] = self.phases[-1].end
        self.config_yaml = config_to_yaml(cfg, self.derived)
        self.total_iterations = self.derived["total_iterations"]
        self.schedules = build_curriculum_schedules(cfg, self.derived["lr"], self.phases)
        self.run_dir = RunDirectory(self.output_dir, cfg, ctx, self.config_yaml, self.total_iterations)
        self.phase_start_samples = 0  # samples_consumed when the current phase began (its sampler's origin)
        if ctx.device.type == "cpu" and cfg.train.keep_freed_cpu_memory:
            keep_freed_memory()
        seed_everything(cfg.train.seed)  # identical initial weights on every rank
        self.model = build_meta_arch(cfg).to(ctx.device)
        self.model.train()
        use_cuda = ctx.device.type == "cuda"
        # compute_precision.autocast_dtype applies on CUDA; the CPU computes in fp32
        self.precision = cfg.compute_precision.autocast_dtype if use_cuda else "fp32"
        use_scaler = self.precision == "fp16" and cfg.compute_precision.grad_scaler
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        groups = build_param_groups(
            self.model.student.items(),
            n_blocks=self.model.student["backbone"].n_blocks,
            layerwise_decay=cfg.optim.layerwise_decay,
            patch_embed_lr_mult=cfg.optim.patch_embed_lr_mult,
        )
        self.optimizer = build_optimizer(cfg, groups, use_cuda)
        self._wrap_forwards()
        self.skipped_steps_in_a_row = 0
        self.health = HealthMonitor(cfg, self.phases, self.total_iterations, ctx.is_main, distributed.broadcast_object)

    # ----- set-up -----
    def _wrap_forwards(self) -> None:
        """DDP (gradient all-reduce) and torch.compile act on forward callables only, so parameter names and
        checkpoints never depend on them."""
        model, ctx = self.model, self.ctx
        if ctx.enabled and ctx.device.type == "cuda" and self.cfg.method.sync_batchnorm:
            # BatchNorm statistics over every GPU's images (SimCLR's global BN, MoCo v3's SyncBN); the modules
            # are converted in place, keeping their parameters, buffers and names
            for modules in (model.student, model.teacher):
                for name in list(modules):
                    modules[name] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(modules[name])
            model.student_forward.update(model.student.items())
            model.teacher_forward.update(model.teacher.items())
        if ctx.enabled:
            for tensor in model.broadcast_tensors():
                torch.distributed.broadcast(tensor, src=0)
            for name, module in model.student.items():
                model.student_forward[name] = DistributedDataParallel(
                    module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None, broadcast_buffers=False
                )
        if self.cfg.train.compile:
            backend = self.cfg.train.compile_backend
            model.student_forward["backbone"] = torch.compile(model.student_forward["backbone"], backend=backend)
            if "backbone" in model.teacher_forward:  # SimCLR and SimSiam have no teacher
                model.teacher_forward["backbone"] = torch.compile(model.teacher_forward["backbone"], backend=backend)

    # ----- resume -----
    def resume(self) -> int:
        """Restore the newest loadable checkpoint of the run (or ``MODEL.WEIGHTS``); returns the start iteration."""
        found = self.run_dir.newest_checkpoint()
        if found is None:
            if self.cfg.MODEL.WEIGHTS:
                self.load_initial_weights(Path(self.cfg.MODEL.WEIGHTS), "MODEL.WEIGHTS")
            self._reseed_for_rank()
            return 0
        path, state = found
        self.run_dir.warn_config_changes(state.get("config", ""))
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when written without loss scaling (CPU, bf16)
            self.scaler.load_state_dict(state["scaler"])
        rng_states = state["rng"]
        if len(rng_states) == self.ctx.world_size:
            restore_rng_state(rng_states[self.ctx.rank])
        else:
            warnings.warn(f"{path} was written by {len(rng_states)} ranks, this run has {self.ctx.world_size}: "
                          "random states are reseeded, so the continuation is not bit-exact")
            self._reseed_for_rank(int(state["iteration"]))
        self.samples_consumed = int(state["samples_consumed"])
        self.phase_start_samples = int(state.get("phase_start_samples", 0))
        self._log(f"resumed from {path} at iteration {state['iteration']}")
        last = int(state["iteration"]) - 1
        if self.run_dir.export_if_missing(last, self._evaluated_encoder_state):
            self._log(f"wrote the missing encoder export of iteration {last}")
        return int(state["iteration"])

    def _evaluated_encoder_state(self) -> dict[str, torch.Tensor]:
        # the evaluated encoder's modules: the EMA teacher of DINO-style methods, the student of contrastive ones
        modules = getattr(self.model, evaluated_encoder(self.cfg.method.name))
        return {key: value.detach().cpu() for key, value in modules.state_dict().items()}

    def load_initial_weights(self, path: Path, key: str) -> None:
        """Student, teacher and centers of a full checkpoint (never its optimizer, nor a frozen NCT teacher);
        :class:`ConfigError` naming ``key`` and the file when it is not one of this model."""
        state = checkpoint_of(path, key)
        try:
            missing, unexpected = self.model.load_state_dict(split_model_state(state["model"]), strict=False)
        except RuntimeError as error:  # same keys, other shapes: another architecture
            raise ConfigError(f"config key '{key}': {path} does not fit this model "
                              f"({squeezed(error, 200)})") from None
        missing = [name for name in missing if not name.startswith("nct.")]
        if missing or unexpected:
            raise ConfigError(f"config key '{key}': {path} does not fit this model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
        self._log(f"initialised student, teacher and centers from {path}")

    def enter_phase(self, phase: Phase) -> None:
        """What happens when ``phase`` begins: its initial weights, a fresh optimizer, the NCT frozen teacher."""
        if phase.init_from:
            key = f"curriculum.phases[{phase.index}].init_from"
            self.load_initial_weights(existing_checkpoint(phase.init_from, phase.init_checkpoint, key), key)
        if phase.index > 0 and not phase.keep_optimizer:
            self.optimizer.state.clear()  # fresh AdamW moments, as a new run would have
        nct = self.model.nct if phase.nct else None  # NCT phases exist only with nct.enabled (an NCTMetaArch)
        if nct is not None and not nct.is_initialized:
            reference, path = self.cfg.nct.teacher, phase.nct_teacher
            if path is not None:
                try:
                    nct.load_from_model_state(checkpoint_of(path, "nct.teacher")["model"], str(path))
                except ValueError as error:  # a checkpoint of another model
                    raise ConfigError(f"config key 'nct.teacher': {squeezed(error, 300)}") from None
                self._log(f"NCT: frozen teacher and centers from {path}")
            elif reference:
                self._log(freeze_backbone_anchor(nct, reference))
            else:
                nct.copy_from_live(self.model)
                self._log(f"NCT: frozen the current teacher and centers (iteration {phase.start})")
        if phase.nct and not phase.denoised_dataset_path:
            self._log("NCT: no denoised tree in this phase: the frozen teacher anchors the noisy crops themselves")
        self.phase_start_samples = self.samples_consumed
        self._log(f"phase {phase.index}: {phase.dataset_path}, iterations {phase.start}..{phase.end - 1}"
                  + ("" if phase.train_backbone else " (backbone frozen: heads only)"))

    def _reseed_for_rank(self, iteration: int = 0) -> None:
        seed_everything(torch_seed(self.cfg.train.seed, "rank", self.ctx.rank, iteration))

    # ----- one iteration -----
    def check_finite(
        self, terms: dict[str, torch.Tensor], iteration: int, diagnostics: Optional[dict[str, torch.Tensor]] = None,
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Rank-means of the loss terms and of ``diagnostics`` (one reduction, one device-to-host copy per step);
        raises :class:`NonFiniteLossError` naming the NaN / inf terms (on every rank)."""
        diagnostics = diagnostics or {}
        values = torch.stack([value.detach().float() for value in (*terms.values(), *diagnostics.values())])
        values = distributed.all_reduce_mean(values).cpu().tolist()
        named = dict(zip(terms, values))
        measured = dict(zip(diagnostics, values[len(terms):]))
        bad = {name: value for name, value in named.items() if not math.isfinite(value)}
        if bad:
            listed = ", ".join(f"{name}={value}" for name, value in bad.items())
            raise NonFiniteLossError(
                f"non-finite loss at iteration {iteration}: {listed}; stopped before the optimizer step, "
                f"nothing was saved for this iteration"
            )
        return named, measured

    def train_step(self, batch: dict, iteration: int, diagnose: bool = True) -> dict[str, float]:
        """Forward, loss check, backward, clipping, AdamW step and EMA update of one iteration; ``diagnose`` adds
        the diagnostics (the DINO targets' entropy) to the returned values, for the iterations that are logged."""
        values = self.schedules.at(iteration)
        apply_schedule_values(self.optimizer, values["lr"], values["wd"], values["last_layer_lr"])
        self.optimizer.zero_grad(set_to_none=True)
        nct = {"nct_weight": self.cfg.nct.weight} if phase_at(self.phases, iteration).nct else {}
        with autocast(self.ctx.device, self.precision):
            terms = self.model.compute_losses(batch, teacher_temp=values["teacher_temp"], **nct)
        entropy = self.model.dino_target_entropy() if diagnose else None
        logged, measured = self.check_finite(
            terms, iteration, {"dino_target_entropy": entropy} if entropy is not None else None)
        total = sum(terms.values())
        self.scaler.scale(total).backward()
        if self.cfg.optim.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            for module in self.model.student.values():
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.clip_grad)
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._count_skipped_step(scale_before, iteration)
        self.model.update_teacher(values["momentum"])
        return {"total_loss": sum(logged.values()), **logged, **values, **measured}

    def _count_skipped_step(self, scale_before: Optional[float], iteration: int) -> None:
        if scale_before is None:
            return
        skipped = self.scaler.get_scale() < scale_before
        self.skipped_steps_in_a_row = self.skipped_steps_in_a_row + 1 if skipped else 0
        if self.skipped_steps_in_a_row > MAX_SKIPPED_STEPS_IN_A_ROW:
            raise NonFiniteLossError(
                f"fp16 gradients overflowed {self.skipped_steps_in_a_row} steps in a row (iteration {iteration}); "
                "try compute_precision.autocast_dtype=bf16"
            )

    # ----- outputs -----
    def save(self, iteration: int, export: bool, checkpoint: bool) -> None:
        """Checkpoint and/or encoder export after ``iteration`` (collective: every rank must call it)."""
        rng_states = distributed.all_gather_object(capture_rng_state()) if checkpoint else None
        if self.ctx.is_main:
            # the export first: a run killed between the two resumes from the previous checkpoint and redoes both
            if export:
                self.run_dir.write_encoder_export(iteration, self._evaluated_encoder_state())
            if checkpoint:
                self.run_dir.save_checkpoint(iteration, {
                    "iteration": iteration + 1,
                    "samples_consumed": self.samples_consumed,
                    "phase_start_samples": self.phase_start_samples,
                    "phase": phase_at(self.phases, iteration).index,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": rng_states,
                })
        distributed.barrier()

    def _log(self, message: str) -> None:
        if self.ctx.is_main:
            tqdm.write(message)

    # ----- loop -----
    def _run_phase(self, phase: Phase, start: int, stop: int, end: int, metrics: Optional[JsonlLog],
                   progress: tqdm) -> None:
        """Iterations ``start..stop-1`` of ``phase`` (``end``: where this invocation stops)."""
        cfg = self.cfg
        if hasattr(self.model, "set_train_backbone"):  # the DINO-style methods (build_phases refuses the others)
            self.model.set_train_backbone(phase.train_backbone)
        global_batch = self.derived["global_batch_size"]
        # the first phase keeps the plain run's sample stream; later ones get their own
        seed = cfg.train.seed if phase.index == 0 else stable_seed(cfg.train.seed, "phase", phase.index) % 2**31
        loader = build_data_loader(cfg, self.datasets[phase.index], self.samples_consumed - self.phase_start_samples,
                                   self.ctx.rank, self.ctx.world_size, seed=seed)
        with torch.random.fork_rng(devices=[]):  # the loader draws its workers' base seed from the global RNG
            batches = iter(loader)
        epoch_length = cfg.train.OFFICIAL_EPOCH_LENGTH
        for iteration, batch in zip(range(start, stop), batches):
            measured = self.health.due(iteration)  # a health check's values join its iteration's record
            logged = iteration % cfg.train.log_period == 0 or iteration + 1 == end or measured
            record = self.train_step(batch_to_device(batch, self.ctx.device), iteration, diagnose=logged)
            self.samples_consumed += global_batch
            done, stop = iteration + 1, None
            if logged:
                now = time.perf_counter()
                elapsed = max(now - self._last_time, 1e-9)
                record = {"iteration": iteration, "epoch": iteration // epoch_length, "phase": phase.index, **record,
                          "images_per_s": global_batch * (done - self._last_iteration) / elapsed}
                if measured:
                    record.update(self.health.measure(iteration, self.model, self.ctx.device, self.precision))
                stop = self.health.observe(record)
                self._last_time, self._last_iteration = time.perf_counter(), done  # health time aside
                if metrics is not None:
                    metrics.write(record)
                progress.set_postfix(loss=f"{record['total_loss']:.4f}", lr=f"{record['lr']:.2e}")
            stop = self.health.stop_message(iteration, stop)
            # a phase's last iteration is always checkpointed: another run may branch off there (RUN@EPOCH)
            checkpoint = done % cfg.train.checkpoint_period == 0 or done == end or done == phase.end or bool(stop)
            export = self.run_dir.is_export_iteration(iteration)
            if checkpoint or export:
                self.save(iteration, export=export, checkpoint=checkpoint)
            progress.update(1)
            if stop:
                raise RepresentationCollapsed(f"{stop}; stopped (train.stop_on_collapse), checkpoint of iteration "
                                              f"{iteration} kept: rerun to continue anyway")

    def run(self) -> int:
        """Train from the resume point to the end (or ``train.stop_after_iterations``); returns the next iteration."""
        cfg = self.cfg
        self.samples_consumed = 0  # position in the global sample stream (independent of the world size)
        start = self.resume()
        end = self.total_iterations
        if cfg.train.stop_after_iterations > 0:
            end = min(end, start + cfg.train.stop_after_iterations)
        if start >= end:
            self._log(f"nothing to do: {self.output_dir} already holds {start} of {self.total_iterations} iterations")
            return start
        metrics = self.run_dir.open_metrics(start)
        self.health.start(metrics.kept if metrics is not None else [], self._log)  # a resumed run's records
        self._last_time, self._last_iteration = time.perf_counter(), start
        iteration = start
        # closed on an error too, so that the error message starts on a line of its own
        with tqdm(total=end, initial=start, desc="train", unit="it", disable=not self.ctx.is_main) as progress:
            while iteration < end:
                phase = phase_at(self.phases, iteration)
                if iteration == phase.start:
                    self.enter_phase(phase)
                phase_end = min(end, phase.end)
                self._run_phase(phase, iteration, phase_end, end, metrics, progress)
                iteration = phase_end
        missing = self.run_dir.missing_exports(end) if self.ctx.is_main else []
        if missing:
            warnings.warn(f"{self.output_dir} lacks the encoder exports of iterations {missing[:10]} (deleted?); "
                          "their evaluations will be missing")
        if end < self.total_iterations:
            self._log(f"stopped after iteration {end - 1} (train.stop_after_iterations); rerun to continue")
        return end
