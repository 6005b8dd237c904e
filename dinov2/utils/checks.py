"""Cross-field checks of a training config, run before any output is written or any model is built."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dinov2.utils.choices import CONFIG_CHOICES, CONTRASTIVE_METHODS, RESNET_ARCHS
from dinov2.utils.config import ConfigError
from dinov2.utils.normalization import INPUT_CHANNELS
from utils.cli import check_outside
from utils.image_tree import ImageTree, TreeSpecError, open_tree

POSITIVE_INTS = (
    "train.batch_size_per_gpu",
    "train.OFFICIAL_EPOCH_LENGTH",
    "train.log_period",
    "train.checkpoint_period",
    "train.max_to_keep",
    "optim.epochs",
    "student.patch_size",
    "crops.global_crops_size",
    "evaluation.eval_period_iterations",
    "method.projection_hidden_dim",
    "method.projection_dim",
    "method.projection_layers",
    "method.prediction_hidden_dim",
    "evaluation.health.entropy_patience",
    "evaluation.health.collapse_patience",
    "evaluation.online_knn.k",
)
POSITIVE_FLOATS = (  # a zero or negative value would make the run meaningless (or divide by zero)
    "optim.base_lr",
    "teacher.teacher_temp",
    "teacher.warmup_teacher_temp",
    "optim.layerwise_decay",
    "method.temperature",
    "evaluation.health.collapsed_rank",
    "evaluation.health.chance_factor",
    "evaluation.online_knn.temperature",
)
NON_NEGATIVE = (
    "optim.patch_embed_lr_mult",  # 0 freezes the patch projection (MoCo v3)
    "optim.weight_decay",
    "optim.weight_decay_end",
    "optim.min_lr",
    "student.drop_path_rate",
    "train.num_workers",
    "train.stop_after_iterations",
    "optim.warmup_epochs",
    "optim.freeze_last_layer_epochs",
    "teacher.warmup_teacher_temp_epochs",
    "crops.local_crops_number",
    "optim.clip_grad",
    "dino.loss_weight",
    "dino.koleo_loss_weight",
    "ibot.loss_weight",
    "student.num_register_tokens",
    "nct.weight",
    "evaluation.health.period_iterations",
    "evaluation.health.rank_images",
    "evaluation.health.entropy_margin",
    "evaluation.online_knn.images",
)

PROBABILITIES = ("ibot.mask_sample_probability", "crops.solarize_probability", "crops.color_jitter_probability",
                 "crops.hflip_probability")


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=True)


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config key '{key}': {message}")


def _check_range(cfg: DictConfig, key: str, low: float, high: float) -> None:
    values = _get(cfg, key)
    if len(values) != 2 or not (low <= values[0] <= values[1] <= high):
        _fail(key, f"expected [min, max] with {low} <= min <= max <= {high}, got {list(values)}")


def check_config(cfg: DictConfig, world_size: int = 1) -> None:
    """Raise :class:`ConfigError` naming the key when the config is inconsistent (no file system access)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:  # a recipe's ``???``: a value only the user can give (a path, say)
        _fail(missing[0], "this recipe needs a value for it: give it on the command line "
                          f"({missing[0]}=...)" + (f"; also missing: {', '.join(missing[1:])}" if missing[1:] else ""))
    for key, allowed in CONFIG_CHOICES.items():
        if _get(cfg, key) not in allowed:
            _fail(key, f"expected one of {', '.join(allowed)}, got {_get(cfg, key)!r}")
    for key in POSITIVE_INTS + POSITIVE_FLOATS:
        if _get(cfg, key) <= 0:
            _fail(key, f"must be positive, got {_get(cfg, key)}")
    for key in NON_NEGATIVE:
        if _get(cfg, key) < 0:
            _fail(key, f"must not be negative, got {_get(cfg, key)}")
    if cfg.evaluation.health.rank_images == 1 or cfg.evaluation.online_knn.images == 1:
        _fail("evaluation.health.rank_images" if cfg.evaluation.health.rank_images == 1
              else "evaluation.online_knn.images", "needs 2 or more images (0: off)")
    if not cfg.evaluation.health.entropy_margin < 1.0:
        _fail("evaluation.health.entropy_margin", f"expected a fraction of ln(prototypes) below 1, got "
                                                   f"{cfg.evaluation.health.entropy_margin}")
    if cfg.evaluation.health.warmup_iterations < -1:
        _fail("evaluation.health.warmup_iterations", "expected -1 (the learning-rate warm-up) or an iteration >= 0")
    if cfg.student.in_chans not in INPUT_CHANNELS:
        _fail("student.in_chans", f"expected 1 (grey) or 3 (RGB), got {cfg.student.in_chans!r}")
    patch = cfg.student.patch_size
    for key in ("crops.global_crops_size", "crops.local_crops_size"):
        if key == "crops.local_crops_size" and cfg.crops.local_crops_number == 0:
            continue
        size = _get(cfg, key)
        if size <= 0 or size % patch != 0:
            _fail(key, f"{size} is not a positive multiple of student.patch_size={patch}")
    _check_range(cfg, "crops.global_crops_scale", 0.0, 1.0)
    _check_range(cfg, "crops.local_crops_scale", 0.0, 1.0)
    _check_range(cfg, "ibot.mask_ratio_min_max", 0.0, 1.0)
    for key in PROBABILITIES:
        if not 0.0 <= _get(cfg, key) <= 1.0:
            _fail(key, f"must lie in [0, 1], got {_get(cfg, key)}")
    if cfg.optim.warmup_epochs > cfg.optim.epochs:
        _fail("optim.warmup_epochs", f"{cfg.optim.warmup_epochs} exceeds optim.epochs={cfg.optim.epochs}")
    if cfg.optim.freeze_last_layer_epochs > cfg.optim.epochs:
        _fail("optim.freeze_last_layer_epochs", f"exceeds optim.epochs={cfg.optim.epochs}")
    if cfg.method.name in CONTRASTIVE_METHODS:
        _check_contrastive(cfg)
    else:
        _check_dino_losses(cfg)
    if not 0.0 <= cfg.teacher.momentum_teacher <= cfg.teacher.final_momentum_teacher <= 1.0:
        _fail("teacher.momentum_teacher", "expected 0 <= momentum_teacher <= final_momentum_teacher <= 1")
    if cfg.train.compile:
        from torch._dynamo import list_backends  # here: importing dynamo takes a second, needed only to compile

        backends = list_backends(exclude_tags=())
        if cfg.train.compile_backend not in backends:
            _fail("train.compile_backend", f"expected a torch.compile backend ({', '.join(backends)}), "
                                           f"got {cfg.train.compile_backend!r}")
    if world_size < 1:
        raise ConfigError(f"world size must be at least 1, got {world_size}")


def _check_dino_losses(cfg: DictConfig) -> None:
    if cfg.student.arch in RESNET_ARCHS and cfg.ibot.loss_weight > 0:
        _fail("student.arch", f"{cfg.student.arch} has no patch tokens to mask: iBOT (ibot.loss_weight > 0) needs "
                              "a ViT; a ResNet serves DINO (ibot.loss_weight=0) and the contrastive methods")
    if cfg.student.arch in RESNET_ARCHS and cfg.ibot.mask_sample_probability > 0:
        _fail("ibot.mask_sample_probability", f"{cfg.student.arch} has no patch tokens to mask; set it to 0")
    if cfg.dino.loss_weight <= 0 and cfg.ibot.loss_weight <= 0:
        _fail("dino.loss_weight", "dino.loss_weight and ibot.loss_weight are both 0: nothing to train")
    if cfg.dino.koleo_loss_weight > 0 and cfg.train.batch_size_per_gpu < 2:
        _fail("train.batch_size_per_gpu", "KoLeo (dino.koleo_loss_weight > 0) needs at least 2 images per GPU")
    if cfg.ibot.loss_weight > 0 and int(2 * cfg.train.batch_size_per_gpu * cfg.ibot.mask_sample_probability) < 1:
        _fail("ibot.mask_sample_probability", "no global crop would be masked: iBOT needs at least one")


def _check_contrastive(cfg: DictConfig) -> None:
    method = cfg.method.name
    if importlib.util.find_spec("lightly") is None:
        _fail("method.name", f"{method} takes its heads and losses from lightly, which is not installed: "
                             "pip install --no-deps -r requirements-ssl.txt")
    if cfg.nct.enabled:
        _fail("nct.enabled", f"NCT regularises DINOv2's prototype targets; method.name={method} has none")
    if cfg.crops.local_crops_number != 0:
        _fail("crops.local_crops_number", f"{method} trains on the two global crops; set it to 0 "
                                          "(method overlays do)")
    if cfg.train.batch_size_per_gpu < 2:
        _fail("train.batch_size_per_gpu", f"{method} needs at least 2 images per GPU (negatives, BatchNorm)")
    if method == "mocov3" and cfg.method.projection_layers < 2:
        _fail("method.projection_layers", "MoCo v3's projection head has at least 2 layers")


def check_dataset_root(cfg: DictConfig, key: str = "train.dataset_path", root: str | ImageTree | None = None) -> Path:
    """The split folder of the tree ``root`` (a spelling, or a tree parsed already; default:
    ``train.dataset_path``); raises naming ``key``."""
    root = cfg.train.dataset_path if root is None else root
    if not root:
        _fail(key, "is empty; give an ImageFolder tree, e.g. train.dataset_path=data/mnist5k")
    try:
        tree = open_tree(root)  # a parsed tree is returned as it is
    except TreeSpecError as error:
        _fail(key, str(error))
    split_dir = tree / cfg.train.dataset_split
    if not tree.is_dir():
        _fail(key, f"{tree.folder} is not a folder (expected a folder of images: ROOT/{cfg.train.dataset_split}/"
                   f"<class>/<image>, or images at any depth for an unlabeled tree){tree.missing_hint()}")
    if not split_dir.is_dir():
        split_dir = tree  # an unlabeled tree: every image below ROOT
    if cfg.train.output_dir:
        try:
            check_outside(cfg.train.output_dir, {"the tree": tree.folder}, option="the run directory")
        except ValueError as error:
            _fail(key, str(error))
    return split_dir.folder


def check_weights_path(cfg: DictConfig) -> None:
    """``MODEL.WEIGHTS``, when set, must be an existing file; ``student.pretrained_weights`` an existing file or
    folder, and not both (one says where the whole model starts, the other only the backbone)."""
    if cfg.MODEL.WEIGHTS and not Path(cfg.MODEL.WEIGHTS).is_file():
        _fail("MODEL.WEIGHTS", f"{cfg.MODEL.WEIGHTS} is not a file (expected a full checkpoint model_<it>.pth)")
    pretrained = cfg.student.pretrained_weights
    if pretrained and not Path(pretrained).exists():
        _fail("student.pretrained_weights", f"{pretrained} does not exist (expected a backbone state dict, an export "
                                            "folder, an encoder export or a run directory)")
    if pretrained and (cfg.MODEL.WEIGHTS or cfg.curriculum.branch_from):
        _fail("student.pretrained_weights", "is set together with MODEL.WEIGHTS or curriculum.branch_from: give one "
                                            "starting point")


def check_dataset_size(cfg: DictConfig, num_images: int, world_size: int, dataset_path: str = "") -> None:
    """Enough images for one batch on every rank."""
    dataset_path = dataset_path or cfg.train.dataset_path
    needed = cfg.train.batch_size_per_gpu * world_size
    if num_images < needed:
        _fail(
            "train.batch_size_per_gpu",
            f"{dataset_path} has {num_images} images in '{cfg.train.dataset_split}', fewer than one "
            f"global batch ({cfg.train.batch_size_per_gpu} x {world_size} ranks = {needed})",
        )
