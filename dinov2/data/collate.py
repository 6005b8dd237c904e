"""Batching of multi-crop samples with iBOT masks for the global crops."""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import torch

from dinov2.data.crops import normalize_crops


def _stack_crops(samples_list: Sequence[tuple[dict, Any]], key: str) -> torch.Tensor:
    """Crop-major stacking: all samples' crop 0, then all samples' crop 1, ... A batch that mixes uint8 crops
    (8-bit images) with float ones (16-bit or float images of the same tree) is stacked as float: the uint8 crops
    normalised here, as the device would."""
    n_crops = len(samples_list[0][0][key])
    crops = [sample[0][key][i] for i in range(n_crops) for sample in samples_list]
    if len({crop.dtype for crop in crops}) > 1:
        crops = [normalize_crops(crop) if crop.dtype == torch.uint8 else crop for crop in crops]
    return torch.stack(crops)


def _cast(crops: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float crops to ``dtype``; uint8 crops stay uint8 until the device normalises them."""
    return crops if crops.dtype == torch.uint8 else crops.to(dtype)


def collate_data_and_cast(
    samples_list: Sequence[tuple[dict, Any]],
    mask_ratio_tuple: tuple[float, float],
    mask_probability: float,
    dtype: torch.dtype,
    n_tokens: int,
    mask_generator: Callable[..., Any],
    generator: random.Random | int | None = None,
) -> dict[str, Any]:
    """Stack the crops of ``(crops_dict, label)`` samples and draw iBOT masks for the ``2B`` global crops.

    A fraction ``mask_probability`` of the global crops get a mask whose ratio is spread evenly over
    ``mask_ratio_tuple`` (one stratum per masked crop); masks are then shuffled over crops. Masks are drawn
    from ``generator`` (a ``random.Random`` or an int seed) when given, else from Python's global ``random``.
    Returns the upstream keys, plus ``collated_global_crops_denoised`` when the samples carry denoised crops.
    uint8 crops (``as_uint8`` augmentations) are stacked as uint8: :func:`dinov2.train.data_setup.batch_to_device`
    normalises them on the device.
    """
    if not samples_list:
        raise ValueError("collate_data_and_cast: empty batch")
    rng: Any = random.Random(generator) if isinstance(generator, int) else (generator or random)
    collated_global_crops = _stack_crops(samples_list, "global_crops")
    n_local = len(samples_list[0][0]["local_crops"])
    collated_local_crops = _stack_crops(samples_list, "local_crops") if n_local else torch.empty(0)
    n_crops = len(collated_global_crops)
    n_masked_crops = int(n_crops * mask_probability)
    bounds = torch.linspace(mask_ratio_tuple[0], mask_ratio_tuple[1], n_masked_crops + 1).tolist()
    upperbound = 0
    masks = []
    for i in range(n_masked_crops):
        low, high = bounds[i], bounds[i + 1]
        n_masked = int(n_tokens * rng.uniform(low, high))
        masks.append(torch.as_tensor(mask_generator(n_masked, rng=rng), dtype=torch.bool))
        upperbound += int(n_tokens * high)
    masks += [torch.as_tensor(mask_generator(0, rng=rng), dtype=torch.bool) for _ in range(n_masked_crops, n_crops)]
    rng.shuffle(masks)
    collated_masks = torch.stack(masks).flatten(1)
    if collated_masks.shape[1] != n_tokens:
        raise ValueError(
            f"mask generator gives {collated_masks.shape[1]} patches per crop, expected n_tokens={n_tokens}"
        )
    mask_indices_list = collated_masks.flatten().nonzero().flatten()
    per_crop_weight = 1.0 / collated_masks.sum(dim=-1).clamp(min=1.0)
    masks_weight = per_crop_weight.unsqueeze(-1).expand_as(collated_masks)[collated_masks]
    batch = {
        "collated_global_crops": _cast(collated_global_crops, dtype),
        "collated_local_crops": _cast(collated_local_crops, dtype),
        "collated_masks": collated_masks,
        "mask_indices_list": mask_indices_list,
        "masks_weight": masks_weight,
        "upperbound": upperbound,
        "n_masked_patches": torch.full((1,), fill_value=mask_indices_list.shape[0], dtype=torch.long),
    }
    if "global_crops_denoised" in samples_list[0][0]:
        batch["collated_global_crops_denoised"] = _cast(_stack_crops(samples_list, "global_crops_denoised"), dtype)
    return batch
