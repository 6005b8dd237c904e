"""The DINOv2 vision transformer: patch tokens, class token, optional registers, iBOT mask token.

State-dict keys are plain (``blocks.<i>.attn.qkv.weight``, ...) and identical to upstream DINOv2's unchunked
layout, whatever performance options are used, so exported teachers load strictly anywhere.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import trunc_normal_
from torch.utils.checkpoint import checkpoint

from dinov2.layers import Mlp, NestedTensorBlock, PatchEmbed, SwiGLUFFN


def _identity_ffn(*args: Any, **kwargs: Any) -> nn.Module:
    return nn.Identity()


# the builders of dinov2.utils.choices.FFN_LAYERS (a test keeps the two in step)
FFN_MODULES = {"mlp": Mlp, "swiglu": SwiGLUFFN, "swiglufused": SwiGLUFFN, "identity": _identity_ffn}
NORM_LAYER = partial(nn.LayerNorm, eps=1e-6)


class DinoVisionTransformer(nn.Module):
    """ViT backbone; ``forward(x, is_training=True)`` returns the token dict(s) used by SSL training."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        ffn_bias: bool = True,
        proj_bias: bool = True,
        drop_path_rate: float = 0.0,
        drop_path_uniform: bool = False,
        init_values: float | None = None,
        ffn_layer: str = "mlp",
        num_register_tokens: int = 0,
        interpolate_antialias: bool = False,
        interpolate_offset: float = 0.1,
    ) -> None:
        super().__init__()
        if ffn_layer not in FFN_MODULES:
            raise ValueError(f"ffn_layer must be one of {sorted(FFN_MODULES)}, got {ffn_layer!r}")
        if img_size % patch_size != 0:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        if num_register_tokens < 0:
            raise ValueError(f"num_register_tokens must be >= 0, got {num_register_tokens}")
        self.num_features = self.embed_dim = embed_dim
        self.num_tokens = 1
        self.n_blocks = depth
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset

        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_tokens, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        # on the CPU explicitly: under a ``torch.device("meta")`` context the rates must still be real numbers
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        if drop_path_uniform:
            rates = [drop_path_rate] * depth
        block = partial(NestedTensorBlock, dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias, proj_bias=proj_bias, ffn_bias=ffn_bias, norm_layer=NORM_LAYER,
                        act_layer=nn.GELU, ffn_layer=FFN_MODULES[ffn_layer], init_values=init_values)
        self.blocks = nn.ModuleList(block(drop_path=rate) for rate in rates)
        self.norm = NORM_LAYER(embed_dim)
        self.head = nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        # recompute each block's activations in the backward pass instead of keeping them (train.
        # activation_checkpointing): less memory for one more forward; the same numbers (RNG states are replayed)
        self.activation_checkpointing = False
        self.init_weights()

    def init_weights(self) -> None:
        """Upstream initialisation: truncated normal for position embeddings and linear layers."""
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def interpolate_pos_encoding(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Position embeddings for an ``height x width`` input (bicubic resize of the patch grid)."""
        previous_dtype = x.dtype
        n_patches = x.shape[1] - 1
        n_stored = self.pos_embed.shape[1] - 1
        if n_patches == n_stored and height == width:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        class_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
        dim = x.shape[-1]
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        side = int(math.sqrt(n_stored))
        if side * side != n_stored:
            raise ValueError(f"pos_embed holds {n_stored} patch positions, not a square grid")
        if self.interpolate_offset:
            # The small offset avoids floating-point error in the output size (as in DINO v1 and v2).
            scale = ((grid_h + self.interpolate_offset) / side, (grid_w + self.interpolate_offset) / side)
            resize: dict[str, Any] = {"scale_factor": scale}
        else:
            resize = {"size": (grid_h, grid_w)}
        patch_pos = F.interpolate(
            patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2),
            mode="bicubic",
            antialias=self.interpolate_antialias,
            **resize,
        )
        if tuple(patch_pos.shape[-2:]) != (grid_h, grid_w):
            raise RuntimeError(f"position embedding resized to {tuple(patch_pos.shape[-2:])}, not {(grid_h, grid_w)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos, patch_pos), dim=1).to(previous_dtype)

    def prepare_tokens_with_masks(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Patch-embed, replace masked patches by ``mask_token``, prepend class (and register) tokens."""
        batch, _, height, width = x.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"input {height}x{width} is not divisible by patch size {self.patch_size}")
        x = self.patch_embed(x)
        if masks is not None:
            if masks.shape != x.shape[:2]:
                expected = tuple(x.shape[:2])
                raise ValueError(f"masks must have shape {expected} (batch, patches), got {tuple(masks.shape)}")
            x = torch.where(masks.bool().unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
        x = torch.cat((self.cls_token.expand(batch, -1, -1).to(x.dtype), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, height, width)
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(batch, -1, -1).to(x.dtype)
            x = torch.cat((x[:, :1], registers, x[:, 1:]), dim=1)
        return x

    def _split_tokens(self, x: torch.Tensor, masks: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        x_norm = self.norm(x)
        first_patch = self.num_register_tokens + 1
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1:first_patch],
            "x_norm_patchtokens": x_norm[:, first_patch:],
            "x_prenorm": x,
            "masks": masks,
        }

    def forward_features_list(
        self, x_list: Sequence[torch.Tensor], masks_list: Sequence[torch.Tensor | None]
    ) -> list[dict[str, torch.Tensor | None]]:
        """One token dict per batch of crops (batches may differ in size, e.g. global and local crops)."""
        if len(x_list) != len(masks_list):
            raise ValueError(f"{len(x_list)} crop batches but {len(masks_list)} mask entries")
        tokens = [self.prepare_tokens_with_masks(x, m) for x, m in zip(x_list, masks_list)]
        for block in self.blocks:
            tokens = self._run_block(block, tokens)
        return [self._split_tokens(x, m) for x, m in zip(tokens, masks_list)]

    def _run_block(self, block: nn.Module, tokens: Any) -> Any:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, tokens, use_reentrant=False)
        return block(tokens)

    def forward_features(
        self, x: torch.Tensor | Sequence[torch.Tensor], masks: Any = None
    ) -> dict[str, torch.Tensor | None] | list[dict[str, torch.Tensor | None]]:
        """Token dict: normalised class/register/patch tokens, the pre-norm sequence and the masks."""
        if isinstance(x, (list, tuple)):
            return self.forward_features_list(x, masks if masks is not None else [None] * len(x))
        x_tokens = self.prepare_tokens_with_masks(x, masks)
        for block in self.blocks:
            x_tokens = self._run_block(block, x_tokens)
        return self._split_tokens(x_tokens, masks)

    def _intermediate_outputs(self, x: torch.Tensor, n: int | Sequence[int]) -> list[torch.Tensor]:
        x = self.prepare_tokens_with_masks(x)
        total = len(self.blocks)
        wanted = set(range(total - n, total) if isinstance(n, int) else n)
        bad = [i for i in wanted if not 0 <= i < total]
        if bad or (isinstance(n, int) and not 0 < n <= total):
            raise ValueError(f"get_intermediate_layers: n={n} is out of range for {total} blocks")
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in wanted:
                outputs.append(x)
        return outputs

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Outputs of the last ``n`` blocks (or of the listed block indices), as upstream DINOv2.

        Patch tokens ``[B, N, D]`` (or ``[B, D, h, w]`` with ``reshape``), paired with the class token
        ``[B, D]`` when ``return_class_token``.
        """
        outputs = self._intermediate_outputs(x, n)
        if norm:
            outputs = [self.norm(out) for out in outputs]
        class_tokens = [out[:, 0] for out in outputs]
        outputs = [out[:, 1 + self.num_register_tokens:] for out in outputs]
        if reshape:
            batch, _, height, width = x.shape
            outputs = [
                out.reshape(batch, height // self.patch_size, width // self.patch_size, -1).permute(0, 3, 1, 2)
                .contiguous()
                for out in outputs
            ]
        if return_class_token:
            return tuple(zip(outputs, class_tokens))
        return tuple(outputs)

    def forward(self, *args: Any, is_training: bool = False, **kwargs: Any) -> Any:
        """Token dict(s) when ``is_training``; otherwise ``head(class token)`` (``head`` is the identity)."""
        features = self.forward_features(*args, **kwargs)
        if is_training:
            return features
        return self.head(features["x_norm_clstoken"])
