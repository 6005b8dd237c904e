"""Validation during training: clean images noised on the fly (pure per-image noise), denoised, scored."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from Neighbor2Neighbor.inference import denoise_pixels
from Neighbor2Neighbor.ssim import ssim
from utils.image_io import iter_image_files, one_kind, pixels_header, to_unit
from utils.image_tree import ImageTree
from utils.metrics import psnr
from utils.noise import noisy_pixels, parse_noise

VAL_BATCH_SIZE = 16


@dataclass(frozen=True)
class ValidationImage:
    """One validation pair: the clean image and its noisy copy, at the clean image's depth (H x W x C)."""

    relpath: str
    clean: np.ndarray
    noisy: np.ndarray


def _ssim(clean: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-image SSIM of two stacks (N x H x W x C) of any depth, on the [0, 1] scale."""
    def as_tensor(images: np.ndarray) -> torch.Tensor:
        if images.dtype == np.uint8:
            return torch.tensor(images).permute(0, 3, 1, 2).double() / 255.0
        return torch.from_numpy(np.ascontiguousarray(to_unit(images))).permute(0, 3, 1, 2).double()
    return ssim(as_tensor(clean), as_tensor(test)).numpy()


class Validator:
    """Holds the noisy validation images in memory and scores a model on them."""

    def __init__(self, clean_root: Path, setting: str, seed: int, limit: int | None = None) -> None:
        if not clean_root.is_dir():
            raise FileNotFoundError(f"--val-clean folder {clean_root} does not exist")
        spec = parse_noise(setting)
        relpaths = list(iter_image_files(clean_root))[:limit]
        if not relpaths:
            raise ValueError(f"--val-clean folder {clean_root} holds no images")
        self.setting = setting
        self.images = []
        tree = ImageTree(clean_root)
        for relpath in relpaths:
            clean = tree.read_pixels(relpath)
            self.images.append(ValidationImage(relpath, clean, noisy_pixels(clean, spec, seed, relpath)))
        self.channels = one_kind(((im.relpath, pixels_header(im.clean)) for im in self.images),
                                 f"--val-clean folder {clean_root}", "which one validation cannot score").channels
        self.noisy_psnr = float(np.mean([psnr(im.clean, im.noisy) for im in self.images]))
        self.noisy_ssim = float(np.mean(np.concatenate(
            [_ssim(im.clean[None], im.noisy[None]) for im in self.images])))

    def _batches(self) -> list[list[ValidationImage]]:
        by_shape: dict[tuple[int, ...], list[ValidationImage]] = defaultdict(list)
        for image in self.images:
            by_shape[image.clean.shape].append(image)
        return [group[i:i + VAL_BATCH_SIZE] for group in by_shape.values()
                for i in range(0, len(group), VAL_BATCH_SIZE)]

    def evaluate(self, model: torch.nn.Module, device: torch.device, precision: str = "fp32") -> dict[str, float]:
        """Mean PSNR / SSIM of the denoised images (rounded to the clean images' depth) against the clean ones."""
        was_training = model.training
        model.eval()
        psnrs, ssims = [], []
        for batch in self._batches():
            clean = np.stack([im.clean for im in batch])
            denoised = denoise_pixels(model, np.stack([im.noisy for im in batch]), device, precision)
            psnrs.extend(psnr(c, d) for c, d in zip(clean, denoised))
            ssims.extend(_ssim(clean, denoised).tolist())
        model.train(was_training)
        return {"val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims)),
                "val_noisy_psnr": self.noisy_psnr, "val_noisy_ssim": self.noisy_ssim}
