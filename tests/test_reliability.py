"""Faults that must not lose or mix results: a lost encoder export, an interrupted overwrite, damaged results and
checkpoints, checkpoint labels, 16-bit images, temporaries of killed writers, stale manifests, crafted pickles,
and shell recipes fed hostile paths."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinov2.eval.backbone import checkpoint_info
from dinov2.eval.retrieval_data import load_retrieval_set
from dinov2.train.run_files import read_metrics
from dinov2.train.train import main as train_main
from dinov2.utils.checkpoint import encoder_export_path, list_checkpoints
from dinov2.utils.config import CONFIGS_DIR
from exps import report
from tests.environment import command_env, dead_pid
from tests.test_report import linear_result, write
from utils.atomic import FOREIGN_TEMPORARY_STALE_S, host_name, remove_stale_temporaries, temporary_path_for
from utils.generate_noise import MANIFEST_FILENAME, GenerationError, generate_noise
from utils.image_io import load_rgb
from utils.make_toy_retrieval import build_toy_retrieval

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")


def _train(tree: Path, out: Path, *overrides: str) -> int:
    return train_main(["--config-file", SMOKE, "--output-dir", str(out), f"train.dataset_path={tree}", *overrides])


@pytest.mark.slow
def test_a_teacher_export_lost_after_its_checkpoint_is_written_again_on_resume(digit_tree, tmp_path):
    out = tmp_path / "run"
    assert _train(digit_tree, out) == 0  # 6 iterations: exports after iterations 2 and 5, checkpoints after 1, 3, 5
    last = encoder_export_path(out, 5)
    expected = torch.load(last, weights_only=True)["teacher"]
    entropies = [record["dino_target_entropy"] for record in read_metrics(out)]
    assert len(entropies) == 6 and all(0.0 <= value <= math.log(64) + 1e-4 for value in entropies)  # 64 prototypes
    last.unlink()  # as if killed after the checkpoint of iteration 5 and before its export
    assert _train(digit_tree, out) == 0  # "nothing to do", but the export is written from the checkpoint
    again = torch.load(last, weights_only=True)["teacher"]
    assert again.keys() == expected.keys() and all(torch.equal(again[k], expected[k]) for k in expected)


def test_every_checkpoint_unreadable_is_refused_naming_them(digit_tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(digit_tree, out, "train.stop_after_iterations=4") == 0
    for path in list_checkpoints(out):
        path.write_bytes(path.read_bytes()[:500])
    assert _train(digit_tree, out) == 1
    err = capsys.readouterr().err
    assert "model_0000003.pth" in err and "model_0000001.pth" in err
    assert len(list_checkpoints(out)) == 2  # nothing was overwritten by a silent restart


@pytest.mark.slow
def test_a_full_checkpoint_is_labelled_like_the_export_of_the_same_iteration(digit_tree, tmp_path):
    out = tmp_path / "run"
    assert _train(digit_tree, out) == 0
    full, export = checkpoint_info(out / "model_0000005.pth"), checkpoint_info(encoder_export_path(out, 5))
    assert (full.iteration, full.epoch, full.tag) == (export.iteration, export.epoch, export.tag) == (5, 2.0,
                                                                                                       "training_5")


def test_an_interrupted_overwrite_is_finished_by_the_next_run(tiny_tree, tmp_path):
    prefix, out = tmp_path / "o", tmp_path / "o-gauss100"
    generate_noise(tiny_tree, ["gauss100"], prefix, seed=1, progress=False)
    broken = tiny_tree / "val" / "n001" / "zz_broken.png"  # last in order: most files are rewritten first
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    with pytest.raises(GenerationError):
        generate_noise(tiny_tree, ["gauss100"], prefix, seed=2, overwrite=True, progress=False)
    assert json.loads((out / MANIFEST_FILENAME).read_text())["overwrite_pending"]
    broken.unlink()
    summary = generate_noise(tiny_tree, ["gauss100"], prefix, seed=2, progress=False)
    assert summary["gauss100"]["written"] == 12 and summary["gauss100"]["skipped"] == 0
    assert "overwrite_pending" not in json.loads((out / MANIFEST_FILENAME).read_text())
    generate_noise(tiny_tree, ["gauss100"], tmp_path / "fresh", seed=2, progress=False)
    for path in sorted(out.rglob("*.png")):
        fresh = tmp_path / "fresh-gauss100" / path.relative_to(out)
        assert np.array_equal(load_rgb(path), load_rgb(fresh)), path


def test_a_noise_manifest_left_by_a_run_that_wrote_nothing_does_not_block_the_next(tiny_tree, tmp_path):
    out = tmp_path / "o-gauss100"
    out.mkdir()
    (out / MANIFEST_FILENAME).write_text(json.dumps({"setting": "gauss100", "seed": 1}))
    summary = generate_noise(tiny_tree, ["gauss100"], tmp_path / "o", seed=2, progress=False)
    assert summary["gauss100"]["written"] == 12
    assert json.loads((out / MANIFEST_FILENAME).read_text())["seed"] == 2


def test_report_names_a_damaged_result_and_skips_it_only_on_request(tmp_path):
    root = tmp_path / "results"
    write(root / "ok.json", linear_result("dinov2", "gauss100", 1.0, 50.0, 51.0))
    (root / "damaged.json").write_text('{"schema": "dinov2-eval-result", "protocol": "lin')
    with pytest.raises(report.ResultError, match="damaged.json"):
        report.collect_results([root])
    with pytest.warns(UserWarning, match="damaged.json"):
        assert len(report.collect_results([root], skip_invalid=True)) == 1


def test_16_bit_grey_levels_are_scaled_by_65535(tmp_path):
    levels = np.full((4, 4), 200, dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "dark.png")
    assert load_rgb(tmp_path / "dark.png").max() == 1  # 200 / 65535 of full scale, not 200 / 255
    levels[0, 0] = 300  # one brighter pixel must not change the others
    Image.fromarray(levels).save(tmp_path / "dark2.png")
    assert np.array_equal(load_rgb(tmp_path / "dark2.png")[1:], load_rgb(tmp_path / "dark.png")[1:])
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(tmp_path / "white.png")
    assert load_rgb(tmp_path / "white.png").min() == 255


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    stale = tmp_path / "a" / f".model_0000001.pth.tmp-{dead_pid()}-0"
    stale.parent.mkdir()
    stale.write_bytes(b"x" * 10)
    live = temporary_path_for(tmp_path / "a" / "image.png")  # this process: alive
    live.write_bytes(b"y")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


def test_temporaries_of_other_machines_are_kept_unless_long_untouched(tmp_path):
    """On a shared filesystem another node's writer is not a process of this machine: its pid proves nothing."""
    ended = dead_pid()
    assert f".tmp-{host_name()}-{os.getpid()}-" in temporary_path_for(tmp_path / "x.png").name
    here = tmp_path / f".a.png.tmp-{host_name()}-{ended}-3"
    busy = tmp_path / f".b.png.tmp-gpu-node-07-{ended}-0"  # a host name with dashes
    old = tmp_path / f".c.png.tmp-gpu-node-07-{ended}-1"
    for path in (here, busy, old):
        path.write_bytes(b"x")
    long_ago = time.time() - FOREIGN_TEMPORARY_STALE_S - 60
    os.utime(old, (long_ago, long_ago))
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([here, old])
    assert busy.exists()


def test_a_denoise_manifest_left_by_a_run_that_wrote_nothing_does_not_block_the_next(tmp_path):
    from Neighbor2Neighbor.arch_unet import UNet
    from Neighbor2Neighbor.denoise import MANIFEST_FILENAME as DENOISE_MANIFEST
    from Neighbor2Neighbor.denoise import main as denoise_main
    from Neighbor2Neighbor.weights import CHECKPOINT_FORMAT, model_config
    from tests.imagetrees import make_tree

    src = make_tree(tmp_path / "noisy", per_class=1)
    dst = tmp_path / "denoised"
    dst.mkdir()
    (dst / DENOISE_MANIFEST).write_text(json.dumps({"model_sha256": "0" * 64, "revisitop_noise": None,
                                                    "noise_seed": None, "precision": "fp32", "tile": 0,
                                                    "tile_overlap": 32}))
    torch.manual_seed(0)
    model = UNet(features=8)
    weights = tmp_path / "w.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_config": model_config(model)},
               weights)
    assert denoise_main(["--weights", str(weights), "--src", str(src), "--dst", str(dst), "--workers", "0",
                         "--no-progress"]) == 0
    assert json.loads((dst / DENOISE_MANIFEST).read_text())["model_sha256"] != "0" * 64


def test_ground_truth_files_that_name_other_classes_are_refused(tmp_path):
    build_toy_retrieval(tmp_path, "toy", size=32)
    assert load_retrieval_set(tmp_path, "toy").gnd  # the real format loads

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    gnd_path = next(tmp_path.rglob("gnd_toy.pkl"))
    gnd_path.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [], "x": Exploit()}))
    with pytest.raises(ValueError, match="system"):
        load_retrieval_set(tmp_path, "toy")
    assert not (tmp_path / "pwned").exists()


def test_shell_recipes_pass_hostile_paths_as_arguments(tmp_path):
    prefix = tmp_path / "trees with space" / "noisy"
    for tree in (f"{prefix}-gauss100", f"{prefix}-gauss100-denoised"):
        (Path(tree) / "train").mkdir(parents=True)
    marker = tmp_path / "injected"
    env = command_env(NOISES="gauss100", ABLATION_NOISES="", NOISY_PREFIX=str(prefix),
                      RUNS=f"{tmp_path}/runs$(touch {marker})", EVALS=str(tmp_path / "evals"),
                      LAUNCHER="echo", EVAL_LAUNCHER="echo")
    result = subprocess.run(["bash", "exps/linear_probe.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    launched = [line for line in result.stdout.splitlines() if line.startswith("dinov2.train ")]
    assert launched and all(f"train.dataset_path={prefix}-gauss100" in line for line in launched[:1])
    assert f"--output-dir {tmp_path}/runs$(touch {marker})/gauss100-200" in launched[0]
