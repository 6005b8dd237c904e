"""The NCT regulariser: a frozen denoised teacher anchoring the student's noisy embeddings.

:class:`FrozenDenoisedTeacher` is a backbone (and heads) frozen at a checkpoint, with its own centers. Its targets
come from the *denoised* global crops (pixel-aligned with the noisy ones, so the iBOT mask positions stay valid),
centered with its own DINO / iBOT centers and sharpened with the scheduled teacher temperature.
``nct.head=live`` (the paper's behaviour) projects the frozen backbone's tokens with the live EMA teacher's heads;
``frozen`` uses the frozen teacher's own heads. It is never in the optimizer, never EMA-updated, always in eval
mode; on CUDA it runs under the training autocast dtype, on the CPU in fp32.

:class:`NCTMetaArch` is :class:`~dinov2.train.ssl_meta_arch.SSLMetaArch` plus that teacher (``nct.*`` keys of
the checkpoints): in an NCT phase, ``weight`` x the DINO local, DINO global and iBOT terms against the frozen
teacher's targets are added for the same student outputs.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from omegaconf import DictConfig
from torch import nn

from dinov2.hub import load_backbone
from dinov2.loss import DINOLoss, iBOTPatchLoss
from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.train.teacher_targets import TeacherTargets
from dinov2.utils.choices import NCT_HEADS
from dinov2.utils.config import ConfigError
from utils.cli import squeezed

TEACHER_PREFIX = "teacher."
NCT_PREFIX = "nct."


class FrozenDenoisedTeacher(nn.Module):
    """``teacher`` (backbone + heads, shaped as ``live_teacher``), ``dino_loss`` / ``ibot_patch_loss`` (the
    regulariser's centers) and ``initialized`` (0 until weights were set, saved with the model)."""

    def __init__(self, cfg: DictConfig, live_teacher: nn.ModuleDict, dino_prototypes: int,
                 ibot_prototypes: int) -> None:
        super().__init__()
        if cfg.nct.head not in NCT_HEADS:
            raise ValueError(f"nct.head must be one of {NCT_HEADS}, got {cfg.nct.head!r}")
        self.head_mode = cfg.nct.head
        self.update_centers = bool(cfg.nct.update_centers)
        self.teacher = copy.deepcopy(live_teacher)  # no random draw: the run's RNG stream is unchanged
        self.dino_loss = DINOLoss(dino_prototypes)
        self.ibot_patch_loss = iBOTPatchLoss(ibot_prototypes)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.int64))
        self.freeze()

    def freeze(self) -> None:
        """No gradients, eval mode (called again after every weight change)."""
        for param in self.parameters():
            param.requires_grad = False
        self.eval()

    def train(self, mode: bool = True) -> "FrozenDenoisedTeacher":
        """Always eval mode (no drop path, no dropout)."""
        return super().train(False)

    @property
    def is_initialized(self) -> bool:
        return bool(self.initialized.item())

    @torch.no_grad()
    def copy_from_live(self, model: SSLMetaArch) -> None:
        """Freeze the current EMA teacher of ``model`` and its centers (the default: the teacher at the end of the
        denoised phase, or of the ``init_from`` checkpoint)."""
        self.teacher.load_state_dict(model.teacher.state_dict())
        self.dino_loss.center.copy_(model.dino_loss.center)
        self.ibot_patch_loss.center.copy_(model.ibot_patch_loss.center)
        self.initialized.fill_(1)
        self.freeze()

    @torch.no_grad()
    def load_backbone(self, backbone_state: dict[str, torch.Tensor], source: str) -> None:
        """Freeze a bare backbone (an official one, an export: no heads, no centers) as the anchor; the live EMA
        teacher's heads project it (``nct.head=live``: checked with the config), and its centers start at zero."""
        from dinov2.models.backbone_weights import load_pretrained_into

        load_pretrained_into(self.teacher["backbone"], backbone_state, source)
        self.dino_loss.center.zero_()
        self.ibot_patch_loss.center.zero_()
        self.initialized.fill_(1)
        self.freeze()

    @torch.no_grad()
    def load_from_model_state(self, model_state: dict[str, torch.Tensor], source: str) -> None:
        """Freeze the teacher and centers of a full checkpoint's ``model`` dict (keys ``teacher.*``, centers)."""
        teacher_state = {k[len(TEACHER_PREFIX):]: v for k, v in model_state.items() if k.startswith(TEACHER_PREFIX)}
        if not teacher_state:
            raise ValueError(f"{source} holds no teacher weights (keys 'teacher.*')")
        try:
            self.teacher.load_state_dict(teacher_state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{source}: its teacher does not fit this model ({error})") from error
        for key, module in (("dino_loss.center", self.dino_loss), ("ibot_patch_loss.center", self.ibot_patch_loss)):
            if key not in model_state:
                raise ValueError(f"{source} holds no '{key}'")
            module.center.copy_(model_state[key])
        self.initialized.fill_(1)
        self.freeze()


class NCTMetaArch(SSLMetaArch):
    """SSLMetaArch with the NCT frozen denoised teacher as ``nct`` (built when ``nct.enabled``)."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        self.nct = FrozenDenoisedTeacher(cfg, self.teacher, self.dino_loss.center.shape[-1],
                                         self.ibot_patch_loss.center.shape[-1])

    def compute_losses(self, batch: dict, teacher_temp: float,
                       nct_weight: Optional[float] = None) -> dict[str, torch.Tensor]:
        """The plain terms, plus (with ``nct_weight``: an NCT phase) ``nct_<term>`` = weight x the DINO local,
        DINO global and iBOT terms against the frozen teacher's targets, for the same student outputs."""
        if nct_weight is None:
            return super().compute_losses(batch, teacher_temp)
        targets = self.teacher_targets(batch, teacher_temp)
        nct_targets = self.nct_targets(batch, teacher_temp)
        student = self.student_outputs(batch)
        terms = self.loss_terms(student, targets, batch)
        for name, value in self.loss_terms(student, nct_targets, batch).items():
            if name != "koleo_loss":
                terms[f"nct_{name}"] = nct_weight * value
        return terms

    @torch.no_grad()
    def nct_targets(self, batch: dict, teacher_temp: float) -> TeacherTargets:
        """Targets of the frozen backbone on the denoised global crops (on the noisy ones themselves when the phase
        has no denoised tree: an anchor to the frozen weights), with the regulariser's centers; heads of the live
        EMA teacher (``nct.head=live``, the paper) or of the frozen one (``frozen``)."""
        frozen = self.nct
        if not frozen.is_initialized:
            raise RuntimeError("the NCT frozen teacher was never given weights")
        crops = batch.get("collated_global_crops_denoised", batch["collated_global_crops"])
        heads = self.teacher_forward if frozen.head_mode == "live" else dict(frozen.teacher.items())
        return self.targets_of(frozen.teacher["backbone"], heads, crops, batch, teacher_temp, frozen.dino_loss,
                               frozen.ibot_patch_loss, frozen.update_centers)


def freeze_backbone_anchor(nct: FrozenDenoisedTeacher, reference: str) -> str:
    """``nct.teacher`` naming a backbone (export, transformers or timm folder, bare state dict, encoder export, run
    directory), frozen as the anchor; returns the log line. :class:`ConfigError` naming the key when it is not one."""
    try:
        nct.load_backbone(load_backbone(reference).state_dict(), reference)
    except (ValueError, OSError, KeyError) as error:  # BackboneWeightsError, WeightsFileError, a missing file
        raise ConfigError(f"config key 'nct.teacher': {squeezed(error, 300)}") from None
    return f"NCT: frozen the backbone {reference} as the anchor (the live heads project it; centers from zero)"


def split_model_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of a checkpoint's model dict that ``init_from`` loads: everything but the frozen NCT teacher."""
    return {key: value for key, value in model_state.items() if not key.startswith(NCT_PREFIX)}
