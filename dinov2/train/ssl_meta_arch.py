"""SSLMetaArch: student and EMA teacher (backbone + heads), the DINO / iBOT / KoLeo losses and the EMA update.

The loss is computed in small steps so that extra targets (another teacher, as NCT's in :mod:`dinov2.train.nct`)
can be added without touching the others: :meth:`teacher_targets` (teacher forward, centering or Sinkhorn-Knopp,
through the free functions of :mod:`dinov2.train.teacher_targets`), :meth:`student_outputs` (student forward
through backbone and heads), :meth:`loss_terms` (the weighted terms). Backward and the optimizer step belong to
the training loop. Crop handling follows upstream DINOv2: every local crop faces both global teacher targets,
and iBOT uses the masked patch tokens of the global crops.
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from dinov2.hub import load_backbone
from dinov2.layers import DINOHead
from dinov2.loss import DINOLoss, KoLeoLoss, iBOTPatchLoss
from dinov2.models import build_model_from_cfg
from dinov2.models.backbone_weights import BackboneWeightsError, load_pretrained_into
from dinov2.utils.config import ConfigError
from dinov2.train.teacher_targets import (N_GLOBAL_CROPS, TeacherTargets, mean_entropy, targets_from_scores,
                                          teacher_head_scores)
from utils.weights_file import WeightsFileError


@dataclass
class StudentOutputs:
    """Student head outputs: local class tokens ``[L*B, K]``, global class tokens ``[2B, K]``, masked patch tokens
    ``[M, K]`` (None without iBOT), and the global class tokens before the head (for KoLeo)."""

    local_cls: torch.Tensor
    global_cls: torch.Tensor
    masked_patches: Optional[torch.Tensor]
    global_cls_backbone: torch.Tensor


def dino_pair_count(n_local_crops: int) -> int:
    """Upstream's normalisation of the DINO terms: the (student crop, teacher crop) pairs that are compared."""
    return (N_GLOBAL_CROPS - 1) * N_GLOBAL_CROPS + max(n_local_crops * N_GLOBAL_CROPS, 1)


def _head(cfg_section: DictConfig, embed_dim: int) -> DINOHead:
    return DINOHead(
        in_dim=embed_dim,
        out_dim=cfg_section.head_n_prototypes,
        hidden_dim=cfg_section.head_hidden_dim,
        bottleneck_dim=cfg_section.head_bottleneck_dim,
        nlayers=cfg_section.head_nlayers,
        norm_last_layer=cfg_section.head_norm_last_layer,
        use_bn=cfg_section.head_use_bn,
    )


def freeze_unused_mask_token(backbone: nn.Module) -> None:
    """For methods that never mask patches: the ViT's mask token gets no gradient, and DDP, which expects one for
    every trainable parameter, stops at the second step; frozen, it stays in the state dict with its value."""
    if isinstance(getattr(backbone, "mask_token", None), nn.Parameter):
        backbone.mask_token.requires_grad_(False)


def load_pretrained_backbone(backbone: nn.Module, source: str) -> None:
    """``student.pretrained_weights``: any backbone ``dinov2.hub.load_backbone`` reads (bare state dict such as
    upstream's releases, export, encoder export, run); the teacher then starts as the student's copy."""
    try:
        load_pretrained_into(backbone, load_backbone(source).state_dict(), source)
    except (BackboneWeightsError, WeightsFileError, FileNotFoundError, KeyError) as error:
        raise ConfigError(f"config key 'student.pretrained_weights': {error}") from None


class SSLMetaArch(nn.Module):
    """Holds ``student`` and ``teacher`` ModuleDicts (``backbone``, ``dino_head``, optional ``ibot_head``) and the
    loss modules (which own the centers). The teacher starts as a copy of the student and only follows it by EMA."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        student_backbone, teacher_backbone, embed_dim = build_model_from_cfg(cfg)
        if cfg.student.pretrained_weights:
            load_pretrained_backbone(student_backbone, cfg.student.pretrained_weights)
        self.embed_dim = embed_dim
        self.do_dino = cfg.dino.loss_weight > 0
        self.do_koleo = cfg.dino.koleo_loss_weight > 0
        self.do_ibot = cfg.ibot.loss_weight > 0
        self.ibot_separate_head = cfg.ibot.separate_head
        if not self.do_ibot:  # only iBOT masks patches
            freeze_unused_mask_token(student_backbone)
        student, teacher = {"backbone": student_backbone}, {"backbone": teacher_backbone}
        if self.do_dino or (self.do_ibot and not self.ibot_separate_head):
            student["dino_head"], teacher["dino_head"] = _head(cfg.dino, embed_dim), _head(cfg.dino, embed_dim)
        if self.do_ibot and self.ibot_separate_head:
            student["ibot_head"], teacher["ibot_head"] = _head(cfg.ibot, embed_dim), _head(cfg.ibot, embed_dim)
        self.student = nn.ModuleDict(student)
        self.teacher = nn.ModuleDict(teacher)
        self.dino_loss = DINOLoss(cfg.dino.head_n_prototypes)
        self.koleo_loss = KoLeoLoss()
        ibot_dim = cfg.ibot.head_n_prototypes if self.ibot_separate_head else cfg.dino.head_n_prototypes
        self.ibot_patch_loss = iBOTPatchLoss(ibot_dim)
        self.teacher.load_state_dict(self.student.state_dict())
        for param in self.teacher.parameters():
            param.requires_grad = False
        # forward callables; the training loop may replace them by DDP / compiled wrappers of the same modules
        self.student_forward: dict[str, Callable] = dict(self.student.items())
        self.train_backbone = True  # False in a head warm-up phase: the student's backbone is frozen
        self.last_dino_targets: Optional[torch.Tensor] = None  # of the last batch, for dino_target_entropy()
        self.teacher_forward: dict[str, Callable] = dict(self.teacher.items())

    def forward(self, *args, **kwargs):
        raise NotImplementedError("SSLMetaArch is trained through compute_losses(); use student/teacher directly")

    def train(self, mode: bool = True) -> "SSLMetaArch":
        """A teacher without BatchNorm always stays in eval mode; one with BatchNorm (a ResNet, ``head_use_bn``)
        follows ``mode``, so that it normalises by the batch's statistics and keeps its own running ones, as DINO's
        teacher does (the EMA moves parameters only)."""
        super().train(mode)
        if not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in self.teacher.modules()):
            self.teacher.eval()
        return self

    # ----- teacher -----
    @torch.no_grad()
    def targets_of(
        self, backbone: Callable, heads: Mapping[str, Callable], global_crops: torch.Tensor, batch: dict,
        teacher_temp: float, dino_loss: DINOLoss, ibot_patch_loss: iBOTPatchLoss, update_centers: bool = True,
    ) -> TeacherTargets:
        """Targets of a teacher (``backbone`` + ``heads``) on ``global_crops``, with the centers held by the given
        loss modules, for this model's losses (DINO / iBOT, shared or separate iBOT head, centering)."""
        scores = teacher_head_scores(backbone, heads, global_crops,
                                     batch["mask_indices_list"] if self.do_ibot else None, self.do_dino,
                                     self.ibot_separate_head)
        return targets_from_scores(scores, self.cfg.train.centering, teacher_temp, dino_loss, ibot_patch_loss,
                                   batch.get("n_masked_patches"), update_centers)

    @torch.no_grad()
    def teacher_targets(self, batch: dict, teacher_temp: float, update_centers: bool = True) -> TeacherTargets:
        """Teacher probabilities for DINO and iBOT; with centering, the centers are EMA-updated afterwards."""
        targets = self.targets_of(self.teacher_forward["backbone"], self.teacher_forward,
                                  batch["collated_global_crops"], batch, teacher_temp, self.dino_loss,
                                  self.ibot_patch_loss, update_centers)
        self.last_dino_targets = targets.dino
        return targets

    @torch.no_grad()
    def dino_target_entropy(self) -> Optional[torch.Tensor]:
        """Mean entropy (nats) of the last batch's DINO targets; None without them. ln(prototypes) means uniform
        targets: DINO's class-token objective then teaches nothing. On demand: a pass over ``[2B, K]`` rows."""
        return None if self.last_dino_targets is None else mean_entropy(self.last_dino_targets)

    # ----- student -----
    def set_train_backbone(self, train: bool) -> None:
        """Train the student's backbone (the default) or freeze it (a phase's ``train_backbone: false``): it then
        runs without autograd, so its parameters get no gradient and the optimizer leaves them (and their weight
        decay) alone; DDP prepares no gradient reduction for a forward without autograd."""
        self.train_backbone = bool(train)

    def student_outputs(self, batch: dict) -> StudentOutputs:
        """Student backbone on global (masked) and local crops, then the heads."""
        global_crops, local_crops = batch["collated_global_crops"], batch["collated_local_crops"]
        masks = batch["collated_masks"]
        has_locals = self.cfg.crops.local_crops_number > 0
        backbone = self.student_forward["backbone"]
        with contextlib.nullcontext() if self.train_backbone else torch.no_grad():
            if has_locals:
                global_out, local_out = backbone([global_crops, local_crops], masks=[masks, None], is_training=True)
            else:
                global_out = backbone(global_crops, masks=masks, is_training=True)
                local_out = None
        global_cls = global_out["x_norm_clstoken"]
        head_inputs = [global_cls]
        if has_locals:
            head_inputs.insert(0, local_out["x_norm_clstoken"])
        masked_patches = None
        if self.do_ibot:
            patch_tokens = global_out["x_norm_patchtokens"].flatten(0, 1)
            masked_patches = torch.index_select(patch_tokens, 0, batch["mask_indices_list"])
            if not self.ibot_separate_head:
                head_inputs.append(masked_patches)
        # one head call on all tokens (one DDP forward of the head); split back afterwards
        sizes = [t.shape[0] for t in head_inputs]
        scores = list(self.student_forward["dino_head"](torch.cat(head_inputs)).split(sizes))
        local_scores = scores.pop(0) if has_locals else global_cls.new_zeros(0, scores[0].shape[-1])
        global_scores = scores.pop(0)
        if self.do_ibot:
            masked_patches = scores.pop(0) if not self.ibot_separate_head else self.student_forward["ibot_head"](masked_patches)
        return StudentOutputs(local_scores, global_scores, masked_patches, global_cls)

    # ----- losses -----
    def loss_terms(self, student: StudentOutputs, targets: TeacherTargets, batch: dict) -> dict[str, torch.Tensor]:
        """The weighted loss terms (their sum is the training loss), with upstream's normalisation."""
        n_local = self.cfg.crops.local_crops_number
        n_terms = dino_pair_count(n_local)
        terms: dict[str, torch.Tensor] = {}
        if self.do_dino:
            if n_local > 0:
                local_views = student.local_cls.unflatten(0, (n_local, -1))  # [L, B, K]: every local crop of B images
                local_loss = self.dino_loss(local_views, targets.dino) / n_terms
                terms["dino_local_crops_loss"] = self.cfg.dino.loss_weight * local_loss
            # both global crops go through the loss at once, hence the factor 2 (upstream's loss_scales)
            global_loss = self.dino_loss([student.global_cls], [targets.dino.flatten(0, 1)]) * 2 / n_terms
            terms["dino_global_crops_loss"] = self.cfg.dino.loss_weight * global_loss
            if self.do_koleo:
                koleo = sum(self.koleo_loss(part) for part in student.global_cls_backbone.chunk(N_GLOBAL_CROPS))
                terms["koleo_loss"] = self.cfg.dino.koleo_loss_weight * koleo
        if self.do_ibot:
            ibot = self.ibot_patch_loss.forward_masked(
                student.masked_patches,
                targets.ibot,
                student_masks_flat=batch["collated_masks"],
                n_masked_patches=int(batch["mask_indices_list"].shape[0]),
                masks_weight=batch["masks_weight"],
            )
            # upstream scales by 2 (both global crops) / 2 (ibot_loss_scale): the net factor is 1
            terms["ibot_loss"] = self.cfg.ibot.loss_weight * ibot
        return terms

    def compute_losses(self, batch: dict, teacher_temp: float) -> dict[str, torch.Tensor]:
        """Teacher targets, student outputs and the loss terms of one batch (no backward here)."""
        targets = self.teacher_targets(batch, teacher_temp)
        student = self.student_outputs(batch)
        return self.loss_terms(student, targets, batch)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA: ``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter (not the backbone's
        while it is frozen: it would only drift from the student by rounding)."""
        student_params, teacher_params = [], []
        for name in self.student:
            if name == "backbone" and not self.train_backbone:
                continue
            student_params += list(self.student[name].parameters())
            teacher_params += list(self.teacher[name].parameters())
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)

    def broadcast_tensors(self) -> list[torch.Tensor]:
        """What rank 0 sends to the others when DDP starts (DDP itself broadcasts the student): teacher, centers."""
        return list(self.teacher.state_dict().values()) + [self.dino_loss.center, self.ibot_patch_loss.center]
