"""Schedules (warm-up, cosine end points, last-layer freeze, teacher temperature), parameter groups, EMA."""

import math

import numpy as np
import pytest
import torch

from dinov2.utils.config import load_config, scaled_lr
from dinov2.utils.param_groups import apply_schedule_values, build_param_groups, layer_id
from dinov2.utils.schedules import build_schedules, cosine_schedule


def test_cosine_schedule_warmup_and_end_points():
    values = cosine_schedule(1.0, 0.1, total_iters=20, warmup_iters=5, start_warmup_value=0.0)
    assert len(values) == 20
    np.testing.assert_allclose(values[:5], [0.0, 0.25, 0.5, 0.75, 1.0])
    assert values[5] == pytest.approx(1.0)  # the cosine starts at the peak
    assert np.all(np.diff(values[5:]) < 0)
    step = math.pi / 15
    assert values[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(14 * step)))  # one step short of the end
    assert values[-1] > 0.1 and values[-1] - 0.1 < 0.01


def test_cosine_schedule_freeze_and_errors():
    values = cosine_schedule(2.0, 2.0, total_iters=6, warmup_iters=2, freeze_iters=3)
    np.testing.assert_allclose(values, [0, 0, 0, 0.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="exceed"):
        cosine_schedule(1.0, 0.0, total_iters=4, warmup_iters=3, freeze_iters=2)


def _cfg(*overrides):
    return load_config(None, ["train.OFFICIAL_EPOCH_LENGTH=10", "optim.epochs=5", *overrides])


def test_build_schedules_from_config():
    cfg = _cfg("optim.warmup_epochs=1", "optim.freeze_last_layer_epochs=2", "teacher.warmup_teacher_temp_epochs=3")
    schedules = build_schedules(cfg, peak_lr=0.5, total_iters=50)
    assert len(schedules) == 50
    assert schedules.lr[0] == 0.0 and schedules.lr[9] == pytest.approx(0.5) and schedules.lr[10] == pytest.approx(0.5)
    assert schedules.lr[-1] == pytest.approx(cfg.optim.min_lr, abs=1e-3)
    assert np.all(schedules.last_layer_lr[:20] == 0) and np.all(schedules.last_layer_lr[20:] == schedules.lr[20:])
    assert schedules.weight_decay[0] == pytest.approx(0.04) and schedules.weight_decay[-1] == pytest.approx(0.4, abs=1e-3)
    assert schedules.momentum[0] == pytest.approx(0.992) and schedules.momentum[-1] == pytest.approx(1.0, abs=1e-5)
    assert schedules.teacher_temp[0] == pytest.approx(0.04) and schedules.teacher_temp[29] == pytest.approx(0.07)
    assert np.all(schedules.teacher_temp[29:] == pytest.approx(0.07))
    assert schedules.at(3)["lr"] == pytest.approx(0.5 * 3 / 9)
    with pytest.raises(IndexError):
        schedules.at(50)


def test_schedules_restart_for_a_shorter_stretch():
    """A phase builds its own schedules from its own length: the warm-up restarts at 0."""
    cfg = _cfg("optim.warmup_epochs=1")
    long, short = build_schedules(cfg, 0.5, 50), build_schedules(cfg, 0.5, 20)
    assert short.lr[0] == 0.0 and len(short) == 20
    assert short.lr[-1] < long.lr[19]


def test_sqrt_lr_scaling_of_the_paper():
    cfg = load_config(None)
    assert scaled_lr(cfg, world_size=1) == pytest.approx(0.004 * math.sqrt(40 / 1024))
    assert scaled_lr(cfg, world_size=4) == pytest.approx(0.004 * math.sqrt(160 / 1024))
    assert cfg.optim.base_lr == 0.004  # never overwritten


class _Backbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, 4))
        self.patch_embed = torch.nn.Linear(4, 4)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])
        self.norm = torch.nn.LayerNorm(4)


class _Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Linear(4, 4)
        self.last_layer = torch.nn.Linear(4, 8, bias=False)


def _by_name(groups):
    return {name: group for group in groups for name in group["names"]}


def test_param_groups_layer_decay_patch_embed_and_no_decay():
    assert layer_id("blocks.1.attn.qkv.weight", 2) == 2 and layer_id("pos_embed", 2) == 0 and layer_id("norm.weight", 2) == 3
    groups = build_param_groups([("backbone", _Backbone()), ("dino_head", _Head())], 2, 0.5, 0.2)
    named = _by_name(groups)
    assert named["backbone.blocks.0.weight"]["lr_multiplier"] == pytest.approx(0.25)
    assert named["backbone.blocks.1.weight"]["lr_multiplier"] == pytest.approx(0.5)
    assert named["backbone.norm.weight"]["lr_multiplier"] == 1.0 and named["backbone.norm.weight"]["wd_multiplier"] == 0
    assert named["backbone.patch_embed.weight"]["lr_multiplier"] == pytest.approx(0.125 * 0.2)
    assert named["backbone.blocks.0.bias"]["wd_multiplier"] == 0.0
    assert named["backbone.blocks.0.weight"]["wd_multiplier"] == 1.0
    assert named["dino_head.mlp.weight"]["lr_multiplier"] == 1.0
    assert named["dino_head.last_layer.weight"]["is_last_layer"] and not named["dino_head.mlp.weight"]["is_last_layer"]
    optimizer = torch.optim.AdamW(groups, lr=0.0)
    apply_schedule_values(optimizer, lr=1.0, weight_decay=0.1, last_layer_lr=0.0)
    named = _by_name(optimizer.param_groups)
    assert named["dino_head.last_layer.weight"]["lr"] == 0.0
    assert named["backbone.blocks.1.weight"]["lr"] == pytest.approx(0.5)
    assert named["backbone.blocks.1.weight"]["weight_decay"] == pytest.approx(0.1)
    assert named["backbone.blocks.1.bias"]["weight_decay"] == 0.0
