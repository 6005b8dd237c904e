"""End to end on the embedded digits: train on noisy images only, denoise the val tree, beat the noisy PSNR."""

import pytest

from Neighbor2Neighbor import denoise as denoise_module
from Neighbor2Neighbor import train as train_module
from Neighbor2Neighbor.evaluate_psnr import evaluate
from utils.generate_noise import generate_noise
from utils.make_toy_dataset import build_toy_dataset


@pytest.mark.slow
def test_short_training_improves_psnr_over_the_noisy_input(tmp_path):
    clean = tmp_path / "digits"
    build_toy_dataset(clean, limit=20)  # 160 train / 40 val digits, 32 x 32
    generate_noise(clean, ["gauss50"], tmp_path / "noisy", workers=0, progress=False)
    noisy = tmp_path / "noisy-gauss50"
    run = tmp_path / "run"
    assert train_module.main([
        "--data-dir", str(noisy / "train"), "--output-dir", str(run), "--epochs", "6", "--batch-size", "8",
        "--patch-size", "32", "--lr", "3e-3", "--n-feature", "16", "--workers", "0", "--device", "cpu",
        "--no-progress",
    ]) == 0
    denoised = tmp_path / "denoised"
    assert denoise_module.main(["--weights", str(run / "last.pt"), "--src", str(noisy), "--dst", str(denoised),
                                "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    result = evaluate(clean / "val", noisy / "val", denoised / "val", blur_sigmas=(0.7, 1.0), progress=False)
    assert result["images"] == 40
    assert result["denoised_psnr"] > result["noisy_psnr"] + 1.0, result
