"""The training-health alarm: two verdicts read from the metrics records of a run, kept apart.

- ``dino_targets_uniform``: the DINO targets' entropy sits within a margin of ln(prototypes) for several logged
  iterations in a row. DINO's class-token term then teaches nothing, but KoLeo and iBOT may still teach, so this is
  a warning only.
- ``representation_collapsed``: the effective rank of the class tokens is near 1, or online k-NN is at chance, for
  ``collapse_patience`` health checks in a row. With ``train.stop_on_collapse`` the run ends there.

The alarm is a pure function of the record sequence: a resumed run replays the records it kept, so its streaks
and the verdicts already raised continue where they were. Nothing is raised before the warm-up ends (targets
are near uniform and a LayerScale ViT's class tokens identical at initialisation, by design).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import DictConfig

from dinov2.train.health_signals import uniform_entropy

UNIFORM_TARGETS = "dino_targets_uniform"
COLLAPSED = "representation_collapsed"


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds of the alarm (``evaluation.health``), with what the run supplies: ``n_prototypes`` of the DINO
    head (None: no DINO targets) and ``n_classes`` of the online k-NN set (None: no k-NN)."""

    warmup_iterations: int
    entropy_margin: float
    entropy_patience: int
    collapsed_rank: float
    chance_factor: float
    collapse_patience: int
    n_prototypes: Optional[int] = None
    n_classes: Optional[int] = None

    @classmethod
    def from_config(cls, cfg: DictConfig, n_prototypes: Optional[int], n_classes: Optional[int]) -> "AlarmSettings":
        """The settings of ``cfg.evaluation.health``; warm-up -1 is the learning-rate warm-up's iterations."""
        health = cfg.evaluation.health
        warmup = int(health.warmup_iterations)
        if warmup < 0:
            warmup = int(round(cfg.optim.warmup_epochs * cfg.train.OFFICIAL_EPOCH_LENGTH))
        return cls(warmup, float(health.entropy_margin), int(health.entropy_patience), float(health.collapsed_rank),
                   float(health.chance_factor), int(health.collapse_patience), n_prototypes, n_classes)

    @property
    def uniform_entropy(self) -> Optional[float]:
        return uniform_entropy(self.n_prototypes) if self.n_prototypes else None

    @property
    def chance_top1(self) -> Optional[float]:
        """Top-1 (%) of a guess among the k-NN set's classes."""
        return 100.0 / self.n_classes if self.n_classes else None


class HealthAlarm:
    """Feed it every metrics record in order (:meth:`observe`); it returns the verdicts raised at that record,
    each ``{"verdict": name, "message": text}``, at most once per run each."""

    def __init__(self, settings: AlarmSettings) -> None:
        self.settings = settings
        self.entropy_streak: list[int] = []  # iterations of the current run of near-uniform targets
        self.collapse_streak = 0
        self.raised: set[str] = set()

    def observe(self, record: dict[str, Any]) -> list[dict[str, str]]:
        """The verdicts raised at ``record`` (empty before the warm-up ends and when all is well)."""
        iteration = int(record["iteration"])
        if iteration < self.settings.warmup_iterations:
            return []
        verdicts = [self._targets_verdict(iteration, record.get("dino_target_entropy")),
                    self._collapse_verdict(iteration, record)]
        return [verdict for verdict in verdicts if verdict is not None]

    def _raise(self, verdict: str, message: str) -> Optional[dict[str, str]]:
        if verdict in self.raised:
            return None
        self.raised.add(verdict)
        return {"verdict": verdict, "message": message}

    def _targets_verdict(self, iteration: int, entropy: Optional[float]) -> Optional[dict[str, str]]:
        uniform, s = self.settings.uniform_entropy, self.settings
        if entropy is None or uniform is None:
            return None
        if entropy < (1.0 - s.entropy_margin) * uniform:
            self.entropy_streak = []
            return None
        self.entropy_streak.append(iteration)
        if len(self.entropy_streak) < s.entropy_patience:
            return None
        return self._raise(UNIFORM_TARGETS, (
            f"DINO targets uniform from iteration {self.entropy_streak[0]}: target entropy {entropy:.3f} nats, "
            f"within {s.entropy_margin:.0%} of ln({s.n_prototypes}) = {uniform:.3f} at {len(self.entropy_streak)} "
            "logged iterations in a row; the DINO class-token term teaches nothing now (KoLeo and iBOT may still "
            "teach: watch effective_rank and online_knn)"))

    def _collapse_verdict(self, iteration: int, record: dict[str, Any]) -> Optional[dict[str, str]]:
        s = self.settings
        rank, knn = record.get("effective_rank"), record.get("online_knn")
        if rank is None and knn is None:
            return None  # not a health check
        reasons = []
        if rank is not None and rank <= s.collapsed_rank:
            reasons.append(f"effective rank {rank:.3f} <= {s.collapsed_rank} (1: every image gets the same class "
                           "token)")
        chance = s.chance_top1
        if knn is not None and chance is not None and knn <= s.chance_factor * chance:
            reasons.append(f"online k-NN top-1 {knn:.1f} % <= {s.chance_factor} x chance ({chance:.1f} %)")
        self.collapse_streak = self.collapse_streak + 1 if reasons else 0
        if self.collapse_streak < s.collapse_patience:
            return None
        return self._raise(COLLAPSED, f"representation collapsed at iteration {iteration}: " + "; ".join(reasons))
