"""train.activation_checkpointing: a ViT student that recomputes its blocks in the backward pass computes the same
losses and gradients (stochastic depth included: RNG states are replayed) and keeps far fewer activations."""

import torch
from torch.autograd.graph import saved_tensors_hooks

from dinov2.models import build_model_from_cfg
from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.utils.config import CONFIGS_DIR, load_config
from tests.test_dinov2_train_meta_arch import _batch as meta_arch_batch

SMOKE = CONFIGS_DIR / "train" / "smoke_cpu.yaml"


def saved_bytes_and_grads(checkpointing: bool) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes of the tensors autograd keeps for backward during one forward of a ViT-S block stack, and the
    gradients after backward."""
    cfg = load_config(SMOKE, ["student.arch=vit_small", "student.drop_path_rate=0.3", "crops.global_crops_size=32",
                              "student.patch_size=8", f"train.activation_checkpointing={checkpointing}"])
    torch.manual_seed(0)
    student, _, _ = build_model_from_cfg(cfg)
    assert student.activation_checkpointing is checkpointing
    images = torch.randn(4, 3, 32, 32)
    saved = []

    def keep(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    torch.manual_seed(1)
    with saved_tensors_hooks(keep, lambda tensor: tensor):
        tokens = student(images, is_training=True)["x_norm_clstoken"]
    tokens.square().sum().backward()
    return sum(saved), {name: p.grad for name, p in student.named_parameters() if p.grad is not None}


def test_the_same_gradients_with_a_fraction_of_the_activations():
    plain_bytes, plain = saved_bytes_and_grads(False)
    checkpointed_bytes, checkpointed = saved_bytes_and_grads(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], rtol=1e-5, atol=1e-7), name
    assert checkpointed_bytes < plain_bytes / 4  # 12 blocks: one input kept per block instead of every activation


def test_the_key_reaches_the_student_only_and_changes_no_loss():
    losses = []
    for checkpointing in (False, True):
        cfg = load_config(SMOKE, [f"train.activation_checkpointing={checkpointing}", "student.drop_path_rate=0.2"])
        torch.manual_seed(0)
        model = SSLMetaArch(cfg)
        assert model.student["backbone"].activation_checkpointing is checkpointing
        assert model.teacher["backbone"].activation_checkpointing is False
        batch = meta_arch_batch(cfg, seed=2)
        torch.manual_seed(3)
        losses.append({k: float(v.detach()) for k, v in model.compute_losses(batch, teacher_temp=0.04).items()})
    assert losses[0] == losses[1]
