"""The results document of ``bench/gpu_check.sh``: its entries in a fixed order, ``all_ok``, the DDP merge and the
printed summary. No torch here: the shell's bookkeeping steps start in a fraction of a second."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from utils.atomic import atomic_write_json

CHECKS = ("precision", "fused_adamw", "flash_attention", "compile", "trainer_resume", "nct_step", "ddp",
          "n2n_fp16_denoise")
MEASUREMENTS = ("dinov2_imagenet100", "n2n_training", "n2n_denoising", "feature_extraction")
ENTRIES = CHECKS + MEASUREMENTS
HEADER = ("mode", "quick", "device", "torch", "cuda", "gpus", "torch_threads")
TIMEOUT_STATUS = 124  # what coreutils' timeout returns


def finished(document: dict) -> dict:
    """``document`` with the header first, the entries in their fixed order and ``all_ok`` last: true when there is
    at least one entry and every entry is ok."""
    entries = {name: document[name] for name in ENTRIES if name in document}
    rest = {key: value for key, value in document.items() if key not in entries and key not in HEADER
            and key != "all_ok"}
    header = {key: document[key] for key in HEADER if key in document}
    all_ok = bool(entries) and all(entry.get("ok") is True for entry in entries.values()) and "error" not in rest
    return {**header, **rest, **entries, "all_ok": all_ok}


def write(path: Path, document: dict) -> dict:
    """Write the finished ``document`` atomically; returns it."""
    document = finished(document)
    atomic_write_json(path, document)
    return document


def pending_ddp(nproc: int, backend: str, timeout_s: int) -> dict:
    """The DDP entry until the shell's torchrun launch has been merged in (not ok until then)."""
    return {"ok": False, "pending": True, "nproc": nproc, "backend": backend, "timeout_s": timeout_s,
            "detail": "run by bench/gpu_check.sh through torchrun; not run yet"}


def ddp_plan(path: Path) -> str:
    """``"NPROC TIMEOUT_S"`` of a pending DDP entry in the document at ``path``, ``"0 0"`` when there is none."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get("ddp", {})
    except (OSError, ValueError):
        return "0 0"
    return f"{entry['nproc']} {entry['timeout_s']}" if entry.get("pending") else "0 0"


def merge_ddp(path: Path, result: Path, exit_code: int, log: Optional[Path], seconds: Optional[float] = None) -> dict:
    """Put the torchrun job's result (or why there is none) into the document at ``path`` and rewrite it;
    ``seconds``: the launch's wall time."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        document = {"error": f"the checks stage left no readable results ({error})"}
    launch = {key: value for key, value in document.get("ddp", {}).items() if key in ("nproc", "timeout_s")}
    if result.is_file():
        entry = json.loads(result.read_text(encoding="utf-8"))
        if exit_code != 0 and entry.get("ok"):
            entry.update(ok=False, error=f"torchrun exited with status {exit_code}")
    else:
        why = "timed out" if exit_code == TIMEOUT_STATUS else f"exited with status {exit_code}"
        entry = {"ok": False, "error": f"torchrun {why} without a result" + _last_line(log)}
    document["ddp"] = {**launch, **entry, **({"seconds": seconds} if seconds is not None else {})}
    return write(path, document)


def _last_line(log: Optional[Path]) -> str:
    if log is None or not log.is_file():
        return ""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return f": {lines[-1]}" if lines else ""


def summary(document: dict) -> list[str]:
    """One line per entry (ok / FAIL, the headline figure or the error), then the verdict."""
    lines = [f"{document.get('device')} (torch {document.get('torch')}, CUDA {document.get('cuda')}, "
             f"{document.get('gpus')} GPU(s), {document.get('mode')})"]
    for name in ENTRIES:
        entry = document.get(name)
        if entry is None:
            continue
        if "error" in entry:
            detail = entry["error"]
        elif "images_per_s" in entry:
            detail = f"{entry['images_per_s']:.1f} images/s"
        else:
            detail = entry.get("detail", "")
        seconds = f"{entry['seconds']:6.1f} s" if "seconds" in entry else " " * 8
        lines.append(f"  {'ok  ' if entry.get('ok') else 'FAIL'}  {name:<20} {seconds}  {detail}")
    lines.append("all checks passed" if document.get("all_ok") else "SOME CHECKS FAILED")
    return lines
