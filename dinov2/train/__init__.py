"""Pretraining: :class:`SSLMetaArch` (student, EMA teacher, losses) and the training loop (``python -m dinov2.train``).

Names are imported on first use, so that ``python -m dinov2.train`` can reject a bad config before torch loads.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {"SSLMetaArch": "ssl_meta_arch", "StudentOutputs": "ssl_meta_arch", "TeacherTargets": "teacher_targets",
            "NCTMetaArch": "nct", "Trainer": "trainer"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"dinov2.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dinov2.train' has no attribute {name!r}")
