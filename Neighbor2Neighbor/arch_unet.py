"""The U-Net that Neighbor2Neighbor trains (48 features, five poolings, input skip before the output stage).

The network keeps the spatial size, but its five 2x poolings need inputs whose height and width are
multiples of 32; :func:`Neighbor2Neighbor.padding.pad_to_multiple` pads any image to that shape.
"""

from __future__ import annotations

import torch
from torch import nn

NEGATIVE_SLOPE = 0.2
INIT_SCALE = 0.1
NUM_POOLINGS = 5
SIZE_MULTIPLE = 2**NUM_POOLINGS


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """A same-size convolution followed by LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
    )


def _up(channels: int) -> nn.ConvTranspose2d:
    """A learned 2x upsampling that keeps the channel count."""
    return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout the U-Net's convolutions run fastest in: channels-last on CUDA (tensor cores), else contiguous."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


class UNet(nn.Module):
    """Encoder of five conv+pool stages, decoder of five upsample+concat+conv stages.

    Decoder stages concatenate the matching encoder output; the last one concatenates the input image itself,
    then a 3x3 pair and three 1x1 convolutions map to ``out_channels`` with no final activation.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, features: int = 48) -> None:
        super().__init__()
        if min(in_channels, out_channels, features) < 1:
            raise ValueError(f"UNet needs positive channel counts, got {in_channels}, {out_channels}, {features}")
        f, wide = features, 2 * features
        self.in_channels, self.out_channels, self.features = in_channels, out_channels, features
        self.encoder = nn.ModuleList(
            [nn.Sequential(_conv(in_channels, f), _conv(f, f))] + [_conv(f, f) for _ in range(NUM_POOLINGS - 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _conv(f, f)
        # decoder stage i upsamples, concatenates the skip (f channels) and applies two 3x3 convolutions
        self.upsamples = nn.ModuleList([_up(f)] + [_up(wide) for _ in range(NUM_POOLINGS - 1)])
        self.decoder = nn.ModuleList(
            [nn.Sequential(_conv(2 * f, wide), _conv(wide, wide))]
            + [nn.Sequential(_conv(wide + f, wide), _conv(wide, wide)) for _ in range(NUM_POOLINGS - 2)]
        )
        self.output_stage = nn.Sequential(
            _conv(wide + in_channels, wide),
            _conv(wide, wide),
            _conv(wide, wide, kernel_size=1),
            _conv(wide, wide, kernel_size=1),
            nn.Conv2d(wide, out_channels, kernel_size=1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal weights scaled by 0.1 and zero biases, as in the Neighbor2Neighbor paper."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight)
                with torch.no_grad():
                    module.weight.mul_(INIT_SCALE)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def config(self) -> dict[str, int]:
        """What is needed to rebuild the network (``weights.load_denoiser``; no ``arch`` key: the default one)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "features": self.features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` (N x C x H x W, H and W multiples of 32); returns the same shape."""
        if x.shape[-2] % SIZE_MULTIPLE or x.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(
                f"UNet input height and width must be multiples of {SIZE_MULTIPLE}, got {tuple(x.shape[-2:])}; "
                "pad with Neighbor2Neighbor.padding.pad_to_multiple"
            )
        skips = [x]
        h = x
        for stage in self.encoder:
            h = self.pool(stage(h))
            skips.append(h)
        h = self.bottleneck(skips.pop())
        for upsample, stage in zip(self.upsamples, self.decoder):
            h = stage(torch.cat([upsample(h), skips.pop()], dim=1))
        h = torch.cat([self.upsamples[-1](h), skips.pop()], dim=1)
        return self.output_stage(h)
