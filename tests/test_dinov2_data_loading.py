"""Datasets, per-sample seeding, the resumable sampler and worker-count independence of batches."""

from __future__ import annotations

import shutil
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
from tests.imagetrees import make_tree
from utils.dataset_index import DatasetError


def _aug(cls=DataAugmentationDINO):
    return cls((0.32, 1.0), (0.05, 0.32), local_crops_number=2, global_crops_size=16, local_crops_size=8)


def _denoised_copy(noisy: Path, out: Path) -> Path:
    """Same relative paths, every image re-saved as PNG with inverted pixels."""
    for path in sorted(noisy.rglob("*")):
        if path.is_file() and path.name != "labels.txt":
            target = (out / path.relative_to(noisy)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                Image.fromarray(255 - np.asarray(image.convert("RGB"))).save(target)
    shutil.copy(noisy / "labels.txt", out / "labels.txt")
    return out


def test_image_folder_dataset_labels_and_plain_access(tmp_path):
    tree = make_tree(tmp_path / "data", classes=2, per_class=3)
    dataset = ImageFolderDataset(tree, "train")
    assert len(dataset) == 6 and dataset.classes == ["n000", "n001"]
    image, label = dataset[4]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and label == 1
    assert [dataset[i][1] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DatasetError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere", "train")


def test_seeded_access_depends_on_the_seed_only(tmp_path):
    dataset = ImageFolderDataset(make_tree(tmp_path / "data"), "train", transform=_aug())
    torch.manual_seed(1)
    first, _ = dataset[(2, 77)]
    state = torch.get_rng_state()
    torch.manual_seed(999)  # the caller's RNG state must not matter
    again, _ = dataset[(2, 77)]
    other, _ = dataset[(2, 78)]
    for a, b in zip(first["global_crops"] + first["local_crops"], again["global_crops"] + again["local_crops"]):
        assert torch.equal(a, b)
    assert not torch.equal(first["global_crops"][0], other["global_crops"][0])
    torch.manual_seed(1)
    dataset[(2, 77)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left untouched


def test_paired_dataset_aligns_noisy_and_denoised(tmp_path):
    noisy = make_tree(tmp_path / "noisy", classes=2, per_class=2)
    denoised = _denoised_copy(noisy, tmp_path / "denoised")
    dataset = PairedImageFolderDataset(noisy, denoised, "train")
    (noisy_image, denoised_image), label = dataset[3]
    assert label == 1
    assert np.array_equal(np.asarray(denoised_image), 255 - np.asarray(noisy_image))
    dataset.transform = _aug(PairedDataAugmentationDINO)
    crops, _ = dataset[(1, 5)]
    assert [t.shape for t in crops["global_crops_denoised"]] == [(3, 16, 16)] * 2
    next(p for p in sorted((denoised / "train").rglob("*.png"))).unlink()
    with pytest.raises(DatasetError, match="do not pair"):
        PairedImageFolderDataset(noisy, denoised, "train")


def test_sampler_epochs_are_permutations_with_fresh_seeds():
    sampler = InfiniteSampler(7, seed=3)
    stream = list(islice(iter(sampler), 21))
    indices = [i for i, _ in stream]
    for epoch in range(3):
        assert sorted(indices[7 * epoch:7 * epoch + 7]) == list(range(7))
    assert indices[:7] != indices[7:14]
    assert len({seed for _, seed in stream}) == 21
    assert list(islice(iter(InfiniteSampler(7, seed=3)), 21)) == stream
    assert [i for i, _ in islice(iter(InfiniteSampler(7, seed=4)), 7)] != indices[:7]
    assert [i for i, _ in islice(iter(InfiniteSampler(5, shuffle=False)), 7)] == [0, 1, 2, 3, 4, 0, 1]


def test_sampler_start_resumes_the_exact_stream_and_ranks_split_it():
    full = list(islice(iter(InfiniteSampler(5, seed=0)), 40))
    assert list(islice(iter(InfiniteSampler(5, seed=0, start=13)), 27)) == full[13:]
    rank0 = list(islice(iter(InfiniteSampler(5, seed=0, start=4, rank=0, world_size=2)), 10))
    rank1 = list(islice(iter(InfiniteSampler(5, seed=0, start=4, rank=1, world_size=2)), 10))
    assert rank0 == full[4:24:2] and rank1 == full[5:25:2]
    with pytest.raises(ValueError, match="rank"):
        InfiniteSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError, match="empty"):
        InfiniteSampler(0)


def _batches(dataset, num_workers: int, start: int = 0, n: int = 3) -> list[dict]:
    collate = partial(collate_data_and_cast, mask_ratio_tuple=(0.1, 0.5), mask_probability=0.5,
                      dtype=torch.float32, n_tokens=4, mask_generator=MaskingGenerator((2, 2)), generator=0)
    loader = make_data_loader(dataset, batch_size=3, num_workers=num_workers,
                              sampler=InfiniteSampler(len(dataset), seed=5, start=start), collate_fn=collate)
    return list(islice(iter(loader), n))


def test_batches_do_not_depend_on_worker_count_and_resume_exactly(tmp_path):
    dataset = ImageFolderDataset(make_tree(tmp_path / "data", classes=2, per_class=3), "train", transform=_aug())
    torch.manual_seed(0)
    serial = _batches(dataset, num_workers=0, n=4)
    torch.manual_seed(1)
    parallel = _batches(dataset, num_workers=2, n=4)
    resumed = _batches(dataset, num_workers=0, start=6, n=2)  # two batches of 3 already consumed
    for key in ("collated_global_crops", "collated_local_crops"):
        for a, b in zip(serial, parallel):
            assert torch.equal(a[key], b[key])
        for a, b in zip(serial[2:], resumed):
            assert torch.equal(a[key], b[key])
    assert not torch.equal(serial[0]["collated_global_crops"], serial[1]["collated_global_crops"])
