"""ResNet backbones (SimCLR, SimSiam, and DINO as in its paper's ResNet-50 runs): torchvision's ResNet without its
classifier.

The module keeps torchvision's parameter names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so its weights load
into ``torchvision.models.resnet50()`` (less ``fc``) and back. It answers the probes' feature interface
(:meth:`ResNetBackbone.get_intermediate_layers`) with one "block": the last stage, whose global average pool
plays the class token and whose spatial positions play the patch tokens.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn
from torchvision import models

from dinov2.utils.choices import RESNET_ARCHS, RESNET_STEMS

RESNET_FACTORIES = {name: getattr(models, name) for name in RESNET_ARCHS}  # torchvision's builders


class ResNetBackbone(nn.Module):
    """``x [B, 3, H, W] -> pooled features [B, embed_dim]``.

    ``stem="imagenet"`` is torchvision's 7x7 stride-2 convolution and max pool (output stride 32);
    ``stem="cifar"`` is the 3x3 stride-1 convolution without max pool used for 32-pixel images (output stride 8).
    """

    n_blocks = 1  # the probes read one feature layer

    def __init__(self, arch: str = "resnet50", stem: str = "imagenet", zero_init_residual: bool = True,
                 in_chans: int = 3) -> None:
        super().__init__()
        if arch not in RESNET_FACTORIES:
            raise ValueError(f"student.arch: unknown ResNet {arch!r}; expected one of {sorted(RESNET_FACTORIES)}")
        if stem not in RESNET_STEMS:
            raise ValueError(f"student.resnet_stem: expected one of {RESNET_STEMS}, got {stem!r}")
        # zero-initialised last BN of each residual branch: SimCLR's and SimSiam's ResNet-50 setting
        net = RESNET_FACTORIES[arch](weights=None, zero_init_residual=zero_init_residual)
        if stem == "cifar":
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_chans != 3:
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.arch, self.stem = arch, stem
        self.embed_dim = int(net.fc.in_features)
        # the output stride; the probes check crops against it as they do against a ViT's patch size
        self.patch_size = 8 if stem == "cifar" else 32

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output ``[B, embed_dim, H / stride, W / stride]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(
        self,
        x: Union[torch.Tensor, list[torch.Tensor]],
        masks: Union[None, torch.Tensor, list] = None,
        is_training: bool = False,
    ) -> Union[torch.Tensor, dict, list[dict]]:
        """Pooled features ``[B, embed_dim]``; with ``is_training`` the ViT's training outputs, for the DINO loss:
        ``{"x_norm_clstoken": pooled, "x_norm_patchtokens": [B, h*w, C]}``, one dict per tensor of a list (crops of
        different sizes). ``masks`` may only mask nothing: a ResNet has no tokens to mask (iBOT needs a ViT)."""
        if isinstance(x, list):
            crop_masks = masks if isinstance(masks, list) else [masks] * len(x)
            return [self.forward(crops, mask, is_training) for crops, mask in zip(x, crop_masks)]
        if isinstance(masks, torch.Tensor) and bool(masks.any()):
            raise ValueError("a ResNet backbone takes no iBOT masks (ibot.loss_weight must be 0)")
        feature_map = self.forward_feature_map(x)
        pooled = feature_map.mean(dim=(2, 3))
        if not is_training:
            return pooled
        return {"x_norm_clstoken": pooled, "x_norm_patchtokens": feature_map.flatten(2).transpose(1, 2)}

    def get_intermediate_layers(
        self, x: torch.Tensor, n: Union[int, Sequence[int]] = 1, reshape: bool = False,
        return_class_token: bool = False, norm: bool = True,
    ) -> tuple:
        """The ViT interface with one layer: ``((tokens [B, h*w, C], pooled [B, C]),)`` (``reshape``: the map
        ``[B, C, h, w]`` instead of tokens); ``norm`` is accepted for symmetry (the stage ends in BatchNorm + ReLU)."""
        wanted = [n] if isinstance(n, int) else list(n)
        if wanted not in ([1], [0], [-1]):
            raise ValueError(f"a ResNet backbone has one feature layer; got n={n!r} (use --n-last-blocks 1)")
        feature_map = self.forward_feature_map(x)
        tokens = feature_map if reshape else feature_map.flatten(2).transpose(1, 2)
        pooled = feature_map.mean(dim=(2, 3))
        return ((tokens, pooled),) if return_class_token else (tokens,)
