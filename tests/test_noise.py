"""The noise models: parsing, statistics against the formulas, quantisation and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.noise import (
    PAPER_NOISE_SETTINGS,
    NoiseSpec,
    add_noise,
    add_noise_torch,
    expand_noise_settings,
    noise_generator,
    noisy_image,
    parse_noise,
    quantize,
    sample_noisy,
)

FLAT = 0.4  # a flat grey value far enough from 0 and 1 for unclipped statistics
SHAPE = (256, 256, 3)


def test_parse_paper_settings():
    assert [parse_noise(s).family for s in PAPER_NOISE_SETTINGS] == ["gauss"] * 3 + ["shot"] * 3 + ["speckle"] * 3
    assert parse_noise("speckle0.4") == NoiseSpec("speckle", 0.4)
    assert parse_noise("speckle1.0").canonical == parse_noise("speckle1").canonical == "speckle1"
    assert parse_noise("identity").family == "identity"
    assert parse_noise("pg10_5") == NoiseSpec("pg", 10, 5) and parse_noise("pg10.0_5.").canonical == "pg10_5"


@pytest.mark.parametrize("bad", ["gauss", "gaussian100", "shot0", "speckle-1", "100", "gauss1e3", "pg0_5", "pg10",
                                 "pg10_", "pg_5", "pg10_-5"])
def test_parse_rejects_bad_names_naming_them(bad):
    with pytest.raises(ValueError, match=bad):
        parse_noise(bad)


def test_all_expands_to_nine_without_duplicates():
    assert [spec.name for spec in expand_noise_settings(["all"])] == list(PAPER_NOISE_SETTINGS)
    assert expand_noise_settings(["gauss100", "all", "gauss100"])[0] == parse_noise("gauss100")
    assert len(expand_noise_settings(["gauss100", "all"])) == 9


@pytest.mark.parametrize(
    "spec, expected_var",
    [
        (NoiseSpec("gauss", 50), (50 / 255) ** 2),
        (NoiseSpec("gauss", 100), (100 / 255) ** 2),
        (NoiseSpec("shot", 10), FLAT / 10),
        (NoiseSpec("shot", 3), FLAT / 3),
        (NoiseSpec("speckle", 0.4), (FLAT * 0.4) ** 2),
        (NoiseSpec("speckle", 1.0), FLAT**2),
        (NoiseSpec("pg", 10, 20), FLAT / 10 + (20 / 255) ** 2),  # independent shot and read noise: variances add
        (NoiseSpec("pg", 3, 0), FLAT / 3),
    ],
)
def test_unclipped_statistics_match_formulas(spec, expected_var):
    x = np.full(SHAPE, FLAT, dtype=np.float32)
    y = sample_noisy(x, spec, np.random.default_rng(0), clip=False).astype(np.float64)
    n = y.size
    assert abs(y.mean() - FLAT) < 5 * np.sqrt(expected_var / n)  # unbiased for all three families
    assert y.var() == pytest.approx(expected_var, rel=0.02)


def test_noise_is_independent_across_channels_and_pixels():
    x = np.full(SHAPE, FLAT, dtype=np.float32)
    y = sample_noisy(x, NoiseSpec("gauss", 50), np.random.default_rng(1), clip=False) - FLAT
    r, g = y[..., 0].ravel(), y[..., 1].ravel()
    assert abs(np.corrcoef(r, g)[0, 1]) < 0.02
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1]) < 0.02


def test_clipping_keeps_range():
    x = np.random.default_rng(2).random(SHAPE, dtype=np.float32)
    for setting in (*PAPER_NOISE_SETTINGS, "pg3_50"):
        y = sample_noisy(x, parse_noise(setting), np.random.default_rng(3))
        assert y.min() >= 0.0 and y.max() <= 1.0


def test_quantize_truncates_by_default_and_rounds_on_request():
    y = np.array([0.0, 0.999 / 255, 1.6 / 255, 254.5 / 255, 1.0, 1.2, -0.1], dtype=np.float32)
    assert quantize(y).tolist() == [0, 0, 1, 254, 255, 255, 0]
    assert quantize(y, "round").tolist() == [0, 1, 2, 254, 255, 255, 0]  # 254.5 -> even
    with pytest.raises(ValueError, match="nearest"):
        quantize(y, "nearest")


def test_truncation_biases_by_half_a_level():
    image = np.full(SHAPE, 128, dtype=np.uint8)
    spec = NoiseSpec("gauss", 20)
    truncated = add_noise(image, spec, np.random.default_rng(4), "truncate").astype(np.float64)
    rounded = add_noise(image, spec, np.random.default_rng(4), "round").astype(np.float64)
    assert rounded.mean() - truncated.mean() == pytest.approx(0.5, abs=0.02)


def test_noisy_image_is_a_pure_function_of_seed_setting_and_path():
    image = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    first = noisy_image(image, parse_noise("gauss100"), 42, "train/a/x.JPEG")
    assert np.array_equal(first, noisy_image(image, parse_noise("gauss100"), 42, "train/a/x.JPEG"))
    assert np.array_equal(first, noisy_image(image, parse_noise("gauss100"), 42, "./train/a/x.JPEG"))
    assert not np.array_equal(first, noisy_image(image, parse_noise("gauss100"), 43, "train/a/x.JPEG"))
    assert not np.array_equal(first, noisy_image(image, parse_noise("gauss100"), 42, "train/a/y.JPEG"))
    assert not np.array_equal(first, noisy_image(image, parse_noise("gauss50"), 42, "train/a/x.JPEG"))
    # Drawing other images first does not change this one (no shared generator state).
    noise_generator(42, parse_noise("gauss100"), "train/a/y.JPEG").standard_normal(1000)
    assert np.array_equal(first, noisy_image(image, parse_noise("gauss100"), 42, "train/a/x.JPEG"))


def test_identity_returns_the_image():
    image = np.random.default_rng(6).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(noisy_image(image, parse_noise("identity"), 0, "a.png"), image)


def test_torch_noise_matches_statistics_and_generator():
    x = torch.full((64, 64, 3), FLAT)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    y1 = add_noise_torch(x, NoiseSpec("gauss", 102), g1, clip=False)
    y2 = add_noise_torch(x, NoiseSpec("gauss", 102), g2, clip=False)
    assert torch.equal(y1, y2)
    assert float(y1.std()) == pytest.approx(102 / 255, rel=0.05)
    shot = add_noise_torch(x, NoiseSpec("shot", 3), torch.Generator().manual_seed(1), clip=False)
    assert float(shot.mean()) == pytest.approx(FLAT, abs=0.01)
    assert float(shot.var()) == pytest.approx(FLAT / 3, rel=0.05)
    clipped = add_noise_torch(x, NoiseSpec("shot", 3), torch.Generator().manual_seed(1))
    assert float(clipped.min()) >= 0 and float(clipped.max()) <= 1
    sensor = add_noise_torch(x, NoiseSpec("pg", 3, 51), torch.Generator().manual_seed(1), clip=False)
    assert float(sensor.var()) == pytest.approx(FLAT / 3 + (51 / 255) ** 2, rel=0.05)
