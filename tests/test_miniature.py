"""The miniature's statistics (exps/miniature_stats.py) on hand-made results, and its two baselines."""

import json
import math

import pytest
import torch
from scipy import stats

from dinov2.eval.baselines import random_teacher_export, raw_pixel_knn
from dinov2.hub import load_backbone
from dinov2.utils.config import CONFIGS_DIR, load_config
from exps import miniature_stats
from tests.test_report import linear_result, write
from utils.dataset_index import load_split
from utils.make_toy_dataset import build_toy_dataset

# seed -> method -> (linear top-1 at the last epoch, a worse earlier epoch is written too)
SCORES = {0: {"dinov2": 60.0, "n2n_dinov2": 66.0, "nc": 63.0, "nct": 64.0},
          1: {"dinov2": 58.0, "n2n_dinov2": 65.0, "nc": 62.0, "nct": 61.0},
          2: {"dinov2": 61.0, "n2n_dinov2": 67.0, "nc": 63.5, "nct": 62.0}}


@pytest.fixture
def miniature_root(tmp_path):
    for seed, methods in SCORES.items():
        for method, top1 in methods.items():
            folder = tmp_path / f"seed_{seed}" / "eval" / method
            write(folder / "early.json", linear_result(method, "gauss100", 1.0, top1 - 20, top1 - 19))
            write(folder / "last.json", linear_result(method, "gauss100", 3.0, top1, top1 + 1))
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "raw_pixels.json").write_text(json.dumps(
        {"name": "baseline: raw pixels (k-NN only)", "knn": {"mean": 55.5, "std": None}}))
    return tmp_path


def test_means_and_paired_intervals_by_hand(miniature_root):
    summary = miniature_stats.summarise(miniature_stats.per_seed_scores(miniature_root))
    assert summary["seeds"] == [0, 1, 2]
    dinov2 = [SCORES[s]["dinov2"] for s in SCORES]
    block = summary["arms"]["dinov2"]["linear"]
    assert block["mean"] == pytest.approx(sum(dinov2) / 3)
    assert block["std"] == pytest.approx(math.sqrt(sum((v - block["mean"]) ** 2 for v in dinov2) / 2))
    assert summary["arms"]["nc"]["knn"]["mean"] == pytest.approx(sum(SCORES[s]["nc"] - 4 for s in SCORES) / 3)

    paired = [SCORES[s]["nc"] - SCORES[s]["dinov2"] for s in SCORES]  # 3.0, 4.0, 2.5: all positive
    nc = summary["differences"]["nc - dinov2: linear"]
    half = stats.t.ppf(0.975, 2) * (sum((d - sum(paired) / 3) ** 2 for d in paired) / 2) ** 0.5 / math.sqrt(3)
    assert (nc["low"], nc["high"]) == pytest.approx((sum(paired) / 3 - half, sum(paired) / 3 + half))
    assert nc["excludes_zero"]
    assert not summary["differences"]["nct - nc: linear"]["excludes_zero"]  # +1, -1, -1.5


def test_tables_name_every_arm_and_baseline(miniature_root):
    summary = miniature_stats.summarise(miniature_stats.per_seed_scores(miniature_root))
    path = miniature_stats.write_outputs(summary, miniature_stats.baseline_rows(miniature_root),
                                         miniature_root / "report")
    table = path.read_text()
    assert "baseline: raw pixels (k-NN only) | - | 55.5 |" in table
    for name in miniature_stats.ARM_NAMES.values():
        assert name in table
    assert "| nc - dinov2 | +3.2 [" in table and "] * |" in table
    rows = (miniature_root / "report" / "miniature.csv").read_text().splitlines()
    assert rows[0] == "seed,method,linear,knn" and len(rows) == 1 + 12


def test_stats_without_results_names_the_folder(tmp_path, capsys):
    assert miniature_stats.main([str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_raw_pixel_knn_and_random_init_export(tmp_path):
    root = tmp_path / "digits"
    build_toy_dataset(root, limit=6)
    train, val = load_split(root, "train"), load_split(root, "val")
    pixels = raw_pixel_knn(train, val, k=3)
    assert 0.0 <= pixels["top1"] <= 100.0 and pixels["top5"] >= pixels["top1"]
    cfg = load_config(CONFIGS_DIR / "train" / "smoke_cpu.yaml")
    export = random_teacher_export(tmp_path / "run", cfg, seed=3)
    backbone = load_backbone(tmp_path / "run")
    torch.manual_seed(3)
    again = random_teacher_export(tmp_path / "again", cfg, seed=3)
    assert export.name == again.name == "teacher_checkpoint.pth"
    for key, value in load_backbone(tmp_path / "again").state_dict().items():
        assert torch.equal(value, backbone.state_dict()[key]), key

