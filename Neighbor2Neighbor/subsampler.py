"""The neighbour sub-sampler of Neighbor2Neighbor.

Each 2x2 cell of an image gives one pixel to each of two half-size sub-images. The two pixels are an ordered
pair of *adjacent* positions in the cell (horizontal or vertical neighbours, never diagonal), drawn uniformly
among the 8 such pairs, independently per cell and image, and shared by all channels.

Draws come from an explicit CPU ``torch.Generator``: the masks are then identical on every device, and saving
``generator.get_state()`` in a checkpoint makes a resumed run draw exactly what the uninterrupted run would.
"""

from __future__ import annotations

import torch

# cell positions: 0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right
NEIGHBOUR_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2),
)


def _check_even(height: int, width: int) -> None:
    if height % 2 or width % 2:
        raise ValueError(f"the neighbour sub-sampler needs even image sides, got {height} x {width}")


def _cells_to_pixels(cells: torch.Tensor) -> torch.Tensor:
    """(N, H/2, W/2, 4) per-cell values -> (N, H, W) in image layout."""
    n, h2, w2, _ = cells.shape
    return cells.view(n, h2, w2, 2, 2).permute(0, 1, 3, 2, 4).reshape(n, 2 * h2, 2 * w2)


def _pixels_to_cells(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H/2, W/2, 4): the four pixels of every 2x2 cell in the last dim."""
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


def generate_mask_pair(
    images: torch.Tensor, generator: torch.Generator | None = None, share: tuple[int, int] = (0, 1)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the two neighbour masks for a batch ``images`` (N x C x H x W, H and W even).

    Returns two boolean tensors of shape (N, H, W) on the images' device. Each has exactly one ``True`` per 2x2
    cell, and in every cell the two ``True`` positions are horizontal or vertical neighbours. With ``share`` =
    (rank, world size), ``images`` is that rank's contiguous share of a batch of ``N * world`` images: the masks of
    the whole batch are drawn (so every rank's generator stays in step) and the rank's rows returned.
    """
    n, _, height, width = images.shape
    _check_even(height, width)
    rank, ranks = share
    choice = torch.randint(len(NEIGHBOUR_PAIRS), (n * ranks, height // 2, width // 2), generator=generator)
    choice = choice[rank * n:(rank + 1) * n]
    pairs = torch.tensor(NEIGHBOUR_PAIRS)[choice]  # (N, H/2, W/2, 2) cell positions
    positions = torch.arange(4)
    first = _cells_to_pixels(pairs[..., 0:1] == positions)
    second = _cells_to_pixels(pairs[..., 1:2] == positions)
    return first.to(images.device), second.to(images.device)


def generate_subimages(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pick the masked pixel of every 2x2 cell: (N, C, H, W) with a (N, H, W) mask -> (N, C, H/2, W/2)."""
    n, c, height, width = images.shape
    _check_even(height, width)
    if mask.shape != (n, height, width):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match images {tuple(images.shape)}")
    cell_masks = _pixels_to_cells(mask.unsqueeze(1))  # (N, 1, H/2, W/2, 4)
    index = cell_masks.to(torch.uint8).argmax(dim=-1, keepdim=True).expand(n, c, height // 2, width // 2, 1)
    return torch.gather(_pixels_to_cells(images.contiguous()), -1, index).squeeze(-1)
