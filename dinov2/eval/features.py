"""Feature extraction from a frozen backbone with ``get_intermediate_layers``.

For the linear probe and k-NN a sample is described by the (final-norm) class tokens of the last
``n_blocks`` blocks ``[n_blocks, D]`` and the mean of the last block's patch tokens ``[D]``; every head of the
grid builds its input from these, so one extraction serves all of them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm import tqdm

from dinov2.data.datasets import image_for_transforms
from utils.dataset_index import TreeLike
from utils.image_tree import open_tree

if TYPE_CHECKING:
    from PIL import Image


class ImageListDataset(Dataset):
    """Images at ``root/relpath`` (a tree spelling: stored or noised on the fly) with integer labels, returned as
    ``(transform(image), label)``: a PIL image for 8-bit files, a float tensor for 16-bit and float ones, which
    skips the transform's ``ToTensor`` (see :func:`apply_transform`), so the probes see their levels. ``channels``
    is the backbone's (3, or 1: see :func:`dinov2.data.datasets.image_for_transforms`)."""

    def __init__(self, root: TreeLike, samples: Sequence[tuple[str, int]], transform: Callable,
                 channels: int = 3) -> None:
        self.root = open_tree(root)
        self.samples = list(samples)
        self.transform = transform
        self.channels = int(channels)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        relpath, label = self.samples[index]
        return apply_transform(self.transform, image_for_transforms(self.root, relpath, self.channels)), label


def apply_transform(transform: Callable, image: "Image.Image | torch.Tensor") -> torch.Tensor:
    """``transform(image)``; for a float tensor (a 16-bit or float image), a ``Compose`` runs without its
    ``ToTensor`` step (torchvision's resizing, cropping, flipping and normalisation take tensors as they are)."""
    if isinstance(image, torch.Tensor) and isinstance(transform, transforms.Compose):
        for step in transform.transforms:
            if not isinstance(step, transforms.ToTensor):
                image = step(image)
        return image
    return transform(image)


@dataclass
class FeatureSet:
    """Cached features: class tokens ``[N, n_blocks, D]``, last-block patch means ``[N, D]``, labels ``[N]``."""

    class_tokens: torch.Tensor
    patch_means: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.class_tokens, self.patch_means, self.labels))

    def to(self, device: torch.device) -> "FeatureSet":
        """The same features on ``device``."""
        return FeatureSet(self.class_tokens.to(device), self.patch_means.to(device), self.labels.to(device))

    def subset(self, indices: torch.Tensor) -> "FeatureSet":
        """The rows at ``indices``."""
        return FeatureSet(self.class_tokens[indices], self.patch_means[indices], self.labels[indices])


def block_features(
    backbone: nn.Module, images: torch.Tensor, n_blocks: int, autocast: Optional[contextlib.AbstractContextManager]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(class tokens [B, n_blocks, D], last-block patch mean [B, D])`` in float32, without gradients."""
    with torch.inference_mode(), (autocast or contextlib.nullcontext()):
        outputs = backbone.get_intermediate_layers(images, n_blocks, return_class_token=True, norm=True)
    class_tokens = torch.stack([cls for _, cls in outputs], dim=1).float()
    patch_mean = outputs[-1][0].float().mean(dim=1)
    return class_tokens.clone(), patch_mean.clone()


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool = False,
                generator: Optional[torch.Generator] = None) -> DataLoader:
    """A DataLoader that keeps order unless ``shuffle``; pinned memory on CUDA machines."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available(), generator=generator,
                      persistent_workers=False, drop_last=False)


def extract_features(
    backbone: nn.Module, loader: DataLoader, n_blocks: int, device: torch.device,
    autocast_factory: Callable[[], contextlib.AbstractContextManager], desc: str = "features",
    progress: bool = True,
) -> FeatureSet:
    """Run the frozen backbone over ``loader`` once; features stay on the CPU (they can be large)."""
    class_tokens, patch_means, labels = [], [], []
    for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
        cls, mean = block_features(backbone, images.to(device, non_blocking=True), n_blocks, autocast_factory())
        class_tokens.append(cls.cpu())
        patch_means.append(mean.cpu())
        labels.append(torch.as_tensor(targets, dtype=torch.int64))
    if not labels:
        raise ValueError(f"{desc}: the data set is empty")
    return FeatureSet(torch.cat(class_tokens), torch.cat(patch_means), torch.cat(labels))
