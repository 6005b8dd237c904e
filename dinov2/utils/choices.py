"""The named options of the training config, in one place and without torch, so that ``dinov2.utils.checks``
rejects a bad value before torch loads and the modules that act on a choice read the same list."""

from __future__ import annotations

from typing import Any

# Named ViT sizes. ``vit_tiny`` is DeiT's / DINO's / timm's ViT-Ti (12 blocks); ``vit_tiny_4blocks`` is the same
# width with 4 blocks, the size of this project's CPU recipes (it trains in minutes on two cores).
VIT_SIZES: dict[str, dict[str, Any]] = {
    "vit_tiny_4blocks": {"embed_dim": 192, "depth": 4, "num_heads": 3, "mlp_ratio": 4},
    "vit_tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3, "mlp_ratio": 4},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4},
    "vit_giant2": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "mlp_ratio": 4},
}
# ResNets of the contrastive methods (dinov2/models/resnet.py) and their stems: "imagenet" (7x7 stride 2 + max
# pool) or "cifar" (3x3 stride 1, no pool: small images such as the embedded digits)
RESNET_ARCHS = ("resnet18", "resnet50")
RESNET_STEMS = ("imagenet", "cifar")
# SSL methods: DINOv2 (and DINO / iBOT, its overlays) trains an EMA teacher through prototype heads; the contrastive
# methods (dinov2/train/contrastive_arch.py) train projection (and prediction) heads on two views
CONTRASTIVE_METHODS = ("simclr", "mocov3", "simsiam")
METHODS = ("dinov2", *CONTRASTIVE_METHODS)
OPTIMIZERS = ("adamw", "sgd", "lars")
FFN_LAYERS = ("mlp", "swiglu", "swiglufused", "identity")
# Blur probabilities (global crop 1, global crop 2, local crops) of the named modes; see dinov2/data/augmentations.py.
# "symmetric": SimCLR's and SimSiam's blur with probability 0.5 on both views.
BLUR_MODES: dict[str, tuple[float, float, float]] = {
    "upstream": (0.0, 0.9, 0.5), "literal": (1.0, 0.1, 0.5), "symmetric": (0.5, 0.5, 0.5), "none": (0.0, 0.0, 0.0)}
CENTERINGS = ("centering", "sinkhorn_knopp")
SCALING_RULES = ("sqrt_wrt_1024", "linear_wrt_1024", "none")
AUTOCAST_DTYPES = ("fp16", "bf16", "fp32")
NCT_HEADS = ("live", "frozen")
DEVICES = ("auto", "cpu", "cuda")  # train.device (cuda: this rank's GPU; an error where CUDA is not usable)

CONFIG_CHOICES: dict[str, tuple[str, ...]] = {
    "compute_precision.autocast_dtype": AUTOCAST_DTYPES,
    "train.centering": CENTERINGS,
    "optim.scaling_rule": SCALING_RULES,
    "crops.blur_mode": tuple(BLUR_MODES),
    "nct.blur_mode": tuple(BLUR_MODES),
    "nct.head": NCT_HEADS,
    "student.ffn_layer": FFN_LAYERS,
    "student.arch": (*VIT_SIZES, *RESNET_ARCHS),
    "student.resnet_stem": RESNET_STEMS,
    "method.name": METHODS,
    "optim.optimizer": OPTIMIZERS,
    "train.device": DEVICES,
}


def evaluated_encoder(method: str) -> str:
    """Which encoder of a run is evaluated and exported: DINO-style methods' EMA ``teacher``; the contrastive
    methods' ``student`` (MoCo v3 probes its base encoder, not the momentum one)."""
    return "student" if method in CONTRASTIVE_METHODS else "teacher"
