"""torch.hub entry points of this repository.

    model = torch.hub.load("path/to/repo", "backbone", source="local", weights="outputs/run/export")
    model = torch.hub.load("path/to/repo", "backbone", source="local", weights="outputs/run")   # newest export
    model = torch.hub.load("path/to/repo", "dinov2_vits14", source="local")   # upstream's released weights

``backbone`` takes anything ``dinov2.hub.load_backbone`` takes (run directory, encoder export, full checkpoint,
``python -m dinov2.export`` folder, bare state dict). The ``dinov2_vit{s,b,l,g}14[_reg]`` entries build upstream
DINOv2's released backbones under upstream's names, so a process that imported this project's ``dinov2`` package
(which shadows upstream's) loads them from here; ``pretrained=True`` downloads the official weights, ``weights=``
reads a local copy of them instead.
"""

from __future__ import annotations

from typing import Any, Optional

dependencies = ["torch", "omegaconf", "safetensors"]

_OFFICIAL_URL = "https://dl.fbaipublicfiles.com/dinov2"
_OFFICIAL_SIZES = {"s": "vit_small", "b": "vit_base", "l": "vit_large", "g": "vit_giant2"}


def backbone(weights: str, arch: Optional[str] = None, patch_size: Optional[int] = None) -> Any:
    """A backbone of this project (or any bare state dict), in eval mode; see ``dinov2.hub.load_backbone``."""
    from dinov2.hub import load_backbone

    return load_backbone(weights, arch=arch, patch_size=patch_size)


def _official(size: str, registers: bool, pretrained: bool, weights: Optional[str]) -> Any:
    import torch

    from dinov2.models.backbone_weights import BackboneSpec, load_bare_backbone
    from utils.weights_file import load_torch_file

    folder = f"dinov2_vit{size}14"
    name = f"{folder}{'_reg4' if registers else ''}"
    arch = _OFFICIAL_SIZES[size]
    if weights is not None or pretrained:
        state = (load_torch_file(weights, f"upstream's {name} weights (a state dict)") if weights is not None else
                 torch.hub.load_state_dict_from_url(f"{_OFFICIAL_URL}/{folder}/{name}_pretrain.pth",
                                                    map_location="cpu"))
        return load_bare_backbone(state, arch, 14, source=weights or name)
    spec = BackboneSpec(arch, 14, 518, 4 if registers else 0, "swiglufused" if size == "g" else "mlp", True,
                        interpolate_antialias=registers, interpolate_offset=0.0 if registers else 0.1)
    return spec.build().eval()


def dinov2_vits14(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-S/14."""
    return _official("s", False, pretrained, weights)


def dinov2_vitb14(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-B/14."""
    return _official("b", False, pretrained, weights)


def dinov2_vitl14(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-L/14."""
    return _official("l", False, pretrained, weights)


def dinov2_vitg14(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-g/14 (SwiGLU FFN)."""
    return _official("g", False, pretrained, weights)


def dinov2_vits14_reg(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-S/14 with 4 registers."""
    return _official("s", True, pretrained, weights)


def dinov2_vitb14_reg(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-B/14 with 4 registers."""
    return _official("b", True, pretrained, weights)


def dinov2_vitl14_reg(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-L/14 with 4 registers."""
    return _official("l", True, pretrained, weights)


def dinov2_vitg14_reg(pretrained: bool = True, weights: Optional[str] = None) -> Any:
    """Upstream DINOv2 ViT-g/14 with 4 registers (SwiGLU FFN)."""
    return _official("g", True, pretrained, weights)
