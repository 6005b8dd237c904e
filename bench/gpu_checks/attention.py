"""Which kernel serves the ViT's ``scaled_dot_product_attention``, read from the profiler's operator names."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from bench.gpu_checks.common import Settings, check_recipe
from bench.train_step import synchronize
from dinov2.models import build_model_from_cfg
from utils.device import autocast

# operator-name fragments, most specific first (the CPU flash operator's name contains the CUDA one's)
KERNELS = (
    ("_scaled_dot_product_flash_attention_for_cpu", "flash_cpu"),
    ("_scaled_dot_product_flash_attention", "flash"),
    ("_scaled_dot_product_cudnn_attention", "cudnn"),
    ("_scaled_dot_product_efficient_attention", "efficient"),
    ("_scaled_dot_product_attention_math", "math"),
)


def kernel_of(event_name: str) -> str | None:
    """The SDPA kernel family an operator name belongs to (``flash``, ``flash_cpu``, ``cudnn``, ``efficient``,
    ``math``), or None for other operators."""
    for fragment, kernel in KERNELS:
        if fragment in event_name:
            return kernel
    return None


def check_flash_attention(settings: Settings) -> dict[str, dict]:
    """Profile one forward and backward of the student backbone on global and local crops, as training runs it, in
    the mixed precision of training (bf16 autocast; on the smoke run too): ok when a flash kernel served the
    attention, in both directions (PyTorch's flash or cuDNN's on CUDA, ``_scaled_dot_product_flash_attention_for_cpu``
    on the CPU)."""
    cfg = check_recipe(settings)
    device, precision = settings.device, settings.low_precision
    backbone = build_model_from_cfg(cfg, only_teacher=True)[0].to(device).train()
    batch = cfg.train.batch_size_per_gpu
    crops = [torch.randn(2 * batch, 3, cfg.crops.global_crops_size, cfg.crops.global_crops_size, device=device),
             torch.randn(cfg.crops.local_crops_number * batch, 3, cfg.crops.local_crops_size,
                         cfg.crops.local_crops_size, device=device)]

    def forward_backward() -> None:
        with autocast(device, precision):
            outputs = backbone(crops, masks=[None, None], is_training=True)
        sum(out["x_norm_clstoken"].float().sum() for out in outputs).backward()
        synchronize(device)

    forward_backward()  # outside the profile: lazy initialisation and kernel selection
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        forward_backward()
    operators = sorted({event.name for event in prof.events() if kernel_of(event.name)})
    forward = sorted({kernel_of(name) for name in operators if "backward" not in name})
    backward = sorted({kernel_of(name) for name in operators if "backward" in name})
    # cuDNN's fused attention is a flash-attention kernel too (PyTorch may prefer it on Hopper GPUs)
    wanted = ({"flash"}, {"cudnn"}) if device.type == "cuda" else ({"flash_cpu"},)
    return {"flash_attention": {
        "ok": any(set(forward) == kernels and set(backward) == kernels for kernels in wanted), "precision": precision,
        "head_dim": backbone.blocks[0].attn.head_dim, "forward_kernels": forward, "backward_kernels": backward,
        "operators": operators,
    }}
