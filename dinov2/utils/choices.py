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
FFN_LAYERS = ("mlp", "swiglu", "swiglufused", "identity")
# Blur probabilities (global crop 1, global crop 2, local crops) of the named modes; see dinov2/data/augmentations.py.
BLUR_MODES: dict[str, tuple[float, float, float]] = {"upstream": (0.0, 0.9, 0.5), "literal": (1.0, 0.1, 0.5)}
CENTERINGS = ("centering", "sinkhorn_knopp")
SCALING_RULES = ("sqrt_wrt_1024", "linear_wrt_1024", "none")
AUTOCAST_DTYPES = ("fp16", "bf16", "fp32")
NCT_HEADS = ("live", "frozen")

CONFIG_CHOICES: dict[str, tuple[str, ...]] = {
    "compute_precision.autocast_dtype": AUTOCAST_DTYPES,
    "train.centering": CENTERINGS,
    "optim.scaling_rule": SCALING_RULES,
    "crops.blur_mode": tuple(BLUR_MODES),
    "nct.blur_mode": tuple(BLUR_MODES),
    "nct.head": NCT_HEADS,
    "student.ffn_layer": FFN_LAYERS,
    "student.arch": tuple(VIT_SIZES),
}
