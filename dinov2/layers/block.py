"""Pre-norm transformer block with LayerScale and stochastic depth; also runs on a list of crop batches."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dinov2.layers.attention import Attention
from dinov2.layers.drop_path import DropPath
from dinov2.layers.layer_scale import LayerScale
from dinov2.layers.mlp import Mlp


class Block(nn.Module):
    """``x + drop_path(ls1(attn(norm1(x))))`` then ``x + drop_path(ls2(mlp(norm2(x))))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        init_values: float | None = None,
        drop_path: float = 0.0,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        attn_class: Callable[..., nn.Module] = Attention,
        ffn_layer: Callable[..., nn.Module] = Mlp,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn_class(dim, num_heads=num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
                               attn_drop=attn_drop, proj_drop=drop)
        self.ls1 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = ffn_layer(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer,
                             drop=drop, bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class NestedTensorBlock(Block):
    """A :class:`Block` that also accepts a list of token tensors (crops of different sizes), one pass each."""

    def forward(self, x_or_x_list: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(x_or_x_list, torch.Tensor):
            return super().forward(x_or_x_list)
        if isinstance(x_or_x_list, (list, tuple)):
            return [super(NestedTensorBlock, self).forward(x) for x in x_or_x_list]
        raise TypeError(f"NestedTensorBlock expects a tensor or a list of tensors, got {type(x_or_x_list).__name__}")
