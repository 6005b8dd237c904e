"""ViT backbone and DINO head: shapes, interpolation, registers, masks, intermediate layers, state-dict keys."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from dinov2.layers import DINOHead
from dinov2.models import (DinoVisionTransformer, VIT_FACTORIES, build_model_from_cfg, vit_base, vit_small, vit_tiny,
                           vit_tiny_4blocks)
from dinov2.models.vision_transformer import FFN_MODULES
from dinov2.utils.choices import FFN_LAYERS, VIT_SIZES


def _tiny(**kwargs) -> DinoVisionTransformer:
    torch.manual_seed(0)
    settings = {"patch_size": 8, "img_size": 32, "depth": 2, "embed_dim": 48}
    settings.update(kwargs)
    return vit_tiny_4blocks(**settings).eval()


def test_forward_shapes_and_training_dicts():
    model = _tiny(num_register_tokens=2)
    x = torch.randn(3, 3, 32, 32)
    out = model(x, is_training=True)
    assert out["x_norm_clstoken"].shape == (3, 48)
    assert out["x_norm_regtokens"].shape == (3, 2, 48)
    assert out["x_norm_patchtokens"].shape == (3, 16, 48)
    assert out["x_prenorm"].shape == (3, 1 + 2 + 16, 48)
    assert torch.equal(model(x), out["x_norm_clstoken"])
    crops = [torch.randn(2, 3, 32, 32), torch.randn(4, 3, 16, 16)]
    outs = model(crops, masks=[None, None], is_training=True)
    assert [o["x_norm_patchtokens"].shape for o in outs] == [(2, 16, 48), (4, 4, 48)]
    assert torch.allclose(outs[1]["x_norm_clstoken"], model(crops[1]), atol=1e-6)


def test_named_sizes():
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        small, base, tiny, tiny4 = vit_small(), vit_base(patch_size=16), vit_tiny(), vit_tiny_4blocks()
    assert (small.embed_dim, small.n_blocks, small.num_heads, len(small.blocks)) == (384, 12, 6, 12)
    assert (base.embed_dim, base.n_blocks, base.patch_size) == (768, 12, 16)
    assert base.blocks[0].mlp.fc1.out_features == 4 * 768
    assert (tiny.embed_dim, tiny.n_blocks, tiny.num_heads) == (192, 12, 3)  # the usual ViT-Ti of DeiT, DINO, timm
    assert (tiny4.embed_dim, tiny4.n_blocks, tiny4.num_heads) == (192, 4, 3)


def test_config_choices_match_the_builders():
    assert set(VIT_FACTORIES) == set(VIT_SIZES)
    assert set(FFN_MODULES) == set(FFN_LAYERS)


def test_position_embedding_interpolates_to_other_sizes():
    model = _tiny()
    x = torch.randn(1, 1 + 4 * 6, 48)
    pos = model.interpolate_pos_encoding(x, 32, 48)
    assert pos.shape == (1, 1 + 4 * 6, 48)
    assert torch.equal(pos[:, 0], model.pos_embed[:, 0])
    with torch.no_grad():
        model.pos_embed[:, 1:] = 0.25  # a constant grid stays constant under bicubic resizing
    pos = model.interpolate_pos_encoding(torch.randn(1, 1 + 8 * 8, 48), 64, 64)
    assert torch.allclose(pos[:, 1:], torch.full_like(pos[:, 1:], 0.25), atol=1e-5)
    assert model(torch.randn(2, 3, 64, 40), is_training=True)["x_norm_patchtokens"].shape == (2, 40, 48)
    same = model.interpolate_pos_encoding(torch.randn(1, 17, 48), 32, 32)
    assert same is model.pos_embed


def test_input_not_divisible_by_patch_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        _tiny()(torch.randn(1, 3, 30, 32))


def test_masked_patches_are_replaced_by_mask_token():
    model = _tiny()
    with torch.no_grad():
        model.mask_token.fill_(3.0)
    x = torch.randn(2, 3, 32, 32)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, [1, 5]] = True
    tokens = model.prepare_tokens_with_masks(x, masks)
    plain = model.prepare_tokens_with_masks(x)
    expected = model.mask_token + model.pos_embed[0, 1:][[1, 5]]
    assert torch.allclose(tokens[0, 1:][[1, 5]], expected)
    keep = ~masks[0]
    assert torch.equal(tokens[0, 1:][keep], plain[0, 1:][keep])
    assert torch.equal(tokens[1], plain[1])
    assert model(x, masks=masks, is_training=True)["masks"] is masks


def test_get_intermediate_layers_matches_forward_features():
    model = _tiny(depth=3, num_register_tokens=1)
    x = torch.randn(2, 3, 32, 24)
    last = model.get_intermediate_layers(x, n=1)
    assert len(last) == 1
    assert torch.allclose(last[0], model.forward_features(x)["x_norm_patchtokens"], atol=1e-6)
    two = model.get_intermediate_layers(x, n=[0, 2], reshape=True, return_class_token=True)
    assert len(two) == 2
    patches, cls = two[1]
    assert patches.shape == (2, 48, 4, 3) and cls.shape == (2, 48)
    assert torch.allclose(cls, model(x), atol=1e-6)
    raw = model.get_intermediate_layers(x, n=2, norm=False)
    assert not torch.allclose(raw[1], last[0])
    with pytest.raises(ValueError, match="out of range"):
        model.get_intermediate_layers(x, n=[5])


def test_state_dict_keys_are_plain_and_load_strictly():
    model = _tiny(num_register_tokens=2)
    keys = set(model.state_dict())
    expected = {"cls_token", "pos_embed", "register_tokens", "mask_token", "patch_embed.proj.weight",
                "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
        expected |= {f"blocks.1.{part}.weight", f"blocks.1.{part}.bias"}
    expected |= {"blocks.1.ls1.gamma", "blocks.1.ls2.gamma"}
    assert expected <= keys
    assert all(k.split(".")[0] in {"cls_token", "pos_embed", "register_tokens", "mask_token", "patch_embed",
                                   "blocks", "norm"} for k in keys)
    assert "register_tokens" not in _tiny().state_dict()
    other = _tiny(num_register_tokens=2, drop_path_rate=0.3)
    assert set(other.state_dict()) == keys
    other.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(other.eval()(x), model(x))


def test_build_model_from_cfg_reads_student_section():
    cfg = OmegaConf.create({
        "student": {"arch": "vit_tiny_4blocks", "patch_size": 8, "drop_path_rate": 0.2, "drop_path_uniform": True,
                    "layerscale": 1e-5, "ffn_layer": "mlp", "qkv_bias": True, "proj_bias": True,
                    "ffn_bias": True, "num_register_tokens": 1, "interpolate_antialias": False,
                    "interpolate_offset": 0.1, "block_chunks": 0},
        "crops": {"global_crops_size": 32},
    })
    student, teacher, dim = build_model_from_cfg(cfg)
    assert dim == 192 and student.patch_size == 8 and student.num_register_tokens == 1
    assert student.pos_embed.shape == (1, 1 + 16, 192)
    assert student.blocks[0].drop_path1.drop_prob == 0.2
    assert not hasattr(teacher.blocks[0].drop_path1, "drop_prob")
    teacher_only, dim_only = build_model_from_cfg(cfg, only_teacher=True)
    assert dim_only == 192 and set(teacher_only.state_dict()) == set(teacher.state_dict())
    cfg.student.arch = "vit_huge_typo"
    with pytest.raises(ValueError, match="student.arch"):
        build_model_from_cfg(cfg)


def test_dino_head_normalises_and_uses_weight_normalised_prototypes():
    torch.manual_seed(0)
    head = DINOHead(in_dim=16, out_dim=10, hidden_dim=32, bottleneck_dim=8)
    names = [n for n, _ in head.named_parameters() if "last_layer" in n]
    assert sorted(names) == ["last_layer.weight_g", "last_layer.weight_v"]
    assert not any(p.requires_grad is False for p in head.parameters())
    assert torch.equal(head.last_layer.weight_g.detach(), torch.ones(10, 1))
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(10), atol=1e-6)
    x = torch.randn(5, 16)
    out = head(x)
    assert out.shape == (5, 10)
    bottleneck = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    assert torch.allclose(out, bottleneck @ head.last_layer.weight.t(), atol=1e-6)
    assert out.abs().max() <= 1.0 + 1e-5  # unit vectors against unit prototypes: cosine similarities
    with torch.no_grad():
        head.last_layer.weight_v.mul_(7.0)  # only the direction of weight_v matters
    assert torch.allclose(head(x), out, atol=1e-5)
    assert len([m for m in head.mlp if isinstance(m, torch.nn.Linear)]) == 3
    frozen = DINOHead(16, 10, hidden_dim=32, bottleneck_dim=8, norm_last_layer=True)
    assert not frozen.last_layer.weight_g.requires_grad


def test_student_gradients_reach_mask_token_and_head():
    model = _tiny()
    model.train()
    head = DINOHead(48, 12, hidden_dim=16, bottleneck_dim=8)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, :3] = True
    out = model(torch.randn(2, 3, 32, 32), masks=masks, is_training=True)
    (head(out["x_norm_clstoken"]).sum() + head(out["x_norm_patchtokens"]).sum()).backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    assert head.last_layer.weight_v.grad is not None
