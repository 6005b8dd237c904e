"""DINO and iBOT as recipes of the DINOv2 package (method_dino.yaml, method_ibot.yaml over a size recipe): each
trains, resumes bit-exactly, branches into an NC phase, and exports a backbone the probes load; the overlays set
what the methods are (no LayerScale, no masking or KoLeo for DINO, the shared-head patch loss for iBOT)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from dinov2.eval import knn
from dinov2.eval.results import load_result
from dinov2.train.run_files import read_metrics
from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.train.train import main
from dinov2.utils.checkpoint import list_checkpoints, load_checkpoint
from dinov2.utils.config import CONFIGS_DIR, load_config
from tests.test_dinov2_resume import _assert_same_state

TRAIN_CONFIGS = CONFIGS_DIR / "train"
SMOKE = TRAIN_CONFIGS / "smoke_cpu.yaml"
# the overlays' crop counts and head sizes are the paper's; the smoke run keeps its own small ones
SMOKE_SIZES = ("crops.local_crops_number=2", "dino.head_n_prototypes=64", "ibot.head_n_prototypes=64",
               "crops.global_crops_scale=[0.5,1.0]", "crops.local_crops_scale=[0.2,0.5]", "train.max_to_keep=10",
               "train.checkpoint_period=3")  # a checkpoint at every epoch end: the branch point


def _configs(method: str, *more: str) -> list[str]:
    files = [SMOKE, TRAIN_CONFIGS / f"method_{method}.yaml", *(TRAIN_CONFIGS / name for name in more)]
    return [arg for path in files for arg in ("--config-file", str(path))]


def _train(digit_tree: Path, out: Path, method: str, *overrides: str, extra_configs: tuple[str, ...] = ()) -> None:
    argv = [*_configs(method, *extra_configs), "--output-dir", str(out), f"train.dataset_path={digit_tree}",
            *SMOKE_SIZES, *overrides]
    assert main(argv) == 0


@pytest.mark.parametrize("method", ["dino", "ibot"])
def test_the_overlays_set_what_the_method_is(method):
    cfg = load_config([TRAIN_CONFIGS / "imagenet100_vits16.yaml", TRAIN_CONFIGS / f"method_{method}.yaml"])
    model = SSLMetaArch(load_config([SMOKE, TRAIN_CONFIGS / f"method_{method}.yaml"], list(SMOKE_SIZES)))
    assert not any(".ls1." in name or ".ls2." in name for name in model.student.state_dict())  # no LayerScale
    assert cfg.dino.koleo_loss_weight == 0 and cfg.optim.scaling_rule == "linear_wrt_1024"
    assert cfg.optim.base_lr * 256 / 1024 == pytest.approx(0.0005)  # DINO / iBOT: 0.0005 per 256 images
    assert cfg.train.dataset_path == "data/imagenet100" and cfg.optim.epochs == 200  # the size recipe's
    if method == "dino":
        assert cfg.ibot.loss_weight == 0 and cfg.ibot.mask_sample_probability == 0
        assert cfg.dino.head_n_prototypes == 65536 and cfg.crops.local_crops_number == 8
    else:
        assert cfg.ibot.loss_weight == 1 and not cfg.ibot.separate_head and cfg.dino.head_n_prototypes == 8192
        assert cfg.crops.local_crops_number == 10 and list(cfg.ibot.mask_ratio_min_max) == [0.1, 0.5]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dino", "ibot"])
def test_method_trains_resumes_exactly_branches_and_exports(method, digit_tree, tmp_path):
    straight, resumed, branch = tmp_path / "straight", tmp_path / "resumed", tmp_path / "nc"
    straight_losses = assert_resumes_exactly(lambda out, *more: _train(digit_tree, out, method, *more),
                                             straight, resumed)
    terms = set(straight_losses[-1])
    expected = {"total_loss", "dino_local_crops_loss", "dino_global_crops_loss"}
    assert terms == (expected if method == "dino" else expected | {"ibot_loss"})

    # NC: a branch off the run's epoch 1, one more epoch with every schedule restarted
    _train(digit_tree, branch, method, "optim.epochs=1", f"curriculum.branch_from={straight}@1",
           extra_configs=("branch_nc.yaml",))
    records = read_metrics(branch)
    assert records[0]["iteration"] == 0 and records[0]["lr"] == 0.0  # the warm-up starts again

    assert_knn_probe_loads(straight, digit_tree, tmp_path / "knn")


def assert_resumes_exactly(train: Callable[..., None], straight: Path, resumed: Path) -> list[dict]:
    """``train(out, *overrides)`` straight through, and stopped after 4 iterations then resumed: the same loss terms
    and a bit-identical final checkpoint. Returns the loss terms of every logged iteration."""
    train(straight)
    train(resumed, "train.stop_after_iterations=4")
    train(resumed)
    straight_losses = [{k: v for k, v in r.items() if k.endswith("_loss")} for r in read_metrics(straight)]
    assert straight_losses == [{k: v for k, v in r.items() if k.endswith("_loss")} for r in read_metrics(resumed)]
    final = list_checkpoints(straight)[0].name
    _assert_same_state(load_checkpoint(straight / final), load_checkpoint(resumed / final))
    return straight_losses


def assert_knn_probe_loads(run: Path, digit_tree: Path, out: Path) -> None:
    """The run's newest export loads in the k-NN probe (the digits fixture has no val split: train serves as
    both) and gives a score."""
    argv = ["--pretrained-weights", str(run), "--train-dataset", str(digit_tree / "train"),
            "--val-dataset", str(digit_tree / "train"), "--output-dir", str(out), "--crop-size", "16",
            "--num-workers", "0", "--batch-size", "8", "--nb-knn", "1", "--device", "cpu", "--quiet"]
    assert knn.main(argv) == 0
    (result_file,) = out.glob("knn_*.json")
    assert 0.0 <= load_result(result_file)["results"]["k"]["1"]["top1"] <= 100.0


def test_norm_last_layer_keeps_the_prototype_scale_at_one(digit_tree, tmp_path):
    _train(digit_tree, tmp_path / "run", "dino", "dino.head_norm_last_layer=true", "optim.epochs=1")
    model = load_checkpoint(list_checkpoints(tmp_path / "run")[0])["model"]
    for branch in ("student", "teacher"):
        assert torch.equal(model[f"{branch}.dino_head.last_layer.weight_g"], torch.ones(64, 1)), branch
    cfg = load_config([SMOKE, TRAIN_CONFIGS / "method_dino.yaml"], [*SMOKE_SIZES, "dino.head_norm_last_layer=true"])
    head = SSLMetaArch(cfg).student["dino_head"]
    assert not head.last_layer.weight_g.requires_grad and head.last_layer.weight_v.requires_grad
