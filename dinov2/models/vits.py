"""Named ViT sizes (upstream's ``vit_small``, ``vit_base``, ...) plus ``vit_tiny`` for CPU runs."""

from __future__ import annotations

from typing import Any

from dinov2.models.vision_transformer import DinoVisionTransformer

ARCHITECTURES: dict[str, dict[str, Any]] = {
    # vit_tiny is this project's CPU size: 4 blocks of width 192 train in minutes on two cores.
    "vit_tiny": {"embed_dim": 192, "depth": 4, "num_heads": 3, "mlp_ratio": 4},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4},
    "vit_giant2": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "mlp_ratio": 4},
}


def _build(arch: str, patch_size: int, num_register_tokens: int, kwargs: dict[str, Any]) -> DinoVisionTransformer:
    if "layerscale_init" in kwargs:
        kwargs["init_values"] = kwargs.pop("layerscale_init")
    kwargs.setdefault("init_values", 1e-5)
    settings = {**ARCHITECTURES[arch], **kwargs}
    return DinoVisionTransformer(patch_size=patch_size, num_register_tokens=num_register_tokens, **settings)


def vit_tiny(patch_size: int = 16, num_register_tokens: int = 0, **kwargs: Any) -> DinoVisionTransformer:
    """ViT-Tiny (192 wide, 4 blocks, 3 heads) for CPU experiments."""
    return _build("vit_tiny", patch_size, num_register_tokens, kwargs)


def vit_small(patch_size: int = 16, num_register_tokens: int = 0, **kwargs: Any) -> DinoVisionTransformer:
    """ViT-S (384 wide, 12 blocks, 6 heads)."""
    return _build("vit_small", patch_size, num_register_tokens, kwargs)


def vit_base(patch_size: int = 16, num_register_tokens: int = 0, **kwargs: Any) -> DinoVisionTransformer:
    """ViT-B (768 wide, 12 blocks, 12 heads)."""
    return _build("vit_base", patch_size, num_register_tokens, kwargs)


def vit_large(patch_size: int = 16, num_register_tokens: int = 0, **kwargs: Any) -> DinoVisionTransformer:
    """ViT-L (1024 wide, 24 blocks, 16 heads)."""
    return _build("vit_large", patch_size, num_register_tokens, kwargs)


def vit_giant2(patch_size: int = 16, num_register_tokens: int = 0, **kwargs: Any) -> DinoVisionTransformer:
    """ViT-g/2 (1536 wide, 40 blocks, 24 heads); upstream pairs it with ``ffn_layer='swiglufused'``."""
    return _build("vit_giant2", patch_size, num_register_tokens, kwargs)


VIT_FACTORIES = {"vit_tiny": vit_tiny, "vit_small": vit_small, "vit_base": vit_base, "vit_large": vit_large,
                 "vit_giant2": vit_giant2}
