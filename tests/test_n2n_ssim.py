"""SSIM against scikit-image's Gaussian-window implementation (the MATLAB settings)."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from Neighbor2Neighbor.ssim import ssim


def test_ssim_matches_scikit_image_and_orders_noise_levels():
    rng = np.random.default_rng(0)
    clean = rng.random((40, 36, 3)).cumsum(axis=0) / 40  # smooth-ish structure
    clean = clean / clean.max()
    scores = []
    for sigma in (0.05, 0.2):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1)
        ours = ssim(torch.tensor(clean).permute(2, 0, 1)[None], torch.tensor(noisy).permute(2, 0, 1)[None]).item()
        reference = structural_similarity(clean, noisy, channel_axis=2, data_range=1.0, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False)
        assert ours == pytest.approx(reference, abs=1e-6)
        scores.append(ours)
    assert scores[0] > scores[1]
    same = torch.tensor(clean).permute(2, 0, 1)[None]
    assert ssim(same, same).item() == pytest.approx(1.0)
