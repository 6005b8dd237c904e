"""The paper's settings that the Python code and the shell recipes share, spelled once here.

    python -m utils.paper_facts shell                 # PAPER_*=... lines: eval "$(python -m utils.paper_facts shell)"
    python -m utils.paper_facts nct-weight gauss100   # 4.0 (the paper's NCT weight for a setting)

The recipes (``exps/linear_probe.sh``, ``exps/linear_probe_nct.sh``, ``exps/lib/miniature_pipeline.sh``, the
Neighbor2Neighbor recipes) take their defaults from the ``shell`` lines; the Python code imports the names. The
training configs (``dinov2/configs/train/imagenet100_*.yaml``) spell the same schedule as values a run reads, and
``tests/test_paper_facts.py`` checks that they agree with this file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass

from utils.noise import PAPER_NOISE_SETTINGS, parse_noise

# lambda of the NCT regulariser per setting (the paper's ImageNet-100 runs); settings it ran no NCT on get 1.0
NCT_WEIGHTS: dict[str, float] = {"gauss255": 1.1, "gauss100": 4.0, "shot1": 5.0, "speckle1.0": 2.0}
NCT_WEIGHTS_IMAGENET1K: dict[str, float] = {"gauss255": 1.6, "gauss100": 2.0}  # its ViT-B/16 runs
NCT_WEIGHT_ELSEWHERE = 1.0


@dataclass(frozen=True)
class PretrainingSchedule:
    """The length of a pretraining run and where the curriculum branches off its denoised run."""

    epochs: int
    epoch_length: int  # iterations per epoch (train.OFFICIAL_EPOCH_LENGTH)
    switch_epoch: int  # NC and NCT branch off the denoised run here and train the remaining epochs on noisy images
    ablation_switch_epochs: tuple[int, ...]


# ViT-S/16, batch 40 on one GPU: 1,250 iterations are one epoch of the 50,000 training images
IMAGENET100 = PretrainingSchedule(epochs=200, epoch_length=1250, switch_epoch=140,
                                  ablation_switch_epochs=(110, 120, 130, 150))
# ViT-B/16, 4 GPUs x 128: 2,500 iterations are one epoch of the 1.28 M training images
IMAGENET1K = PretrainingSchedule(epochs=100, epoch_length=2500, switch_epoch=30, ablation_switch_epochs=())

# A run writes its evaluated encoder every evaluation period into EXPORT_DIR, named for that encoder: the EMA
# teacher of DINOv2, DINO and iBOT (upstream DINOv2's teacher_checkpoint.pth), the student of SimCLR, MoCo v3 and
# SimSiam (dinov2.utils.choices.evaluated_encoder says which).
EXPORT_DIR = "eval/training_{iteration}"  # inside the run directory, named by the last iteration done
EXPORT_ENCODERS = ("teacher", "student")


def export_name(encoder: str) -> str:
    """``teacher_checkpoint.pth`` or ``student_checkpoint.pth``: the file an encoder export of ``encoder`` is."""
    if encoder not in EXPORT_ENCODERS:
        raise ValueError(f"an encoder export holds one of {EXPORT_ENCODERS}, not {encoder!r}")
    return f"{encoder}_checkpoint.pth"


def nct_weight(noise: str) -> float:
    """The paper's NCT weight for a noise setting (ValueError naming an unknown setting)."""
    parse_noise(noise)
    return NCT_WEIGHTS.get(noise, NCT_WEIGHT_ELSEWHERE)


def shell_assignments() -> str:
    """``PAPER_<NAME>=<value>`` lines, shell-quoted, for a recipe to ``eval``."""
    values = {
        "PAPER_NOISES": " ".join(PAPER_NOISE_SETTINGS),
        "PAPER_NCT_WEIGHTS": " ".join(f"{noise}:{weight}" for noise, weight in NCT_WEIGHTS.items()),
        "PAPER_EPOCHS": IMAGENET100.epochs,
        "PAPER_EPOCH_LENGTH": IMAGENET100.epoch_length,
        "PAPER_SWITCH_EPOCH": IMAGENET100.switch_epoch,
        "PAPER_ABLATION_SWITCH_EPOCHS": " ".join(map(str, IMAGENET100.ablation_switch_epochs)),
        # a printf pattern of the last iteration, and the file names an export folder may hold
        "PAPER_EXPORT_DIR": EXPORT_DIR.format(iteration="%d"),
        "PAPER_EXPORT_NAMES": " ".join(map(export_name, EXPORT_ENCODERS)),
    }
    return "".join(f"{name}={shlex.quote(str(value))}\n" for name, value in values.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("shell", help="print PAPER_*=... lines for a shell recipe to eval")
    weight = commands.add_parser("nct-weight", help="print the paper's NCT weight for a noise setting")
    weight.add_argument("noise", help="a noise setting, e.g. gauss100")
    args = parser.parse_args(argv)
    if args.command == "shell":
        sys.stdout.write(shell_assignments())
        return 0
    try:
        print(nct_weight(args.noise))
    except ValueError as error:
        parser.error(f"noise: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
