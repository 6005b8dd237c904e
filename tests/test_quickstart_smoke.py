"""The README's main command, end to end, at smoke scale: exps/quickstart.sh with QUICKSTART_PROFILE=smoke
(300 digits, a handful of steps per stage) must finish, write every expected file, and every result must
validate; then exps/miniature.sh (two seeds, smoke profile) in another OUT reuses the shared data and denoised tree
and writes its statistics."""

import json
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dinov2.eval.results import iter_result_files, load_result
from exps import miniature_stats
from tests.environment import command_env

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dinov2", "n2n_dinov2", "nc", "nct")
REPORT_FILES = ("index.html", "index.md", "summary.md", "summary.csv", "linear_top1.md", "linear_top1.csv",
                "linear_top1_paper_best.md", "knn_top1.md", "retrieval.md", "retrieval.csv", "noise_grid.png",
                "denoising_examples.png", "linear_curve_gauss100.png", "probe_accuracy.png")


def _run_recipe(tmp_path: Path, script: str, variables: dict[str, str]) -> subprocess.CompletedProcess:
    """``bash SCRIPT gauss100`` with DATA_ROOT under ``tmp_path``, one worker and one thread, plus ``variables``."""
    env = command_env(DATA_ROOT=str(tmp_path / "data"), WORKERS="1", OMP_NUM_THREADS="1", **variables)
    return subprocess.run(["bash", script, "gauss100"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_quickstart_and_miniature_smoke_run_every_stage_and_share_the_data(tmp_path):
    first = _run_recipe(tmp_path, "exps/quickstart.sh",
                        {"QUICKSTART_PROFILE": "smoke", "OUT": str(tmp_path / "out"), "SEED": "0"})
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "out"
    report = out / "report"
    for name in REPORT_FILES:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    for name in REPORT_FILES:
        if name.endswith(".png"):
            assert (report / name).read_bytes()[:4] == b"\x89PNG", name

    results = [load_result(path) for path in iter_result_files(out / "eval")]  # raises on an invalid file
    linear = [r for r in results if r["protocol"] == "linear"]
    retrieval = [r for r in results if r["protocol"] == "instance_recog"]
    assert {r["method"] for r in linear} == set(METHODS) and {r["noise"] for r in linear} == {"gauss100"}
    assert sorted(r["method"] for r in retrieval) == sorted(METHODS)
    arms = {r["method"]: r["settings"]["arm"] for r in retrieval}
    assert arms["n2n_dinov2"] == "denoised" and arms["dinov2"] == arms["nc"] == arms["nct"] == "noisy"
    nc_epochs = sorted(r["epoch"] for r in linear if r["method"] == "nc")
    assert nc_epochs and nc_epochs[0] > 2.0  # NC exports continue after the switch epoch (2 in the smoke profile)
    assert all(0.0 <= r["results"]["final"]["top1"] <= 100.0 for r in linear)

    summary = (report / "summary.md").read_text()
    for method in METHODS:
        assert f"| gauss100 | {method} |" in summary
    page = (report / "index.html").read_text()
    assert page.count("<img ") == len(list(report.glob("*.png")))
    toy = json.loads((out / "toy_mnist" / "results.json").read_text())
    assert toy  # the toy experiment's summary was written
    psnr = json.loads((out / "n2n" / "psnr.json").read_text())
    assert psnr["images"] == 60 and psnr["denoised_psnr"] > 0
    assert "done in" in first.stdout

    # the miniature (exps/miniature.sh, two seeds) in another OUT of the same checkout: nothing collides, the shared
    # noisy copy and the same denoiser's tree are found done and reused (each stage's own skip and resume are tested
    # with the stage; a second quick start in its own OUT, 110 s, is not run: this run covers the same sharing)
    mini = tmp_path / "out_miniature"
    miniature = _run_recipe(tmp_path, "exps/miniature.sh", {"MINIATURE_PROFILE": "smoke", "SEEDS": "0 1",
                                                             "OUT": str(mini)})
    assert miniature.returncode == 0, miniature.stdout[-3000:] + miniature.stderr[-3000:]
    denoised = sorted((tmp_path / "data").glob("noisy_mnist300-gauss100-denoised-*"))
    assert len(denoised) == 1 and "0 written" in miniature.stdout
    assert "gauss100            0      300" in miniature.stdout  # the noisy copy: nothing written, 300 skipped
    assert (denoised[0] / "denoise_manifest.json").is_file()
    summary = json.loads((mini / "report" / "miniature.json").read_text())
    assert summary["seeds"] == [0, 1]
    for seed in ("0", "1"):
        assert set(summary["per_seed"][seed]) == set(miniature_stats.ARMS)
    assert {row["name"].split(" (")[0] for row in summary["baselines"]} == {
        "baseline: raw pixels", "baseline: backbone at initialisation"}
    # NC / NCT branch off the same seed's denoised run
    nc_config = (mini / "seed_1" / "nc" / "config.yaml").read_text()
    assert f"init_from: {mini / 'seed_1' / 'dinov2_denoised'}@1" in nc_config
    seeds = [OmegaConf.load(run / "dinov2_noisy" / "config.yaml").train.seed for run in (out, mini / "seed_1")]
    assert seeds == [0, 1]
