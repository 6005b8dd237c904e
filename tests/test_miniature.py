"""The miniature's statistics (exps/miniature_stats.py) and expected values (exps/expected_values.py) on hand-made
results, and its two baselines."""

import json
import math

import pytest
import torch
from scipy import stats

from dinov2.eval.baselines import random_teacher_export, raw_pixel_knn
from dinov2.hub import load_backbone
from dinov2.utils.config import CONFIGS_DIR, load_config
from exps import expected_values, miniature_stats
from tests.environment import REPO
from tests.test_report import linear_result, write
from utils.dataset_index import load_split
from utils.make_toy_dataset import build_toy_dataset

# threads -> seed -> method -> linear top-1 at the last epoch (a worse earlier epoch is written too; k-NN = top-1 - 4)
SCORES = {2: {0: {"dinov2": 60.0, "n2n_dinov2": 66.0, "nc": 63.0, "nct": 64.0},
              1: {"dinov2": 58.0, "n2n_dinov2": 65.0, "nc": 62.0, "nct": 61.0},
              2: {"dinov2": 61.0, "n2n_dinov2": 67.0, "nc": 63.5, "nct": 62.0}},
          1: {0: {"dinov2": 59.0, "n2n_dinov2": 66.5, "nc": 59.5, "nct": 63.0},
              1: {"dinov2": 60.0, "n2n_dinov2": 64.0, "nc": 62.0, "nct": 60.0},
              2: {"dinov2": 58.5, "n2n_dinov2": 66.0, "nc": 63.0, "nct": 62.5}}}
PSNR = {2: 15.61, 1: 15.72}
SETTING = {"threads": 2, "torch": "2.14.1", "cpu": "Test CPU", "python": "3.11.7"}


@pytest.fixture
def miniature_root(tmp_path):
    for threads, seeds in SCORES.items():
        for seed, methods in seeds.items():
            for method, top1 in methods.items():
                folder = tmp_path / f"threads_{threads}" / f"seed_{seed}" / "eval" / method
                write(folder / "early.json", linear_result(method, "gauss100", 1.0, top1 - 20, top1 - 19))
                write(folder / "last.json", linear_result(method, "gauss100", 3.0, top1, top1 + 1))
        write(tmp_path / f"threads_{threads}" / "n2n" / "psnr.json", {"denoised_psnr": PSNR[threads]})
        write(tmp_path / f"threads_{threads}" / "environment.json", [{**SETTING, "threads": threads}])
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "raw_pixels.json").write_text(json.dumps(
        {"name": "baseline: raw pixels (k-NN only)", "knn": {"mean": 55.5, "std": None}}))
    return tmp_path


def test_means_and_paired_intervals_by_hand_per_thread_count(miniature_root):
    summary = miniature_stats.summarise_threads(miniature_stats.per_run_scores(miniature_root))
    assert summary["threads"] == [1, 2]
    two = summary["by_threads"]["2"]
    assert two["seeds"] == [0, 1, 2]
    dinov2 = [SCORES[2][s]["dinov2"] for s in range(3)]
    block = two["arms"]["dinov2"]["linear"]
    assert block["mean"] == pytest.approx(sum(dinov2) / 3)
    assert block["std"] == pytest.approx(math.sqrt(sum((v - block["mean"]) ** 2 for v in dinov2) / 2))
    assert two["arms"]["nc"]["knn"]["mean"] == pytest.approx(sum(SCORES[2][s]["nc"] - 4 for s in range(3)) / 3)

    paired = [SCORES[2][s]["nc"] - SCORES[2][s]["dinov2"] for s in range(3)]  # 3.0, 4.0, 2.5: all positive
    nc = two["differences"]["nc - dinov2: linear"]
    half = stats.t.ppf(0.975, 2) * (sum((d - sum(paired) / 3) ** 2 for d in paired) / 2) ** 0.5 / math.sqrt(3)
    assert (nc["low"], nc["high"]) == pytest.approx((sum(paired) / 3 - half, sum(paired) / 3 + half))
    assert nc["excludes_zero"]
    assert not two["differences"]["nct - nc: linear"]["excludes_zero"]  # +1, -1, -1.5
    # at one thread NC - DINOv2 is +0.5, +2, +4.5: its interval includes zero, so the claim does not hold everywhere;
    # N2N + DINOv2 - DINOv2 is positive with an interval above zero at both thread counts
    assert not summary["by_threads"]["1"]["differences"]["nc - dinov2: linear"]["excludes_zero"]
    assert "nc - dinov2: linear" not in summary["holds_at_every_thread_count"]
    assert "n2n_dinov2 - dinov2: linear" in summary["holds_at_every_thread_count"]


def test_tables_name_every_arm_baseline_thread_count_and_setting(miniature_root):
    path = miniature_stats.write_outputs(miniature_root, miniature_stats.per_run_scores(miniature_root),
                                         miniature_root / "report")
    table = path.read_text()
    assert "| linear top-1 (%): 1 thread, 3 seeds | linear top-1 (%): 2 threads, 3 seeds |" in table
    assert "baseline: raw pixels (k-NN only) | - |  | 55.5 |  |" in table
    for name in miniature_stats.ARM_NAMES.values():
        assert name in table
    assert "| nc - dinov2 | +2.3 [" in table and "] * |" in table
    assert table.splitlines()[[line.startswith("| n2n_dinov2 - dinov2") for line in table.splitlines()].index(True)
                              ].endswith("| linear, k-NN |")
    assert "1 thread(s) 15.72 dB, 2 thread(s) 15.61 dB" in table and "Test CPU" in table
    rows = (miniature_root / "report" / "miniature.csv").read_text().splitlines()
    assert rows[0] == "threads,seed,method,linear,knn" and len(rows) == 1 + 24


def test_expected_ranges_are_95_percent_prediction_intervals_over_every_run(miniature_root):
    miniature_stats.write_outputs(miniature_root, miniature_stats.per_run_scores(miniature_root),
                                  miniature_root / "report")
    expected = json.loads((miniature_root / "report" / "expected.json").read_text())
    values = [SCORES[t][s]["nct"] for t in SCORES for s in range(3)]
    mean = sum(values) / 6
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 5)
    half = stats.t.ppf(0.975, 5) * std * math.sqrt(1 + 1 / 6)
    block = expected["arms"]["nct"]["linear"]
    assert (block["n"], block["low"], block["high"]) == (6, pytest.approx(mean - half), pytest.approx(mean + half))
    assert expected["denoiser_psnr"]["low"] == pytest.approx(15.61 - expected_values.PSNR_TOLERANCE_DB)
    assert len(expected["runs"]) == 6 and {s["threads"] for s in expected["settings"]} == {1, 2}
    assert "| DINOv2 w/ NCT (NC + denoised teacher) | 62.1 [" in expected_values.markdown(expected)


def test_a_run_is_checked_against_the_expected_ranges(miniature_root, tmp_path, capsys):
    miniature_stats.write_outputs(miniature_root, miniature_stats.per_run_scores(miniature_root),
                                  miniature_root / "report")
    expected = miniature_root / "report" / "expected.json"
    run = tmp_path / "run_eval"
    for method, top1 in {"dinov2": 59.0, "n2n_dinov2": 40.0, "nc": 62.0, "nct": 62.0}.items():
        write(run / method / "last.json", linear_result(method, "gauss100", 3.0, top1, top1 + 1))
    psnr = tmp_path / "psnr.json"
    write(psnr, {"denoised_psnr": 14.3})
    out = tmp_path / "expected.md"
    assert expected_values.main(["check", str(expected), str(run), "--psnr", str(psnr), "--out", str(out)]) == 0
    assert expected_values.main(["check", str(expected), str(run), "--psnr", str(psnr)]) == 0
    text = capsys.readouterr().out
    assert text == out.read_text()
    assert "| N2N + DINOv2 (denoiser kept at inference) | 40.0 ! |" in text  # linear and k-NN far below
    assert "| DINOv2 on noisy images | 59.0 |" in text
    assert "this run 14.30 dB !" in text and "3 of 9 values outside the expected ranges" in text
    assert expected_values.main(["check", str(tmp_path / "none.json"), str(run)]) == 0
    assert "No expected values for this setting" in capsys.readouterr().out


def test_merged_ranges_equal_those_of_every_machines_runs_together(miniature_root, tmp_path, capsys):
    """Two machines' expected files pooled: the same mean, std and range as one file over all twelve runs."""
    files = []
    for cpu, shift in (("CPU A", 0.0), ("CPU B", 2.5)):
        root = tmp_path / cpu
        measured = miniature_stats.per_run_scores(miniature_root)
        runs = {t: {s: {m: {k: v + shift for k, v in scores.items()} for m, scores in methods.items()}
                    for s, methods in seeds.items()} for t, seeds in measured.items()}
        for threads in SCORES:
            write(root / f"threads_{threads}" / "n2n" / "psnr.json", {"denoised_psnr": PSNR[threads] + shift / 10})
            write(root / f"threads_{threads}" / "environment.json", [{**SETTING, "threads": threads, "cpu": cpu}])
        miniature_stats.write_outputs(root, runs, root / "report")
        files.append(root / "report" / "expected.json")
    merged_path = tmp_path / "merged.json"
    assert expected_values.main(["merge", *map(str, files), "--out", str(merged_path)]) == 0
    merged = json.loads(merged_path.read_text())
    assert capsys.readouterr().out == expected_values.markdown(merged)
    values = [SCORES[t][s]["nc"] + shift for shift in (0.0, 2.5) for t in SCORES for s in range(3)]
    assert merged["arms"]["nc"]["linear"] == pytest.approx(expected_values.t_interval(values, of="value"))
    assert merged["arms"]["nc"]["linear"]["n"] == 12 and len(merged["runs"]) == 12
    assert "CPU B: threads=1 seed=2" in merged["runs"] and len(merged["settings"]) == 4
    assert merged["denoiser_psnr"]["high"] == pytest.approx(15.72 + 0.25 + expected_values.PSNR_TOLERANCE_DB)
    assert expected_values.main(["merge", str(files[0]), str(files[0]), "--out", str(tmp_path / "twice.json")]) == 2
    assert "same processors" in capsys.readouterr().err and not (tmp_path / "twice.json").exists()


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



def test_the_readme_shows_the_committed_expected_values():
    """The quick start compares a run with exps/expected/; the README's table of expected values is that file's."""
    readme = (REPO / "README.md").read_text()
    for path in sorted((REPO / "exps" / "expected").glob("quickstart_*.json")):
        assert expected_values.markdown(json.loads(path.read_text())) in readme, path.name
    assert (REPO / "exps" / "expected" / "quickstart_full_gauss100.json").is_file()
