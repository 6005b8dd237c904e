"""The neighbour sub-sampler: mask geometry, uniform pair choice, reproducibility, sub-image extraction."""

import pytest
import torch

from Neighbor2Neighbor.subsampler import NEIGHBOUR_PAIRS, generate_mask_pair, generate_subimages


def _cells(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, H/2, W/2, 4) in cell order TL, TR, BL, BR."""
    n, h, w = mask.shape
    return mask.view(n, h // 2, 2, w // 2, 2).permute(0, 1, 3, 2, 4).reshape(n, h // 2, w // 2, 4)


def _draw(seed: int, shape=(3, 2, 16, 12)):
    return generate_mask_pair(torch.zeros(shape), torch.Generator().manual_seed(seed))


def test_each_mask_has_one_position_per_cell_and_the_two_are_adjacent():
    first, second = _draw(0)
    assert first.shape == second.shape == (3, 16, 12) and first.dtype == torch.bool
    a, b = _cells(first), _cells(second)
    assert torch.all(a.sum(-1) == 1) and torch.all(b.sum(-1) == 1)
    pos_a, pos_b = a.float().argmax(-1), b.float().argmax(-1)
    row_a, col_a, row_b, col_b = pos_a // 2, pos_a % 2, pos_b // 2, pos_b % 2
    manhattan = (row_a - row_b).abs() + (col_a - col_b).abs()
    assert torch.all(manhattan == 1)  # never the same pixel, never diagonal


def test_all_eight_ordered_pairs_occur_about_uniformly():
    first, second = _draw(1, shape=(4, 1, 64, 64))
    pos_a, pos_b = _cells(first).float().argmax(-1), _cells(second).float().argmax(-1)
    pairs = torch.stack([pos_a.flatten(), pos_b.flatten()], 1).tolist()
    counts = {pair: pairs.count(list(pair)) for pair in NEIGHBOUR_PAIRS}
    assert set(map(tuple, pairs)) == set(NEIGHBOUR_PAIRS)
    expected = len(pairs) / 8
    assert all(abs(count - expected) < 0.15 * expected for count in counts.values()), counts


def test_masks_are_reproducible_with_a_seed_and_differ_across_seeds():
    assert all(torch.equal(x, y) for x, y in zip(_draw(7), _draw(7)))
    assert not torch.equal(_draw(7)[0], _draw(8)[0])


def test_generator_state_resumes_the_sequence():
    generator = torch.Generator().manual_seed(3)
    images = torch.zeros(2, 3, 8, 8)
    generate_mask_pair(images, generator)
    state = generator.get_state()
    expected = generate_mask_pair(images, generator)
    resumed = torch.Generator()
    resumed.set_state(state)
    assert all(torch.equal(x, y) for x, y in zip(expected, generate_mask_pair(images, resumed)))


def test_subimages_take_the_masked_pixel_of_every_cell_in_all_channels():
    images = torch.randn(2, 3, 8, 6)
    first, second = _draw(5, shape=images.shape)
    for mask in (first, second):
        sub = generate_subimages(images, mask)
        assert sub.shape == (2, 3, 4, 3)
        for n in range(2):
            for i in range(4):
                for j in range(3):
                    block = images[n, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    chosen = mask[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    assert torch.equal(sub[n, :, i, j], block[:, chosen].squeeze(1))


def test_odd_sides_and_mismatched_masks_are_rejected():
    with pytest.raises(ValueError, match="even"):
        generate_mask_pair(torch.zeros(1, 3, 7, 8))
    first, _ = _draw(0, shape=(1, 3, 8, 8))
    with pytest.raises(ValueError, match="mask shape"):
        generate_subimages(torch.zeros(1, 3, 8, 10), first)
