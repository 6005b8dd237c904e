"""What a figure depends on besides its seed: the thread count, the torch version and the processor.

Floating-point sums run in another order with another thread count or another processor, and CPU training runs
amplify that into different numbers; the recipes set the thread count and record this file beside their results.

    python -m utils.environment --out OUT/environment.json     # record (and warn when OUT mixes settings)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from utils.atomic import atomic_write_json

ENVIRONMENT_FILENAME = "environment.json"


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() in ("model name", "Hardware", "Processor"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    """This process's setting: torch threads, torch version, processor, Python; the GPU when there is one."""
    import torch  # local import: recording the setting of a recipe needs no more than this

    setting: dict[str, Any] = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": cpu_model(),
                               "python": platform.python_version()}
    if torch.cuda.is_available():
        setting["gpu"] = torch.cuda.get_device_name(0)
    return setting


def describe_text(setting: dict[str, Any]) -> str:
    """One line: ``2 threads, torch 2.14.1, Intel(R) Xeon(R) ... (Python 3.11.7)``."""
    text = f"{setting['threads']} thread{'s' if setting['threads'] != 1 else ''}, torch {setting['torch']}, " \
           f"{setting['cpu']}"
    if "gpu" in setting:
        text += f", GPU {setting['gpu']}"
    return f"{text} (Python {setting['python']})"


def record(path: Path, current: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``current`` (a :func:`describe` value) to the list in ``path``, once; returns the list. More than one
    entry means that the folder holds results made under different settings."""
    settings = read(path)
    if current not in settings:
        settings.append(current)
        atomic_write_json(path, settings)
    return settings


def read(path: Path) -> list[dict[str, Any]]:
    """The settings recorded in ``path`` (an empty list when there is no such file)."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the JSON file that lists the settings")
    args = parser.parse_args(argv)
    current = describe()
    settings = record(args.out, current)
    print(f"setting: {describe_text(current)}")
    if len(settings) > 1:
        print(f"warning: {args.out} lists {len(settings)} settings: the results beside it mix them "
              "(use another OUT per setting)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
