"""DINOv2 backbones in Hugging Face transformers' format, converted to and from this project's flat state dict
(upstream DINOv2's key names) without importing transformers: folders of ``config.json`` + ``model.safetensors``
(or ``pytorch_model.bin``) of ``Dinov2Model`` (``model_type: dinov2``) and ``Dinov2WithRegistersModel``
(``dinov2_with_registers``), the architecture read from ``config.json``; weights saved from a task model
(``dinov2.`` prefix) load too. transformers keeps the query, key and value projections apart and names
LayerScale ``lambda1``; nothing else differs, so the tokens agree to float rounding. Files under the names of
transformers 4 (``attention.attention.query``, ``mlp.weights_in``: the Hub's) and of transformers 5
(``attention.q_proj``, ``mlp.gate_proj`` / ``up_proj``) both load; exports use the former, which both versions
read. At the image size of its config both libraries give the same tokens; at other sizes transformers resamples
the position embedding to the grid's size, as this project does with ``interpolate_offset=0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from dinov2.models.backbone_weights import BackboneSpec, BackboneWeightsError
from dinov2.models.vision_transformer import DinoVisionTransformer
from dinov2.utils.choices import VIT_SIZES
from utils.cli import squeezed
from utils.weights_file import load_torch_file

TRANSFORMERS_TYPES = {"dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel"}
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_LAYER_NORM_EPS = 1e-6  # this project's ViTs (dinov2.models.vision_transformer.NORM_LAYER)
# transformers' names of one block's tensors, ours on the right (query/key/value are split from attn.qkv)
_BLOCK_KEYS = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
}
_MLP_KEYS = {"mlp": {"fc1": "fc1", "fc2": "fc2"}, "swiglufused": {"weights_in": "w12", "weights_out": "w3"}}
_QKV = ("query", "key", "value")
_V5_NAMES = {".attention.q_proj.": ".attention.attention.query.", ".attention.k_proj.": ".attention.attention.key.",
             ".attention.v_proj.": ".attention.attention.value.", ".attention.o_proj.": ".attention.output.dense.",
             ".mlp.down_proj.": ".mlp.weights_out."}


def _legacy_names(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5's names made transformers 4's (its SwiGLU gate and up projections packed as weights_in)."""
    renamed = {}
    for key, value in tensors.items():
        for new, old in _V5_NAMES.items():
            key = key.replace(new, old)
        renamed[key] = value
    for key in [k for k in renamed if ".mlp.gate_proj." in k]:
        up = key.replace(".mlp.gate_proj.", ".mlp.up_proj.")
        if up in renamed:
            renamed[key.replace(".mlp.gate_proj.", ".mlp.weights_in.")] = torch.cat([renamed.pop(key),
                                                                                      renamed.pop(up)])
    return renamed


def transformers_spec(config: Mapping[str, Any], source: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a transformers DINOv2 ``config.json``; :class:`BackboneWeightsError` naming
    ``source`` for another model type or a shape this project does not build."""
    model_type = config.get("model_type")
    if model_type not in TRANSFORMERS_TYPES:
        raise BackboneWeightsError(f"{source} describes a transformers model of type {model_type!r}, not a DINOv2 "
                                   f"backbone (model_type {' or '.join(TRANSFORMERS_TYPES)})")
    try:
        shape = (int(config["hidden_size"]), int(config["num_hidden_layers"]), int(config["num_attention_heads"]),
                 float(config.get("mlp_ratio", 4)))
        patch, image, channels = int(config["patch_size"]), int(config["image_size"]), int(config["num_channels"])
    except (KeyError, TypeError, ValueError) as error:
        raise BackboneWeightsError(f"{source}: a DINOv2 config without a usable {error}") from None
    found = [name for name, size in VIT_SIZES.items()
             if (size["embed_dim"], size["depth"], size["num_heads"], float(size["mlp_ratio"])) == shape]
    if not found:
        raise BackboneWeightsError(f"{source}: width {shape[0]}, depth {shape[1]}, {shape[2]} heads and MLP ratio "
                                   f"{shape[3]:g} match no architecture of {sorted(VIT_SIZES)}")
    unsupported = [f"{key}={config.get(key)!r}" for key, wanted in (
        ("hidden_act", "gelu"), ("qkv_bias", True), ("layer_norm_eps", _LAYER_NORM_EPS))
        if config.get(key, wanted) != wanted]
    if unsupported:
        raise BackboneWeightsError(f"{source}: {', '.join(unsupported)}: this project's ViTs use GELU, query/key/"
                                   f"value biases and LayerNorm eps {_LAYER_NORM_EPS}")
    registers = int(config.get("num_register_tokens", 0)) if model_type == "dinov2_with_registers" else 0
    grid = image // patch
    return BackboneSpec(arch=found[0], patch_size=patch, img_size=grid * patch, num_register_tokens=registers,
                        ffn_layer="swiglufused" if config.get("use_swiglu_ffn") else "mlp", layerscale=True,
                        interpolate_antialias=registers > 0, interpolate_offset=0.0, in_chans=channels)


def transformers_to_flat(state: Mapping[str, torch.Tensor], spec: BackboneSpec,
                         source: str) -> dict[str, torch.Tensor]:
    """A transformers DINOv2 state dict as this project's flat backbone state dict."""
    tensors = _legacy_names({key[len("dinov2."):] if key.startswith("dinov2.") else key: value
                             for key, value in state.items()})
    mlp_keys = _MLP_KEYS[spec.ffn_layer]
    flat: dict[str, torch.Tensor] = {}
    try:
        flat["cls_token"] = tensors["embeddings.cls_token"]
        flat["pos_embed"] = tensors["embeddings.position_embeddings"]
        flat["mask_token"] = tensors.get("embeddings.mask_token", torch.zeros_like(flat["cls_token"])).reshape(1, -1)
        flat["patch_embed.proj.weight"] = tensors["embeddings.patch_embeddings.projection.weight"]
        flat["patch_embed.proj.bias"] = tensors["embeddings.patch_embeddings.projection.bias"]
        if spec.num_register_tokens:
            flat["register_tokens"] = tensors["embeddings.register_tokens"]
        for i in range(VIT_SIZES[spec.arch]["depth"]):
            theirs, ours = f"encoder.layer.{i}.", f"blocks.{i}."
            for their_key, our_key in _BLOCK_KEYS.items():
                flat[ours + our_key] = tensors[theirs + their_key]
            for kind in ("weight", "bias"):
                flat[f"{ours}attn.qkv.{kind}"] = torch.cat(
                    [tensors[f"{theirs}attention.attention.{part}.{kind}"] for part in _QKV])
                for their_name, our_name in mlp_keys.items():
                    flat[f"{ours}mlp.{our_name}.{kind}"] = tensors[f"{theirs}mlp.{their_name}.{kind}"]
        flat["norm.weight"], flat["norm.bias"] = tensors["layernorm.weight"], tensors["layernorm.bias"]
    except KeyError as missing:
        raise BackboneWeightsError(f"{source}: no {missing} tensor: not the DINOv2 weights its config.json "
                                   "describes") from None
    return flat


def flat_to_transformers(flat: Mapping[str, torch.Tensor], spec: BackboneSpec) -> dict[str, torch.Tensor]:
    """This project's flat backbone state dict under ``Dinov2Model`` / ``Dinov2WithRegistersModel`` names."""
    width = VIT_SIZES[spec.arch]["embed_dim"]
    state = {
        "embeddings.cls_token": flat["cls_token"], "embeddings.position_embeddings": flat["pos_embed"],
        "embeddings.mask_token": flat["mask_token"].reshape(1, width),
        "embeddings.patch_embeddings.projection.weight": flat["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": flat["patch_embed.proj.bias"],
        "layernorm.weight": flat["norm.weight"], "layernorm.bias": flat["norm.bias"],
    }
    if spec.num_register_tokens:
        state["embeddings.register_tokens"] = flat["register_tokens"]
    ones = torch.ones(width, dtype=flat["cls_token"].dtype)
    for i in range(VIT_SIZES[spec.arch]["depth"]):
        theirs, ours = f"encoder.layer.{i}.", f"blocks.{i}."
        for their_key, our_key in _BLOCK_KEYS.items():
            state[theirs + their_key] = flat.get(ours + our_key, ones)  # no LayerScale: a scale of one
        for kind in ("weight", "bias"):
            for part, tensor in zip(_QKV, flat[f"{ours}attn.qkv.{kind}"].chunk(3)):
                state[f"{theirs}attention.attention.{part}.{kind}"] = tensor
            for their_name, our_name in _MLP_KEYS[spec.ffn_layer].items():
                state[f"{theirs}mlp.{their_name}.{kind}"] = flat[f"{ours}mlp.{our_name}.{kind}"]
    return {key: value.contiguous() for key, value in state.items()}


def transformers_config(spec: BackboneSpec) -> dict[str, Any]:
    """The ``config.json`` of :func:`flat_to_transformers`'s weights (``AutoModel.from_pretrained`` reads it)."""
    size = VIT_SIZES[spec.arch]
    model_type = "dinov2_with_registers" if spec.num_register_tokens else "dinov2"
    config = {
        "model_type": model_type, "architectures": [TRANSFORMERS_TYPES[model_type]],
        "hidden_size": size["embed_dim"], "num_hidden_layers": size["depth"],
        "num_attention_heads": size["num_heads"], "mlp_ratio": size["mlp_ratio"], "patch_size": spec.patch_size,
        "image_size": spec.img_size, "num_channels": spec.in_chans, "qkv_bias": True, "hidden_act": "gelu",
        "layer_norm_eps": _LAYER_NORM_EPS, "layerscale_value": 1.0, "use_swiglu_ffn": spec.ffn_layer != "mlp",
        "drop_path_rate": 0.0, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "torch_dtype": "float32",
    }
    if spec.num_register_tokens:
        config["num_register_tokens"] = spec.num_register_tokens
    return config


def transformers_weights_file(folder: Path) -> Optional[Path]:
    """The weights file of a transformers folder (safetensors preferred), or None."""
    return next((folder / name for name in TRANSFORMERS_WEIGHTS if (folder / name).is_file()), None)


def load_transformers_backbone(folder: Path, config: Mapping[str, Any],
                               map_location: Any = "cpu") -> DinoVisionTransformer:
    """The backbone of a transformers DINOv2 folder, strictly loaded, in eval mode."""
    spec = transformers_spec(config, str(folder / "config.json"))
    weights = transformers_weights_file(folder)
    if weights is None:
        raise BackboneWeightsError(f"{folder} holds a transformers config.json but none of {TRANSFORMERS_WEIGHTS}")
    state = load_torch_file(weights, f"the weights of a transformers {config['model_type']} model", map_location)
    if not isinstance(state, Mapping):
        raise BackboneWeightsError(f"{weights} holds a {type(state).__name__}: expected a state dict")
    model = spec.build()
    try:
        model.load_state_dict(transformers_to_flat(state, spec, str(weights)), strict=True)
    except RuntimeError as error:
        raise BackboneWeightsError(f"{weights} does not fit the {spec.arch}/{spec.patch_size} its config.json "
                                   f"describes: {squeezed(error, 200)}") from None
    return model.eval()
