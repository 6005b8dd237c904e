"""The linear-probe library: the DINOv2 head grid trained on frozen features, with honest head selection.

A grid of linear heads (n_last_blocks x avgpool x learning rates scaled by batch/256) is trained together with
SGD (momentum 0.9, cosine schedule, no weight decay), either on cached features (:func:`cached_epochs`) or on
features re-extracted from augmented images every epoch (:func:`augmented_epochs`). The head is selected on a
seeded, stratified held-out part of the training set and scored once on val (``final``); the best head over
the grid on val is reported too, as ``best_on_val``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dinov2.eval.features import FeatureSet, ImageListDataset, block_features, make_loader
from dinov2.eval.linear_heads import GridTrainer, LinearHeadGrid, grid_accuracies, head_grid, scale_learning_rate
from utils.embedded_mnist import stratified_split
from utils.seeding import stable_seed, torch_generator, torch_seed

# cached fit features below this size move to the GPU once, instead of being copied there every step
CACHE_ON_DEVICE_BYTES = 8 * 1024**3


@dataclass
class ProbeSettings:
    """Everything that defines a linear-probe run (written into the result file)."""

    epochs: int = 10
    batch_size: int = 128
    base_learning_rates: tuple[float, ...] = ()
    n_last_blocks: tuple[int, ...] = (1, 4)
    avgpool_options: tuple[bool, ...] = (False, True)
    holdout_fraction: float = 0.1
    seed: int = 0
    world_size: int = 1


def check_holdout_fraction(fraction: float) -> None:
    """``ValueError`` naming --holdout-fraction unless it lies in [0, 1)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"--holdout-fraction must be in [0, 1), got {fraction}")


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): a seeded split with the same class proportions; no holdout at 0."""
    check_holdout_fraction(fraction)
    if fraction == 0:
        return np.arange(len(labels)), np.array([], dtype=np.int64)
    fit, held_out = stratified_split(np.asarray(labels), fraction, stable_seed("linear-probe-holdout", seed))
    if len(held_out) == 0:
        raise ValueError(f"--holdout-fraction {fraction} leaves no held-out image; use a larger fraction")
    return fit, held_out


def select_head(holdout_accuracies: dict[str, dict[str, float]], order: list[str]) -> str:
    """The head with the best held-out top-1 (then top-5; then the earlier one in grid order)."""
    return max(order, key=lambda name: (holdout_accuracies[name]["top1"], holdout_accuracies[name]["top5"],
                                        -order.index(name)))


def _batches(features: FeatureSet, batch_size: int, generator: torch.Generator):
    permutation = torch.randperm(len(features), generator=generator).to(features.labels.device)
    for start in range(0, len(features), batch_size):
        chosen = permutation[start:start + batch_size]
        yield features.class_tokens[chosen], features.patch_means[chosen], features.labels[chosen]


def train_grid(
    settings: ProbeSettings, embed_dim: int, num_classes: int, device: torch.device, num_train: int,
    epoch_batches: Callable[[int], object], progress: bool = True,
) -> LinearHeadGrid:
    """Train every head of the grid; ``epoch_batches(epoch)`` yields (class tokens, patch means, labels)."""
    scaled = [scale_learning_rate(lr, settings.batch_size, settings.world_size)
              for lr in settings.base_learning_rates]
    specs = head_grid(scaled, settings.n_last_blocks, settings.avgpool_options)
    torch.manual_seed(torch_seed("linear-probe-init", settings.seed))
    grid = LinearHeadGrid(specs, embed_dim, num_classes).to(device)
    iterations_per_epoch = -(-num_train // settings.batch_size)
    trainer = GridTrainer(grid, settings.epochs * iterations_per_epoch)
    bar = tqdm(total=trainer.total_iterations, desc="linear heads", unit="it", leave=False, disable=not progress)
    for epoch in range(settings.epochs):
        for cls, means, labels in epoch_batches(epoch):
            loss = trainer.step(cls.to(device, non_blocking=True), means.to(device, non_blocking=True),
                                labels.to(device, non_blocking=True))
            bar.update(1)
            bar.set_postfix(loss=f"{loss / len(specs):.3f}", refresh=False)
    bar.close()
    if trainer.iteration != trainer.total_iterations:
        raise RuntimeError(f"linear probe ran {trainer.iteration} of {trainer.total_iterations} iterations")
    return grid


def cached_epochs(features: FeatureSet, batch_size: int, seed: int) -> Callable[[int], object]:
    """Batches of cached features, reshuffled every epoch from (seed, epoch)."""
    def batches(epoch: int):
        generator = torch_generator("linear-probe-order", seed, epoch)
        return _batches(features, batch_size, generator)
    return batches


def augmented_epochs(
    backbone: nn.Module, dataset: ImageListDataset, batch_size: int, num_workers: int, n_blocks: int,
    device: torch.device, autocast_factory: Callable, seed: int,
) -> Callable[[int], object]:
    """Batches re-extracted every epoch from freshly augmented images (``dataset`` holds the augmentation)."""
    def batches(epoch: int):
        torch.manual_seed(torch_seed("linear-probe-augment", seed, epoch))
        generator = torch_generator("linear-probe-order", seed, epoch)
        for images, labels in make_loader(dataset, batch_size, num_workers, shuffle=True, generator=generator):
            cls, means = block_features(backbone, images.to(device, non_blocking=True), n_blocks, autocast_factory())
            yield cls, means, torch.as_tensor(labels, dtype=torch.int64)
    return batches


class ProbeDiverged(RuntimeError):
    """Every head of the grid ended with non-finite weights: no result can be reported."""


def summarise(grid: LinearHeadGrid, val: dict[str, dict[str, float]],
              holdout: Optional[dict[str, dict[str, float]]], diverged: Sequence[str] = ()) -> dict:
    """Per-head accuracies, the honestly selected head and its val score, and the best-on-val number; ``diverged``
    heads (non-finite weights) are reported as such and never selected."""
    order = [spec.name for spec in grid.specs if spec.name not in diverged]
    heads = {
        spec.name: {"n_last_blocks": spec.n_last_blocks, "avgpool": spec.avgpool, "lr": spec.lr,
                    "val": val[spec.name], **({"holdout": holdout[spec.name]} if holdout else {}),
                    **({"diverged": True} if spec.name in diverged else {})}
        for spec in grid.specs
    }
    if holdout:
        selected = select_head(holdout, order)
        selected_on = "holdout (a seeded, stratified part of the training set; val never seen)"
    else:
        selected = select_head(val, order)
        selected_on = "val (no holdout requested: this number is optimistic)"
    best = select_head(val, order)
    return {
        "heads": heads,
        "selected": {"name": selected, "selected_on": selected_on,
                     **({"holdout": holdout[selected]} if holdout else {})},
        "final": dict(val[selected]),
        "best_on_val": {"name": best, **val[best],
                        "label": "paper-compatible: best head of the grid chosen on val (optimistic)"},
    }


def run_linear_probe(
    settings: ProbeSettings, embed_dim: int, num_classes: int, device: torch.device,
    fit_features: Optional[FeatureSet], holdout_features: Optional[FeatureSet], val_features: FeatureSet,
    epoch_batches: Optional[Callable[[int], object]] = None, num_fit: Optional[int] = None, progress: bool = True,
) -> dict:
    """Train the grid (on ``fit_features``, or on ``epoch_batches`` in augment mode) and score it.

    The head is selected from ``holdout_features`` alone; val features are used only to score.
    """
    if epoch_batches is None:
        if fit_features is None:
            raise ValueError("run_linear_probe needs fit features or an epoch_batches source")
        if device.type == "cuda" and fit_features.nbytes() < CACHE_ON_DEVICE_BYTES:
            fit_features = fit_features.to(device)  # no host-to-device copy per step
        epoch_batches = cached_epochs(fit_features, settings.batch_size, settings.seed)
        num_fit = len(fit_features)
    start = time.perf_counter()
    grid = train_grid(settings, embed_dim, num_classes, device, int(num_fit), epoch_batches, progress)
    train_seconds = time.perf_counter() - start
    grid.eval()
    diverged = grid.diverged_heads()
    if len(diverged) == len(grid.specs):
        raise ProbeDiverged(f"every linear head diverged (non-finite weights; learning rates "
                            f"{settings.base_learning_rates}): lower --learning-rates")
    if diverged:
        warnings.warn(f"linear heads {', '.join(diverged)} diverged (non-finite weights): they are never selected")
    holdout = None
    if holdout_features is not None and len(holdout_features):
        holdout = grid_accuracies(grid, holdout_features.class_tokens, holdout_features.patch_means,
                                  holdout_features.labels, device)
    val = grid_accuracies(grid, val_features.class_tokens, val_features.patch_means, val_features.labels, device)
    return {**summarise(grid, val, holdout, diverged), "train_seconds": round(train_seconds, 3)}
