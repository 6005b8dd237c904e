"""iBOT / BEiT block masking: rectangles of patches until the requested number of patches is masked."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np


class MaskingGenerator:
    """``call(num_masking_patches, rng=None) -> bool array [h, w]`` built from random rectangles.

    Randomness comes from ``rng`` (a ``random.Random``) when given, else from Python's global ``random``
    module (as upstream); seed one of them for reproducible masks.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int],
        num_masking_patches: int | None = None,
        min_num_patches: int = 4,
        max_num_patches: float | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
    ) -> None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.height, self.width = int(input_size[0]), int(input_size[1])
        self.num_patches = self.height * self.width
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = self.num_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1.0 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))

    def get_shape(self) -> tuple[int, int]:
        return self.height, self.width

    def _add_rectangle(self, mask: np.ndarray, max_mask_patches: float, rng: Any) -> int:
        """Try (10 times) to mask one new rectangle of at most ``max_mask_patches`` new patches; return how many."""
        for _ in range(10):
            target_area = rng.uniform(self.min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(rng.uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                top = rng.randint(0, self.height - h)
                left = rng.randint(0, self.width - w)
                window = mask[top:top + h, left:left + w]
                new = h * w - int(window.sum())
                if 0 < new <= max_mask_patches:
                    window[...] = True
                    return new
        return 0

    def __call__(self, num_masking_patches: int = 0, rng: random.Random | None = None) -> np.ndarray:
        source: Any = rng if rng is not None else random  # the module offers uniform/randint too
        mask = np.zeros(self.get_shape(), dtype=bool)
        count = 0
        while count < num_masking_patches:
            max_new = min(num_masking_patches - count, self.max_num_patches)
            added = self._add_rectangle(mask, max_new, source)
            if added == 0:
                break
            count += added
        return mask
