"""What the training loop needs of a method's model (:class:`MetaArch`), and the one factory that builds it.

:class:`~dinov2.train.ssl_meta_arch.SSLMetaArch` (DINOv2, DINO, iBOT), :class:`~dinov2.train.nct.NCTMetaArch`
(any of those plus the frozen denoised teacher) and :class:`~dinov2.train.contrastive_arch.ContrastiveMetaArch`
(SimCLR, MoCo v3, SimSiam) fulfil it; :class:`~dinov2.train.trainer.Trainer` relies on nothing else.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, runtime_checkable

import torch
from omegaconf import DictConfig
from torch import nn

from dinov2.train.nct import NCTMetaArch
from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.utils.choices import CONTRASTIVE_METHODS


@runtime_checkable
class MetaArch(Protocol):
    """A method's student and teacher modules, its losses and its teacher update.

    ``student`` / ``teacher`` hold the modules by name (checkpoints and exports use these names; contrastive methods
    without a teacher have an empty one); ``student_forward`` / ``teacher_forward`` are the callables the losses run,
    which the loop may replace by DDP or compiled wrappers of the same modules.
    """

    student: nn.ModuleDict
    teacher: nn.ModuleDict
    student_forward: dict[str, Callable]
    teacher_forward: dict[str, Callable]

    def compute_losses(self, batch: dict, teacher_temp: float) -> dict[str, torch.Tensor]:
        """The named loss terms of one batch (summed for the backward pass); in an NCT phase the loop also passes
        ``nct_weight``, which only :class:`~dinov2.train.nct.NCTMetaArch` phases have."""

    def update_teacher(self, momentum: float) -> None:
        """The EMA step of the teacher after the optimizer step (nothing for methods without one)."""

    def broadcast_tensors(self) -> list[torch.Tensor]:
        """Every tensor that rank 0 sends to the others before the first step, so that all ranks start equal."""

    def dino_target_entropy(self) -> Optional[torch.Tensor]:
        """The entropy of the last batch's DINO targets (a health signal), None for methods without them."""


def build_meta_arch(cfg: DictConfig) -> MetaArch:
    """The model of ``method.name``: :class:`~dinov2.train.contrastive_arch.ContrastiveMetaArch` for SimCLR / MoCo
    v3 / SimSiam, else :class:`~dinov2.train.nct.NCTMetaArch` when ``nct.enabled``, else
    :class:`~dinov2.train.ssl_meta_arch.SSLMetaArch`."""
    if cfg.method.name in CONTRASTIVE_METHODS:
        from dinov2.train.contrastive_arch import ContrastiveMetaArch  # imports lightly

        return ContrastiveMetaArch(cfg)
    return NCTMetaArch(cfg) if cfg.nct.enabled else SSLMetaArch(cfg)
