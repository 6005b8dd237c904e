"""Parameter groups: layer-wise lr decay, patch-embedding lr multiplier, no weight decay on biases, norms
and LayerScale, and a flag on the head's last layer (its lr follows the frozen-at-start schedule); the optimizer
that takes them (``optim.optimizer``)."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from omegaconf import DictConfig
from torch import nn

FIRST_LAYER_NAMES = ("pos_embed", "patch_embed", "mask_token", "cls_token", "register_tokens")


def layer_id(name: str, n_blocks: int) -> int:
    """0 for the embeddings, ``i + 1`` for block ``i``, ``n_blocks + 1`` for everything after the blocks."""
    if any(name.startswith(prefix) for prefix in FIRST_LAYER_NAMES):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return n_blocks + 1


def param_multipliers(
    name: str, is_backbone: bool, n_blocks: int, layerwise_decay: float, patch_embed_lr_mult: float, ndim: int = 2,
) -> dict[str, Any]:
    """lr/wd multipliers and the last-layer flag of one parameter (``name`` relative to its module, ``ndim`` its
    number of dimensions: one-dimensional parameters, biases and norms, get no weight decay)."""
    lr_multiplier = layerwise_decay ** (n_blocks + 1 - layer_id(name, n_blocks)) if is_backbone else 1.0
    if is_backbone and name.startswith("patch_embed"):
        lr_multiplier *= patch_embed_lr_mult
    # ViT names say it; a ResNet's or a projection head's BatchNorm ("bn1.weight", "layers.1.weight") only its shape
    no_decay = name.endswith(".bias") or "norm" in name or "gamma" in name or ndim == 1
    return {
        "lr_multiplier": lr_multiplier,
        "wd_multiplier": 0.0 if no_decay else 1.0,
        "is_last_layer": "last_layer" in name,
    }


def build_param_groups(
    modules: Iterable[tuple[str, nn.Module]], n_blocks: int, layerwise_decay: float, patch_embed_lr_mult: float
) -> list[dict[str, Any]]:
    """Trainable parameters of ``(module name, module)`` pairs fused into groups of equal multipliers.

    The module named ``backbone`` gets the layer-wise decay; the others (heads) use multiplier 1.
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for module_name, module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            settings = param_multipliers(
                name, module_name == "backbone", n_blocks, layerwise_decay, patch_embed_lr_mult, param.ndim
            )
            key = (settings["lr_multiplier"], settings["wd_multiplier"], settings["is_last_layer"])
            group = groups.setdefault(key, {**settings, "params": [], "names": []})
            group["params"].append(param)
            group["names"].append(f"{module_name}.{name}")
    return list(groups.values())


def apply_schedule_values(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, last_layer_lr: float
) -> None:
    """Set each group's lr and weight decay for this iteration from its multipliers."""
    for group in optimizer.param_groups:
        base_lr = last_layer_lr if group["is_last_layer"] else lr
        group["lr"] = base_lr * group["lr_multiplier"]
        group["weight_decay"] = weight_decay * group["wd_multiplier"]


def build_optimizer(cfg: DictConfig, groups: list[dict[str, Any]], use_cuda: bool) -> torch.optim.Optimizer:
    """``optim.optimizer`` over ``groups`` (lr and weight decay are set every iteration by
    :func:`apply_schedule_values`): AdamW (fused on CUDA when ``optim.fused``), SGD with momentum, or lightly's LARS
    (which skips its trust ratio for the parameters without weight decay, as SimCLR does)."""
    name = cfg.optim.optimizer
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, betas=(cfg.optim.adamw_beta1, cfg.optim.adamw_beta2),
                                 fused=True if (use_cuda and cfg.optim.fused) else None)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=cfg.optim.sgd_momentum)
    if name == "lars":
        from lightly.utils.lars import LARS

        return LARS(groups, lr=0.0, momentum=cfg.optim.sgd_momentum)
    raise ValueError(f"optim.optimizer: expected adamw, sgd or lars, got {name!r}")
