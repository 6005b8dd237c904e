"""The linear-probe library: the DINOv2 head grid trained on frozen features, with honest head selection.

A grid of linear heads (n_last_blocks x avgpool x learning rates scaled by batch/256) is trained together with
SGD (momentum 0.9, cosine schedule, no weight decay), either on cached features (:func:`cached_epochs`) or on
features re-extracted from augmented images every pass (:func:`augmented_epochs`). An epoch is one pass over the
fit images, or ``epoch_length`` iterations (upstream's meaning: the paper's 10 x 1,250). The head is selected on a
seeded, stratified held-out part of the training set (or on val when there is none) and scored on val
(``final``); the best head over the grid on val is reported too, as ``best_on_val``, and with ``eval_period`` the
best over the heads and the val evaluations made during training (the paper's number).
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset
from tqdm import tqdm

from dinov2.eval.features import FeatureSet, ImageListDataset, block_features, make_loader
from dinov2.eval.linear_heads import GridTrainer, LinearHeadGrid, grid_accuracies, head_grid, scale_learning_rate
from utils import distributed
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
    epoch_length: Optional[int] = None  # iterations per epoch; None: one pass over the fit images
    eval_period: Optional[int] = None  # score val every this many iterations (and at the end); None: at the end

    def total_iterations(self, num_fit: int) -> int:
        """SGD steps of the whole probe for ``num_fit`` training images."""
        per_epoch = self.epoch_length or -(-num_fit // (self.batch_size * self.world_size))
        return self.epochs * per_epoch


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


def rank_share(permutation: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's positions of a pass: the permutation wrapped to a multiple of ``world_size`` (as
    ``DistributedSampler`` pads), every ``world_size``-th from ``rank``. Batch ``k`` of ``B`` on every rank then
    covers positions ``[k*B*W, (k+1)*B*W)`` of the pass together: one process at batch ``B*W`` sees the same global
    batches when the images divide evenly."""
    if world_size == 1:
        return permutation
    padded = -(-len(permutation) // world_size) * world_size
    wrapped = permutation.repeat(-(-padded // max(len(permutation), 1)))[:padded]
    return wrapped[rank::world_size]


def _batches(features: FeatureSet, batch_size: int, generator: torch.Generator, rank: int, world_size: int):
    share = rank_share(torch.randperm(len(features), generator=generator), rank, world_size)
    share = share.to(features.labels.device)
    for start in range(0, len(share), batch_size):
        chosen = share[start:start + batch_size]
        yield features.class_tokens[chosen], features.patch_means[chosen], features.labels[chosen]


def _stream(epoch_batches: Callable[[int], object]) -> Iterator:
    """Batches of pass 0, then pass 1, ...: an epoch of ``epoch_length`` iterations may end inside a pass."""
    for data_pass in itertools.count():
        empty = True
        for batch in epoch_batches(data_pass):
            empty = False
            yield batch
        if empty:
            raise ValueError("the linear probe's training set yields no batch")


def train_grid(
    settings: ProbeSettings, embed_dim: int, num_classes: int, device: torch.device, num_train: int,
    epoch_batches: Callable[[int], object], progress: bool = True,
    on_eval: Optional[Callable[[int, LinearHeadGrid], None]] = None,
) -> LinearHeadGrid:
    """Train every head of the grid; ``epoch_batches(data_pass)`` yields (class tokens, patch means, labels).

    With ``settings.eval_period``, ``on_eval(iteration, grid)`` is called every that many iterations and after the
    last one.
    """
    if settings.world_size != distributed.world_size():
        raise ValueError(f"the probe's settings say {settings.world_size} ranks, the process group has "
                         f"{distributed.world_size()}")
    scaled = [scale_learning_rate(lr, settings.batch_size, settings.world_size)
              for lr in settings.base_learning_rates]
    specs = head_grid(scaled, settings.n_last_blocks, settings.avgpool_options)
    torch.manual_seed(torch_seed("linear-probe-init", settings.seed))
    grid = LinearHeadGrid(specs, embed_dim, num_classes).to(device)
    trainer = GridTrainer(grid, settings.total_iterations(num_train))
    bar = tqdm(total=trainer.total_iterations, desc="linear heads", unit="it", leave=False, disable=not progress)
    stream = _stream(epoch_batches)
    for cls, means, labels in itertools.islice(stream, trainer.total_iterations):
        loss = trainer.step(cls.to(device, non_blocking=True), means.to(device, non_blocking=True),
                            labels.to(device, non_blocking=True))
        bar.update(1)
        bar.set_postfix(loss=f"{loss / len(specs):.3f}", refresh=False)
        done = trainer.iteration == trainer.total_iterations
        if on_eval is not None and settings.eval_period and (trainer.iteration % settings.eval_period == 0 or done):
            on_eval(trainer.iteration, grid)
    stream.close()  # a pass cut short releases its loader now
    bar.close()
    if trainer.iteration != trainer.total_iterations:
        raise RuntimeError(f"linear probe ran {trainer.iteration} of {trainer.total_iterations} iterations")
    return grid


def cached_epochs(features: FeatureSet, batch_size: int, seed: int, rank: int = 0,
                  world_size: int = 1) -> Callable[[int], object]:
    """Batches of cached features (this rank's share), reshuffled every pass from (seed, pass)."""
    def batches(data_pass: int):
        generator = torch_generator("linear-probe-order", seed, data_pass)
        return _batches(features, batch_size, generator, rank, world_size)
    return batches


def augmented_epochs(
    backbone: nn.Module, dataset: ImageListDataset, batch_size: int, num_workers: int, n_blocks: int,
    device: torch.device, autocast_factory: Callable, seed: int, rank: int = 0, world_size: int = 1,
) -> Callable[[int], object]:
    """Batches re-extracted every pass from freshly augmented images (``dataset`` holds the augmentation): this
    rank's share of a permutation drawn from (seed, pass), the same on every rank."""
    def batches(data_pass: int):
        ranked = (rank,) if world_size > 1 else ()  # one process keeps the seeds it always had
        torch.manual_seed(torch_seed("linear-probe-augment", seed, data_pass, *ranked))
        generator = torch_generator("linear-probe-order", seed, data_pass)
        share = rank_share(torch.randperm(len(dataset), generator=generator), rank, world_size)
        for images, labels in make_loader(Subset(dataset, share.tolist()), batch_size, num_workers):
            cls, means = block_features(backbone, images.to(device, non_blocking=True), n_blocks, autocast_factory())
            yield cls, means, torch.as_tensor(labels, dtype=torch.int64)
    return batches


class ProbeDiverged(RuntimeError):
    """Every head of the grid ended with non-finite weights: no result can be reported."""


Accuracies = dict[str, dict[str, float]]  # {head name: {"top1": %, "top5": %}}


def best_over_curve(curve: Sequence[tuple[int, Accuracies]], order: list[str]) -> tuple[int, str]:
    """(iteration, head) of the best val top-1 (then top-5) over every evaluation and head of ``order``; ties go
    to the earlier evaluation, then the earlier head in grid order (:func:`select_head` within an evaluation)."""
    bests = [(iteration, select_head(accuracies, order), accuracies) for iteration, accuracies in curve]
    iteration, name, _ = max(bests, key=lambda best: (best[2][best[1]]["top1"], best[2][best[1]]["top5"]))
    return iteration, name


def summarise(grid: LinearHeadGrid, val: Accuracies, holdout: Optional[Accuracies], diverged: Sequence[str] = (),
              curve: Sequence[tuple[int, Accuracies]] = ()) -> dict:
    """Per-head accuracies, the honestly selected head and its val score, and the best-on-val number; ``diverged``
    heads (non-finite weights) are reported as such and never selected. With a ``curve`` of val evaluations made
    during training, ``best_on_val`` is the best over its evaluations and heads (the paper's protocol)."""
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
    summary = {
        "heads": heads,
        "selected": {"name": selected, "selected_on": selected_on,
                     **({"holdout": holdout[selected]} if holdout else {})},
        "final": dict(val[selected]),
    }
    if not curve:
        best = select_head(val, order)
        summary["best_on_val"] = {"name": best, **val[best],
                                  "label": "paper-compatible: best head of the grid chosen on val (optimistic)"}
        return summary
    iteration, best = best_over_curve(curve, order)
    summary["best_on_val"] = {"name": best, "iteration": iteration, **dict(curve)[iteration][best],
                              "label": "paper protocol: best head and val evaluation chosen on val (optimistic)"}
    summary["val_curve"] = [{"iteration": it, "name": (name := select_head(accuracies, order)), **accuracies[name]}
                            for it, accuracies in curve]
    return summary


def run_linear_probe(
    settings: ProbeSettings, embed_dim: int, num_classes: int, device: torch.device,
    fit_features: Optional[FeatureSet], holdout_features: Optional[FeatureSet], val_features: FeatureSet,
    epoch_batches: Optional[Callable[[int], object]] = None, num_fit: Optional[int] = None, progress: bool = True,
) -> dict:
    """Train the grid (on ``fit_features``, or on ``epoch_batches`` in augment mode) and score it.

    The head is selected from ``holdout_features`` alone; val features are used only to score (every
    ``settings.eval_period`` iterations when set: ``best_on_val`` is then the best over those evaluations).
    """
    if epoch_batches is None:
        if fit_features is None:
            raise ValueError("run_linear_probe needs fit features or an epoch_batches source")
        if device.type == "cuda" and fit_features.nbytes() < CACHE_ON_DEVICE_BYTES:
            fit_features = fit_features.to(device)  # no host-to-device copy per step
        epoch_batches = cached_epochs(fit_features, settings.batch_size, settings.seed, distributed.rank(),
                                      settings.world_size)
        num_fit = len(fit_features)
    curve: list[tuple[int, Accuracies]] = []

    def score_val(iteration: int, grid: LinearHeadGrid) -> None:
        curve.append((iteration, grid_accuracies(grid, val_features.class_tokens, val_features.patch_means,
                                                 val_features.labels, device)))

    start = time.perf_counter()
    grid = train_grid(settings, embed_dim, num_classes, device, int(num_fit), epoch_batches, progress, score_val)
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
    if curve:
        val = curve[-1][1]  # scored after the last iteration
    else:
        val = grid_accuracies(grid, val_features.class_tokens, val_features.patch_means, val_features.labels,
                              device)
    return {**summarise(grid, val, holdout, diverged, curve), "train_seconds": round(train_seconds, 3)}
