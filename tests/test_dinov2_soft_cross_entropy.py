"""The lean soft-target cross-entropy against the composite formula, alone and inside a full DINOv2 loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dinov2.loss import DINOLoss, iBOTPatchLoss
from dinov2.loss.soft_cross_entropy import soft_cross_entropy
from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.utils.config import CONFIGS_DIR, load_config
from tests.test_dinov2_train_meta_arch import _batch


def _composite(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    return -(targets * F.log_softmax(logits.float() / temperature, dim=-1)).sum(dim=-1)


def _value_and_grad(fn, logits, targets, temperature, weights):
    leaf = logits.detach().clone().requires_grad_(True)
    value = fn(leaf, targets, temperature)
    (value * weights).sum().backward()
    return value.detach(), leaf.grad


@pytest.mark.parametrize("shape, target_shape", [((5, 7), (5, 7)), ((3, 4, 7), (4, 7)), ((2, 3, 4, 7), (3, 4, 7))])
def test_values_and_gradients_equal_the_composite_formula(shape, target_shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g) * 4
    targets = torch.rand(target_shape, generator=g) * 2  # rows not summing to 1: a sum of teachers, or anything
    weights = torch.rand(shape[:-1], generator=g)
    ours = _value_and_grad(soft_cross_entropy, logits, targets, 0.1, weights)
    reference = _value_and_grad(_composite, logits, targets, 0.1, weights)
    torch.testing.assert_close(ours[0], reference[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours[1], reference[1], rtol=1e-5, atol=1e-5)


def test_extreme_logits_stay_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-3e4, -3e4, -3e4]])
    targets = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    value, grad = _value_and_grad(soft_cross_entropy, logits, targets, 0.04, torch.ones(2))
    reference = _value_and_grad(_composite, logits, targets, 0.04, torch.ones(2))
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, reference[0])
    torch.testing.assert_close(grad, reference[1])


def test_half_precision_logits_give_float_losses_and_same_dtype_gradients():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(6, 32, generator=g) * 3).bfloat16()
    targets = F.softmax(torch.randn(6, 32, generator=g), dim=-1)
    value, grad = _value_and_grad(soft_cross_entropy, logits, targets, 0.1, torch.ones(6))
    reference = _value_and_grad(_composite, logits, targets, 0.1, torch.ones(6))
    assert value.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(value, reference[0])
    torch.testing.assert_close(grad, reference[1])


def test_bad_targets_are_refused():
    logits = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="require gradients"):
        soft_cross_entropy(logits, torch.ones(2, 3, requires_grad=True))
    with pytest.raises(ValueError, match="3 logits per row but 4"):
        soft_cross_entropy(logits, torch.ones(2, 4))
    with pytest.raises(ValueError, match="do not broadcast"):
        soft_cross_entropy(logits, torch.ones(5, 2, 3))


def _pairwise_dino_forward(self, students, teachers):
    """Every (student, teacher) pair through the composite cross-entropy: the loss as written before fusing."""
    total = torch.zeros(())
    for student in students:
        for teacher in teachers:
            total = total + _composite(student, teacher, self.student_temp).mean()
    return total


def _composite_ibot(self, student, teacher, student_masks_flat, n_masked_patches=None, masks_weight=None):
    per_token = _composite(student[:n_masked_patches], teacher[:n_masked_patches], self.student_temp)
    return (per_token * masks_weight).sum() / student_masks_flat.shape[0]


@pytest.mark.parametrize("centering", ["centering", "sinkhorn_knopp"])
def test_training_loss_terms_and_gradients_equal_the_pairwise_composite_loss(monkeypatch, centering):
    """A whole DINOv2 step's loss terms and student gradients, fused vs every pair through log_softmax."""
    cfg = load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml",
                      ["student.layerscale=0.5", f"train.centering={centering}", "crops.local_crops_number=3"])

    def terms_and_grads():
        torch.manual_seed(0)
        model = SSLMetaArch(cfg).train()
        terms = model.compute_losses(_batch(cfg), teacher_temp=0.07)
        sum(terms.values()).backward()
        grads = {name: p.grad.clone() for name, p in model.student.named_parameters() if p.grad is not None}
        return {name: value.detach() for name, value in terms.items()}, grads

    fused_terms, fused_grads = terms_and_grads()
    monkeypatch.setattr(DINOLoss, "forward", _pairwise_dino_forward)
    monkeypatch.setattr(iBOTPatchLoss, "forward_masked", _composite_ibot)
    terms, grads = terms_and_grads()
    assert fused_terms.keys() == terms.keys() and {"dino_local_crops_loss", "ibot_loss"} <= terms.keys()
    for name in terms:
        torch.testing.assert_close(fused_terms[name], terms[name], rtol=1e-5, atol=1e-6, msg=lambda text, name=name: f"{name}: {text}")
    assert fused_grads.keys() == grads.keys()
    for name in grads:  # relative to each tensor's norm: both orders of summation are float32-accurate
        relative_error = (fused_grads[name] - grads[name]).norm() / grads[name].norm().clamp_min(1e-12)
        assert relative_error < 1e-5, name
