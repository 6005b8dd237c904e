"""Your own data: the one command (exps/own_data.sh) at smoke scale on 16-bit single-channel trees, and its parts:
the demo data, the training curves, the examples without a clean copy, the page of runs that were not probed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dinov2.eval.results import iter_result_files, load_result
from dinov2.hub import load_backbone
from exps.report import main as report_main
from exps.training_curves import main as curves_main
from Neighbor2Neighbor.plot_examples import main as examples_main
from tests.environment import REPO, command_env
from utils.generate_noise import generate_noise, output_root
from utils.image_io import iter_image_files, read_image_header, read_pixels
from utils.make_demo_data import main as make_demo_main


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    assert make_demo_main(["--output-dir", str(root), "--digits-per-class", "6", "--tiles-per-image", "3",
                           "--quiet"]) == 0
    return root


def test_the_demo_trees_are_16_bit_single_channel(demo):
    tiles = sorted(iter_image_files(demo / "tiles"))
    assert len(tiles) == 21 and all(t.endswith(".tif") for t in tiles)
    header = read_image_header(demo / "tiles" / tiles[0])
    assert (header.depth, header.channels, header.height, header.width) == ("uint16", 1, 32, 32)
    digits = sorted(iter_image_files(demo / "digits16"))
    assert len(digits) == 60 and sum(d.startswith("val/") for d in digits) == 10
    pixels = np.concatenate([read_pixels(demo / "digits16" / d).ravel() for d in digits[:10]])
    assert pixels.dtype == np.uint16 and len(np.unique(pixels)) > 256  # the blur spreads the 8-bit levels


def _metrics(run: Path, losses: list[float]) -> Path:
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"iteration": i, "total_loss": loss, "dino_target_entropy": 6.9 - i}) + "\n"
        for i, loss in enumerate(losses)))
    return run


def test_training_curves_of_runs(tmp_path, capsys):
    runs = [_metrics(tmp_path / "a", [5.0, 4.0, 3.5]), _metrics(tmp_path / "b", [6.0, float("nan"), 5.0])]
    assert curves_main([*map(str, runs), "--out", str(tmp_path / "c.png"), "--markdown", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "c.md").read_text()
    assert "| a | 3 | 5.000 -> 3.500 | 6.900 -> 4.900 |" in table and "| b | 3 | 6.000 -> 5.000 |" in table
    assert curves_main([str(tmp_path / "missing"), "--out", str(tmp_path / "d.png")]) == 2
    assert "metrics.jsonl is missing" in capsys.readouterr().err


def test_the_page_of_runs_without_probes(tmp_path, capsys):
    figure = tmp_path / "c.png"
    _metrics(tmp_path / "a", [1.0, 0.5])
    assert curves_main([str(tmp_path / "a"), "--out", str(figure)]) == 0
    assert report_main([str(tmp_path / "no_eval"), "--output-dir", str(tmp_path / "report"), "--page", "mine",
                        "--include", str(figure)]) == 2  # without --allow-empty a missing folder is an error
    assert report_main([str(tmp_path / "no_eval"), "--output-dir", str(tmp_path / "report"), "--page", "mine",
                        "--include", str(figure), "--allow-empty"]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "mine" in page and "c.png" in page


def test_examples_without_a_clean_copy(tmp_path, demo):
    generate_noise(demo / "tiles", ["pg20_10"], tmp_path / "noisy", progress=False)
    noisy = output_root(tmp_path / "noisy", "pg20_10")
    assert examples_main(["--noisy", str(noisy), "--denoised", str(demo / "tiles"), "--images", "4", "--out",
                          str(tmp_path / "examples.png")]) == 0
    assert (tmp_path / "examples.png").read_bytes()[:4] == b"\x89PNG"


def _own_data(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    env = command_env(OUT=str(tmp_path / "out"), PROFILE="smoke", WORKERS="1", OMP_NUM_THREADS="1", **variables)
    return subprocess.run(["bash", "exps/own_data.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_own_data_refuses_a_missing_data_folder(tmp_path):
    shown = _own_data(tmp_path)
    assert shown.returncode == 2 and "set DATA to a folder of your noisy images" in shown.stderr
    shown = _own_data(tmp_path, DATA=str(tmp_path / "nowhere"))
    assert shown.returncode == 2 and "does not exist" in shown.stderr and not (tmp_path / "out").exists()


def test_own_data_trains_single_channel_vits_when_asked(tmp_path):
    shown = _own_data(tmp_path, "--dry-run", DATA=str(tmp_path), CHANNELS="1")
    trainings = [line for line in shown.stdout.splitlines() if "dinov2.train" in line]
    assert shown.returncode == 0 and len(trainings) == 4
    assert all("student.in_chans=1" in line for line in trainings)
    default = _own_data(tmp_path, "--dry-run", DATA=str(tmp_path))
    assert default.returncode == 0 and "in_chans" not in default.stdout
    shown = _own_data(tmp_path, DATA=str(tmp_path), CHANNELS="2")
    assert shown.returncode == 2 and "CHANNELS must be 1 or 3, got '2'" in shown.stderr


@pytest.mark.slow
def test_own_data_runs_every_stage_on_16_bit_trees(tmp_path, demo):
    generate_noise(demo / "digits16", ["pg20_10"], tmp_path / "noisy_digits", progress=False)
    generate_noise(demo / "tiles", ["pg20_10"], tmp_path / "noisy_tiles", progress=False)
    labeled = output_root(tmp_path / "noisy_digits", "pg20_10")
    shown = _own_data(tmp_path, DATA=str(output_root(tmp_path / "noisy_tiles", "pg20_10")), LABELED=str(labeled))
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    out = tmp_path / "out"
    denoised = sorted(iter_image_files(out / "denoised"))
    assert len(denoised) == 21 and read_image_header(out / "denoised" / denoised[0]).depth == "uint16"
    assert len(list(iter_image_files(out / "labeled_denoised"))) == 60
    assert load_backbone(out / "export").patch_embed.proj.in_channels == 3  # the export loads
    results = [load_result(path) for path in iter_result_files(out / "eval")]
    assert {(r["protocol"], r["method"]) for r in results} == {
        (protocol, method) for protocol in ("linear", "knn") for method in ("dinov2", "n2n_dinov2", "nc", "nct")}
    for name in ("index.html", "curves.png", "curves.md", "denoising_examples.png", "summary.md"):
        assert (out / "report" / name).is_file(), name
