"""Self-supervised pre-training of the toy encoder on two augmented (optionally noisy) views per image."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable

import torch
from tqdm import tqdm

from toy_mnist.augment import augment_batch
from toy_mnist.loss import toy_ssl_loss
from toy_mnist.views import noise_spec, noisy_copy
from utils.atomic import atomic_torch_save
from utils.seeding import torch_generator

IMAGE_SIDE = 28


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; raised before the optimizer step and before any checkpoint."""


def checkpoint_path(directory: Path, arm: str, epoch: int) -> Path:
    """Where the encoder weights of ``arm`` after ``epoch`` epochs are saved."""
    return directory / f"{arm}_epoch{epoch}.pt"


def _views(images: torch.Tensor, noise_std: float | None, seed: int, arm: str, epoch: int) -> list[torch.Tensor]:
    if noise_std is None:
        return [images, images]
    spec = noise_spec(noise_std)
    return [noisy_copy(images, spec, seed, arm, "noise", epoch, view) for view in (0, 1)]


def pretrain(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    arm: str,
    noise_std: float | None,
    device: torch.device,
    batch_size: int = 256,
    lr: float = 1e-4,
    checkpoint_dir: Path | None = None,
    checkpoint_epochs: Iterable[int] = (),
    progress: bool = True,
) -> dict:
    """Train ``model`` in place with a fresh Adam for ``epochs`` epochs; return the per-epoch mean losses.

    ``images`` is the CPU train split [N, 784] in [0, 1]. With ``noise_std`` set, each view of each image gets its
    own Gaussian noise draw (per epoch) before augmentation; without it both views start from the clean image.
    After each epoch listed in ``checkpoint_epochs`` the weights go to ``checkpoint_path(checkpoint_dir, arm, e)``.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    saves = set(checkpoint_epochs)
    if saves and checkpoint_dir is None:
        raise ValueError("checkpoint_epochs needs a checkpoint_dir")
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    clean_on_device = images.to(device) if noise_std is None else None
    history: dict[str, list[float]] = {"loss": [], "invariance": [], "covariance": []}
    start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc=f"pretrain {arm}", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(len(images), generator=torch_generator(seed, arm, "order", epoch))
        augment_rng = torch_generator(seed, arm, "augment", epoch)
        views = [clean_on_device] * 2 if clean_on_device is not None else [
            v.to(device) for v in _views(images, noise_std, seed, arm, epoch)
        ]
        means = _train_epoch(model, optimizer, views, order, augment_rng, batch_size, arm, epoch)
        for name, value in zip(history, means):
            history[name].append(value)
        bar.set_postfix(loss=f"{means[0]:.4f}")
        if epoch in saves:
            atomic_torch_save(model.state_dict(), checkpoint_path(checkpoint_dir, arm, epoch))
    return {"epochs": epochs, "wall_s": time.perf_counter() - start, **history}


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, views: list[torch.Tensor],
                 order: torch.Tensor, augment_rng: torch.Generator, batch_size: int, arm: str,
                 epoch: int) -> list[float]:
    """One pass over ``order`` in batches; the mean (loss, invariance, covariance) of the epoch."""
    sums = torch.zeros(3, device=views[0].device)
    batches = 0
    for first in range(0, len(order), batch_size):
        index = order[first:first + batch_size].to(views[0].device)
        z = [model(augment_batch(v[index].view(-1, 1, IMAGE_SIDE, IMAGE_SIDE), augment_rng)) for v in views]
        terms = torch.stack(toy_ssl_loss(z[0], z[1]))
        # Checked before the step, so non-finite values never reach the weights or a checkpoint.
        _check_finite(terms.detach(), arm, epoch, batches)
        optimizer.zero_grad(set_to_none=True)
        terms[0].backward()
        optimizer.step()
        sums += terms.detach()
        batches += 1
    return (sums / max(batches, 1)).tolist()


def _check_finite(terms: torch.Tensor, arm: str, epoch: int, batch: int) -> None:
    if bool(torch.isfinite(terms).all()):
        return
    values = terms.tolist()
    bad = [f"{name}={value}" for name, value in zip(("loss", "invariance", "covariance"), values)
           if not math.isfinite(value)]
    raise NonFiniteLossError(f"{arm}: non-finite {', '.join(bad)} at epoch {epoch}, batch {batch}")
