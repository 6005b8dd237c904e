"""Configuration: the defaults YAML is the schema, recipes and ``key=value`` overrides are merged onto it.

The schema is derived from ``configs/ssl_default_config.yaml``: every default's Python type becomes the key's
type, and the result is an OmegaConf structured config in struct mode. So a key that is not in the defaults
(``optim.lrr=1``) or a value of the wrong type (``optim.epochs=abc``) is an error naming the key, raised
before anything runs. Values derived from the config (the scaled learning rate, iteration counts) are never
written over user keys; they live in a separate ``derived`` section of the saved ``config.yaml``.

A recipe may build on others: ``_base_: other.yaml`` (or a list of files, merged in order; paths relative to the
recipe's folder) is merged first and the recipe's own keys over it. Several ``--config-file`` are merged in order.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dinov2.utils.choices import SCALING_RULES

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG_PATH = CONFIGS_DIR / "ssl_default_config.yaml"
DERIVED_SECTION = "derived"
BASE_KEY = "_base_"
PathLike = Union[str, Path]


class ConfigError(ValueError):
    """A configuration problem; the message names the key (or file) and what was expected."""


def _list_type(values: list) -> Any:
    if values and all(isinstance(v, bool) for v in values):
        return List[bool]
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return List[int]
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return List[float]
    if values and all(isinstance(v, str) for v in values):
        return List[str]
    return List[Any]


def _schema_class(name: str, defaults: dict) -> type:
    """A dataclass whose fields have the types (and values) of ``defaults``, recursively."""
    fields = []
    for key, value in defaults.items():
        if isinstance(value, dict):
            sub = _schema_class(f"{name}.{key}" if name else key, value)
            fields.append((key, sub, dataclasses.field(default_factory=sub)))
        elif isinstance(value, list):
            fields.append((key, _list_type(value), dataclasses.field(default_factory=lambda v=value: list(v))))
        elif value is None:
            fields.append((key, Optional[Any], dataclasses.field(default=None)))
        else:
            fields.append((key, type(value), dataclasses.field(default=value)))
    return dataclasses.make_dataclass(name.replace(".", "_") or "root", fields)


def _describe(error: OmegaConfBaseException, source: str) -> str:
    key = getattr(error, "full_key", None) or "?"
    message = str(error).splitlines()[0]
    return f"config key '{key}' ({source}): {message}"


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = OmegaConf.load(path)
    except Exception as error:  # a YAML syntax error: name the file
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}")
    if DERIVED_SECTION in loaded:  # a saved run config: its derived values are recomputed, never read
        loaded.pop(DERIVED_SECTION)
    return loaded


def _read_recipe(path: Path, chain: tuple[Path, ...] = ()) -> DictConfig:
    """A recipe file with its ``_base_`` files merged under it (recursively; a cycle is an error)."""
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"config file {path}: '{BASE_KEY}' files form a cycle ({cycle})")
    recipe = _read_yaml(path)
    if BASE_KEY not in recipe:
        return recipe
    bases = recipe.pop(BASE_KEY)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (ListConfig, list)) or not all(isinstance(base, str) for base in bases):
        raise ConfigError(f"config file {path}: '{BASE_KEY}' must be a file name or a list of them, got {bases!r}")
    merged = OmegaConf.create()
    for base in bases:
        merged = OmegaConf.merge(merged, _read_recipe(path.parent / base, (*chain, path.resolve())))
    return OmegaConf.merge(merged, recipe)


def _required_keys(node: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose value is ``???`` in a recipe: values only the user can give (checks.check_config
    refuses a config that still holds one, naming it)."""
    if isinstance(node, dict):
        return [key for name, value in node.items() for key in _required_keys(value, f"{prefix}{name}.")]
    return [prefix[:-1]] if node == "???" else []


def default_config() -> DictConfig:
    """The defaults as a typed, struct-mode config."""
    defaults = OmegaConf.to_container(OmegaConf.load(DEFAULT_CONFIG_PATH), resolve=True)
    schema = OmegaConf.structured(_schema_class("", defaults))
    OmegaConf.set_struct(schema, True)
    return schema


def _parsed_override(cfg: DictConfig, item: str) -> DictConfig:
    """``key=value`` as a one-key config. YAML reads a value ending in ``:`` (``noisy:``, ``noisy:gauss100:``)
    as a mapping; for a key that holds no mapping that is never what was meant, so the text is kept as a string
    and the key's own check names what is wrong with it."""
    try:
        parsed = OmegaConf.from_dotlist([item])
    except yaml.YAMLError as error:  # e.g. an unquoted ${...} inside a [{...}] flow value
        reason = " ".join(str(error).split())
        raise ConfigError(f"override {item!r} is not valid YAML ({reason}); quote values that hold ${{...}}, "
                          "':' or ','") from None
    key, _, raw = item.partition("=")
    value = OmegaConf.select(parsed, key.strip(), default=None)
    if isinstance(value, DictConfig) and not raw.lstrip().startswith("{") \
            and not isinstance(OmegaConf.select(cfg, key.strip(), default=None), DictConfig):
        parsed = OmegaConf.create()
        OmegaConf.update(parsed, key.strip(), raw.strip(), force_add=True)
    return parsed


def load_config(
    config_file: Union[PathLike, Sequence[PathLike], None] = None, overrides: Sequence[str] = ()
) -> DictConfig:
    """Defaults <- ``config_file`` (one recipe or several, in order) <- ``overrides`` (``section.key=value``);
    raises :class:`ConfigError`."""
    cfg = default_config()
    if config_file is None:
        config_files: list[PathLike] = []
    elif isinstance(config_file, (str, Path)):
        config_files = [config_file]
    else:
        config_files = list(config_file)
    for path in config_files:
        try:
            recipe = _read_recipe(Path(path))
            cfg = OmegaConf.merge(cfg, recipe)
            for key in _required_keys(OmegaConf.to_container(recipe, resolve=False)):
                OmegaConf.update(cfg, key, "???")  # a merge keeps the default under a ``???``: set it here
        except OmegaConfBaseException as error:
            raise ConfigError(_describe(error, f"in {path}")) from error
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            cfg = OmegaConf.merge(cfg, _parsed_override(cfg, item))
        except OmegaConfBaseException as error:
            raise ConfigError(_describe(error, f"override {item!r}")) from error
    OmegaConf.set_struct(cfg, True)
    return cfg


def scaled_lr(cfg: DictConfig, world_size: int) -> float:
    """Peak learning rate from ``optim.base_lr`` and ``optim.scaling_rule`` for the global batch."""
    global_batch = cfg.train.batch_size_per_gpu * world_size
    rule = cfg.optim.scaling_rule
    if rule == "sqrt_wrt_1024":
        return cfg.optim.base_lr * math.sqrt(global_batch / 1024.0)
    if rule == "linear_wrt_1024":
        return cfg.optim.base_lr * global_batch / 1024.0
    if rule == "none":
        return cfg.optim.base_lr
    raise ConfigError(f"config key 'optim.scaling_rule': unknown rule {rule!r} ({', '.join(SCALING_RULES)})")


def derived_values(cfg: DictConfig, world_size: int) -> dict[str, Any]:
    """Values computed from the config for this launch (never written over user keys)."""
    epoch_length = cfg.train.OFFICIAL_EPOCH_LENGTH
    return {
        "world_size": world_size,
        "global_batch_size": cfg.train.batch_size_per_gpu * world_size,
        "lr": scaled_lr(cfg, world_size),
        "total_iterations": cfg.optim.epochs * epoch_length,
        "warmup_iterations": cfg.optim.warmup_epochs * epoch_length,
        "freeze_last_layer_iterations": cfg.optim.freeze_last_layer_epochs * epoch_length,
        "warmup_teacher_temp_iterations": cfg.teacher.warmup_teacher_temp_epochs * epoch_length,
    }


def config_to_yaml(cfg: DictConfig, derived: Optional[dict[str, Any]] = None) -> str:
    """The resolved config as YAML, with the ``derived`` section appended when given."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    if derived:
        text += OmegaConf.to_yaml(OmegaConf.create({DERIVED_SECTION: derived}))
    return text
