"""The README's main command, end to end, at smoke scale: exps/quickstart.sh with QUICKSTART_PROFILE=smoke
(300 digits, a handful of steps per stage) must finish, write every expected file, and every result must
validate; a second call with another OUT and SEED reuses the shared data and denoised tree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dinov2.eval.results import iter_result_files, load_result

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dinov2", "n2n_dinov2", "nc", "nct")
REPORT_FILES = ("index.html", "index.md", "summary.md", "summary.csv", "linear_top1.md", "linear_top1.csv",
                "linear_top1_paper_best.md", "knn_top1.md", "retrieval.md", "retrieval.csv", "noise_grid.png",
                "denoising_examples.png", "linear_curve_gauss100.png", "probe_accuracy.png")


def _quickstart(tmp_path: Path, out: str = "out", seed: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "QUICKSTART_PROFILE": "smoke", "DATA_ROOT": str(tmp_path / "data"),
           "OUT": str(tmp_path / out), "SEED": seed, "WORKERS": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "exps/quickstart.sh", "gauss100"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_quickstart_smoke_runs_every_stage_and_resumes(tmp_path):
    first = _quickstart(tmp_path)
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

    # another OUT and SEED in the same checkout: nothing collides, the shared data and the same denoiser's tree are
    # found done and reused (each stage's own skip and resume are tested with the stage; a whole second call of the
    # same OUT costs 74 s of process start-ups and is left out)
    third = _quickstart(tmp_path, out="out_seed1", seed="1")
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    denoised = sorted((tmp_path / "data").glob("noisy_mnist300-gauss100-denoised-*"))
    assert len(denoised) == 1 and "0 written" in third.stdout
    assert "gauss100            0      300" in third.stdout  # the noisy copy: nothing written, 300 skipped
    seeds = [OmegaConf.load(run / "dinov2_noisy" / "config.yaml").train.seed for run in (out, tmp_path / "out_seed1")]
    assert seeds == [0, 1]
