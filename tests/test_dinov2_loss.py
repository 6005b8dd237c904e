"""DINOv2 losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from dinov2.loss import DINOLoss, KoLeoLoss, iBOTPatchLoss, sinkhorn_knopp


def _cross_entropy(teacher: list[float], student_logits: list[float], temp: float) -> float:
    """H(t, softmax(s / temp)) written out with math only."""
    scaled = [s / temp for s in student_logits]
    log_z = math.log(sum(math.exp(v) for v in scaled))
    return -sum(t * (v - log_z) for t, v in zip(teacher, scaled))


def test_dino_teacher_softmax_subtracts_center_and_sharpens():
    loss = DINOLoss(3)
    loss.center.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
    probs = loss.softmax_center_teacher(torch.tensor([[1.0, 1.0, 0.0]]), teacher_temp=0.5)
    # (t - c) / T = [0, 2, 0]
    z = 2 + math.exp(2)
    assert probs[0].tolist() == pytest.approx([1 / z, math.exp(2) / z, 1 / z], rel=1e-6)


def test_dino_loss_sums_all_pairs_of_batch_mean_cross_entropies():
    loss = DINOLoss(2, student_temp=0.5)
    students = [torch.tensor([[0.0, 1.0], [2.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 0.5]])]
    teachers = [torch.tensor([[0.25, 0.75], [1.0, 0.0]]), torch.tensor([[0.5, 0.5], [0.1, 0.9]])]
    expected = 0.0
    for s in students:
        for t in teachers:
            expected += sum(_cross_entropy(t[b].tolist(), s[b].tolist(), 0.5) for b in range(2)) / 2
    assert loss(students, teachers).item() == pytest.approx(expected, rel=1e-6)


def test_dino_center_update_is_an_ema_of_the_batch_mean():
    loss = DINOLoss(2, center_momentum=0.9)
    loss.center.copy_(torch.tensor([[1.0, -1.0]]))
    loss.update_center(torch.tensor([[2.0, 0.0], [4.0, 2.0]]))  # batch mean [3, 1]
    assert loss.center[0].tolist() == pytest.approx([0.9 * 1 + 0.1 * 3, 0.9 * -1 + 0.1 * 1])
    assert "center" in loss.state_dict()


def test_sinkhorn_rows_are_distributions_and_prototypes_balanced():
    torch.manual_seed(0)
    scores = torch.randn(8, 4) * 3
    probs = DINOLoss(4).sinkhorn_knopp_teacher(scores, teacher_temp=1.0, n_iterations=50)
    assert probs.shape == (8, 4)
    assert probs.sum(dim=1).tolist() == pytest.approx([1.0] * 8, abs=1e-5)
    # balanced prototypes: each column holds B/K of the mass once converged
    assert probs.sum(dim=0).tolist() == pytest.approx([2.0] * 4, abs=1e-3)


def test_sinkhorn_single_iteration_by_hand():
    scores = torch.log(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))  # exp(scores / 1) = the matrix itself
    probs = sinkhorn_knopp(scores, temperature=1.0, n_iterations=1)
    # prototype columns of [[1,3],[2,2]] sum to 3 and 5: divide -> [[1/3, 3/5],[2/3, 2/5]]; then rows normalised
    row0 = [1 / 3, 3 / 5]
    row1 = [2 / 3, 2 / 5]
    assert probs[0].tolist() == pytest.approx([v / sum(row0) for v in row0], rel=1e-5)
    assert probs[1].tolist() == pytest.approx([v / sum(row1) for v in row1], rel=1e-5)


def test_ibot_forward_masked_weighs_each_image_once():
    loss = iBOTPatchLoss(2, student_temp=1.0)
    masks = torch.tensor([[True, True, False], [False, False, True], [False, False, False]])
    student = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])  # 3 masked tokens in total
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    ce = [_cross_entropy(teacher[i].tolist(), student[i].tolist(), 1.0) for i in range(3)]
    # image 0 has two masked tokens (weight 1/2 each), image 1 one (weight 1); three images in the batch
    expected = (0.5 * ce[0] + 0.5 * ce[1] + 1.0 * ce[2]) / 3
    assert loss.forward_masked(student, teacher, masks).item() == pytest.approx(expected, rel=1e-6)
    explicit = torch.tensor([0.5, 0.5, 1.0])
    padded_student = torch.cat([student, torch.zeros(2, 2)])
    padded_teacher = torch.cat([teacher, torch.full((2, 2), 0.5)])
    value = loss.forward_masked(padded_student, padded_teacher, masks, n_masked_patches=3, masks_weight=explicit)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_ibot_center_and_softmax():
    loss = iBOTPatchLoss(2, center_momentum=0.5)
    tokens = torch.tensor([[[1.0, 3.0], [3.0, 5.0]]])  # one group of two tokens: mean [2, 4]
    loss.update_center(tokens)
    assert loss.center.shape == (1, 1, 2)
    assert loss.center.flatten().tolist() == pytest.approx([1.0, 2.0])
    loss.update_center(tokens[0])  # [N, K] counts as one group
    assert loss.center.flatten().tolist() == pytest.approx([1.5, 3.0])
    loss.update_center(torch.zeros(1, 0, 2))  # no masked patch in this batch: the center is kept, never NaN
    assert loss.center.flatten().tolist() == pytest.approx([1.5, 3.0])
    probs = loss.softmax_center_teacher(torch.tensor([[1.5, 4.0]]), teacher_temp=1.0)
    assert probs[0].tolist() == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)], rel=1e-6)


def test_ibot_sinkhorn_rows_sum_to_one():
    torch.manual_seed(1)
    probs = iBOTPatchLoss(5).sinkhorn_knopp_teacher(torch.randn(7, 5), 0.5, torch.tensor([7]))
    assert probs.sum(dim=1).tolist() == pytest.approx([1.0] * 7, abs=1e-5)


def test_koleo_on_hand_made_points():
    # unit vectors at angles 0, 90 and 180 degrees (after normalisation the scale does not matter)
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-3.0, 0.0]])
    # each point's nearest neighbour is at distance sqrt(2)
    expected = -math.log(math.sqrt(2) + 1e-8)
    assert KoLeoLoss()(x).item() == pytest.approx(expected, rel=1e-5)
    y = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    d01 = math.dist([1.0, 0.0], [0.6, 0.8])
    d12 = math.dist([0.6, 0.8], [-1.0, 0.0])
    expected = -(math.log(d01) + math.log(d01) + math.log(d12)) / 3
    assert KoLeoLoss()(y).item() == pytest.approx(expected, rel=1e-5)


def test_koleo_rejects_single_image():
    with pytest.raises(ValueError, match="B >= 2"):
        KoLeoLoss()(torch.ones(1, 4))


def test_losses_backpropagate_to_the_student():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = DINOLoss(3).softmax_center_teacher(torch.randn(4, 3), 0.04)
    (DINOLoss(3)([student], [teacher]) + KoLeoLoss()(student)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
