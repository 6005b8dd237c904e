"""Pretraining: :class:`SSLMetaArch` (student, EMA teacher, losses) and the training loop (``python -m dinov2.train``)."""

from dinov2.train.ssl_meta_arch import SSLMetaArch, StudentOutputs, TeacherTargets

__all__ = ["SSLMetaArch", "StudentOutputs", "TeacherTargets"]
