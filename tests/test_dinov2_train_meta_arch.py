"""SSLMetaArch: EMA step, teacher in eval mode, crop-swapped teacher targets, loss terms computed by hand."""

import pytest
import torch
import torch.nn.functional as F

from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.utils.config import CONFIGS_DIR, load_config

B = 3


def _cfg(*overrides):
    return load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml", ["student.layerscale=0.5", *overrides])


def _batch(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    size, n_tokens = cfg.crops.global_crops_size, (cfg.crops.global_crops_size // cfg.student.patch_size) ** 2
    masks = torch.zeros(2 * B, n_tokens, dtype=torch.bool)
    masks[0, :2] = True
    masks[4, 1:4] = True
    weights = (1.0 / masks.sum(-1).clamp(min=1)).unsqueeze(-1).expand_as(masks)[masks]
    indices = masks.flatten().nonzero().flatten()
    local = cfg.crops.local_crops_size
    return {
        "collated_global_crops": torch.randn(2 * B, 3, size, size, generator=g),
        "collated_local_crops": torch.randn(cfg.crops.local_crops_number * B, 3, local, local, generator=g),
        "collated_masks": masks, "mask_indices_list": indices, "masks_weight": weights,
        "upperbound": int(indices.numel()), "n_masked_patches": torch.tensor([indices.numel()]),
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SSLMetaArch(_cfg()).train()


def test_teacher_is_a_frozen_eval_copy(model):
    assert not model.teacher.training and model.student.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    for (name, s), (_, t) in zip(model.student.state_dict().items(), model.teacher.state_dict().items()):
        assert torch.equal(s, t), name
    with pytest.raises(NotImplementedError):
        model(torch.zeros(1))


def test_ema_step():
    torch.manual_seed(0)
    model = SSLMetaArch(_cfg())
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    before = [t.clone() for t in model.teacher.parameters()]
    model.update_teacher(0.9)
    for t0, s, t in zip(before, model.student.parameters(), model.teacher.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s, rtol=1e-6, atol=1e-6)


def test_teacher_targets_are_crop_swapped_and_update_the_center(model):
    batch = _batch(model.cfg)
    center_before = model.dino_loss.center.clone()
    targets = model.teacher_targets(batch, teacher_temp=0.05)
    assert not torch.equal(model.dino_loss.center, center_before)
    crops = batch["collated_global_crops"]
    with torch.no_grad():
        scores_second = model.teacher["dino_head"](model.teacher["backbone"](crops[B:], is_training=True)["x_norm_clstoken"])
    expected = F.softmax((scores_second - center_before) / 0.05, dim=-1)
    torch.testing.assert_close(targets.dino[0], expected, rtol=1e-4, atol=1e-5)  # crop 1 faces crop 2's target
    assert targets.ibot.shape == (5, model.cfg.ibot.head_n_prototypes)
    torch.testing.assert_close(targets.ibot.sum(-1), torch.ones(5))


def test_loss_terms_match_a_hand_computation(model):
    batch = _batch(model.cfg, seed=1)
    targets = model.teacher_targets(batch, teacher_temp=0.07, update_centers=False)
    student = model.student_outputs(batch)
    terms = model.loss_terms(student, targets, batch)
    n_local = model.cfg.crops.local_crops_number
    n_terms = 2 + 2 * n_local

    def ce(teacher, student_scores):
        return -(teacher * F.log_softmax(student_scores / 0.1, dim=-1)).sum(-1).mean()

    local = sum(ce(t, s) for s in student.local_cls.chunk(n_local) for t in targets.dino) / n_terms
    global_ = 2 * ce(targets.dino.flatten(0, 1), student.global_cls) / n_terms
    torch.testing.assert_close(terms["dino_local_crops_loss"], local)
    torch.testing.assert_close(terms["dino_global_crops_loss"], global_)
    per_token = -(targets.ibot * F.log_softmax(student.masked_patches / 0.1, dim=-1)).sum(-1)
    ibot = (per_token[:2].mean() + per_token[2:].mean()) / (2 * B)  # two masked crops, each weighs 1
    torch.testing.assert_close(terms["ibot_loss"], ibot)
    cls = F.normalize(student.global_cls_backbone, dim=-1)
    koleo = 0.0
    for part in cls.chunk(2):
        dist = torch.cdist(part, part) + torch.eye(B) * 1e9
        koleo = koleo - torch.log(dist.min(dim=1).values + 1e-8).mean()
    torch.testing.assert_close(terms["koleo_loss"], 0.1 * koleo, rtol=1e-4, atol=1e-5)


def test_sinkhorn_centering_keeps_centers_and_separate_ibot_head():
    torch.manual_seed(0)
    model = SSLMetaArch(_cfg("train.centering=sinkhorn_knopp", "ibot.separate_head=true")).train()
    assert set(model.student) == {"backbone", "dino_head", "ibot_head"}
    batch = _batch(model.cfg)
    targets = model.teacher_targets(batch, teacher_temp=0.07)
    assert torch.count_nonzero(model.dino_loss.center) == 0
    terms = model.loss_terms(model.student_outputs(batch), targets, batch)
    sum(terms.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student["ibot_head"].parameters())


@pytest.mark.parametrize("overrides", [("dino.head_use_bn=true",),
                                       ("student.arch=resnet18", "student.resnet_stem=cifar", "ibot.loss_weight=0")])
def test_a_teacher_with_batchnorm_normalises_by_the_batch_and_the_dino_loss_reaches_the_student(overrides):
    torch.manual_seed(0)
    model = SSLMetaArch(_cfg(*overrides)).train()
    assert model.teacher.training  # BatchNorm by the batch's statistics, as DINO's teacher (a ViT one: eval)
    batch = _batch(model.cfg)
    if "ibot.loss_weight=0" in overrides:
        batch["collated_masks"] = torch.zeros_like(batch["collated_masks"])  # what the collate gives without iBOT
    targets = model.teacher_targets(batch, teacher_temp=0.04)
    assert targets.dino.shape == (2, B, model.cfg.dino.head_n_prototypes)
    assert targets.dino.flatten(0, 1).std(dim=0).max() > 0  # the targets differ between images at initialisation
    terms = model.loss_terms(model.student_outputs(batch), targets, batch)
    sum(terms.values()).backward()
    backbone_grads = [p.grad for p in model.student["backbone"].parameters() if p.grad is not None]
    assert backbone_grads and any(g.abs().sum() > 0 for g in backbone_grads)
    first_batchnorm = next(m for m in model.teacher.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert first_batchnorm.num_batches_tracked.item() == 1  # the teacher keeps its own running statistics
    if "ibot.loss_weight=0" in overrides:
        batch["collated_masks"][0, 0] = True
        with pytest.raises(ValueError, match="no iBOT masks"):
            model.student_outputs(batch)
