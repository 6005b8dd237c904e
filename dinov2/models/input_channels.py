"""A backbone's input channels, and the exact conversion of its first layer between RGB and grey inputs.

A grey image reaches a 3-channel backbone replicated to RGB and normalised per channel with ImageNet's mean and
std; a 1-channel backbone (``student.in_chans=1``) sees it once, normalised with their averages. Because the
first layer is linear, its weights convert exactly between the two: with ``E = sum_c W_c / s_c`` the response
to the raw grey level and ``beta = b - sum_c (m_c / s_c) sum(W_c)`` the response to black, the converted layer
takes ``W'_k = E s'_k / C'`` and ``b' = beta + sum_k (m'_k / s'_k) sum(W'_k)``. On grey images both backbones
give the same outputs (up to float rounding); official 3-channel weights therefore start a 1-channel run with
nothing lost. This needs the layer's bias and no padding: a ViT's patch embedding has both.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from dinov2.utils.normalization import channel_normalization

PATCH_WEIGHT, PATCH_BIAS = "patch_embed.proj.weight", "patch_embed.proj.bias"


def input_channels(backbone: nn.Module) -> int:
    """The channel count a backbone takes: a ViT's patch embedding's, a ResNet's first convolution's; 3 (RGB) for
    a module with neither."""
    patch_embed = getattr(backbone, "patch_embed", None)
    if patch_embed is not None:
        return int(patch_embed.proj.in_channels)
    conv1 = getattr(backbone, "conv1", None)
    if isinstance(conv1, nn.Conv2d):
        return int(conv1.in_channels)
    return 3


def convert_input_layer(weight: torch.Tensor, bias: torch.Tensor,
                        channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A patch embedding's ``(weight [D, C, p, p], bias [D])`` for ``channels`` input channels, giving on grey
    images the outputs the given layer gives (see the module docstring); computed in float64."""
    mean_in, std_in = (torch.tensor(v, dtype=torch.float64).view(1, -1, 1, 1)
                       for v in channel_normalization(int(weight.shape[1])))
    mean_out, std_out = (torch.tensor(v, dtype=torch.float64).view(1, -1, 1, 1)
                         for v in channel_normalization(channels))
    w = weight.detach().to(torch.float64)
    grey_response = (w / std_in).sum(dim=1, keepdim=True)  # [D, 1, p, p]
    black_response = bias.detach().to(torch.float64) - (w * mean_in / std_in).sum(dim=(1, 2, 3))
    converted = grey_response * std_out / channels
    converted_bias = black_response + (converted * mean_out / std_out).sum(dim=(1, 2, 3))
    return converted.to(weight.dtype), converted_bias.to(bias.dtype)


def adapt_input_channels(state: Mapping[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """A flat ViT backbone state dict whose patch embedding takes ``channels`` channels (converted when it takes
    another count; otherwise the state unchanged)."""
    adapted = dict(state)
    weight = adapted.get(PATCH_WEIGHT)
    if weight is None or int(weight.shape[1]) == channels or PATCH_BIAS not in adapted:
        return adapted
    adapted[PATCH_WEIGHT], adapted[PATCH_BIAS] = convert_input_layer(weight, adapted[PATCH_BIAS], channels)
    return adapted
