"""The training data pipeline: ImageFolder dataset, multi-crop augmentation, iBOT masks, resumable sampler.

Randomness never depends on worker count or order: the sampler gives every sample a seed (its augmentations
run under it, in a forked RNG), and the masks of a batch are drawn from a generator seeded by its samples'
seeds; the main process's global generators (drop path) are never touched by data loading.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from dinov2.data import (
    DataAugmentationDINO,
    ImageFolderDataset,
    InfiniteSampler,
    MaskingGenerator,
    PairedDataAugmentationDINO,
    PairedImageFolderDataset,
    collate_data_and_cast,
    make_data_loader,
)
from dinov2.data.crops import normalize_crops
from dinov2.train.curriculum import Phase
from dinov2.train.loader_resources import loader_workers
from utils.seeding import stable_seed

class SeedCarryingDataset(Dataset):
    """Wraps a dataset that accepts ``(index, sample_seed)`` and returns ``(sample, sample_seed)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, int]:
        return self.dataset[item], int(item[1])


class SeededCollate:
    """Collate ``(sample, sample_seed)`` pairs; the iBOT masks are drawn from a seed made of the batch's sample
    seeds (picklable, so it runs the same in the main process or a worker)."""

    def __init__(self, collate: Callable[..., dict]) -> None:
        self.collate = collate

    def __call__(self, items: list[tuple[Any, int]]) -> dict:
        seeds = [seed for _, seed in items]
        return self.collate([sample for sample, _ in items], generator=stable_seed("ibot-masks", *seeds))


def n_patch_tokens(cfg: DictConfig) -> tuple[int, int]:
    """(patches per side, tokens) of a global crop."""
    side = cfg.crops.global_crops_size // cfg.student.patch_size
    return side, side * side


def build_transform(cfg: DictConfig, paired: bool = False) -> DataAugmentationDINO:
    """The multi-crop transform of ``cfg.crops``; ``paired`` gives the (noisy, denoised) one of NCT phases,
    whose blur probabilities follow ``nct.blur_mode``."""
    augmentation = PairedDataAugmentationDINO if paired else DataAugmentationDINO
    return augmentation(
        global_crops_scale=tuple(cfg.crops.global_crops_scale),
        local_crops_scale=tuple(cfg.crops.local_crops_scale),
        local_crops_number=cfg.crops.local_crops_number,
        global_crops_size=cfg.crops.global_crops_size,
        local_crops_size=cfg.crops.local_crops_size,
        blur_mode=cfg.nct.blur_mode if paired else cfg.crops.blur_mode,
        solarize_probability=cfg.crops.solarize_probability,
        color_jitter_probability=cfg.crops.color_jitter_probability,
        hflip_probability=cfg.crops.hflip_probability,
        as_uint8=True,  # a quarter of the bytes in the loader's shared memory; normalised by batch_to_device
    )


def build_phase_dataset(cfg: DictConfig, phase: Phase) -> ImageFolderDataset:
    """The training split of a curriculum phase: plain multi-crop, or (noisy, denoised) pairs for an NCT phase with
    a denoised tree."""
    channels = int(cfg.student.in_chans)
    if phase.denoised_tree is None:  # a phase without a denoised tree (in NCT, the anchor sees the noisy crops)
        return ImageFolderDataset(phase.tree, cfg.train.dataset_split, transform=build_transform(cfg),
                                  channels=channels)
    transform = build_transform(cfg, paired=True)
    return PairedImageFolderDataset(phase.tree, phase.denoised_tree, cfg.train.dataset_split,
                                    transform=transform, channels=channels)


def build_collate(cfg: DictConfig) -> SeededCollate:
    """The training collate of ``cfg``: crops stacked, iBOT masks drawn from the batch's sample seeds."""
    side, n_tokens = n_patch_tokens(cfg)
    mask_generator = MaskingGenerator(input_size=(side, side), max_num_patches=int(0.5 * side * side))
    # a partial of a module-level function, not a lambda, so that loader workers can pickle it
    return SeededCollate(functools.partial(
        collate_data_and_cast,
        mask_ratio_tuple=tuple(cfg.ibot.mask_ratio_min_max),
        mask_probability=cfg.ibot.mask_sample_probability,
        dtype=torch.float32,
        n_tokens=n_tokens,
        mask_generator=mask_generator,
    ))


def build_data_loader(
    cfg: DictConfig, dataset: ImageFolderDataset, consumed_samples: int, rank: int, world_size: int,
    seed: Optional[int] = None,
) -> torch.utils.data.DataLoader:
    """An endless loader that starts after ``consumed_samples`` samples of the global stream (for resume);
    ``seed`` (default ``train.seed``) names the stream."""
    sampler = InfiniteSampler(
        len(dataset), seed=cfg.train.seed if seed is None else seed, shuffle=True, start=consumed_samples, rank=rank, world_size=world_size
    )
    workers = loader_workers(cfg, paired=isinstance(dataset, PairedImageFolderDataset))
    return make_data_loader(
        SeedCarryingDataset(dataset),
        batch_size=cfg.train.batch_size_per_gpu,
        num_workers=workers,
        sampler=sampler,
        collate_fn=build_collate(cfg),
        drop_last=True,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


CROP_KEYS = ("collated_global_crops", "collated_local_crops", "collated_global_crops_denoised")


def batch_to_device(batch: dict, device: torch.device) -> dict:
    """Move every tensor of a collated batch to ``device`` (non-blocking from pinned memory); uint8 crops are
    normalised there, into the float32 values the float pipeline gives."""
    moved = {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }
    for key in CROP_KEYS:
        if key in moved and moved[key].dtype == torch.uint8:
            moved[key] = normalize_crops(moved[key])
    return moved
