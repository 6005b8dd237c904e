"""Training crops travel as uint8 (a quarter of float32's bytes in the loader's shared memory and pinned buffers)
and are normalised on the device into exactly the float32 values of the float pipeline."""

import torch

from dinov2.data import DataAugmentationDINO, PairedDataAugmentationDINO
from dinov2.data.crops import normalize_crops
from dinov2.train.data_setup import batch_to_device, build_data_loader, build_phase_dataset
from dinov2.train.curriculum import build_phases
from dinov2.utils.config import CONFIGS_DIR, load_config
from tests.test_dinov2_data_augment import SCALES, _image
from utils.make_toy_dataset import build_toy_dataset


def _crops(augmentation, image, seed: int = 3):
    torch.manual_seed(seed)
    return augmentation(image)


def test_uint8_crops_normalised_equal_the_float_crops_bit_for_bit():
    settings = dict(SCALES, local_crops_number=3, global_crops_size=32, local_crops_size=16)
    for cls, image in ((DataAugmentationDINO, _image()), (PairedDataAugmentationDINO, (_image(0), _image(1)))):
        floats = _crops(cls(**settings), image)
        uint8 = _crops(cls(**settings, as_uint8=True), image)
        for key in ("global_crops", "local_crops", "global_crops_denoised"):
            if key not in floats:
                continue
            for reference, pixels in zip(floats[key], uint8[key]):
                assert pixels.dtype == torch.uint8 and pixels.shape == reference.shape
                assert torch.equal(normalize_crops(pixels), reference), key


def test_the_training_loader_yields_uint8_crops_and_the_device_batch_is_normalised(tmp_path):
    build_toy_dataset(tmp_path / "digits", limit=1)
    cfg = load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml", [f"train.dataset_path={tmp_path / 'digits'}"])
    dataset = build_phase_dataset(cfg, build_phases(cfg)[0])
    batch = next(iter(build_data_loader(cfg, dataset, consumed_samples=0, rank=0, world_size=1)))
    crops = batch["collated_global_crops"]
    assert crops.dtype == torch.uint8 and batch["collated_local_crops"].dtype == torch.uint8
    moved = batch_to_device(batch, torch.device("cpu"))
    assert moved["collated_global_crops"].dtype == torch.float32
    assert torch.equal(moved["collated_global_crops"], normalize_crops(crops))
    assert moved["collated_masks"].dtype == torch.bool  # the other tensors move unchanged
