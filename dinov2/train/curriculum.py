"""The curriculum: training phases (dataset, length, schedule restart, initial weights, NCT) as config data.

An empty ``curriculum.phases`` list means one phase on ``train.dataset_path`` for ``optim.epochs`` (the plain
DINOv2 run). Iterations are counted over the whole run; phase ``p`` covers ``[start, end)``. A phase that restarts
its schedules begins a new *stretch*; a phase that does not extends the current stretch, whose schedules are
built over its total length, so the values continue as if the stretch were one run. A first phase that does not
restart but starts from ``init_from=RUN@EPOCH`` continues that run's schedules from EPOCH (the paper's
"norestart" ablation).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, get_type_hints

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dinov2.utils.checkpoint import CONFIG_FILENAME, checkpoint_path
from dinov2.utils.checks import check_dataset_root
from dinov2.utils.choices import CONTRASTIVE_METHODS
from dinov2.utils.config import ConfigError
from dinov2.utils.schedules import Schedules, build_schedules
from utils.image_tree import ImageTree, TreeSpecError, open_tree
from utils.weights_file import WeightsFileError, load_torch_file

@dataclass(frozen=True, kw_only=True)
class PhaseSpec:
    """One entry of ``curriculum.phases`` as a recipe writes it: its keys, their types and their defaults
    (``dataset_path`` and ``epochs`` are required). The config keeps the list untyped and :func:`read_phase_spec`
    checks each entry against this class, because OmegaConf's typed list elements name a wrong key without its
    path (``epochs``, not ``curriculum.phases[0].epochs``) and read ``'no'`` as ``False``."""

    dataset_path: str
    epochs: int
    restart_schedules: bool = True
    init_from: str = ""
    keep_optimizer: bool = False
    nct: bool = False
    denoised_dataset_path: str = ""
    train_backbone: bool = True  # false: the student's backbone is frozen in this phase (a head warm-up)


@dataclass(frozen=True, kw_only=True)
class Phase(PhaseSpec):
    """One phase of training; ``start``/``end`` are run iterations (end excluded)."""

    index: int
    start: int
    end: int
    # ``init_from`` resolved once, when the phases are built: the checkpoint file and, for RUN@EPOCH, the epoch
    init_checkpoint: Optional[Path] = None
    init_epoch: Optional[int] = None
    # the phase's trees, parsed once when the phases are built (``denoised_tree``: None unless an NCT phase has one)
    tree: ImageTree
    denoised_tree: Optional[ImageTree] = None
    # an NCT phase's ``nct.teacher``, resolved once for the run: the full checkpoint whose teacher and centers are
    # frozen, or None (a backbone reference, or no reference: the live teacher is frozen when the phase starts)
    nct_teacher: Optional[Path] = None


_SPEC_TYPES = get_type_hints(PhaseSpec)
_REQUIRED = [item.name for item in fields(PhaseSpec) if item.default is MISSING]


def _phase_error(index: int, key: str, message: str) -> ConfigError:
    return ConfigError(f"config key 'curriculum.phases[{index}].{key}': {message}")


_IMPLICIT_PHASE_KEYS = {"dataset_path": "train.dataset_path", "denoised_dataset_path": "nct.denoised_dataset_path"}


def phase_key(index: int, name: str, explicit: bool) -> str:
    """The config key a phase's value comes from: ``curriculum.phases[i].name``, or for the one implicit phase of
    an empty ``curriculum.phases`` the key it was read from (``train.dataset_path``)."""
    return f"curriculum.phases[{index}].{name}" if explicit else _IMPLICIT_PHASE_KEYS[name]


def _parsed_tree(key: str, spelling: str) -> ImageTree:
    try:
        return open_tree(spelling)
    except TreeSpecError as error:
        raise ConfigError(f"config key '{key}': {error}") from None


def read_phase_spec(index: int, raw: Any) -> PhaseSpec:
    """Entry ``index`` of ``curriculum.phases`` checked against :class:`PhaseSpec`; raises naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'curriculum.phases[{index}]': expected a mapping, got {raw!r}")
    for key in raw:
        if key not in _SPEC_TYPES:
            raise _phase_error(index, key, f"unknown key (expected {', '.join(_SPEC_TYPES)})")
    for key in _REQUIRED:
        if key not in raw:
            raise _phase_error(index, key, "is required")
    for key, value in raw.items():
        kind = _SPEC_TYPES[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise _phase_error(index, key, f"expected an integer, got {value!r}")
        if kind is not int and not isinstance(value, kind):
            raise _phase_error(index, key, f"expected a {kind.__name__}, got {value!r}")
    spec = PhaseSpec(**raw)
    if spec.epochs <= 0:
        raise _phase_error(index, "epochs", f"must be positive, got {spec.epochs}")
    if not spec.dataset_path:
        raise _phase_error(index, "dataset_path", "is empty")
    return spec


def build_phases(cfg: DictConfig) -> list[Phase]:
    """The run's phases with their iteration ranges; raises :class:`ConfigError` naming the key."""
    epoch_length = cfg.train.OFFICIAL_EPOCH_LENGTH
    try:
        raw_phases = OmegaConf.to_container(cfg.curriculum.phases, resolve=True)
    except OmegaConfBaseException as error:  # e.g. a recipe's required ${curriculum.branch_from} left unset
        raise ConfigError(f"config key 'curriculum.phases': {str(error).splitlines()[0]}") from error
    unresolved = OmegaConf.to_container(cfg.curriculum.phases, resolve=False)
    for index, raw in enumerate(unresolved or []):
        for key, value in (raw.items() if isinstance(raw, dict) else ()):
            if key == "denoised_dataset_path" and (cfg.nct.teacher or cfg.student.pretrained_weights):
                continue  # may be empty: the anchor then sees the noisy crops themselves
            if isinstance(value, str) and value.startswith("${") and raw_phases[index][key] == "":
                target = value[2:-1]
                raise ConfigError(f"config key '{target}': is empty, but curriculum.phases[{index}].{key} uses it; "
                                  f"give it on the command line ({target}=...)")
    explicit = bool(raw_phases)
    if not raw_phases:
        raw_phases = [{"dataset_path": cfg.train.dataset_path or "-", "epochs": cfg.optim.epochs,
                       "nct": bool(cfg.nct.enabled), "denoised_dataset_path": cfg.nct.denoised_dataset_path}]
    nct_teacher = nct_teacher_checkpoint(cfg.nct.teacher, epoch_length) if cfg.nct.enabled and cfg.nct.teacher \
        else None
    phases, start = [], 0
    for index, raw in enumerate(raw_phases):
        spec = read_phase_spec(index, raw)
        if spec.nct and not cfg.nct.enabled:
            raise _phase_error(index, "nct", "is true but nct.enabled is false")
        if spec.nct and not spec.denoised_dataset_path and not (cfg.nct.teacher or
                                                                       cfg.student.pretrained_weights):
            message = ("is empty: NCT needs the denoised tree, or, to anchor the noisy crops themselves, trained "
                       "weights to anchor them to (nct.teacher or student.pretrained_weights)")
            if not cfg.curriculum.phases:
                raise ConfigError(f"config key 'nct.denoised_dataset_path': {message}")
            raise _phase_error(index, "denoised_dataset_path", message)
        if not spec.train_backbone and cfg.method.name in CONTRASTIVE_METHODS:
            raise _phase_error(index, "train_backbone", f"false is for the DINO-style methods, not {cfg.method.name}")
        end = start + spec.epochs * epoch_length
        init_checkpoint, init_epoch = (parse_checkpoint_reference(spec.init_from, epoch_length)
                                       if spec.init_from else (None, None))
        tree = _parsed_tree(phase_key(index, "dataset_path", explicit), spec.dataset_path)
        denoised_tree = (_parsed_tree(phase_key(index, "denoised_dataset_path", explicit), spec.denoised_dataset_path)
                         if spec.nct and spec.denoised_dataset_path else None)
        phases.append(Phase(index=index, start=start, end=end, init_checkpoint=init_checkpoint, init_epoch=init_epoch,
                            tree=tree, denoised_tree=denoised_tree, nct_teacher=nct_teacher if spec.nct else None,
                            **asdict(spec)))
        start = end
    if cfg.nct.enabled and not any(phase.nct for phase in phases):
        raise ConfigError("config key 'nct.enabled': true, but no curriculum phase has nct: true")
    return phases


def phase_at(phases: list[Phase], iteration: int) -> Phase:
    """The phase that contains run iteration ``iteration``."""
    for phase in phases:
        if phase.start <= iteration < phase.end:
            return phase
    raise IndexError(f"iteration {iteration} is beyond the curriculum's {phases[-1].end} iterations")


def parse_checkpoint_reference(reference: str, epoch_length: int) -> tuple[Path, Optional[int]]:
    """``RUN_DIR@EPOCH`` -> (``RUN_DIR/model_<EPOCH*epoch_length-1>.pth``, EPOCH), with the source run's own epoch
    length when its ``config.yaml`` is there; a file path -> (path, None)."""
    if "@" not in reference:
        return Path(reference), None
    run_dir, _, epoch_text = reference.rpartition("@")
    try:
        epoch = int(epoch_text)
    except ValueError:
        raise ConfigError(f"checkpoint reference {reference!r}: expected RUN_DIR@EPOCH with an integer epoch") from None
    if epoch <= 0:
        raise ConfigError(f"checkpoint reference {reference!r}: the epoch must be positive")
    saved = Path(run_dir) / CONFIG_FILENAME
    if saved.is_file():  # the source run's own epoch length names its checkpoints
        epoch_length = int(OmegaConf.load(saved).train.OFFICIAL_EPOCH_LENGTH)
    return checkpoint_path(Path(run_dir), epoch * epoch_length - 1), epoch


def existing_checkpoint(reference: str, path: Path, key: str) -> Path:
    """``path``, the file ``reference`` resolved to; raises naming ``key`` when it does not exist."""
    if not path.is_file():
        raise ConfigError(f"config key '{key}': {reference!r} -> {path} is not a file (was it deleted by "
                          f"train.max_to_keep? keep restart points with a larger max_to_keep)")
    return path


def build_curriculum_schedules(cfg: DictConfig, peak_lr: float, phases: list[Phase]) -> Schedules:
    """Per-iteration schedules of the whole run: rebuilt at each restarting phase, continued otherwise."""
    epoch_length = cfg.train.OFFICIAL_EPOCH_LENGTH
    stretches: list[list[Phase]] = []
    for phase in phases:
        if phase.restart_schedules or not stretches:
            stretches.append([phase])
        else:
            stretches[-1].append(phase)
    parts: list[Schedules] = []
    for stretch in stretches:
        offset = 0
        first = stretch[0]
        if not first.restart_schedules and first.init_from:
            offset = (first.init_epoch or 0) * epoch_length
        length = sum(phase.end - phase.start for phase in stretch)
        full = build_schedules(cfg, peak_lr, offset + length)
        parts.append(Schedules(**{name: getattr(full, name)[offset:] for name in _FIELDS}))
    return Schedules(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in _FIELDS})


_FIELDS = ("lr", "last_layer_lr", "weight_decay", "momentum", "teacher_temp")


def check_curriculum(cfg: DictConfig) -> list[Phase]:
    """Phases, their trees and every referenced checkpoint exist; raises :class:`ConfigError` naming the key."""
    phases = build_phases(cfg)
    explicit = bool(cfg.curriculum.phases)
    for phase in phases:
        # an empty train.dataset_path gives the implicit phase a placeholder: check the key itself
        check_dataset_root(cfg, phase_key(phase.index, "dataset_path", explicit),
                           phase.tree if explicit or cfg.train.dataset_path else None)
        if phase.denoised_tree is not None:
            check_dataset_root(cfg, phase_key(phase.index, "denoised_dataset_path", explicit), phase.denoised_tree)
        if phase.init_from:
            existing_checkpoint(phase.init_from, phase.init_checkpoint, f"curriculum.phases[{phase.index}].init_from")
    if cfg.nct.enabled and cfg.nct.teacher:
        resolved = next(phase.nct_teacher for phase in phases if phase.nct)
        check_nct_teacher(cfg.nct.teacher, resolved, cfg.nct.head)
    return phases


def nct_teacher_checkpoint(reference: str, epoch_length: int) -> Optional[Path]:
    """The full checkpoint ``nct.teacher`` names (``RUN@EPOCH``, whether or not it exists yet, or a file holding a
    full checkpoint: its teacher and centers are frozen), or None when it names a backbone (export, transformers or
    timm folder, bare state dict, encoder export, run directory) or nothing that exists. Opens a ``.pth`` file."""
    if "@" in reference:
        return parse_checkpoint_reference(reference, epoch_length)[0]
    path = Path(reference)
    if path.is_file() and path.suffix == ".pth":
        try:
            state = load_torch_file(path, "a checkpoint or a backbone", mmap=True)
        except WeightsFileError:
            return None  # not a checkpoint: load_backbone names what is wrong with it
        if isinstance(state, dict) and "model" in state and "optimizer" in state:
            return path
    return None


def check_nct_teacher(reference: str, resolved: Optional[Path], head: str) -> None:
    """``nct.teacher`` (``resolved`` by :func:`nct_teacher_checkpoint`) names an existing checkpoint, or a backbone
    with ``nct.head=live`` (a backbone has no heads of its own); raises :class:`ConfigError` naming the key."""
    if resolved is not None:
        existing_checkpoint(reference, resolved, "nct.teacher")
        return
    if not Path(reference).exists():
        raise ConfigError(f"config key 'nct.teacher': {reference} does not exist (expected a full checkpoint, "
                          "RUN_DIR@EPOCH, or a backbone: an export, transformers or timm folder, a state dict)")
    if head != "live":
        raise ConfigError(f"config key 'nct.teacher': {reference} is a backbone without heads: it needs "
                          f"nct.head=live (the live EMA teacher's heads project it), not nct.head={head}")
