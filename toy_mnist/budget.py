"""How many epochs each phase runs: the paper's epoch counts, or the same number of optimizer steps.

The paper trains on the 60,000 MNIST training images with batch 256 (235 steps per epoch). On a smaller training
set the same epoch count means far fewer optimizer steps; ``steps`` mode scales every phase's epochs by
paper steps per epoch / our steps per epoch, so each phase takes about as many steps as in the paper. On full
MNIST both modes give the paper's numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

PAPER_TRAIN_SIZE = 60_000
PAPER_BATCH_SIZE = 256
PAPER_EPOCHS = 50
PAPER_SWITCH_EPOCH = 30
PAPER_PROBE_EPOCHS = 50
BUDGET_MODES = ("steps", "epochs")


@dataclass(frozen=True)
class Budget:
    """Epochs actually run per phase, and the paper-scale epochs they stand for."""

    mode: str
    scale: float
    steps_per_epoch: int
    paper_steps_per_epoch: int
    pretrain_epochs: int
    switch_epoch: int
    probe_epochs: int
    requested: dict

    @property
    def curriculum_noisy_epochs(self) -> int:
        """Noisy epochs of the curriculum arm after the clean checkpoint (paper: 20)."""
        return self.pretrain_epochs - self.switch_epoch

    def to_dict(self) -> dict:
        return {**asdict(self), "curriculum_noisy_epochs": self.curriculum_noisy_epochs,
                "pretrain_steps": self.pretrain_epochs * self.steps_per_epoch,
                "probe_steps": self.probe_epochs * self.steps_per_epoch}

    def describe(self) -> str:
        return (f"budget '{self.mode}' (x{self.scale:.3g}): pre-training {self.pretrain_epochs} epochs, curriculum "
                f"switch after {self.switch_epoch} clean epochs then {self.curriculum_noisy_epochs} noisy, probe "
                f"{self.probe_epochs} epochs, {self.steps_per_epoch} steps per epoch "
                f"(paper-scale epochs {self.requested})")


def make_budget(
    mode: str,
    train_size: int,
    batch_size: int = PAPER_BATCH_SIZE,
    epochs: int = PAPER_EPOCHS,
    switch_epoch: int | None = None,
    probe_epochs: int = PAPER_PROBE_EPOCHS,
) -> Budget:
    """Turn paper-scale epoch counts into the epochs run on ``train_size`` images.

    ``switch_epoch`` defaults to the paper's proportion (30 of 50 epochs). Raises ``ValueError`` naming the
    offending option when a count is out of range.
    """
    if mode not in BUDGET_MODES:
        raise ValueError(f"--budget must be one of {BUDGET_MODES}, got {mode!r}")
    if train_size < 1 or batch_size < 1:
        raise ValueError(f"need a non-empty training set and a positive batch size ({train_size}, {batch_size})")
    if epochs < 1 or probe_epochs < 0:
        raise ValueError(f"--epochs must be >= 1 and --probe-epochs >= 0 (got {epochs}, {probe_epochs})")
    if switch_epoch is None:
        switch_epoch = max(1, round(epochs * PAPER_SWITCH_EPOCH / PAPER_EPOCHS))
    if not 1 <= switch_epoch < epochs:
        raise ValueError(f"--switch-epoch must be in [1, --epochs) = [1, {epochs}), got {switch_epoch}")
    steps_per_epoch = math.ceil(train_size / batch_size)
    paper_steps = math.ceil(PAPER_TRAIN_SIZE / PAPER_BATCH_SIZE)
    scale = paper_steps / steps_per_epoch if mode == "steps" else 1.0
    pretrain = max(2, round(epochs * scale))
    switch = min(pretrain - 1, max(1, round(switch_epoch * scale)))
    requested = {"epochs": epochs, "switch_epoch": switch_epoch, "probe_epochs": probe_epochs}
    return Budget(mode, scale, steps_per_epoch, paper_steps, pretrain, switch, round(probe_epochs * scale), requested)
