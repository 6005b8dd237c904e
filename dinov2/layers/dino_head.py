"""DINO projection head: MLP -> bottleneck -> L2 normalisation -> weight-normalised prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import trunc_normal_


class WeightNormLinear(nn.Module):
    """Bias-free linear layer with weight ``weight_v * weight_g / ||weight_v||`` (norm over each output row).

    Same parameter names as ``torch.nn.utils.weight_norm`` (``weight_g [out, 1]``, ``weight_v [out, in]``) so
    checkpoints keep upstream key names, without that deprecated hook.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_g = nn.Parameter(torch.ones(out_features, 1))

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


def _build_mlp(nlayers: int, in_dim: int, bottleneck_dim: int, hidden_dim: int, use_bn: bool, bias: bool) -> nn.Module:
    if nlayers == 1:
        return nn.Linear(in_dim, bottleneck_dim, bias=bias)
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=bias)]
    for _ in range(nlayers - 2):
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.GELU(), nn.Linear(hidden_dim, hidden_dim, bias=bias)]
    if use_bn:
        layers.append(nn.BatchNorm1d(hidden_dim))
    layers += [nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim, bias=bias)]
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """Projection head shared by the DINO (class token) and iBOT (patch token) losses.

    ``last_layer`` holds the ``out_dim`` prototypes; its scale ``weight_g`` starts at 1 and is trained, as in
    DINOv2 (``norm_last_layer=True`` freezes it at 1, as DINO v1 did). The training loop freezes the whole
    ``last_layer`` during the first epoch by name.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        use_bn: bool = False,
        nlayers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        mlp_bias: bool = True,
        norm_last_layer: bool = False,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"DINOHead: nlayers must be at least 1, got {nlayers}")
        self.mlp = _build_mlp(nlayers, in_dim, bottleneck_dim, hidden_dim, use_bn, mlp_bias)
        self.apply(self._init_weights)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        trunc_normal_(self.last_layer.weight_v, std=0.02)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad_(False)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        eps = 1e-6 if x.dtype == torch.float16 else 1e-12
        x = F.normalize(x, dim=-1, p=2, eps=eps)
        return self.last_layer(x)
