"""Multi-crop and paired augmentations, iBOT block masking and the collate function."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from dinov2.data import (
    CropRecipe,
    DataAugmentationDINO,
    MaskingGenerator,
    PairedDataAugmentationDINO,
    collate_data_and_cast,
)

SCALES = {"global_crops_scale": (0.32, 1.0), "local_crops_scale": (0.05, 0.32)}


def _image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _aug(cls=DataAugmentationDINO, **kwargs):
    settings = dict(SCALES, local_crops_number=3, global_crops_size=32, local_crops_size=16)
    settings.update(kwargs)
    return cls(**settings)


def _blur_and_solarize_rates(recipe: CropRecipe, n: int = 300) -> tuple[float, float]:
    torch.manual_seed(0)
    draws = [recipe.draw(_image()) for _ in range(n)]
    return (sum(d.blur_sigma is not None for d in draws) / n, sum(d.solarize for d in draws) / n)


def test_output_keys_shapes_and_normalisation():
    torch.manual_seed(0)
    out = _aug()(_image())
    assert set(out) == {"global_crops", "global_crops_teacher", "local_crops", "offsets"}
    assert [t.shape for t in out["global_crops"]] == [(3, 32, 32)] * 2
    assert [t.shape for t in out["local_crops"]] == [(3, 16, 16)] * 3
    assert out["global_crops_teacher"] is out["global_crops"]
    assert out["global_crops"][0].min() < 0 < out["global_crops"][0].max()  # ImageNet-normalised, not [0, 1]


def test_upstream_blur_mode_is_inverted_and_literal_is_documented():
    upstream, literal = _aug(), _aug(blur_mode="literal")
    blur_1, solarize_1 = _blur_and_solarize_rates(upstream.global_crop_1)
    blur_2, solarize_2 = _blur_and_solarize_rates(upstream.global_crop_2)
    blur_local, _ = _blur_and_solarize_rates(upstream.local_crop)
    assert blur_1 == 0.0 and 0.84 < blur_2 < 0.96 and 0.4 < blur_local < 0.6
    assert solarize_1 == 0.0 and 0.13 < solarize_2 < 0.27
    assert _blur_and_solarize_rates(literal.global_crop_1)[0] == 1.0
    assert 0.04 < _blur_and_solarize_rates(literal.global_crop_2)[0] < 0.16
    with pytest.raises(ValueError, match="crops.blur_mode"):
        _aug(blur_mode="inverted")


def test_blur_changes_pixels_and_sigma_range():
    recipe = CropRecipe(32, (1.0, 1.0), blur_probability=1.0)
    torch.manual_seed(3)
    draw = recipe.draw(_image())
    assert 0.1 <= draw.blur_sigma <= 2.0
    sharp = recipe.apply(_image(), draw.__class__(**{**draw.__dict__, "blur_sigma": None}))
    blurred = recipe.apply(_image(), draw)
    assert blurred.std() < sharp.std()  # blur removes the high-frequency noise


def test_blur_matches_torchvision_gaussian_blur():
    from torchvision.transforms import functional as TF

    from dinov2.data.crops import gaussian_blur

    for size, sigma in (((32, 32), 0.1), ((20, 16), 0.8), ((64, 48), 2.0)):
        image = _image(1, size)
        ours = np.asarray(gaussian_blur(image, sigma), dtype=int)
        reference = np.asarray(TF.gaussian_blur(image, [9, 9], [sigma, sigma]), dtype=int)
        assert np.abs(ours - reference).max() <= 1
        assert (ours != reference).mean() < 1e-3
    assert np.abs(np.asarray(gaussian_blur(_image(1), 2.0), dtype=int) - np.asarray(_image(1), dtype=int)).max() > 20


def test_same_seed_same_crops_different_seed_different_crops():
    aug = _aug()
    torch.manual_seed(11)
    first = aug(_image())
    torch.manual_seed(11)
    again = aug(_image())
    torch.manual_seed(12)
    other = aug(_image())
    for a, b in zip(first["global_crops"] + first["local_crops"], again["global_crops"] + again["local_crops"]):
        assert torch.equal(a, b)
    assert not torch.equal(first["global_crops"][0], other["global_crops"][0])


def test_paired_same_image_twice_gives_identical_crops():
    image = _image(5)
    torch.manual_seed(0)
    out = _aug(PairedDataAugmentationDINO)((image, image.copy()))
    assert set(out) >= {"global_crops", "global_crops_denoised", "local_crops"}
    for noisy, denoised in zip(out["global_crops"], out["global_crops_denoised"]):
        assert torch.equal(noisy, denoised)
    assert len(out["local_crops"]) == 3


def test_paired_different_images_share_every_draw(monkeypatch):
    applied: list[tuple[int, object]] = []
    original = CropRecipe.apply

    def recording_apply(self, image, draw):
        applied.append((id(image), draw))
        return original(self, image, draw)

    monkeypatch.setattr(CropRecipe, "apply", recording_apply)
    noisy, denoised = _image(1), _image(2)
    for seed in range(5):
        applied.clear()
        torch.manual_seed(seed)
        _aug(PairedDataAugmentationDINO)((noisy, denoised))
        # global crop 1 (noisy, denoised), global crop 2 (noisy, denoised), then 3 local crops of the noisy image
        assert [i for i, _ in applied] == [id(noisy), id(denoised)] * 2 + [id(noisy)] * 3
        assert applied[0][1] == applied[1][1] and applied[2][1] == applied[3][1]
        assert applied[0][1] != applied[2][1]


def test_paired_matches_unpaired_under_the_same_seed_and_blur_mode():
    image = _image(7)
    torch.manual_seed(4)
    single = _aug(blur_mode="literal")(image)
    torch.manual_seed(4)
    paired = _aug(PairedDataAugmentationDINO)((image, _image(8)))
    for a, b in zip(single["global_crops"] + single["local_crops"], paired["global_crops"] + paired["local_crops"]):
        assert torch.equal(a, b)


def test_paired_rejects_misaligned_images():
    with pytest.raises(ValueError, match="same size"):
        _aug(PairedDataAugmentationDINO)((_image(0, (48, 40)), _image(0, (40, 48))))
    with pytest.raises(TypeError, match="pair"):
        _aug(PairedDataAugmentationDINO)(_image())


def test_masking_generator_ratios_and_reproducibility():
    generator = MaskingGenerator((8, 8), max_num_patches=32)
    assert not generator(0).any()
    for fraction in (0.1, 0.3, 0.5):
        wanted = int(64 * fraction)
        counts = [int(generator(wanted, rng=random.Random(s)).sum()) for s in range(40)]
        assert max(counts) <= wanted
        assert np.mean(counts) >= 0.75 * wanted
    first = generator(20, rng=random.Random(9))
    assert first.shape == (8, 8) and first.dtype == bool
    assert np.array_equal(first, generator(20, rng=random.Random(9)))
    assert not all(np.array_equal(first, generator(20, rng=random.Random(s))) for s in range(10, 15))
    capped = MaskingGenerator((8, 8), max_num_patches=6)
    assert capped(40, rng=random.Random(0)).sum() <= 40


def _samples(n: int, denoised: bool = False) -> list[tuple[dict, int]]:
    samples = []
    for b in range(n):
        crops = {"global_crops": [torch.full((3, 32, 32), 10.0 * b + i) for i in range(2)],
                 "local_crops": [torch.full((3, 16, 16), 100.0 + 10 * b + i) for i in range(3)]}
        if denoised:
            crops["global_crops_denoised"] = [torch.full((3, 32, 32), -10.0 * b - i) for i in range(2)]
        samples.append((crops, b))
    return samples


def test_collate_stacks_crop_major_and_draws_consistent_masks():
    n_images, n_tokens = 6, 16
    generator = MaskingGenerator((4, 4), max_num_patches=8)
    batch = collate_data_and_cast(_samples(n_images, denoised=True), (0.1, 0.5), 0.5, torch.float16, n_tokens,
                                  generator, generator=123)
    crops = batch["collated_global_crops"]
    assert crops.shape == (12, 3, 32, 32) and crops.dtype == torch.float16
    assert [crops[i * n_images + b, 0, 0, 0].item() for i in range(2) for b in range(n_images)] == \
        [10.0 * b + i for i in range(2) for b in range(n_images)]
    assert batch["collated_local_crops"].shape == (18, 3, 16, 16)
    assert batch["collated_local_crops"][2 * n_images + 1, 0, 0, 0].item() == 100 + 10 + 2
    assert torch.equal(batch["collated_global_crops_denoised"].float(), -crops.float())
    masks = batch["collated_masks"]
    assert masks.shape == (12, n_tokens) and masks.dtype == torch.bool
    assert int((masks.sum(1) > 0).sum()) <= 6  # mask_probability 0.5 of 12 crops
    assert int((masks.sum(1) > 0).sum()) >= 4
    assert batch["n_masked_patches"].tolist() == [int(masks.sum())]
    assert torch.equal(batch["mask_indices_list"], masks.flatten().nonzero().flatten())
    # each masked crop's weights sum to 1
    weight_sums = torch.zeros(12).index_add_(0, batch["mask_indices_list"] // n_tokens, batch["masks_weight"])
    assert torch.allclose(weight_sums[masks.any(1)], torch.ones(int(masks.any(1).sum())))
    bounds = torch.linspace(0.1, 0.5, 7).tolist()
    assert batch["upperbound"] == sum(int(n_tokens * b) for b in bounds[1:])
    assert int(masks.sum()) <= batch["upperbound"]


def test_collate_masks_follow_the_generator_seed():
    generator = MaskingGenerator((4, 4), max_num_patches=8)

    def masks(seed):
        return collate_data_and_cast(_samples(8), (0.1, 0.5), 0.5, torch.float32, 16, generator,
                                     generator=seed)["collated_masks"]

    assert torch.equal(masks(1), masks(1))
    assert not torch.equal(masks(1), masks(2))
    random.seed(5)
    from_global = collate_data_and_cast(_samples(8), (0.1, 0.5), 0.5, torch.float32, 16, generator)
    random.seed(5)
    assert torch.equal(from_global["collated_masks"],
                       collate_data_and_cast(_samples(8), (0.1, 0.5), 0.5, torch.float32, 16,
                                             generator)["collated_masks"])


def test_photometric_knobs_set_the_flip_jitter_and_blur_rates_without_shifting_the_other_draws():
    plain, still = _aug(), _aug(color_jitter_probability=0.0, hflip_probability=0.0, blur_mode="none")
    torch.manual_seed(0)
    plain_draws = [plain.global_crop_2.draw(_image()) for _ in range(200)]
    torch.manual_seed(0)
    still_draws = [still.global_crop_2.draw(_image()) for _ in range(200)]
    assert 0.4 < sum(d.flip for d in plain_draws) / 200 < 0.6 and 0.7 < sum(d.jitter is not None for d in plain_draws) / 200
    assert not any(d.flip or d.jitter or d.blur_sigma for d in still_draws)
    # every coin is still thrown: boxes and solarization are the same draws as with upstream's probabilities
    # (jitter factors are drawn only when jitter applies, so compare the draws up to the first jittered one)
    first_jitter = next(i for i, d in enumerate(plain_draws) if d.jitter is not None)
    assert [d.box for d in plain_draws[:first_jitter + 1]] == [d.box for d in still_draws[:first_jitter + 1]]
    with pytest.raises(ValueError, match="flip probability"):
        _aug(hflip_probability=1.5)
