"""Training data: random crops of the noisy images, reproducible per (seed, epoch, index).

Crop offsets come from a generator seeded by (seed, epoch, dataset index) and the epoch's order from one seeded
by (seed, epoch), so the batches of an epoch do not depend on the number of workers, and a run resumed at an
epoch boundary sees exactly what the uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.image_io import ImageReadError, one_kind, to_unit
from utils.image_tree import ImageTree
from utils.seeding import numpy_generator, torch_generator

SMALL_IMAGE_POLICIES = ("pad", "skip")


@dataclass(frozen=True)
class ImageSurvey:
    """The usable training images of a folder, the number skipped for being smaller than the crop, and the
    channels of them all (the U-Net's input and output channels: 3 for 8-bit RGB, 1 or 3 for 16-bit or float)."""

    relpaths: list[str]
    skipped_small: int
    channels: int = 3


def survey_images(root: ImageTree, patch_size: int, small_images: str = "pad", progress: bool = True) -> ImageSurvey:
    """List every image under ``root`` (recursively) and apply the small-image policy.

    Raises ``FileNotFoundError`` for a missing folder, ``ValueError`` for an empty one, an unknown policy or images
    of different kinds (depth or channels: one file of each is named), and :class:`ImageReadError` naming every
    file whose header cannot be read.
    """
    if small_images not in SMALL_IMAGE_POLICIES:
        raise ValueError(f"small-image policy {small_images!r}: expected one of {SMALL_IMAGE_POLICIES}")
    if not root.is_dir():
        raise FileNotFoundError(f"training folder {root.folder} does not exist{root.missing_hint()}")
    relpaths = list(root.iter_relpaths())
    if not relpaths:
        raise ValueError(f"training folder {root} holds no images")
    kept, skipped, unreadable, headers = [], 0, [], []
    for relpath in tqdm(relpaths, desc="checking images", unit="img", disable=not progress, leave=False):
        try:
            header = root.image_header(relpath)
        except ImageReadError as error:
            unreadable.append(str(error))
            continue
        headers.append((str(root.path(relpath)), header))
        if small_images == "skip" and min(header.height, header.width) < patch_size:
            skipped += 1
        else:
            kept.append(relpath)
    if unreadable:
        raise ImageReadError(f"{len(unreadable)} unreadable training image(s): " + "; ".join(unreadable[:10]))
    kind = one_kind(headers, str(root), "which one denoiser cannot take")
    if not kept:
        raise ValueError(f"no image in {root} is at least {patch_size} px on both sides (all {skipped} skipped)")
    return ImageSurvey(kept, skipped, kind.channels)


def crop_or_pad(image: np.ndarray, patch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``patch_size`` square of an H x W x C image; sides shorter than the patch are reflect-padded."""
    height, width = image.shape[:2]
    pad_bottom, pad_right = max(0, patch_size - height), max(0, patch_size - width)
    if pad_bottom or pad_right:
        image = np.pad(image, ((0, pad_bottom), (0, pad_right), (0, 0)), mode="reflect")
        height, width = image.shape[:2]
    top = int(rng.integers(0, height - patch_size + 1))
    left = int(rng.integers(0, width - patch_size + 1))
    return image[top:top + patch_size, left:left + patch_size]


class NoisyCropDataset(Dataset):
    """Random square crops of noisy images (stored, or noised on the fly) as float tensors (C x P x P) in [0, 1],
    at the images' own depth (8-bit RGB / 255, 16-bit / 65535, float as read)."""

    def __init__(self, root: ImageTree, relpaths: list[str], patch_size: int, seed: int) -> None:
        if patch_size < 2 or patch_size % 2:
            raise ValueError(f"--patch-size must be a positive even number, got {patch_size}")
        self.root, self.relpaths, self.patch_size, self.seed = root, relpaths, patch_size, seed
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (call before iterating; workers copy the dataset at iterator start)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.root.read_pixels(self.relpaths[index])
        crop = crop_or_pad(image, self.patch_size, numpy_generator("n2n-crop", self.seed, self.epoch, index))
        if crop.dtype == np.uint8:
            return torch.from_numpy(np.array(crop)).permute(2, 0, 1).float().div_(255.0)
        return torch.from_numpy(np.ascontiguousarray(to_unit(crop))).permute(2, 0, 1)


def epoch_order(num_images: int, seed: int, epoch: int) -> list[int]:
    """The shuffled image order of ``epoch``: a pure function of (seed, epoch)."""
    generator = torch_generator("n2n-order", seed, epoch)
    return torch.randperm(num_images, generator=generator).tolist()


def rank_order(order: list[int], batch_size: int, rank: int, ranks: int) -> list[int]:
    """The images of ``rank`` in an epoch of global batches of ``batch_size`` (the incomplete last one dropped):
    its contiguous ``batch_size / ranks`` share of each batch, so that the ranks together see what one process
    would."""
    share = batch_size // ranks
    full = len(order) // batch_size * batch_size
    return [order[start + rank * share + i] for start in range(0, full, batch_size) for i in range(share)]
