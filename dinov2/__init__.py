"""DINOv2 self-supervised pretraining (ViT backbones, DINO/iBOT/KoLeo losses, multi-crop data, training loop).

Sub-packages: ``configs`` (defaults and recipes), ``models``, ``layers``, ``loss``, ``data``, ``train``
(``python -m dinov2.train``), ``utils`` (config, schedules, checkpoints); ``dinov2.hub`` loads trained backbones.
"""

__version__ = "0.1.0"
