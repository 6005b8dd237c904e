"""Zero-Shot Noise2Noise (Mansour & Heckel, CVPR 2023): a second self-supervised denoiser for the curriculum.

Its network is three convolutions that predict the noise (the denoised image is the input minus it), trained on
the two half-resolution images that two fixed diagonal 2x2 filters take from each noisy image: each half must
predict the other (residual term), and denoising then downsampling must agree with downsampling then denoising
(consistency term). The method fits one network per image; here one network is fitted on the noisy training
crops by ``train.py --objective zs_n2n`` (with its epochs, resume and validation), because per image it costs
``bench/zs_n2n_per_image.py``'s measured seconds for every image of the tree (see docs/curriculum.md, the
denoiser ablation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from Neighbor2Neighbor.loss import LossTerms

NEGATIVE_SLOPE = 0.2
ARCH = "zs_n2n"


class ZeroShotNet(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3 -> LeakyReLU -> conv1x1, predicting the noise; returns input minus it."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, features: int = 48) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"a residual denoiser keeps the channels: got {in_channels} in, {out_channels} out")
        self.in_channels, self.out_channels, self.features = in_channels, out_channels, features
        self.first = nn.Conv2d(in_channels, features, 3, padding=1)
        self.second = nn.Conv2d(features, features, 3, padding=1)
        self.last = nn.Conv2d(features, out_channels, 1)

    def config(self) -> dict[str, int | str]:
        """What is needed to rebuild the network (``weights.load_denoiser``)."""
        return {"arch": ARCH, "in_channels": self.in_channels, "out_channels": self.out_channels,
                "features": self.features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.leaky_relu(self.first(x), NEGATIVE_SLOPE)
        hidden = F.leaky_relu(self.second(hidden), NEGATIVE_SLOPE)
        return x - self.last(hidden)


def pair_downsample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two half-resolution images of an N x C x H x W batch (H, W even): the means of the anti-diagonal and
    of the diagonal pixel of every 2x2 block."""
    top_left, top_right = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    bottom_left, bottom_right = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (top_right + bottom_left) / 2, (top_left + bottom_right) / 2


def zs_n2n_loss(denoise, noisy: torch.Tensor) -> LossTerms:
    """Residual + consistency loss of ``denoise`` (any-size batch -> same size) on a noisy batch (even sides).

    residual = (|D1 y - f(D2 y)|^2 + |D2 y - f(D1 y)|^2) / 2 and consistency = (|f(D1 y) - D1 f(y)|^2 +
    |f(D2 y) - D2 f(y)|^2) / 2, as means over every value in float32; gradients flow through every f."""
    first, second = pair_downsample(noisy)
    denoised_first, denoised_second = denoise(first).float(), denoise(second).float()
    first, second = first.float(), second.float()
    residual = ((first - denoised_second).square().mean() + (second - denoised_first).square().mean()) / 2
    whole_first, whole_second = pair_downsample(denoise(noisy).float())
    consistency = ((denoised_first - whole_first).square().mean()
                   + (denoised_second - whole_second).square().mean()) / 2
    return LossTerms(residual + consistency, residual.detach(), consistency.detach())
