"""The README's main command, end to end, at smoke scale: exps/quickstart.sh with QUICKSTART_PROFILE=smoke
(300 digits, a handful of steps per stage) must finish, write every expected file, and every result must
validate; then exps/miniature.sh (two seeds, smoke profile) in another OUT reuses the shared data and denoised tree
and writes its statistics."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dinov2.eval.results import iter_result_files, load_result
from exps import miniature_stats
from exps.report import collect_results, final_scores
from Neighbor2Neighbor.weights import load_denoiser, model_digest
from tests.environment import command_env

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dinov2", "n2n_dinov2", "nc", "nct")
REPORT_FILES = ("index.html", "index.md", "summary.md", "summary.csv", "linear_top1.md", "linear_top1.csv",
                "linear_top1_paper_best.md", "knn_top1.md", "retrieval.md", "retrieval.csv", "noise_grid.png",
                "denoising_examples.png", "linear_curve_gauss100.png", "probe_accuracy.png", "robustness.md",
                "robustness_curve.png")


def _run_recipe(tmp_path: Path, script: str, variables: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``bash SCRIPT gauss100 [ARGS]`` with DATA_ROOT under ``tmp_path``, one worker and one thread, plus
    ``variables``."""
    env = command_env(DATA_ROOT=str(tmp_path / "data"), WORKERS="1", OMP_NUM_THREADS="1", **variables)
    return subprocess.run(["bash", script, "gauss100", *args], cwd=REPO, env=env, capture_output=True, text=True,
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
    robustness = [r for r in results if r["protocol"] == "robustness"]
    assert sorted(r["method"] for r in robustness) == sorted(METHODS)  # the four arms, each on the nine settings
    assert all(len(r["results"]["noises"]) == 9 for r in robustness)
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

    assert "No expected values for this setting" in (report / "expected.md").read_text()  # none for the smoke profile
    assert [setting["threads"] for setting in json.loads((out / "environment.json").read_text())] == [1]

    # the miniature (exps/miniature.sh, one seed at the quick start's thread count) in another OUT of the same
    # checkout: nothing collides, the shared noisy copy, the same denoiser and its tree are found done and reused, and
    # the same seed gives the quick start's numbers (each stage's own skip and resume are tested with the stage; a
    # second quick start in its own OUT is not run: this run covers the same sharing). A second thread count repeats
    # the same stages in its own folder (40 s more): its plan is checked below, its statistics in test_miniature.py
    mini = tmp_path / "out_miniature"
    miniature = _run_recipe(tmp_path, "exps/miniature.sh", {"MINIATURE_PROFILE": "smoke", "SEEDS": "0",
                                                             "THREAD_COUNTS": "1", "OUT": str(mini)})
    assert miniature.returncode == 0, miniature.stdout[-3000:] + miniature.stderr[-3000:]
    assert "0 written" in miniature.stdout
    assert "gauss100            0      300" in miniature.stdout  # the noisy copy: nothing written, 300 skipped
    assert model_digest(load_denoiser(out / "n2n" / "last.pt")) == \
        model_digest(load_denoiser(mini / "threads_1" / "n2n" / "last.pt"))
    summary = json.loads((mini / "report" / "miniature.json").read_text())
    assert summary["threads"] == [1]
    assert set(summary["by_threads"]["1"]["per_seed"]["0"]) == set(miniature_stats.ARMS)
    setting = json.loads((mini / "threads_1" / "environment.json").read_text())
    assert [entry["threads"] for entry in setting] == [1]
    assert final_scores(collect_results([out / "eval"])) == summary["by_threads"]["1"]["per_seed"]["0"]
    assert {row["name"].split(" (")[0] for row in summary["baselines"]} == {
        "baseline: raw pixels", "baseline: backbone at initialisation"}
    # the quick start beside the miniature's expected values: its run is their one run (no range from one value:
    # only the denoiser's PSNR band is compared), so nothing is marked
    check = subprocess.run([sys.executable, "exps/expected_values.py", "check", str(mini / "report" / "expected.json"),
                            str(out / "eval"), "--psnr", str(out / "n2n" / "psnr.json")], cwd=REPO,
                           capture_output=True, text=True, check=True)
    assert "all 1 values inside the expected ranges" in check.stdout and " !" not in check.stdout, check.stdout
    # NC / NCT branch off the same seed's denoised run
    nc_config = (mini / "threads_1" / "seed_0" / "nc" / "config.yaml").read_text()
    assert f"init_from: {mini / 'threads_1' / 'seed_0' / 'dinov2_denoised'}@2" in nc_config


def test_the_miniature_repeats_every_stage_per_thread_count_in_its_own_folder(tmp_path):
    """The plan of two thread counts: per count its setting, denoiser, arms and probes under OUT/threads_<t>."""
    plan = _run_recipe(tmp_path, "exps/miniature.sh", {"MINIATURE_PROFILE": "smoke", "SEEDS": "0 1",
                                                       "THREAD_COUNTS": "1 2", "OUT": str(tmp_path / "m")}, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    commands = [line for line in plan.stdout.splitlines() if line.startswith("+ ")]
    for threads in (1, 2):
        folder = tmp_path / "m" / f"threads_{threads}"
        assert sum(f"--out {folder / 'environment.json'}" in c for c in commands) == 1
        assert sum("Neighbor2Neighbor/train.py" in c and f"--output-dir {folder / 'n2n'}" in c for c in commands) == 1
        for seed in (0, 1):
            runs = folder / f"seed_{seed}"
            assert sum("-m dinov2.train" in c and f"--output-dir {runs}/" in c for c in commands) == 4
            assert sum("-m dinov2.eval.linear" in c and f"--output-dir {runs / 'eval'}/" in c for c in commands) == 4
    assert not (tmp_path / "m").exists()  # a plan writes nothing
