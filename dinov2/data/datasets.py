"""ImageFolder datasets for SSL training, built on the shared dataset index, with per-sample seeding."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from dinov2.utils.normalization import check_channels

from utils.dataset_index import TreeLike, load_split
from utils.image_io import to_unit
from utils.tree_pairing import paired_relpaths
from utils.image_tree import ImageTree, open_tree

SampleKey = int | tuple[int, int]


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch, NumPy and Python ``random`` inside the block; restore the caller's states afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only: torch.manual_seed would also queue a (slow) lazy seeding of every CUDA device.
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def image_for_transforms(tree: ImageTree, relpath: str, channels: int = 3) -> Image.Image | torch.Tensor:
    """An image as the transforms take it (training augmentations, the probes' transforms): 8-bit pixels as a PIL
    image, 16-bit or float ones as a float tensor ``[channels, H, W]`` in [0, 1], so that their levels survive the
    crops. With ``channels=3`` (the default) a grey image is replicated to RGB, as it always was; with
    ``channels=1`` (a single-channel backbone, ``student.in_chans=1``) it stays grey (PIL mode ``L``) and a colour
    image becomes its luminance (ITU-R 601-2 weights: PIL's ``L`` conversion, torchvision's ``rgb_to_grayscale``)."""
    check_channels(channels)
    pixels = tree.read_pixels(relpath)
    if pixels.dtype == np.uint8:
        image = Image.fromarray(pixels)
        return image.convert("L") if channels == 1 else image
    tensor = torch.from_numpy(np.ascontiguousarray(to_unit(pixels))).permute(2, 0, 1)
    if tensor.shape[0] == channels:
        return tensor
    if channels == 1:
        return TF.rgb_to_grayscale(tensor, num_output_channels=1)
    return tensor.expand(3, -1, -1).contiguous()


def _split_key(item: SampleKey) -> tuple[int, int | None]:
    if isinstance(item, (tuple, list)):
        if len(item) != 2:
            raise TypeError(f"a dataset key is an index or an (index, sample_seed) pair, got {item!r}")
        return int(item[0]), int(item[1])
    return int(item), None


def _apply(transform: Callable | None, image: Any, seed: int | None) -> Any:
    if transform is None:
        return image
    if seed is None:
        return transform(image)
    with seeded_rng(seed):
        return transform(image)


class ImageFolderDataset(Dataset):
    """``ROOT/<split>/<class>/<image>`` (or an unlabeled tree) -> ``(transform(image), label)``: a PIL image for
    8-bit files, a float tensor ``[channels, H, W]`` for 16-bit and float ones (see :func:`image_for_transforms`).

    A key is an index or an ``(index, sample_seed)`` pair (see :class:`dinov2.data.InfiniteSampler`); with a
    seed the transform runs under :func:`seeded_rng`, so crops depend on the seed only, never on worker
    count or order.
    """

    def __init__(self, root: TreeLike, split: str = "train", transform: Callable | None = None,
                 channels: int = 3) -> None:
        self.root = open_tree(root)
        self.index = load_split(self.root, split)
        if len(self.index) == 0:
            raise ValueError(f"{self.root / split} holds no image")
        self.split = split
        self.transform = transform
        self.channels = int(channels)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    def _check_key(self, item: SampleKey) -> tuple[int, int | None]:
        index, seed = _split_key(item)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} is out of range for {self.root / self.split} ({len(self)} images)")
        return index, seed

    def get_target(self, index: int) -> int:
        return self.index.samples[index][1]

    def __getitem__(self, item: SampleKey) -> tuple[Any, int]:
        index, seed = self._check_key(item)
        image = image_for_transforms(self.root, self.index.samples[index][0], self.channels)
        return _apply(self.transform, image, seed), self.get_target(index)


class PairedImageFolderDataset(ImageFolderDataset):
    """A noisy tree and its denoised copy -> ``(transform((noisy_pil, denoised_pil)), label)``.

    The denoised tree must hold the same relative paths (the extension may differ). Labels and order come
    from the noisy tree; pairing mismatches raise ``DatasetError`` naming the files.
    """

    def __init__(self, noisy_root: TreeLike, denoised_root: TreeLike, split: str = "train",
                 transform: Callable | None = None, channels: int = 3) -> None:
        super().__init__(noisy_root, split, transform, channels)
        self.denoised_root = open_tree(denoised_root)
        pairs = paired_relpaths(self.root, self.denoised_root, split)
        self.denoised_relpaths = [pairs[relpath] for relpath, _ in self.index.samples]

    def __getitem__(self, item: SampleKey) -> tuple[Any, int]:
        index, seed = self._check_key(item)
        noisy = image_for_transforms(self.root, self.index.samples[index][0], self.channels)
        denoised = image_for_transforms(self.denoised_root, self.denoised_relpaths[index], self.channels)
        return _apply(self.transform, (noisy, denoised), seed), self.get_target(index)
