"""Backbone weights in the formats researchers hold: bare state dicts as upstream DINOv2 releases them (with or
without register tokens, saved with block chunking or flat), with a ``module.`` / ``backbone.`` prefix, timm's
``vit_*_dinov2`` state dicts, and this project's exports (``model.safetensors`` + ``config.json``).

The architecture of a bare state dict is read from its tensors (width and depth give the size, the patch
embedding the patch size, ``pos_embed`` the image size, ``register_tokens`` the registers, ``mlp.w12`` the SwiGLU
FFN); an ``arch`` or ``patch_size`` given by the user is checked against them. Released models with registers
interpolate position embeddings with antialiasing and no offset, the others without antialiasing and offset 0.1,
as upstream's hub builds them.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import torch

from dinov2.models.input_channels import adapt_input_channels, input_channels
from dinov2.models.vision_transformer import DinoVisionTransformer
from dinov2.models.vits import VIT_FACTORIES
from dinov2.utils.choices import VIT_SIZES
from utils.weights_file import describe_contents, is_training_file

_CHUNKED_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")
_FLAT_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_WRAPPER_PREFIXES = ("module.", "backbone.")


class BackboneWeightsError(ValueError):
    """Weights that do not describe a backbone this project builds, or that contradict the given architecture."""


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to rebuild a backbone: the named size and the options that change its tensors."""

    arch: str
    patch_size: int
    img_size: int
    num_register_tokens: int = 0
    ffn_layer: str = "mlp"
    layerscale: bool = True
    interpolate_antialias: bool = False
    interpolate_offset: float = 0.1
    in_chans: int = 3

    def build(self) -> DinoVisionTransformer:
        """A fresh backbone of this shape (LayerScale initialised at 1e-5 when present)."""
        return VIT_FACTORIES[self.arch](
            patch_size=self.patch_size, img_size=self.img_size, num_register_tokens=self.num_register_tokens,
            in_chans=self.in_chans,
            ffn_layer=self.ffn_layer, init_values=1e-5 if self.layerscale else None,
            interpolate_antialias=self.interpolate_antialias, interpolate_offset=self.interpolate_offset)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), **VIT_SIZES[self.arch]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "BackboneSpec":
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name in values})


def spec_of_model(model: DinoVisionTransformer) -> BackboneSpec:
    """The spec of a built backbone (its interpolation settings included)."""
    spec = infer_spec(model.state_dict(), source=type(model).__name__)
    return BackboneSpec(spec.arch, spec.patch_size, spec.img_size, spec.num_register_tokens, spec.ffn_layer,
                        spec.layerscale, model.interpolate_antialias, model.interpolate_offset, spec.in_chans)


def unchunk_blocks(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``blocks.<chunk>.<i>.*`` (upstream's block chunking, where ``i`` already counts over the whole depth)
    -> ``blocks.<i>.*``; flat keys (``blocks.<i>.<module>...``) are kept."""
    flat = {}
    for key, value in state.items():
        match = _CHUNKED_BLOCK.match(key)
        flat[f"blocks.{match.group(2)}.{match.group(3)}" if match else key] = value
    return flat


def is_timm_state(tensors: Mapping[str, torch.Tensor]) -> bool:
    """True for a timm ViT state dict (its registers are ``reg_token``; it holds no mask token)."""
    return "reg_token" in tensors or ("mask_token" not in tensors and "blocks.0.attn.qkv.weight" in tensors
                                      and "cls_token" in tensors)


def timm_to_flat(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ``vit_*_dinov2`` state dict as this project's flat backbone state dict: the classifier dropped, the
    registers renamed, a zero class position added where timm keeps the class token out of the position
    embedding (so nothing is added to it, as before), a zero mask token (used only by iBOT's masking), and
    packed SwiGLU ``fc1`` / ``fc2`` named ``w12`` / ``w3``."""
    flat = {key: value for key, value in tensors.items() if not key.startswith(("head.", "fc_norm.", "head_drop."))}
    if "reg_token" in flat:
        flat["register_tokens"] = flat.pop("reg_token")
    positions = flat.get("pos_embed")
    if positions is not None and positions.ndim == 3 and math.isqrt(positions.shape[1]) ** 2 == positions.shape[1]:
        flat["pos_embed"] = torch.cat([torch.zeros_like(positions[:, :1]), positions], dim=1)  # patches only
    flat.setdefault("mask_token", torch.zeros(1, flat["cls_token"].shape[-1], dtype=flat["cls_token"].dtype))
    fc1, fc2 = flat.get("blocks.0.mlp.fc1.weight"), flat.get("blocks.0.mlp.fc2.weight")
    if fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1]:  # SwiGLU, packed
        flat = {key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3."): value
                for key, value in flat.items()}
    return flat


def bare_backbone_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A flat backbone state dict from a bare one: wrapper prefixes (``module.``, ``backbone.``) removed, chunked
    blocks flattened, timm's names made upstream's (:func:`timm_to_flat`)."""
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    for prefix in _WRAPPER_PREFIXES:
        if tensors and all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix):]: value for key, value in tensors.items()}
    tensors = unchunk_blocks(tensors)
    return timm_to_flat(tensors) if is_timm_state(tensors) else tensors


def is_bare_backbone(state: Any) -> bool:
    """True for a state dict whose tensors are a ViT backbone's (possibly prefixed or chunked)."""
    if not isinstance(state, Mapping):
        return False
    keys = set(bare_backbone_state(state))
    return {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= keys


def infer_spec(state: Mapping[str, torch.Tensor], arch: Optional[str] = None, patch_size: Optional[int] = None,
               source: str = "weights") -> BackboneSpec:
    """The architecture of a flat backbone state dict; raises :class:`BackboneWeightsError` naming ``source``."""
    try:
        width = int(state["cls_token"].shape[-1])
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        positions = int(state["pos_embed"].shape[1]) - 1
    except KeyError as missing:
        raise BackboneWeightsError(f"{source}: no {missing} tensor: not a ViT backbone state dict") from None
    depth = len({int(m.group(1)) for key in state if (m := _FLAT_BLOCK.match(key))})
    found = [name for name, size in VIT_SIZES.items() if (size["embed_dim"], size["depth"]) == (width, depth)]
    if not found:
        raise BackboneWeightsError(f"{source}: width {width} and depth {depth} match no architecture of "
                                   f"{sorted(VIT_SIZES)}")
    if arch is not None and arch not in found:
        raise BackboneWeightsError(f"{source}: --arch {arch} does not match the weights ({found[0]}: width {width}, "
                                   f"depth {depth})")
    if patch_size is not None and patch_size != patch:
        raise BackboneWeightsError(f"{source}: --patch-size {patch_size} does not match the weights' {patch}")
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise BackboneWeightsError(f"{source}: pos_embed holds {positions} patch positions, not a square grid")
    registers = int(state["register_tokens"].shape[1]) if "register_tokens" in state else 0
    return BackboneSpec(
        arch=arch or found[0], patch_size=patch, img_size=grid * patch, num_register_tokens=registers,
        ffn_layer="swiglufused" if "blocks.0.mlp.w12.weight" in state else "mlp",
        layerscale="blocks.0.ls1.gamma" in state,
        interpolate_antialias=registers > 0, interpolate_offset=0.0 if registers else 0.1,
        in_chans=int(state["patch_embed.proj.weight"].shape[1]))


def load_bare_backbone(state: Mapping[str, Any], arch: Optional[str] = None, patch_size: Optional[int] = None,
                       source: str = "weights") -> DinoVisionTransformer:
    """Build the backbone that ``state`` describes and load it strictly; in eval mode."""
    if not isinstance(state, Mapping):
        raise BackboneWeightsError(f"{source} holds {describe_contents(state)}: expected a backbone state dict")
    if is_training_file(state):
        raise BackboneWeightsError(f"{source} holds {describe_contents(state)}, not a bare backbone state dict: "
                                   f"dinov2.hub.load_backbone (torch.hub entry 'backbone') reads it")
    flat = bare_backbone_state(state)
    spec = infer_spec(flat, arch, patch_size, source)
    model = spec.build()
    try:
        model.load_state_dict(flat, strict=True)
    except RuntimeError as error:
        raise BackboneWeightsError(f"{source}: the weights do not fit a {spec.arch}/{spec.patch_size}: {error}") \
            from None
    return model.eval()


def resample_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """``pos_embed`` ``[1, 1 + g*g, D]`` resampled (bicubic) to ``[1, 1 + grid*grid, D]``; the class position kept."""
    old = math.isqrt(pos_embed.shape[1] - 1)
    if old == grid:
        return pos_embed
    patches = pos_embed[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    patches = torch.nn.functional.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos_embed.dtype)
    return torch.cat([pos_embed[:, :1], patches], dim=1)


def load_pretrained_into(model: DinoVisionTransformer, weights: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a backbone's weights into ``model`` (another image size is fine: ``pos_embed`` is resampled to the
    model's grid; another input channel count too: the patch embedding is converted exactly for grey images, see
    :mod:`dinov2.models.input_channels`); raises :class:`BackboneWeightsError` naming ``source`` when the shapes
    do not fit."""
    flat = adapt_input_channels(weights, input_channels(model))
    grid = math.isqrt(model.pos_embed.shape[1] - 1)
    if "pos_embed" in flat:
        flat["pos_embed"] = resample_pos_embed(flat["pos_embed"], grid)
    try:
        model.load_state_dict(flat, strict=True)
    except RuntimeError as error:
        raise BackboneWeightsError(f"{source} does not fit the configured backbone: {error}") from None
