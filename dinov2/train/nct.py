"""The NCT regulariser's frozen denoised teacher: a backbone (and heads) frozen at a checkpoint, with its own centers.

Its targets come from the *denoised* global crops (pixel-aligned with the noisy ones, so the iBOT mask positions
stay valid), centered with its own DINO / iBOT centers and sharpened with the scheduled teacher temperature.
``nct.head=live`` (the paper's behaviour) projects the frozen backbone's tokens with the live EMA teacher's heads;
``frozen`` uses the frozen teacher's own heads. It is never in the optimizer, never EMA-updated, always in eval
mode; on CUDA it runs under the training autocast dtype, on the CPU in fp32.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from dinov2.loss import DINOLoss, iBOTPatchLoss

if TYPE_CHECKING:
    from dinov2.train.ssl_meta_arch import SSLMetaArch, TeacherTargets

HEAD_CHOICES = ("live", "frozen")
TEACHER_PREFIX = "teacher."


class FrozenDenoisedTeacher(nn.Module):
    """``teacher`` (backbone + heads, same shapes as the EMA teacher), ``dino_loss`` / ``ibot_patch_loss``
    (the regulariser's centers) and ``initialized`` (0 until weights were set, saved with the model)."""

    def __init__(self, meta: "SSLMetaArch") -> None:
        super().__init__()
        cfg = meta.cfg
        if cfg.nct.head not in HEAD_CHOICES:
            raise ValueError(f"nct.head must be one of {HEAD_CHOICES}, got {cfg.nct.head!r}")
        self.head_mode = cfg.nct.head
        self.update_centers = bool(cfg.nct.update_centers)
        self.teacher = copy.deepcopy(meta.teacher)  # no random draw: the run's RNG stream is unchanged
        self.dino_loss = DINOLoss(meta.dino_loss.center.shape[-1])
        self.ibot_patch_loss = iBOTPatchLoss(meta.ibot_patch_loss.center.shape[-1])
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
    def copy_from_live(self, meta: "SSLMetaArch") -> None:
        """Freeze the current EMA teacher and its centers (the default: the teacher at the end of the denoised
        phase, or of the ``init_from`` checkpoint)."""
        self.teacher.load_state_dict(meta.teacher.state_dict())
        self.dino_loss.center.copy_(meta.dino_loss.center)
        self.ibot_patch_loss.center.copy_(meta.ibot_patch_loss.center)
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

    @torch.no_grad()
    def targets(self, meta: "SSLMetaArch", batch: dict, teacher_temp: float) -> "TeacherTargets":
        """Targets of the frozen backbone on the denoised global crops, with the regulariser's centers."""
        if not self.is_initialized:
            raise RuntimeError("the NCT frozen teacher was never given weights")
        if "collated_global_crops_denoised" not in batch:
            raise KeyError("an NCT step needs 'collated_global_crops_denoised' (a paired noisy/denoised dataset)")
        heads = meta.teacher_forward if self.head_mode == "live" else dict(self.teacher.items())
        scores = meta.teacher_head_outputs(
            batch["collated_global_crops_denoised"], batch, backbone=self.teacher["backbone"], heads=heads
        )
        return meta.targets_from_scores(
            scores, batch, teacher_temp, self.dino_loss, self.ibot_patch_loss, update_centers=self.update_centers
        )


def split_model_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of a checkpoint's model dict that ``init_from`` loads: everything but the frozen NCT teacher."""
    return {key: value for key, value in model_state.items() if not key.startswith("nct.")}
