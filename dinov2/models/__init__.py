"""ViT and ResNet backbones and the builders that read them from a config."""

from __future__ import annotations

from typing import Any

from dinov2.models.resnet import RESNET_FACTORIES, ResNetBackbone
from dinov2.models.vision_transformer import DinoVisionTransformer
from dinov2.models.vits import VIT_FACTORIES, vit_base, vit_giant2, vit_large, vit_small, vit_tiny, vit_tiny_4blocks

__all__ = ["DinoVisionTransformer", "ResNetBackbone", "VIT_FACTORIES", "RESNET_FACTORIES", "vit_tiny_4blocks",
           "vit_tiny", "vit_small", "vit_base", "vit_large", "vit_giant2", "build_model", "build_model_from_cfg"]


def _get(args: Any, key: str, default: Any) -> Any:
    if isinstance(args, dict):
        return args.get(key, default)
    return getattr(args, key, default)


def build_model(args: Any, only_teacher: bool = False, img_size: int = 224) -> tuple:
    """Build (student, teacher, embed_dim) from a ``student`` config section; (teacher, embed_dim) if only_teacher.

    The teacher has no stochastic depth. Unknown architectures raise ``ValueError`` naming ``student.arch``.
    ``resnet18`` / ``resnet50`` build :class:`ResNetBackbone` with ``resnet_stem`` (ViT keys do not apply).
    ``in_chans`` (3, or 1 for grey images) sets the input channels of either.
    """
    arch = str(_get(args, "arch", "vit_small"))
    in_chans = int(_get(args, "in_chans", 3))
    if arch in RESNET_FACTORIES:
        stem = str(_get(args, "resnet_stem", "imagenet"))
        teacher = ResNetBackbone(arch, stem, in_chans=in_chans)
        if only_teacher:
            return teacher, teacher.embed_dim
        return ResNetBackbone(arch, stem, in_chans=in_chans), teacher, teacher.embed_dim
    if arch not in VIT_FACTORIES:
        known = sorted(VIT_FACTORIES) + sorted(RESNET_FACTORIES)
        raise ValueError(f"student.arch: unknown architecture {arch!r}; expected one of {known}")
    layerscale = _get(args, "layerscale", 1e-5)
    vit_kwargs = {
        "img_size": img_size,
        "patch_size": int(_get(args, "patch_size", 16)),
        "in_chans": in_chans,
        "init_values": float(layerscale) if layerscale else None,
        "ffn_layer": _get(args, "ffn_layer", "mlp"),
        "qkv_bias": bool(_get(args, "qkv_bias", True)),
        "proj_bias": bool(_get(args, "proj_bias", True)),
        "ffn_bias": bool(_get(args, "ffn_bias", True)),
        "num_register_tokens": int(_get(args, "num_register_tokens", 0)),
        "interpolate_offset": float(_get(args, "interpolate_offset", 0.1)),
        "interpolate_antialias": bool(_get(args, "interpolate_antialias", False)),
    }
    factory = VIT_FACTORIES[arch]
    teacher = factory(**vit_kwargs)
    if only_teacher:
        return teacher, teacher.embed_dim
    student = factory(
        **vit_kwargs,
        drop_path_rate=float(_get(args, "drop_path_rate", 0.0)),
        drop_path_uniform=bool(_get(args, "drop_path_uniform", False)),
    )
    return student, teacher, student.embed_dim


def build_model_from_cfg(cfg: Any, only_teacher: bool = False) -> tuple:
    """:func:`build_model` from a full config (``cfg.student``, ``cfg.crops.global_crops_size`` and, for a ViT
    student, ``cfg.train.activation_checkpointing``)."""
    built = build_model(cfg.student, only_teacher=only_teacher, img_size=int(cfg.crops.global_crops_size))
    train = _get(cfg, "train", {}) or {}
    if not only_teacher and isinstance(built[0], DinoVisionTransformer):
        built[0].activation_checkpointing = bool(_get(train, "activation_checkpointing", False))
    return built
