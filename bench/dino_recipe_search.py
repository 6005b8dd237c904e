"""Which CPU recipe makes the DINO objective learn on the embedded digits? Trains each variant, prints the table.

    python bench/dino_recipe_search.py [--variants NAME ...] [--out outputs/bench/dino_recipe_search]
        [--data data/mnist5k] [--threads 2] [--seed 0]

Every variant is pure DINO (``dino.koleo_loss_weight=0 ibot.loss_weight=0``) on the clean digits, trained with
``python -m dinov2.train`` from ``dinov2/configs/train/tiny_cpu.yaml`` plus the variant's overrides, then scored
with ``python -m dinov2.eval.knn`` (k = 20, T = 0.07, last block's class token, 32 px centre crops) on the
1,000 clean val digits (one variant, marked, adds KoLeo for reference). Baselines use the same k-NN: raw pixels,
and the recipe's backbone at its random initialisation with and without LayerScale. The table gives, per variant,
the DINO global cross-entropy per (student crop, teacher crop) pair averaged over the last 10 % of iterations (the
logged ``dino_global_crops_loss`` times n_terms / 2), next to ln(prototypes), the uniform-target value, and the
k-NN top-1. Runs are resumable: a variant whose k-NN result exists is read back, not retrained. Results: ``OUT/table.md`` and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dinov2.eval.baselines import random_teacher_export, raw_pixel_knn
from dinov2.eval.results import load_result
from dinov2.train.run_files import read_metrics
from dinov2.train.ssl_meta_arch import dino_pair_count
from dinov2.utils.config import CONFIGS_DIR, load_config
from utils.atomic import atomic_write_json, atomic_write_text
from utils.dataset_index import load_split
from utils.make_toy_dataset import build_toy_dataset

REPO = Path(__file__).resolve().parents[1]
BASE_RECIPE = CONFIGS_DIR / "train" / "tiny_cpu.yaml"
PURE_DINO = ["dino.koleo_loss_weight=0", "ibot.loss_weight=0"]
K = 20

# name -> (overrides on tiny_cpu.yaml + pure DINO, what the variant tests)
LS_OFF = ["student.layerscale=0"]


def _temp(start: float, end: float | None = None) -> list[str]:
    """Teacher temperature ``start`` warmed up to ``end`` over the warm-up epochs (constant without ``end``)."""
    return [f"teacher.warmup_teacher_temp={start}", f"teacher.teacher_temp={start if end is None else end}"]


TEMP04 = _temp(0.04)
SK = ["train.centering=sinkhorn_knopp"]


def _head(bottleneck: int, prototypes: int) -> list[str]:
    """DINO head of a given bottleneck width and number of prototypes."""
    return [f"dino.head_bottleneck_dim={bottleneck}", f"dino.head_n_prototypes={prototypes}"]


BN_HEAD = LS_OFF + ["dino.head_use_bn=true", "ibot.mask_sample_probability=0"]
FIXED_SCALE = ["dino.head_norm_last_layer=true"]
RESNET18 = ["student.arch=resnet18", "optim.layerwise_decay=1.0", "optim.patch_embed_lr_mult=1.0"]
STILL = ["crops.blur_mode=none", "crops.color_jitter_probability=0", "crops.hflip_probability=0",
         "crops.solarize_probability=0"]
SHORT = ["optim.epochs=5"]
FROZEN_PROTOTYPES = ["optim.freeze_last_layer_epochs=5", "optim.weight_decay_end=0.04"]
MILD_VIEWS = BN_HEAD + FIXED_SCALE + TEMP04 + STILL + [
    "optim.weight_decay_end=0.04", "teacher.momentum_teacher=0.99", "crops.global_crops_scale=[0.5,1.0]",
    "crops.local_crops_number=2", "crops.local_crops_scale=[0.3,0.6]"]
LONG = ["optim.epochs=30", "optim.warmup_epochs=3", "train.checkpoint_period=400",
        "evaluation.eval_period_iterations=400"]
MEDIUM = ["optim.epochs=15", "optim.warmup_epochs=2", "train.checkpoint_period=200",
          "evaluation.eval_period_iterations=200"]
EASY_VIEWS = ["crops.global_crops_scale=[0.9,1.0]", "crops.local_crops_number=0"]
MILD_CROPS = ["crops.global_crops_scale=[0.5,1.0]", "crops.local_crops_scale=[0.3,0.6]"]
VARIANTS: dict[str, tuple[list[str], str]] = {
    "tiny_cpu": ([], "the quick start's recipe (400 iterations)"),
    "ls_off": (LS_OFF, "no LayerScale: the class token sees the image at initialisation"),
    "ls_off_t04": (LS_OFF + TEMP04, "+ teacher temperature 0.04 throughout"),
    "ls_off_t04_mild": (LS_OFF + TEMP04 + MILD_CROPS, "+ milder crops (global 0.5-1, local 0.3-0.6)"),
    "ls_off_t04_mild_m99": (LS_OFF + TEMP04 + MILD_CROPS + ["teacher.momentum_teacher=0.99"],
                            "+ teacher momentum 0.99"),
    "ls_off_t04_mild_lr4": (LS_OFF + TEMP04 + MILD_CROPS + ["optim.base_lr=0.016"], "+ 4x learning rate"),
    "ls_off_t04_mild_k256": (LS_OFF + TEMP04 + MILD_CROPS + ["dino.head_n_prototypes=256"], "+ 256 prototypes"),
    "ls_off_t04_mild_sk": (LS_OFF + TEMP04 + MILD_CROPS + ["train.centering=sinkhorn_knopp"],
                           "+ Sinkhorn-Knopp instead of centering"),
    "ls_off_mild_t02": (LS_OFF + MILD_CROPS + _temp(0.02), "no LayerScale, milder crops, teacher temperature 0.02"),
    "ls_off_mild_t01": (LS_OFF + MILD_CROPS + _temp(0.01), "... teacher temperature 0.01"),
    "ls_off_mild_t01_to_t04": (LS_OFF + MILD_CROPS + _temp(0.01, 0.04), "... teacher temperature 0.01 -> 0.04"),
    "ls_off_mild_t02_b16": (LS_OFF + MILD_CROPS + _temp(0.02) + ["dino.head_bottleneck_dim=16"],
                            "... teacher temperature 0.02, bottleneck 16"),
    "ls_off_mild_t01_b16": (LS_OFF + MILD_CROPS + _temp(0.01) + ["dino.head_bottleneck_dim=16"],
                            "... teacher temperature 0.01, bottleneck 16"),
    "ls_off_mild_t01_m99": (LS_OFF + MILD_CROPS + _temp(0.01) + ["teacher.momentum_teacher=0.99"],
                            "... teacher temperature 0.01, teacher momentum 0.99"),
    "ls_off_mild_sk_t04": (LS_OFF + MILD_CROPS + SK + _temp(0.04), "no LayerScale, milder crops, Sinkhorn-Knopp, 0.04"),
    "ls_off_mild_sk_t02": (LS_OFF + MILD_CROPS + SK + _temp(0.02), "... Sinkhorn-Knopp, teacher temperature 0.02"),
    "ls_off_mild_sk_t02_k256": (LS_OFF + MILD_CROPS + SK + _temp(0.02) + ["dino.head_n_prototypes=256"],
                                "... Sinkhorn-Knopp, 0.02, 256 prototypes"),
    "ls_off_mild_sk_t04_noloc": (LS_OFF + MILD_CROPS + SK + _temp(0.04) + ["crops.local_crops_number=0"],
                                 "... Sinkhorn-Knopp, 0.04, no local crops"),
    "easy_views_t02": (LS_OFF + _temp(0.02) + EASY_VIEWS, "no LayerScale, near-identical global crops only, 0.02"),
    "easy_views_sk_t02": (LS_OFF + _temp(0.02) + EASY_VIEWS + SK, "... near-identical global crops only, SK, 0.02"),
    "ls_off_mild_sk_t01": (LS_OFF + MILD_CROPS + SK + _temp(0.01), "no LayerScale, milder crops, Sinkhorn-Knopp, 0.01"),
    "ls_off_mild_sk_t005": (LS_OFF + MILD_CROPS + SK + _temp(0.005), "... Sinkhorn-Knopp, teacher temperature 0.005"),
    "ls_off_t04_mild_2000": (LS_OFF + TEMP04 + MILD_CROPS + ["optim.epochs=50", "optim.warmup_epochs=5",
                                                             "teacher.warmup_teacher_temp_epochs=5"],
                             "no LayerScale, 0.04, milder crops, 2,000 iterations"),
    "frozen_teacher_t01": (LS_OFF + MILD_CROPS + _temp(0.01) + ["teacher.momentum_teacher=1.0"],
                           "diagnostic: the teacher never moves (momentum 1), 0.01"),
    "frozen_teacher_t01_lr10": (LS_OFF + MILD_CROPS + _temp(0.01) + ["teacher.momentum_teacher=1.0", "optim.base_lr=0.04"],
                                "diagnostic: the teacher never moves, 0.01, 10x learning rate"),
    "ls_off_mild_b16_k4096": (LS_OFF + TEMP04 + MILD_CROPS + _head(16, 4096),
                              "no LayerScale, 0.04, milder crops, bottleneck 16 x 4,096 prototypes (ratio 256)"),
    "ls_off_mild_b32_k8192": (LS_OFF + TEMP04 + MILD_CROPS + _head(32, 8192), "... bottleneck 32 x 8,192 (256)"),
    "ls_off_mild_b16_k4096_t02": (LS_OFF + _temp(0.02) + MILD_CROPS + _head(16, 4096),
                                  "... bottleneck 16 x 4,096, teacher temperature 0.02"),
    "ls_off_mild_t01_lr10": (LS_OFF + MILD_CROPS + _temp(0.01) + ["optim.base_lr=0.04"],
                             "no LayerScale, milder crops, teacher temperature 0.01, 10x learning rate"),
    # BatchNorm in the head (DINO's use_bn_in_head): targets differ between images from the first step; iBOT's
    # masking off (the variants above still masked half of the student's global crops); 200 or 400 iterations
    "bn_head": (BN_HEAD, "no LayerScale, BatchNorm in the head, no masking"),
    "bn_head_fixed_scale": (BN_HEAD + FIXED_SCALE, "... prototypes' scale fixed (norm_last_layer)"),
    "bn_head_t04": (BN_HEAD + FIXED_SCALE + TEMP04, "... teacher temperature 0.04 throughout"),
    "bn_head_resnet18": (BN_HEAD + RESNET18, "no LayerScale, BatchNorm in the head, a ResNet-18 instead of the ViT"),
    "bn_head_t04_still": (BN_HEAD + FIXED_SCALE + TEMP04 + STILL + SHORT, "... no flip, colour jitter, blur or "
                          "solarization (200 iterations)"),
    "bn_head_t04_still_m90": (BN_HEAD + FIXED_SCALE + TEMP04 + STILL + SHORT + ["teacher.momentum_teacher=0.9"],
                              "... teacher momentum 0.9"),
    "bn_head_t04_still_m90_sk256": (BN_HEAD + FIXED_SCALE + TEMP04 + STILL + SHORT + FROZEN_PROTOTYPES + SK
                                    + ["teacher.momentum_teacher=0.9", "dino.head_n_prototypes=256"],
                                    "... prototypes frozen, Sinkhorn-Knopp, 256 prototypes"),
    "bn_head_t04_noloc": (BN_HEAD + FIXED_SCALE + TEMP04 + SHORT + ["crops.local_crops_number=0"],
                          "... with the photometric augmentations, no local crops"),
    "identical_views": (BN_HEAD + FIXED_SCALE + TEMP04 + STILL
                        + ["optim.epochs=3", "optim.freeze_last_layer_epochs=3", "optim.weight_decay_end=0.04",
                           "teacher.momentum_teacher=0.99", "crops.local_crops_number=0",
                           "crops.global_crops_scale=[1.0,1.0]"],
                        "sanity check: the two views are the same image (120 iterations)"),
    "mild_views_1200": (MILD_VIEWS + LONG, "BatchNorm head, 0.04, no photometric augmentation, global crops 0.5-1, "
                                           "2 local crops 0.3-0.6, momentum 0.99, 1,200 iterations"),
    "mild_views_1200_resnet18": (MILD_VIEWS + LONG + RESNET18, "... a ResNet-18 instead of the ViT"),
    "mild_views_600_lr_div10": (MILD_VIEWS + MEDIUM + ["optim.base_lr=0.0004"],
                                "... 600 iterations, learning rate / 10"),
    "mild_views_600_lr4": (MILD_VIEWS + MEDIUM + ["optim.base_lr=0.016"], "... 600 iterations, learning rate x 4"),
    "mild_views_600_patch4": (MILD_VIEWS + MEDIUM + ["student.patch_size=4"], "... 600 iterations, patch 4"),
    "mild_views_600_koleo": (MILD_VIEWS + MEDIUM + ["dino.koleo_loss_weight=0.1"],
                             "... 600 iterations, with KoLeo (0.1): not pure DINO, for reference"),
    "mild_views_600_crops03": (MILD_VIEWS + MEDIUM + ["crops.global_crops_scale=[0.3,1.0]",
                                                       "crops.local_crops_scale=[0.1,0.3]"],
                               "... 600 iterations, global crops 0.3-1, local crops 0.1-0.3"),
    "mild_views_320_batch128": (MILD_VIEWS + ["train.batch_size_per_gpu=128", "optim.epochs=8",
                                              "optim.warmup_epochs=1"],
                                "... batch 128 (learning rate x 2 by the square-root rule), 320 iterations"),
    "resnet18_jitter_600": (MILD_VIEWS + MEDIUM + RESNET18 + ["crops.color_jitter_probability=0.8",
                                                               "crops.global_crops_scale=[0.3,1.0]"],
                            "ResNet-18, BatchNorm head, colour jitter on, global crops 0.3-1, 600 iterations"),
    "mild_views_600_resnet18_sk": (MILD_VIEWS + MEDIUM + RESNET18 + SK, "ResNet-18, mild views, Sinkhorn-Knopp"),
}


def run(command: list[str], threads: int) -> float:
    """Run a command from the repository root with ``threads`` torch threads; its wall time (s)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def dino_cross_entropy(run_dir: Path, overrides: list[str]) -> tuple[float, float]:
    """(mean DINO global cross-entropy per crop pair over the last 10 % of logged iterations, ln(prototypes))."""
    cfg = load_config(BASE_RECIPE, overrides)
    n_terms = dino_pair_count(cfg.crops.local_crops_number)
    records = read_metrics(run_dir)
    tail = records[-max(1, len(records) // 10):]
    logged = float(np.mean([r["dino_global_crops_loss"] for r in tail]))
    return logged * n_terms / (2 * cfg.dino.loss_weight), math.log(cfg.dino.head_n_prototypes)


def knn_of(weights: Path, data: Path, out: Path, threads: int) -> tuple[float, float]:
    """k-NN top-1 (%) of an encoder export or run on the clean digits, and the evaluation's wall time."""
    result_dir = out / "knn"
    seconds = 0.0
    if not list(result_dir.glob("knn_*.json")):
        seconds = run([sys.executable, "-m", "dinov2.eval.knn", "--pretrained-weights", str(weights),
                       "--train-dataset", str(data / "train"), "--val-dataset", str(data / "val"),
                       "--output-dir", str(result_dir), "--crop-size", "32", "--nb-knn", str(K),
                       "--num-workers", "0", "--quiet"], threads)
    (result_path,) = result_dir.glob("knn_*.json")
    return float(load_result(result_path)["results"]["k"][str(K)]["top1"]), seconds


def evaluate_variant(name: str, overrides: list[str], data: Path, out: Path, seed: int, threads: int) -> dict:
    """Train one variant (or resume it) and score it."""
    run_dir = out / name
    all_overrides = [f"train.dataset_path={data}", f"train.seed={seed}", *PURE_DINO, *overrides]
    train_seconds = run([sys.executable, "-m", "dinov2.train", "--config-file", str(BASE_RECIPE),
                         "--output-dir", str(run_dir), *all_overrides], threads)
    cross_entropy, uniform = dino_cross_entropy(run_dir, all_overrides)
    top1, _ = knn_of(run_dir, data, run_dir, threads)
    iterations = read_metrics(run_dir)[-1]["iteration"] + 1
    return {"variant": name, "overrides": overrides, "iterations": iterations, "train_seconds": round(train_seconds, 1),
            "dino_global_ce": round(cross_entropy, 3), "ln_prototypes": round(uniform, 3), "knn_top1": top1}


# name -> backbone overrides of the randomly initialised baselines
RANDOM_BACKBONES = {"random_init": [], "random_init_ls_off": LS_OFF}


def baselines(data: Path, out: Path, seed: int, threads: int) -> list[dict]:
    """Raw pixels, and the recipe's backbone at initialisation, with and without LayerScale (encoder exports)."""
    rows = [{"variant": "baseline: raw pixels",
             "knn_top1": raw_pixel_knn(load_split(data, "train"), load_split(data, "val"), K)["top1"]}]
    for name, overrides in RANDOM_BACKBONES.items():
        export = out / name
        if not (export / "eval").is_dir():
            random_teacher_export(export, load_config(BASE_RECIPE, [f"train.dataset_path={data}", *overrides]), seed)
        top1, _ = knn_of(export, data, export, threads)
        rows.append({"variant": f"baseline: {name.replace('_', ' ')} (tiny_cpu backbone)", "knn_top1": top1})
    return rows


def table(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    lines = ["| variant | what it tests | iterations | train s | DINO global CE | ln(K) | k-NN top-1 (%) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        note = VARIANTS.get(row["variant"], ([], ""))[1]
        cells = [row["variant"], note] + [str(row.get(key, "")) for key in
                                           ("iterations", "train_seconds", "dino_global_ce", "ln_prototypes")]
        lines.append("| " + " | ".join(cells) + f" | {row['knn_top1']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", type=Path, default=Path("data/mnist5k"))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/dino_recipe_search"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir():
        build_toy_dataset(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = baselines(args.data, args.out, args.seed, args.threads)
    for name in args.variants:
        rows.append(evaluate_variant(name, VARIANTS[name][0], args.data, args.out, args.seed, args.threads))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    atomic_write_json(args.out / "results.json", rows)
    atomic_write_text(args.out / "table.md", table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
