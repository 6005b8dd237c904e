"""Revisited Oxford/Paris data: the ground-truth file and images with noise added on the fly.

Layout (revisitop): ``DATA_ROOT/<dataset>/jpg/<name>.jpg`` and ``DATA_ROOT/<dataset>/gnd_<dataset>.pkl``
(``DATA_ROOT/datasets/<dataset>/`` is accepted too). The noisy copy of an image is
``utils.noise.noisy_image(image, spec, seed, relpath="jpg/<name>.jpg")``, a pure function, so it is the same
for any batch size, worker count or order. The N2N arm reads pre-denoised images ``DENOISED_ROOT/jpg/<name>.png``
instead and adds no noise.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from utils.image_io import load_rgb
from utils.image_tree import ImageTree
from utils.noise import NoiseSpec


@dataclass
class RetrievalSet:
    """A revisitop data set: its folder, database and query names, and per-query ground truth."""

    folder: Path
    name: str
    imlist: list[str]
    qimlist: list[str]
    gnd: list[dict]


def find_dataset_folder(data_root: Path, dataset: str) -> Path:
    """``DATA_ROOT/<dataset>`` or ``DATA_ROOT/datasets/<dataset>``, whichever holds ``gnd_<dataset>.pkl``."""
    for folder in (Path(data_root) / dataset, Path(data_root) / "datasets" / dataset):
        if (folder / f"gnd_{dataset}.pkl").is_file():
            return folder
    raise FileNotFoundError(f"no gnd_{dataset}.pkl under {data_root}/{dataset} or {data_root}/datasets/{dataset}")


class GroundTruthUnpickler(pickle.Unpickler):
    """Unpickles a revisitop ``gnd_*.pkl`` (dicts, lists, strings, numbers and NumPy arrays) and nothing else: any
    other class or function named by the file is refused, so a crafted file cannot run code when loaded."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("builtins", "set"), ("builtins", "frozenset"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a ground-truth file holds only "
                                         "dicts, lists, strings, numbers and NumPy arrays")
        return super().find_class(module, name)


def load_retrieval_set(data_root: Path, dataset: str) -> RetrievalSet:
    """Read and check the ground truth (keys, index ranges) and that every image file exists."""
    folder = find_dataset_folder(data_root, dataset)
    gnd_path = folder / f"gnd_{dataset}.pkl"
    try:
        with open(gnd_path, "rb") as handle:
            payload = GroundTruthUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f"{gnd_path}: not a revisitop ground-truth file ({error})") from error
    for key in ("imlist", "qimlist", "gnd"):
        if key not in payload:
            raise ValueError(f"{gnd_path}: missing key {key!r}")
    imlist, qimlist, gnd = list(payload["imlist"]), list(payload["qimlist"]), list(payload["gnd"])
    if len(gnd) != len(qimlist):
        raise ValueError(f"{gnd_path}: {len(gnd)} gnd entries for {len(qimlist)} queries")
    for i, entry in enumerate(gnd):
        for key in ("easy", "hard", "junk"):
            values = np.asarray(entry.get(key, []), dtype=np.int64)
            if key not in entry or (values.size and (values.min() < 0 or values.max() >= len(imlist))):
                raise ValueError(f"{gnd_path}: gnd[{i}].{key} is missing or indexes outside imlist")
    missing = [name for name in imlist + qimlist if not (folder / "jpg" / f"{name}.jpg").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder / 'jpg'}: {len(missing)} image(s) missing, e.g. {missing[0]}.jpg")
    return RetrievalSet(folder, dataset, imlist, qimlist, gnd)


def image_relpath(name: str) -> str:
    """The relative path that seeds an image's noise: ``jpg/<name>.jpg``."""
    return f"jpg/{name}.jpg"


class RetrievalImages(Dataset):
    """Images of a retrieval set as ``(tuple of transformed views, index)``; noise is a pure function. With
    ``channels=1`` (a single-channel backbone) the views are of the images' luminance."""

    def __init__(self, folder: Path, names: Sequence[str], transforms: Sequence[Callable],
                 noise: Optional[NoiseSpec] = None, seed: int = 42, quantization: str = "truncate",
                 denoised_root: Optional[Path] = None, boxes: Optional[Sequence[Sequence[float]]] = None,
                 channels: int = 3) -> None:
        if noise is not None and denoised_root is not None:
            raise ValueError("pre-denoised images get no extra noise: give either --noise or --denoised-root")
        self.folder, self.names, self.transforms = Path(folder), list(names), list(transforms)
        self.noise, self.seed, self.quantization = noise, seed, quantization
        self.denoised_root = None if denoised_root is None else Path(denoised_root)
        self.source = ImageTree(self.folder, noise, seed, quantization)  # noised on the fly when ``noise`` is set
        self.boxes = None if boxes is None else [list(map(float, box)) for box in boxes]
        self.channels = int(channels)
        if self.denoised_root is not None:
            missing = [n for n in self.names if not (self.denoised_root / "jpg" / f"{n}.png").is_file()]
            if missing:
                raise FileNotFoundError(f"{self.denoised_root / 'jpg'}: {len(missing)} denoised image(s) missing, "
                                        f"e.g. {missing[0]}.png")

    def __len__(self) -> int:
        return len(self.names)

    def image(self, index: int) -> np.ndarray:
        """The uint8 image the network sees before resizing: clean, noisy or pre-denoised, then box-cropped."""
        name = self.names[index]
        if self.denoised_root is not None:
            image = load_rgb(self.denoised_root / "jpg" / f"{name}.png")
        else:
            image = self.source.read(image_relpath(name))
        if self.boxes is not None:
            x1, y1, x2, y2 = self.boxes[index]
            height, width = image.shape[:2]
            x1, y1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
            x2, y2 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"query {name}: empty bounding box {self.boxes[index]}")
            image = image[y1:y2, x1:x2]
        return image

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, ...], int]:
        pil = Image.fromarray(self.image(index))
        if self.channels == 1:
            pil = pil.convert("L")
        return tuple(transform(pil) for transform in self.transforms), index
