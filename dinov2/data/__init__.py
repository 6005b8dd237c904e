"""Data pipeline of DINOv2 pretraining: multi-crop augmentations, iBOT masks, collate, datasets, sampler."""

from dinov2.data.augmentations import BLUR_MODES, DataAugmentationDINO, PairedDataAugmentationDINO, blur_probabilities
from dinov2.data.collate import collate_data_and_cast
from dinov2.data.crops import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    CropDraw,
    CropRecipe,
    make_normalize_transform,
)
from dinov2.data.datasets import ImageFolderDataset, PairedImageFolderDataset, seeded_rng
from dinov2.data.loaders import make_data_loader
from dinov2.data.masking import MaskingGenerator
from dinov2.data.samplers import InfiniteSampler

__all__ = [
    "BLUR_MODES", "DataAugmentationDINO", "PairedDataAugmentationDINO", "blur_probabilities",
    "collate_data_and_cast", "IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD", "CropDraw", "CropRecipe",
    "make_normalize_transform", "ImageFolderDataset", "PairedImageFolderDataset", "seeded_rng",
    "make_data_loader", "MaskingGenerator", "InfiniteSampler",
]
