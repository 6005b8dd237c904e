"""SimCLR, MoCo v3 and SimSiam on the two global crops, with lightly's heads, losses and momentum update.

:class:`ContrastiveMetaArch` answers the training loop as :class:`~dinov2.train.ssl_meta_arch.SSLMetaArch` does
(``student`` / ``teacher`` ModuleDicts, ``compute_losses``, ``update_teacher``, ``broadcast_tensors``), so the same
trainer gives these methods curriculum phases, exact resume, checkpoints, exports and DDP. Each view goes through
the encoder on its own (as the three methods' reference code does: BatchNorm statistics are per view).

* SimCLR: ``backbone -> SimCLRProjectionHead``; lightly's ``NTXentLoss`` (negatives gathered from every rank).
* MoCo v3: ``backbone -> MoCoProjectionHead (3 layers, BN) -> BYOLPredictionHead``; a momentum copy of backbone and
  projection (EMA with ``teacher.momentum_teacher`` -> ``final_momentum_teacher``, cosine) gives the keys;
  :func:`~dinov2.loss.moco_v3_infonce` on both (query, other view's key) pairs. The momentum encoder runs in train
  mode (its BatchNorm uses the batch's statistics), as in MoCo v3.
* SimSiam: ``backbone -> SimSiamProjectionHead -> SimSiamPredictionHead``; lightly's ``NegativeCosineSimilarity``
  between each prediction and the other view's detached projection, averaged over the two pairs.

The evaluated and exported encoder is the student (for MoCo v3 too: its linear probe reads the base encoder), as
:func:`dinov2.utils.choices.evaluated_encoder` says for the trainer's exports and ``dinov2.hub``.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from dinov2.loss import moco_v3_infonce
from dinov2.models import build_model_from_cfg
from dinov2.train.teacher_targets import N_GLOBAL_CROPS


def _heads(cfg: DictConfig, embed_dim: int) -> dict[str, nn.Module]:
    """The method's projection (and prediction) heads, from lightly."""
    from lightly.models.modules.heads import (BYOLPredictionHead, MoCoProjectionHead, SimCLRProjectionHead,
                                              SimSiamPredictionHead, SimSiamProjectionHead)

    method = cfg.method
    if method.name == "simclr":
        return {"projection": SimCLRProjectionHead(embed_dim, method.projection_hidden_dim, method.projection_dim,
                                                   num_layers=method.projection_layers, batch_norm=True)}
    if method.name == "mocov3":
        return {"projection": MoCoProjectionHead(embed_dim, method.projection_hidden_dim, method.projection_dim,
                                                 num_layers=method.projection_layers, batch_norm=True),
                "prediction": BYOLPredictionHead(method.projection_dim, method.prediction_hidden_dim,
                                                  method.projection_dim)}
    if method.name == "simsiam":
        return {"projection": SimSiamProjectionHead(embed_dim, method.projection_hidden_dim, method.projection_dim),
                "prediction": SimSiamPredictionHead(method.projection_dim, method.prediction_hidden_dim,
                                                    method.projection_dim)}
    raise ValueError(f"method.name: {method.name!r} is not a contrastive method")


class ContrastiveMetaArch(nn.Module):
    """``student`` (backbone, projection, [prediction]) and, for MoCo v3, the momentum ``teacher`` (backbone,
    projection); the loss of ``method.name`` on the batch's two global crops."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss

        self.cfg = cfg
        self.method = str(cfg.method.name)
        from dinov2.train.ssl_meta_arch import freeze_unused_mask_token, load_pretrained_backbone

        backbone, _, embed_dim = build_model_from_cfg(cfg)
        if cfg.student.pretrained_weights:
            load_pretrained_backbone(backbone, cfg.student.pretrained_weights)
        freeze_unused_mask_token(backbone)  # two views, no masking
        self.embed_dim = embed_dim
        self.student = nn.ModuleDict({"backbone": backbone, **_heads(cfg, embed_dim)})
        teacher = {}
        if self.method == "mocov3":
            teacher = {name: copy.deepcopy(self.student[name]) for name in ("backbone", "projection")}
        self.teacher = nn.ModuleDict(teacher)
        for param in self.teacher.parameters():
            param.requires_grad = False
        temperature = float(cfg.method.temperature)
        self.ntxent = NTXentLoss(temperature=temperature, gather_distributed=True) if self.method == "simclr" else None
        self.negative_cosine = NegativeCosineSimilarity() if self.method == "simsiam" else None
        self.temperature = temperature
        # forward callables; the training loop may replace them by DDP / compiled wrappers of the same modules
        self.student_forward: dict[str, Callable] = dict(self.student.items())
        self.teacher_forward: dict[str, Callable] = dict(self.teacher.items())

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ContrastiveMetaArch is trained through compute_losses()")

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.student_forward["projection"](self.student_forward["backbone"](x))

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_forward["projection"](self.teacher_forward["backbone"](x))

    def compute_losses(self, batch: dict, teacher_temp: Optional[float] = None) -> dict[str, torch.Tensor]:
        """``{"<method>_loss": value}`` of the two global crops (``teacher_temp`` is not used)."""
        views = batch["collated_global_crops"].chunk(N_GLOBAL_CROPS)
        if self.method == "simclr":
            return {"simclr_loss": self.ntxent(*(self._project(view) for view in views))}
        if self.method == "mocov3":
            queries = [self.student_forward["prediction"](self._project(view)) for view in views]
            keys = [self._keys(view) for view in views]
            loss = moco_v3_infonce(queries[0], keys[1], self.temperature) + \
                moco_v3_infonce(queries[1], keys[0], self.temperature)
            return {"mocov3_loss": loss}
        projections = [self._project(view) for view in views]
        predictions = [self.student_forward["prediction"](z) for z in projections]
        loss = 0.5 * (self.negative_cosine(predictions[0], projections[1].detach())
                      + self.negative_cosine(predictions[1], projections[0].detach()))
        return {"simsiam_loss": loss}

    def dino_target_entropy(self) -> None:
        """No prototype targets: nothing to diagnose."""
        return None

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """MoCo v3's momentum update of backbone and projection (lightly's ``update_momentum``); a no-op otherwise."""
        from lightly.models.utils import update_momentum

        for name, module in self.teacher.items():
            update_momentum(self.student[name], module, momentum)

    def broadcast_tensors(self) -> list[torch.Tensor]:
        """What rank 0 sends to the others when DDP starts (DDP itself broadcasts the student)."""
        return list(self.teacher.state_dict().values())
