"""Building blocks of the DINOv2 vision transformer and its projection head."""

from dinov2.layers.attention import Attention
from dinov2.layers.block import Block, NestedTensorBlock
from dinov2.layers.dino_head import DINOHead, WeightNormLinear
from dinov2.layers.drop_path import DropPath, drop_path
from dinov2.layers.layer_scale import LayerScale
from dinov2.layers.mlp import Mlp, SwiGLUFFN
from dinov2.layers.patch_embed import PatchEmbed

SwiGLUFFNFused = SwiGLUFFN

__all__ = [
    "Attention", "Block", "NestedTensorBlock", "DINOHead", "WeightNormLinear", "DropPath", "drop_path",
    "LayerScale", "Mlp", "SwiGLUFFN", "SwiGLUFFNFused", "PatchEmbed",
]
