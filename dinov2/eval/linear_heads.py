"""The DINOv2 linear-probe grid: n_last_blocks x avgpool x learning rates, trained together.

Heads that read the same input (same n_last_blocks and avgpool) are stacked into one weight ``[H, C, D_in]``
and applied as a single ``[H*C, D_in]`` matrix, so the 52 heads cost one matrix product per group and step. The
optimiser is SGD with momentum 0.9, no weight decay and a per-head learning rate following one cosine schedule to
0, written out explicitly (it updates every head exactly as ``torch.optim.SGD`` with that head's learning rate
would).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from utils import distributed

BASE_LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)
N_LAST_BLOCKS = (1, 4)
AVGPOOL_OPTIONS = (False, True)
MOMENTUM = 0.9


def scale_learning_rate(base_lr: float, batch_size: int, world_size: int = 1) -> float:
    """Upstream's linear scaling: ``lr * batch_size * world_size / 256``."""
    return base_lr * batch_size * world_size / 256.0


@dataclass(frozen=True)
class HeadSpec:
    """One linear head: which features it reads and its (scaled) learning rate."""

    n_last_blocks: int
    avgpool: bool
    lr: float

    @property
    def name(self) -> str:
        return f"classifier_{self.n_last_blocks}_blocks_avgpool_{self.avgpool}_lr_{self.lr:.6g}"


def head_grid(learning_rates: Sequence[float], n_last_blocks: Iterable[int] = N_LAST_BLOCKS,
              avgpool_options: Iterable[bool] = AVGPOOL_OPTIONS) -> list[HeadSpec]:
    """Every combination, in a fixed order (blocks, then avgpool, then learning rate)."""
    return [HeadSpec(n, pool, lr) for n in n_last_blocks for pool in avgpool_options for lr in learning_rates]


def linear_input(class_tokens: torch.Tensor, patch_means: torch.Tensor, n_last_blocks: int, avgpool: bool) -> torch.Tensor:
    """Concatenated class tokens of the last ``n`` blocks, plus the last block's mean patch token if avgpool."""
    if n_last_blocks > class_tokens.shape[1]:
        raise ValueError(f"a head reads {n_last_blocks} blocks but only {class_tokens.shape[1]} were extracted")
    x = class_tokens[:, -n_last_blocks:].flatten(1)
    return torch.cat([x, patch_means], dim=1) if avgpool else x


class LinearHeadGrid(nn.Module):
    """All heads of a grid; ``forward`` returns logits ``[num_heads, B, num_classes]`` in ``self.specs`` order."""

    def __init__(self, specs: Sequence[HeadSpec], embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.specs = list(specs)
        self.num_classes = num_classes
        self.groups: list[tuple[int, bool]] = sorted({(s.n_last_blocks, s.avgpool) for s in self.specs})
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.members: list[list[int]] = []
        for n_blocks, avgpool in self.groups:
            members = [i for i, s in enumerate(self.specs) if (s.n_last_blocks, s.avgpool) == (n_blocks, avgpool)]
            in_dim = embed_dim * (n_blocks + int(avgpool))
            weight = torch.empty(len(members), num_classes, in_dim)
            nn.init.normal_(weight, mean=0.0, std=0.01)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(len(members), num_classes)))
            self.members.append(members)
        order = [i for members in self.members for i in members]
        self.register_buffer("_to_spec_order", torch.argsort(torch.tensor(order)), persistent=False)
        self.register_buffer("_lrs", torch.tensor([self.specs[i].lr for i in order], dtype=torch.float32),
                             persistent=False)

    def head_parameters(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Head ``index`` (in ``self.specs`` order) as a plain linear layer: (weight ``[C, D_in]``, bias ``[C]``)."""
        for group, members in enumerate(self.members):
            if index in members:
                position = members.index(index)
                return self.weights[group][position], self.biases[group][position]
        raise IndexError(f"no head {index} in a grid of {len(self.specs)}")

    def diverged_heads(self) -> list[str]:
        """Names of the heads whose weights or bias hold a non-finite value (a learning rate too high)."""
        return [spec.name for index, spec in enumerate(self.specs)
                if not all(torch.isfinite(p).all() for p in self.head_parameters(index))]

    def group_logits(self, class_tokens: torch.Tensor,
                     patch_means: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per group: (its input ``[B, D_in]``, its logits ``[B, H, C]``), from one matrix product per group."""
        outputs = []
        for (n_blocks, avgpool), weight, bias in zip(self.groups, self.weights, self.biases):
            x = linear_input(class_tokens, patch_means, n_blocks, avgpool)
            heads, classes, in_dim = weight.shape
            logits = torch.addmm(bias.reshape(1, -1), x, weight.reshape(heads * classes, in_dim).t())
            outputs.append((x, logits.view(-1, heads, classes)))
        return outputs

    def forward(self, class_tokens: torch.Tensor, patch_means: torch.Tensor) -> torch.Tensor:
        logits = [group.transpose(0, 1) for _, group in self.group_logits(class_tokens, patch_means)]
        return torch.cat(logits)[self._to_spec_order]

    def group_lrs(self) -> list[torch.Tensor]:
        """Per-group learning-rate vectors aligned with ``self.weights``/``self.biases``."""
        return list(torch.split(self._lrs, [len(m) for m in self.members]))


class GridTrainer:
    """SGD (momentum 0.9, no weight decay) with per-head learning rates and a cosine schedule to 0."""

    def __init__(self, grid: LinearHeadGrid, total_iterations: int) -> None:
        if total_iterations <= 0:
            raise ValueError("the linear probe needs at least one iteration")
        self.grid = grid
        self.total_iterations = total_iterations
        self.iteration = 0
        self.momentum = [torch.zeros_like(p) for p in list(grid.weights) + list(grid.biases)]

    def schedule_factor(self) -> float:
        """Cosine annealing to 0 over all iterations (the factor applied at the current step)."""
        return 0.5 * (1.0 + math.cos(math.pi * self.iteration / self.total_iterations))

    @torch.no_grad()
    def step(self, class_tokens: torch.Tensor, patch_means: torch.Tensor, labels: torch.Tensor) -> float:
        """One SGD step of every head on a batch; returns the summed loss over heads (mean over the batch).

        The cross-entropy gradient is written in closed form (``softmax - onehot``), so a step is two matrix
        products per group and no autograd graph: the head grid is then a small part of a probe's time. Under
        torchrun the batch is this rank's share of the global batch: the gradient sums and sample counts are summed
        over ranks in one all-reduce, so every rank takes the step of the whole global batch and the heads stay
        identical.
        """
        factor = self.schedule_factor()
        gradients, loss_sum = [], torch.zeros((), device=labels.device)
        for x, logits in self.grid.group_logits(class_tokens, patch_means):
            batch, heads, classes = logits.shape
            log_probs = logits.log_softmax(dim=2)
            picked = log_probs.gather(2, labels.view(-1, 1, 1).expand(-1, heads, 1))
            loss_sum -= picked.sum()
            grad_logits = log_probs.exp_()
            grad_logits.scatter_add_(2, labels.view(-1, 1, 1).expand(-1, heads, 1),
                                     torch.full_like(picked, -1.0))
            gradients.append((grad_logits.view(batch, heads * classes).t() @ x).view(heads, classes, -1))
            gradients.append(grad_logits.sum(dim=0))
        count = float(labels.shape[0])
        if distributed.is_enabled():
            flat = torch.cat([*(g.flatten() for g in gradients), loss_sum.view(1),
                              torch.full((1,), count, device=labels.device)])
            distributed.all_reduce_sum(flat)
            sizes = [g.numel() for g in gradients]
            gradients = [part.view_as(g) for part, g in zip(flat[:sum(sizes)].split(sizes), gradients)]
            loss_sum, count = flat[-2], float(flat[-1])
        num_groups = len(self.grid.groups)
        for index, lr in enumerate(self.grid.group_lrs()):
            weight, bias = self.grid.weights[index], self.grid.biases[index]
            for parameter, grad, buffer in ((weight, gradients[2 * index], self.momentum[index]),
                                            (bias, gradients[2 * index + 1], self.momentum[num_groups + index])):
                buffer.mul_(MOMENTUM).add_(grad, alpha=1.0 / count)
                shape = (-1,) + (1,) * (parameter.dim() - 1)
                parameter.sub_(buffer * (lr * factor).view(shape))
        self.iteration += 1
        return float(loss_sum) / count  # one device sync per step


@torch.no_grad()
def grid_accuracies(grid: LinearHeadGrid, class_tokens: torch.Tensor, patch_means: torch.Tensor,
                    labels: torch.Tensor, device: torch.device, batch_size: int = 1024) -> dict[str, dict[str, float]]:
    """Top-1 and top-5 accuracy (%) of every head, micro-averaged over samples."""
    num_heads = len(grid.specs)
    top_k = min(5, grid.num_classes)
    correct1 = torch.zeros(num_heads, dtype=torch.int64)
    correct5 = torch.zeros(num_heads, dtype=torch.int64)
    for start in range(0, labels.shape[0], batch_size):
        cls = class_tokens[start:start + batch_size].to(device)
        means = patch_means[start:start + batch_size].to(device)
        target = labels[start:start + batch_size].to(device)
        logits = grid(cls, means)
        best = logits.topk(top_k, dim=2).indices
        hits = best == target.view(1, -1, 1)
        correct1 += hits[:, :, 0].sum(dim=1).cpu()
        correct5 += hits.any(dim=2).sum(dim=1).cpu()
    total = max(int(labels.shape[0]), 1)
    return {
        spec.name: {"top1": 100.0 * int(c1) / total, "top5": 100.0 * int(c5) / total}
        for spec, c1, c5 in zip(grid.specs, correct1, correct5)
    }
