"""Named ViT sizes: upstream's ``vit_small``, ``vit_base``, ``vit_large``, ``vit_giant2``, the usual 12-block
``vit_tiny``, and ``vit_tiny_4blocks`` for CPU runs (sizes in :data:`dinov2.utils.choices.VIT_SIZES`)."""

from __future__ import annotations

from typing import Any, Callable

from dinov2.models.vision_transformer import DinoVisionTransformer
from dinov2.utils.choices import VIT_SIZES


def _build(arch: str, patch_size: int, num_register_tokens: int, kwargs: dict[str, Any]) -> DinoVisionTransformer:
    kwargs.setdefault("init_values", 1e-5)
    settings = {**VIT_SIZES[arch], **kwargs}
    return DinoVisionTransformer(patch_size=patch_size, num_register_tokens=num_register_tokens, **settings)


def vit_tiny_4blocks(patch_size: int = 16, num_register_tokens: int = 0, **kwargs: Any) -> DinoVisionTransformer:
    """ViT-Ti width with 4 blocks (192 wide, 3 heads): this project's CPU size."""
    return _build("vit_tiny_4blocks", patch_size, num_register_tokens, kwargs)


def vit_tiny(patch_size: int = 16, num_register_tokens: int = 0, **kwargs: Any) -> DinoVisionTransformer:
    """ViT-Ti (192 wide, 12 blocks, 3 heads), as in DeiT, DINO and timm."""
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


VIT_FACTORIES: dict[str, Callable[..., DinoVisionTransformer]] = {
    "vit_tiny_4blocks": vit_tiny_4blocks, "vit_tiny": vit_tiny, "vit_small": vit_small, "vit_base": vit_base,
    "vit_large": vit_large, "vit_giant2": vit_giant2,
}
