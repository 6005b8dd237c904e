"""The evaluation result file: one JSON object per evaluated checkpoint, validated before it is written.

Common fields (every protocol)::

    schema: "dinov2-eval-result", schema_version: 1,
    protocol: "linear" | "knn" | "instance_recog" | "few_shot" | "robustness",
    method: str | null, noise: str | null, checkpoint: str, iteration: int | null, epoch: float | null,
    created: ISO time, settings: {...}, results: {...}

``method`` and ``noise`` come from command-line arguments or from the run's config, never from file names.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any, Iterator

from utils.atomic import atomic_write_json

RESULT_SCHEMA = "dinov2-eval-result"
SCHEMA_VERSION = 1
PROTOCOLS = ("linear", "knn", "instance_recog", "few_shot", "robustness")
_COMMON_FIELDS: dict[str, tuple[type, ...]] = {
    "schema": (str,), "schema_version": (int,), "protocol": (str,), "method": (str, type(None)),
    "noise": (str, type(None)), "checkpoint": (str,), "iteration": (int, type(None)),
    "epoch": (int, float, type(None)), "created": (str,), "settings": (dict,), "results": (dict,),
}


class ResultError(ValueError):
    """A result file or object that does not follow the schema; the message names the file and the key."""


def _fraction(value: Any, where: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (0.0 <= value <= 100.0):
        raise ResultError(f"{where}: expected a percentage in [0, 100], got {value!r}")


def _require(mapping: dict, key: str, types: tuple[type, ...], where: str) -> Any:
    if key not in mapping:
        raise ResultError(f"{where}: missing key {key!r}")
    value = mapping[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise ResultError(f"{where}.{key}: expected {'/'.join(t.__name__ for t in types)}, got {value!r}")
    return value


def _validate_accuracy_block(block: dict, where: str) -> None:
    _fraction(_require(block, "top1", (int, float), where), f"{where}.top1")
    _fraction(_require(block, "top5", (int, float), where), f"{where}.top5")


def _validate_linear(results: dict, where: str) -> None:
    heads = _require(results, "heads", (dict,), where)
    if not heads:
        raise ResultError(f"{where}.heads: no head")
    for name, head in heads.items():
        _validate_accuracy_block(_require(head, "val", (dict,), f"{where}.heads.{name}"), f"{where}.heads.{name}.val")
    selected = _require(results, "selected", (dict,), where)
    name = _require(selected, "name", (str,), f"{where}.selected")
    if name not in heads:
        raise ResultError(f"{where}.selected.name: {name!r} is not one of the heads")
    _require(selected, "selected_on", (str,), f"{where}.selected")
    _validate_accuracy_block(_require(results, "final", (dict,), where), f"{where}.final")
    best = _require(results, "best_on_val", (dict,), where)
    _validate_accuracy_block(best, f"{where}.best_on_val")
    if _require(best, "name", (str,), f"{where}.best_on_val") not in heads:
        raise ResultError(f"{where}.best_on_val.name: not one of the heads")
    if "iteration" in best:
        _require(best, "iteration", (int,), f"{where}.best_on_val")
    for index, point in enumerate(_require(results, "val_curve", (list,), where) if "val_curve" in results else ()):
        point_where = f"{where}.val_curve[{index}]"
        if not isinstance(point, dict):
            raise ResultError(f"{point_where}: expected an object, got {point!r}")
        _require(point, "iteration", (int,), point_where)
        _validate_accuracy_block(point, point_where)
    if "knn" in results:
        _validate_knn(results["knn"], f"{where}.knn")


def _validate_knn(results: dict, where: str) -> None:
    by_k = _require(results, "k", (dict,), where)
    if not by_k:
        raise ResultError(f"{where}.k: no k evaluated")
    for k, block in by_k.items():
        _validate_accuracy_block(block, f"{where}.k.{k}")


def _validate_instance_recog(results: dict, where: str) -> None:
    for protocol in ("easy", "medium", "hard"):
        block = _require(results, protocol, (dict,), where)
        value = _require(block, "mAP", (int, float), f"{where}.{protocol}")
        if not (isinstance(value, float) and math.isnan(value)):
            _fraction(value, f"{where}.{protocol}.mAP")
        _require(block, "mP", (dict,), f"{where}.{protocol}")
    _require(results, "dataset", (str,), where)


def _validate_few_shot(results: dict, where: str) -> None:
    shots = _require(results, "shots", (dict,), where)
    if not shots:
        raise ResultError(f"{where}.shots: no number of shots evaluated")
    for n_shots, block in shots.items():
        for protocol in ("knn", "logreg"):
            scores = _require(block, protocol, (dict,), f"{where}.shots.{n_shots}")
            _fraction(_require(scores, "mean", (int, float), f"{where}.shots.{n_shots}.{protocol}"),
                      f"{where}.shots.{n_shots}.{protocol}.mean")
            for index, value in enumerate(_require(scores, "values", (list,), f"{where}.shots.{n_shots}.{protocol}")):
                _fraction(value, f"{where}.shots.{n_shots}.{protocol}.values[{index}]")
    if "logreg_all" in results:
        block = _require(results, "logreg_all", (dict,), where)
        _fraction(_require(block, "top1", (int, float), f"{where}.logreg_all"), f"{where}.logreg_all.top1")


def _validate_robustness(results: dict, where: str) -> None:
    rows = {"clean": _require(results, "clean", (dict,), where),
            **{f"noises.{s}": row for s, row in _require(results, "noises", (dict,), where).items()}}
    for name, row in rows.items():
        for key in ("logreg", "knn"):
            _fraction(_require(row, key, (int, float), f"{where}.{name}"), f"{where}.{name}.{key}")
        if name != "clean":
            _require(row, "psnr", (int, float), f"{where}.{name}")
    _require(results, "areas", (dict,), where)


_VALIDATORS = {"linear": _validate_linear, "knn": _validate_knn, "instance_recog": _validate_instance_recog,
               "few_shot": _validate_few_shot, "robustness": _validate_robustness}


def validate_result(result: Any, source: str = "result") -> dict:
    """Check ``result`` against the schema; raise :class:`ResultError` naming ``source`` and the key."""
    if not isinstance(result, dict):
        raise ResultError(f"{source}: expected a JSON object, got {type(result).__name__}")
    for key, types in _COMMON_FIELDS.items():
        _require(result, key, types, source)
    if result["schema"] != RESULT_SCHEMA:
        raise ResultError(f"{source}.schema: expected {RESULT_SCHEMA!r}, got {result['schema']!r}")
    if result["schema_version"] != SCHEMA_VERSION:
        raise ResultError(f"{source}.schema_version: expected {SCHEMA_VERSION}, got {result['schema_version']!r}")
    if result["protocol"] not in PROTOCOLS:
        raise ResultError(f"{source}.protocol: expected one of {PROTOCOLS}, got {result['protocol']!r}")
    _VALIDATORS[result["protocol"]](result["results"], f"{source}.results")
    return result


def make_result(
    protocol: str, checkpoint: str, settings: dict, results: dict, method: str | None = None,
    noise: str | None = None, iteration: int | None = None, epoch: float | None = None, **extra: Any,
) -> dict:
    """Assemble a result object with the common fields filled in."""
    return {
        "schema": RESULT_SCHEMA, "schema_version": SCHEMA_VERSION, "protocol": protocol, "method": method,
        "noise": noise, "checkpoint": checkpoint, "iteration": iteration, "epoch": epoch,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings, "results": results, **extra,
    }


def write_result(result: dict, path: Path) -> Path:
    """Validate ``result`` and write it atomically (a crash never leaves a half-written file)."""
    validate_result(result, str(path))
    atomic_write_json(Path(path), result, indent=2)
    return Path(path)


def load_result(path: Path) -> dict:
    """Read and validate one result file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultError(f"{path}: not valid JSON ({error})") from error
    except OSError as error:
        raise ResultError(f"{path}: cannot be read ({error})") from error
    return validate_result(data, str(path))


def iter_result_files(root: Path) -> Iterator[Path]:
    """Every ``*.json`` below ``root`` (sorted) that declares the result schema, and every one that cannot be read
    or parsed (it may be a damaged result: :func:`load_result` then names it); well-formed JSON files of another
    kind are skipped."""
    for path in sorted(Path(root).rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            yield path
            continue
        if isinstance(data, dict) and data.get("schema") == RESULT_SCHEMA:
            yield path
