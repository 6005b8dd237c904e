"""The Neighbor2Neighbor loss on hand-made values, its weight schedule, the U-Net and padding."""

import pytest
import torch

from Neighbor2Neighbor.arch_unet import UNet
from Neighbor2Neighbor.loss import neighbor2neighbor_loss, regularizer_weight, training_loss
from Neighbor2Neighbor.padding import apply_padded, pad_to_multiple
from Neighbor2Neighbor.train import lr_milestones


def test_loss_on_a_hand_made_example():
    output = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[0.0, 2.0], [3.0, 2.0]]]])  # differences 1, 0, 0, 2 -> rec = 5 / 4
    first = torch.tensor([[[[0.5, 0.0], [1.0, 0.0]]]])
    second = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])  # g1 f - g2 f = 0.5, 0, 1, -1
    terms = neighbor2neighbor_loss(output, target, first, second, gamma=0.5, lambda_rec=2.0, lambda_reg=3.0)
    # regulariser residuals: 1 - 0.5, 0 - 0, 0 - 1, 2 + 1 -> 0.25 + 0 + 1 + 9 = 10.25 / 4
    assert terms.reconstruction.item() == pytest.approx(1.25)
    assert terms.regularizer.item() == pytest.approx(2.5625)
    assert terms.total.item() == pytest.approx(2.0 * 1.25 + 3.0 * 0.5 * 2.5625)


def test_regularizer_weight_rises_linearly_to_the_increase_ratio():
    assert regularizer_weight(1, 100, 2.0) == pytest.approx(0.02)
    assert regularizer_weight(50, 100, 2.0) == pytest.approx(1.0)
    assert regularizer_weight(100, 100, 2.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        regularizer_weight(0, 100)


def test_lr_halves_after_every_fifth_of_the_epochs():
    assert lr_milestones(100) == [20, 40, 60, 80]
    assert lr_milestones(10) == [2, 4, 6, 8]


def test_training_loss_only_backpropagates_through_the_subimage_branch():
    torch.manual_seed(0)
    model = UNet(features=8)
    noisy = torch.rand(2, 3, 16, 16)
    calls = []

    def denoise(batch):
        calls.append((batch.shape, torch.is_grad_enabled()))
        return apply_padded(model, batch)

    terms = training_loss(denoise, noisy, torch.Generator().manual_seed(0), gamma=1.0)
    terms.total.backward()
    assert calls == [((2, 3, 16, 16), False), ((2, 3, 8, 8), True)]
    assert all(p.grad is not None for p in model.parameters())
    assert torch.isfinite(terms.total)


def test_unet_keeps_the_shape_and_rejects_sizes_that_are_not_multiples_of_32():
    model = UNet(features=8)
    assert model(torch.rand(1, 3, 64, 32)).shape == (1, 3, 64, 32)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 48, 32))
    assert apply_padded(model, torch.rand(2, 3, 5, 37)).shape == (2, 3, 5, 37)


def test_reflect_padding_handles_pads_larger_than_the_image():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    padded, size = pad_to_multiple(x)
    assert padded.shape == (1, 1, 32, 32) and size == (4, 4)
    assert torch.equal(padded[..., :4, :4], x)
    assert torch.equal(padded[..., 4, :4], x[..., 2, :])  # reflection excludes the edge row
    assert set(padded.unique().tolist()) <= set(x.flatten().tolist())
