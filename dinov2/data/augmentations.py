"""DINOv2 multi-crop augmentation: two global crops and N local crops, plus the paired (noisy, denoised) variant.

Blur probabilities are named modes (global crop 1, global crop 2, local crops):

* ``"upstream"`` = (0.0, 0.9, 0.5): what DINOv2's code does. Its ``GaussianBlur(p)`` blurs with probability
  ``1 - p``, so the documented 1.0 / 0.1 / 0.5 become 0.0 / 0.9 / 0.5 (facebookresearch/dinov2 PR #411).
  Default of :class:`DataAugmentationDINO`, as in the paper's DINOv2 and NC runs.
* ``"literal"`` = (1.0, 0.1, 0.5): the documented probabilities. Default of :class:`PairedDataAugmentationDINO`,
  as the paper's NCT paired augmentation used them.

The second global crop is solarized with probability ``solarize_probability`` (0.2, BYOL's and DINOv2's value;
SimCLR and SimSiam use 0 with the ``"symmetric"`` blur mode, 0.5 on both views).

Randomness comes from torch's global RNG only; the datasets seed it per sample.
"""

from __future__ import annotations

from typing import Any, Sequence

from PIL import Image

from dinov2.data.crops import FLIP_PROBABILITY, JITTER_PROBABILITY, CropRecipe
from dinov2.utils.choices import BLUR_MODES

SOLARIZE_PROBABILITY_CROP2 = 0.2


def blur_probabilities(blur_mode: str) -> tuple[float, float, float]:
    """(global crop 1, global crop 2, local) blur probabilities of a named mode."""
    if blur_mode not in BLUR_MODES:
        raise ValueError(f"crops.blur_mode must be one of {sorted(BLUR_MODES)}, got {blur_mode!r}")
    return BLUR_MODES[blur_mode]


class DataAugmentationDINO:
    """``pil_image -> dict(global_crops=[g1, g2], global_crops_teacher=[g1, g2], local_crops=[...], offsets=())``."""

    def __init__(
        self,
        global_crops_scale: Sequence[float],
        local_crops_scale: Sequence[float],
        local_crops_number: int,
        global_crops_size: int = 224,
        local_crops_size: int = 96,
        blur_mode: str = "upstream",
        solarize_probability: float = SOLARIZE_PROBABILITY_CROP2,
        color_jitter_probability: float = JITTER_PROBABILITY,
        hflip_probability: float = FLIP_PROBABILITY,
        as_uint8: bool = False,
    ) -> None:
        if local_crops_number < 0:
            raise ValueError(f"crops.local_crops_number must be >= 0, got {local_crops_number}")
        blur_1, blur_2, blur_local = blur_probabilities(blur_mode)
        self.global_crops_scale = tuple(global_crops_scale)
        self.local_crops_scale = tuple(local_crops_scale)
        self.local_crops_number = int(local_crops_number)
        self.global_crops_size = int(global_crops_size)
        self.local_crops_size = int(local_crops_size)
        self.blur_mode = blur_mode
        self.as_uint8 = bool(as_uint8)  # uint8 crops, normalised on the device (crops.normalize_crops)
        photometric = {"jitter_probability": color_jitter_probability, "flip_probability": hflip_probability,
                       "as_uint8": self.as_uint8}
        self.global_crop_1 = CropRecipe(global_crops_size, global_crops_scale, blur_1, **photometric)
        self.global_crop_2 = CropRecipe(global_crops_size, global_crops_scale, blur_2, solarize_probability,
                                        **photometric)
        self.local_crop = CropRecipe(local_crops_size, local_crops_scale, blur_local, **photometric)

    def _multi_crop(self, images: Sequence[Image.Image]) -> tuple[list[list], list]:
        """Global crops of every aligned image (one shared draw per crop) and local crops of the first image."""
        first_crops = self.global_crop_1(*images)
        second_crops = self.global_crop_2(*images)
        global_crops = [[first, second] for first, second in zip(first_crops, second_crops)]
        local_crops = [self.local_crop(images[0])[0] for _ in range(self.local_crops_number)]
        return global_crops, local_crops

    def __call__(self, image: Image.Image) -> dict[str, Any]:
        (global_crops,), local_crops = self._multi_crop([image])
        return {"global_crops": global_crops, "global_crops_teacher": global_crops, "local_crops": local_crops,
                "offsets": ()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(global {self.global_crops_size}px scale {self.global_crops_scale}, "
                f"{self.local_crops_number} local {self.local_crops_size}px scale {self.local_crops_scale}, "
                f"blur_mode={self.blur_mode!r})")


class PairedDataAugmentationDINO(DataAugmentationDINO):
    """``(noisy_pil, denoised_pil) -> dict`` with ``global_crops_denoised`` pixel-aligned to ``global_crops``.

    Both global crops share every random draw between the two images; local crops come from the noisy image.
    """

    def __init__(
        self,
        global_crops_scale: Sequence[float],
        local_crops_scale: Sequence[float],
        local_crops_number: int,
        global_crops_size: int = 224,
        local_crops_size: int = 96,
        blur_mode: str = "literal",
        solarize_probability: float = SOLARIZE_PROBABILITY_CROP2,
        color_jitter_probability: float = JITTER_PROBABILITY,
        hflip_probability: float = FLIP_PROBABILITY,
        as_uint8: bool = False,
    ) -> None:
        super().__init__(global_crops_scale, local_crops_scale, local_crops_number, global_crops_size,
                         local_crops_size, blur_mode, solarize_probability, color_jitter_probability,
                         hflip_probability, as_uint8)

    def __call__(self, images: tuple[Image.Image, Image.Image]) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(images, (tuple, list)) or len(images) != 2:
            raise TypeError("PairedDataAugmentationDINO expects a (noisy image, denoised image) pair")
        (noisy, denoised), local_crops = self._multi_crop(list(images))
        return {"global_crops": noisy, "global_crops_teacher": noisy, "global_crops_denoised": denoised,
                "local_crops": local_crops, "offsets": ()}
