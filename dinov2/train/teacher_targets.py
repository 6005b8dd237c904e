"""Teacher targets as free functions: head scores of a (frozen or EMA) teacher, then centering or Sinkhorn-Knopp.

Both the EMA teacher of :class:`~dinov2.train.ssl_meta_arch.SSLMetaArch` and the NCT frozen denoised teacher
(:mod:`dinov2.train.nct`) make their targets with these two functions, each with its own backbone, heads and
centers. Crop handling follows upstream DINOv2: the class tokens of the two global crops are swapped, so that
each global crop of the student is matched with the *other* crop's target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch

from dinov2.loss import DINOLoss, iBOTPatchLoss

N_GLOBAL_CROPS = 2
Scores = tuple[Optional[torch.Tensor], Optional[torch.Tensor]]


@dataclass
class TeacherTargets:
    """Teacher probabilities: DINO ``[2, B, K]`` (crop-swapped) and iBOT ``[M, K]`` (None without iBOT)."""

    dino: Optional[torch.Tensor]
    ibot: Optional[torch.Tensor]


def mean_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of probability rows over the last dimension; ln(K) for uniform rows."""
    return torch.special.entr(probabilities).sum(dim=-1).mean()


@torch.no_grad()
def teacher_head_scores(
    backbone: Callable,
    heads: Mapping[str, Callable],
    global_crops: torch.Tensor,
    mask_indices: Optional[torch.Tensor],
    do_dino: bool = True,
    separate_ibot_head: bool = False,
) -> Scores:
    """Head scores of a teacher: class tokens ``[2B, K]`` already crop-swapped, and the masked patch tokens
    ``[M, K]`` selected by ``mask_indices`` (None: no iBOT, patch scores None)."""
    output = backbone(global_crops, is_training=True)
    first, second = output["x_norm_clstoken"].chunk(N_GLOBAL_CROPS)
    cls_tokens = torch.cat((second, first))
    if mask_indices is None:
        return heads["dino_head"](cls_tokens), None
    masked_patches = torch.index_select(output["x_norm_patchtokens"].flatten(0, 1), 0, mask_indices)
    if separate_ibot_head:
        cls_scores = heads["dino_head"](cls_tokens) if do_dino else None
        return cls_scores, heads["ibot_head"](masked_patches)
    # one head call on class and patch tokens together, as upstream (same numerics)
    scores = heads["dino_head"](torch.cat((cls_tokens, masked_patches)))
    return scores[: cls_tokens.shape[0]], scores[cls_tokens.shape[0] :]


@torch.no_grad()
def targets_from_scores(
    scores: Scores,
    centering: str,
    teacher_temp: float,
    dino_loss: DINOLoss,
    ibot_patch_loss: iBOTPatchLoss,
    n_masked_patches: Optional[torch.Tensor] = None,
    update_centers: bool = True,
) -> TeacherTargets:
    """Probabilities from head scores: ``centering`` (with the centers held by the given loss modules, EMA-updated
    afterwards when ``update_centers``) or ``sinkhorn_knopp`` (``n_masked_patches`` per crop needed for iBOT)."""
    cls_scores, patch_scores = scores
    dino_probs = ibot_probs = None
    if centering == "centering":
        if cls_scores is not None:
            dino_probs = dino_loss.softmax_center_teacher(cls_scores, teacher_temp=teacher_temp)
        if patch_scores is not None:
            ibot_probs = ibot_patch_loss.softmax_center_teacher(patch_scores.unsqueeze(0), teacher_temp).squeeze(0)
        if update_centers:
            if cls_scores is not None:
                dino_loss.update_center(cls_scores)
            if patch_scores is not None:
                ibot_patch_loss.update_center(patch_scores.unsqueeze(0))
    else:
        if cls_scores is not None:
            dino_probs = dino_loss.sinkhorn_knopp_teacher(cls_scores, teacher_temp=teacher_temp)
        if patch_scores is not None:
            ibot_probs = ibot_patch_loss.sinkhorn_knopp_teacher(
                patch_scores, teacher_temp=teacher_temp, n_masked_patches_tensor=n_masked_patches
            )
    if dino_probs is not None:
        dino_probs = dino_probs.view(N_GLOBAL_CROPS, -1, dino_probs.shape[-1])
    return TeacherTargets(dino=dino_probs, ibot=ibot_probs)
