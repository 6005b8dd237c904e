"""Patch embedding: a strided convolution that turns an image into a sequence of patch tokens."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class PatchEmbed(nn.Module):
    """``[B, C, H, W] -> [B, (H/p)*(W/p), D]`` (row-major patch order); H and W must be multiples of p."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: Callable[[int], nn.Module] | None = None,
        flatten_embedding: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        for size, patch in zip(self.img_size, self.patch_size):
            if size % patch != 0:
                raise ValueError(f"PatchEmbed: image size {self.img_size} is not divisible by patch {self.patch_size}")
        self.patches_resolution = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.flatten_embedding = flatten_embedding
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.patch_size[0] or width % self.patch_size[1]:
            raise ValueError(f"PatchEmbed: input {height}x{width} is not divisible by patch size {self.patch_size}")
        x = self.proj(x)
        grid_h, grid_w = x.shape[-2:]
        x = self.norm(x.flatten(2).transpose(1, 2))
        if not self.flatten_embedding:
            x = x.reshape(-1, grid_h, grid_w, self.embed_dim)
        return x
