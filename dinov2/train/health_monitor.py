"""Training health during a run: the image sets it is measured on, the measurements, and the alarm's actions.

Every health period (``evaluation.health.period_iterations``) the evaluated encoder (the EMA teacher; the student
of contrastive methods) embeds a fixed seeded draw of training images and its effective rank is logged; every
evaluation period (and at the end) it also embeds a labelled held-out draw, scored by leave-one-out k-NN
(``online_knn``, and ``online_knn_clean`` on a clean tree). The values join the iteration's metrics record
(TensorBoard too); the alarm's verdicts are a ``health`` list in that record and a warning in ``log.txt``.

Images are read once, at the run's start, with the probes' evaluation transform at the global crop size, and
kept in memory in float16 (``N x C x S x S x 2`` bytes: 1.6 MB for 756 digits at 32 px, 230 MB at 224 px);
the measurement runs without gradients, in eval mode, and draws no random number, so training is unchanged.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from dinov2.eval.features import ImageListDataset, block_features
from dinov2.eval.transforms import make_eval_transform
from dinov2.train.curriculum import Phase
from dinov2.train.health_alarm import COLLAPSED, AlarmSettings, HealthAlarm
from dinov2.train.health_signals import effective_rank, leave_one_out_knn_top1
from dinov2.utils.choices import CONTRASTIVE_METHODS, evaluated_encoder
from dinov2.utils.config import ConfigError
from utils.dataset_index import DatasetError, load_split
from utils.device import autocast
from utils.seeding import torch_seed


class HealthWarning(UserWarning):
    """A verdict of the training-health alarm."""


class RepresentationCollapsed(RuntimeError):
    """The alarm found the representation collapsed and ``train.stop_on_collapse`` is set."""


@dataclass
class ImageSet:
    """Images ``[N, C, S, S]`` (float16, normalised) with labels (-1: unlabeled), and where they come from."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    source: str
    n_classes: int = 0

    def knn_k(self, k: int) -> int:
        """``k``, capped below the smallest class's count in the set: with 4 images of a class, 20 neighbours
        would outvote its 3 others whatever the features, and k-NN would read as chance."""
        counts = torch.bincount(self.labels[self.labels >= 0])
        smallest = int(counts[counts > 0].min()) if counts.numel() else 1
        return max(1, min(k, smallest - 1))


def draw_image_set(cfg: DictConfig, name: str, root: str, split: str, count: int, key: str,
                   labelled: bool) -> Optional[ImageSet]:
    """A seeded draw of ``count`` images of ``root/split`` (all of them when fewer): the same draw for every tree
    with the same listing, so a noisy tree and its clean copy give the same images. With ``labelled``, None when
    the tree has no labels; :class:`ConfigError` naming ``key`` when it has no such split."""
    try:
        index = load_split(root, split)
    except (DatasetError, KeyError, OSError) as error:
        raise ConfigError(f"config key '{key}': {root} has no readable '{split}' split ({error})") from None
    if labelled and not index.labelled:
        return None
    if len(index) < 2:
        raise ConfigError(f"config key '{key}': {root}/{split} holds {len(index)} image(s); health needs two or more")
    generator = torch.Generator().manual_seed(torch_seed(cfg.train.seed, "health", name))
    order = torch.randperm(len(index), generator=generator)[:count].tolist()
    samples = [index.samples[i] for i in order]
    channels = int(cfg.student.in_chans)
    dataset = ImageListDataset(root, samples, make_eval_transform(cfg.crops.global_crops_size, channels=channels),
                               channels=channels)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).half()
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageSet(name, images, labels, f"{len(samples)} images of {root}/{split}",
                    len(index.classes) if index.labelled else 0)


@torch.no_grad()
def class_tokens(backbone: nn.Module, images: torch.Tensor, device: torch.device, precision: str,
                 batch_size: int) -> torch.Tensor:
    """The backbone's final-norm class tokens ``[N, D]`` (float32, CPU) of ``images``, in eval mode (a BatchNorm
    backbone keeps its running statistics) and restored to its mode after."""
    was_training = backbone.training
    backbone.eval()
    try:
        chunks = [block_features(backbone, images[start:start + batch_size].to(device).float(), 1,
                                 autocast(device, precision))[0][:, -1].cpu()
                  for start in range(0, images.shape[0], batch_size)]
    finally:
        backbone.train(was_training)
    return torch.cat(chunks)


class HealthMonitor:
    """Measures a run's health at its due iterations and applies the alarm (rank 0 measures; every rank learns
    of a stop through ``broadcast``)."""

    def __init__(self, cfg: DictConfig, phases: list[Phase], total_iterations: int, is_main: bool,
                 broadcast: Callable[[Any], Any] = lambda obj: obj) -> None:
        self.cfg, self.is_main, self.broadcast = cfg, is_main, broadcast
        self.period = int(cfg.evaluation.health.period_iterations) or max(1, cfg.evaluation.eval_period_iterations // 4)
        self.total_iterations = total_iterations
        self.last_tree = phases[-1].dataset_path
        self.rank_set: Optional[ImageSet] = None
        self.knn_sets: list[ImageSet] = []
        self.alarm: Optional[HealthAlarm] = None
        self.seconds = 0.0  # spent reading the sets and measuring, logged as health_seconds (cumulative)

    def start(self, earlier_records: list[dict[str, Any]], log: Callable[[str], None]) -> None:
        """Read the image sets (rank 0) and replay the records a resumed run kept through the alarm; a set that
        cannot be read is a :class:`ConfigError` on every rank (a collective: every rank calls it)."""
        error = None
        if self.is_main:
            try:
                self._start_main(earlier_records, log)
            except ConfigError as exc:
                error = str(exc)
        error = self.broadcast(error)
        if error is not None:
            raise ConfigError(error)

    def _start_main(self, earlier_records: list[dict[str, Any]], log: Callable[[str], None]) -> None:
        started = time.perf_counter()
        cfg, knn = self.cfg, self.cfg.evaluation.online_knn
        if cfg.evaluation.health.rank_images > 0:
            self.rank_set = draw_image_set(cfg, "rank", self.last_tree, cfg.train.dataset_split,
                                           cfg.evaluation.health.rank_images, "train.dataset_path", labelled=False)
        if knn.images > 0:
            trees = [("online_knn", knn.dataset_path or self.last_tree, "evaluation.online_knn.dataset_path")]
            if knn.clean_dataset_path:
                trees.append(("online_knn_clean", knn.clean_dataset_path, "evaluation.online_knn.clean_dataset_path"))
            for name, root, key in trees:
                given = name != "online_knn" or bool(knn.dataset_path)  # the default tree may lack labels
                try:
                    image_set = draw_image_set(cfg, "online_knn", root, knn.split, knn.images, key, labelled=True)
                except ConfigError:
                    if given:
                        raise
                    image_set = None
                if image_set is None and given:
                    raise ConfigError(f"config key '{key}': {root} has no class folders, so no k-NN labels")
                if image_set is not None:
                    image_set.name = name
                    self.knn_sets.append(image_set)
            if not self.knn_sets:
                log(f"health: online k-NN off: {self.last_tree} has no labelled '{knn.split}' split (give "
                    "evaluation.online_knn.dataset_path)")
        if self.rank_set is not None:
            log(f"health: effective rank on {self.rank_set.source}")
        for image_set in self.knn_sets:
            k = image_set.knn_k(int(knn.k))
            log(f"health: {image_set.name} (leave-one-out, k = {k}"
                + (f", capped: its smallest class has {k + 1} images" if k < knn.k else "")
                + f") on {image_set.source}")
        prototypes = None if cfg.method.name in CONTRASTIVE_METHODS or cfg.dino.loss_weight == 0 \
            else int(cfg.dino.head_n_prototypes)
        n_classes = self.knn_sets[0].n_classes if self.knn_sets else None
        self.alarm = HealthAlarm(AlarmSettings.from_config(cfg, prototypes, n_classes))
        for record in earlier_records:
            self.alarm.observe(record)
        self.seconds = time.perf_counter() - started

    def rank_due(self, iteration: int) -> bool:
        done = iteration + 1
        return self.cfg.evaluation.health.rank_images > 0 and (done % self.period == 0
                                                                 or done == self.total_iterations)

    def knn_due(self, iteration: int) -> bool:
        done = iteration + 1
        return self.cfg.evaluation.online_knn.images > 0 and (
            done % self.cfg.evaluation.eval_period_iterations == 0 or done == self.total_iterations)

    def due(self, iteration: int) -> bool:
        """Whether ``iteration`` is measured (its record is then always written)."""
        return self.rank_due(iteration) or self.knn_due(iteration)

    def measure(self, iteration: int, model: nn.Module, device: torch.device, precision: str) -> dict[str, float]:
        """The health values of ``iteration`` (rank 0; empty elsewhere and when nothing is due)."""
        if not self.is_main:
            return {}
        started = time.perf_counter()
        backbone = getattr(model, evaluated_encoder(self.cfg.method.name))["backbone"]
        batch = 2 * int(self.cfg.train.batch_size_per_gpu)
        values: dict[str, float] = {}
        if self.rank_set is not None and self.rank_due(iteration):
            values["effective_rank"] = effective_rank(class_tokens(backbone, self.rank_set.images, device, precision,
                                                                   batch))
        knn = self.cfg.evaluation.online_knn
        for image_set in self.knn_sets if self.knn_due(iteration) else []:
            features = class_tokens(backbone, image_set.images, device, precision, batch)
            values[image_set.name] = leave_one_out_knn_top1(features, image_set.labels, image_set.knn_k(int(knn.k)),
                                                            float(knn.temperature), image_set.n_classes)
        self.seconds += time.perf_counter() - started
        return {**values, "health_seconds": self.seconds}

    def observe(self, record: dict[str, Any]) -> Optional[str]:
        """Apply the alarm to a logged record (rank 0): verdicts go into ``record["health"]`` and are warned;
        returns the stop message when the run must end (``train.stop_on_collapse``)."""
        if self.alarm is None:
            return None
        verdicts = self.alarm.observe(record)
        if verdicts:
            record["health"] = verdicts
        for verdict in verdicts:
            warnings.warn(verdict["message"], HealthWarning, stacklevel=2)
        stop = [v["message"] for v in verdicts if v["verdict"] == COLLAPSED and self.cfg.train.stop_on_collapse]
        return stop[0] if stop else None

    def stop_message(self, iteration: int, message: Optional[str]) -> Optional[str]:
        """Rank 0's stop message at a measured iteration, on every rank (a collective: every rank calls it at the
        iterations :meth:`due` names)."""
        return self.broadcast(message) if self.due(iteration) else message
