"""Losses of DINOv2 pretraining (each module owns its state, the centers, and all-reduces it under DDP), and MoCo v3's
contrastive loss (SimCLR's and SimSiam's come from lightly)."""

from dinov2.loss.dino_clstoken_loss import DINOLoss
from dinov2.loss.ibot_patch_loss import iBOTPatchLoss
from dinov2.loss.infonce import moco_v3_infonce
from dinov2.loss.koleo_loss import KoLeoLoss
from dinov2.loss.sinkhorn import sinkhorn_knopp
from dinov2.loss.soft_cross_entropy import soft_cross_entropy

__all__ = ["DINOLoss", "iBOTPatchLoss", "KoLeoLoss", "sinkhorn_knopp", "soft_cross_entropy", "moco_v3_infonce"]
