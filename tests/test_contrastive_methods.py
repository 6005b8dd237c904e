"""SimCLR, MoCo v3 and SimSiam (method_{simclr,mocov3,simsiam}.yaml over a size recipe): each trains, resumes
bit-exactly, branches into an NC phase and exports a backbone the probes load; their losses equal hand-computed
references; the configs refuse what the methods cannot do."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dinov2.eval import linear
from dinov2.eval.results import load_result
from dinov2.hub import load_backbone
from dinov2.loss import moco_v3_infonce
from dinov2.train.contrastive_arch import ContrastiveMetaArch
from dinov2.train.run_files import read_metrics
from dinov2.train.train import main, prepare, parse_args
from dinov2.utils.checkpoint import list_checkpoints, list_encoder_exports, load_checkpoint
from dinov2.utils.config import ConfigError, load_config
from dinov2.utils.param_groups import build_optimizer, build_param_groups
from tests.test_dinov2_method_recipes import (SMOKE, TRAIN_CONFIGS, _configs, assert_knn_probe_loads,
                                              assert_resumes_exactly)
from tests.test_dinov2_resume import _assert_same_state

METHODS = ("simclr", "mocov3", "simsiam")
SMALL_HEADS = ("method.projection_hidden_dim=32", "method.projection_dim=16", "method.prediction_hidden_dim=16",
               "optim.warmup_epochs=1", "train.max_to_keep=10", "train.checkpoint_period=3")
# the ResNet-50 methods run a ResNet-18 with the small-image stem on the 16 px smoke crops
SMALL_BACKBONE = {"simclr": ("student.arch=resnet18", "student.resnet_stem=cifar"), "mocov3": (),
                  "simsiam": ("student.arch=resnet18", "student.resnet_stem=cifar")}


def _overrides(method: str) -> list[str]:
    return [*SMALL_HEADS, *SMALL_BACKBONE[method]]


def _train(digit_tree: Path, out: Path, method: str, *overrides: str, extra_configs: tuple[str, ...] = ()) -> None:
    argv = [*_configs(method, *extra_configs), "--output-dir", str(out), f"train.dataset_path={digit_tree}",
            *_overrides(method), *overrides]
    assert main(argv) == 0


def _model(method: str, *overrides: str) -> ContrastiveMetaArch:
    cfg = load_config([SMOKE, TRAIN_CONFIGS / f"method_{method}.yaml"], [*_overrides(method), *overrides])
    return ContrastiveMetaArch(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_resumes_exactly_branches_and_exports(method, digit_tree, tmp_path):
    straight, resumed, branch = tmp_path / "straight", tmp_path / "resumed", tmp_path / "nc"
    straight_losses = assert_resumes_exactly(lambda out, *more: _train(digit_tree, out, method, *more),
                                             straight, resumed)
    assert set(straight_losses[-1]) == {"total_loss", f"{method}_loss"}
    assert all(math.isfinite(r["total_loss"]) for r in straight_losses)
    final = list_checkpoints(straight)[0].name

    # NC: a branch off the run's epoch 1, one more epoch with every schedule restarted
    _train(digit_tree, branch, method, "optim.epochs=1", f"curriculum.branch_from={straight}@1",
           extra_configs=("branch_nc.yaml",))
    records = read_metrics(branch)
    assert records[0]["iteration"] == 0 and records[0]["lr"] == 0.0  # the warm-up starts again

    # the export is the student's backbone (MoCo v3's base encoder), and the full checkpoint gives the same
    export = list_encoder_exports(straight)[-1]
    assert export.name == "student_checkpoint.pth"  # named for the encoder it holds
    exported = torch.load(export, weights_only=True)["student"]
    checkpoint = load_checkpoint(straight / final)["model"]
    for key, value in load_backbone(export).state_dict().items():
        assert torch.equal(value, exported[f"backbone.{key}"])
        assert torch.equal(value, checkpoint[f"student.backbone.{key}"]), key
    assert all(key.startswith(("backbone.", "projection.", "prediction.")) for key in exported)

    assert_knn_probe_loads(straight, digit_tree, tmp_path / "knn")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mocov3", "simsiam"])
def test_a_two_phase_curriculum_restarts_at_the_boundary_and_resumes_across_it(method, digit_tree, tmp_path):
    """Denoised then noisy in one run (here the same tree twice): the second phase restarts the schedules with a
    fresh optimizer; a run stopped exactly at the boundary continues bit-exactly."""
    phases = (f"curriculum.phases=[{{dataset_path: '{digit_tree}', epochs: 1}}, "
              f"{{dataset_path: '{digit_tree}', epochs: 1}}]")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(digit_tree, straight, method, phases, "train.checkpoint_period=1")
    _train(digit_tree, resumed, method, phases, "train.checkpoint_period=1", "train.stop_after_iterations=3")
    _train(digit_tree, resumed, method, phases, "train.checkpoint_period=1")
    records = read_metrics(straight)
    assert [r["phase"] for r in records] == [0, 0, 0, 1, 1, 1]
    assert records[3]["lr"] == 0.0 and records[2]["lr"] > 0.0  # the warm-up starts again at the boundary
    assert [r["total_loss"] for r in records] == [r["total_loss"] for r in read_metrics(resumed)]
    _assert_same_state(load_checkpoint(straight / "model_0000005.pth"), load_checkpoint(resumed / "model_0000005.pth"))


@pytest.mark.slow
def test_a_resnet_export_runs_the_linear_probe_on_its_pooled_features(digit_tree, tmp_path):
    _train(digit_tree, tmp_path / "run", "simclr", "optim.epochs=1")
    common = ["--pretrained-weights", str(tmp_path / "run"), "--train-dataset", str(digit_tree / "train"),
              "--val-dataset", str(digit_tree / "train"), "--crop-size", "16", "--num-workers", "0",
              "--batch-size", "8", "--epochs", "1", "--learning-rates", "0.1", "--device", "cpu", "--quiet",
              "--no-knn", "--holdout-fraction", "0.5"]
    assert linear.main([*common, "--output-dir", str(tmp_path / "four")]) == 2  # n_last_blocks 4 does not exist
    assert linear.main([*common, "--output-dir", str(tmp_path / "lin"), "--n-last-blocks", "1",
                        "--avgpool", "false"]) == 0
    (result_file,) = (tmp_path / "lin").glob("linear_*.json")
    result = load_result(result_file)["results"]
    assert 0.0 <= result["final"]["top1"] <= 100.0
    assert len(result["heads"]) == 1 and next(iter(result["heads"])).startswith("classifier_1_blocks_avgpool_False")


def _ntxent(z0: torch.Tensor, z1: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent written out: each of the 2N views against the other 2N - 1, positive = its pair."""
    z = F.normalize(torch.cat([z0, z1]).double(), dim=1)
    n = z0.shape[0]
    losses = []
    for i in range(2 * n):
        others = [j for j in range(2 * n) if j != i]
        logits = torch.stack([z[i] @ z[j] for j in others]) / temperature
        positive = others.index((i + n) % (2 * n))
        losses.append(-(logits[positive] - torch.logsumexp(logits, 0)))
    return torch.stack(losses).mean()


def _infonce(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    q, k = F.normalize(q.double(), dim=1), F.normalize(k.double(), dim=1)
    rows = [-(q[i] @ k[i] / temperature - torch.logsumexp(q[i] @ k.T / temperature, 0)) for i in range(len(q))]
    return torch.stack(rows).mean() * 2 * temperature


@pytest.mark.parametrize("method", METHODS)
def test_the_loss_equals_the_written_out_formula(method):
    torch.manual_seed(0)
    model = _model(method).train()
    batch = {"collated_global_crops": torch.randn(8, 3, 16, 16)}  # two views of 4 images, crop-major
    loss = model.compute_losses(batch)[f"{method}_loss"]
    torch.manual_seed(0)
    twin = _model(method).train()  # the same weights; BatchNorm's running statistics are not read in train mode
    views = batch["collated_global_crops"].chunk(2)
    with torch.no_grad():
        z = [twin.student["projection"](twin.student["backbone"](v)) for v in views]
        if method == "simclr":
            expected = _ntxent(z[0], z[1], 0.1)
        elif method == "mocov3":
            q = [twin.student["prediction"](zz) for zz in z]
            k = [twin.teacher["projection"](twin.teacher["backbone"](v)) for v in views]
            expected = _infonce(q[0], k[1], 0.2) + _infonce(q[1], k[0], 0.2)
        else:
            p = [twin.student["prediction"](zz) for zz in z]
            expected = -0.5 * (F.cosine_similarity(p[0], z[1]).mean() + F.cosine_similarity(p[1], z[0]).mean())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())


def test_moco_v3_infonce_scales_by_two_temperatures_and_checks_shapes():
    torch.manual_seed(1)
    q, k = torch.randn(5, 8, requires_grad=True), torch.randn(5, 8)
    loss = moco_v3_infonce(q, k, 0.2)
    assert loss.item() == pytest.approx(_infonce(q.detach(), k, 0.2).item(), rel=1e-6)
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="queries"):
        moco_v3_infonce(q, k[:4], 0.2)


def test_moco_v3_momentum_encoder_follows_the_student_by_ema():
    model = _model("mocov3")
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    model.update_teacher(0.9)
    student = model.student.state_dict()
    for name, param in model.teacher.named_parameters():
        assert torch.allclose(param, 0.9 * before[name] + 0.1 * student[name])
    assert set(model.teacher) == {"backbone", "projection"} and not _model("simclr").teacher


def test_the_overlays_set_the_published_settings():
    size = TRAIN_CONFIGS / "imagenet100_vits16.yaml"
    simclr, mocov3, simsiam = (load_config([size, TRAIN_CONFIGS / f"method_{m}.yaml"]) for m in METHODS)
    assert (simclr.student.arch, simclr.optim.optimizer, simclr.method.temperature) == ("resnet50", "lars", 0.1)
    assert simclr.optim.base_lr * 256 / 1024 == pytest.approx(0.3) and simclr.crops.solarize_probability == 0
    assert (mocov3.student.arch, mocov3.method.projection_layers, mocov3.method.temperature) == ("vit_small", 3, 0.2)
    assert mocov3.optim.base_lr * 256 / 1024 == pytest.approx(1.5e-4) and mocov3.optim.patch_embed_lr_mult == 0
    assert (simsiam.student.arch, simsiam.optim.optimizer, simsiam.method.prediction_hidden_dim) == \
        ("resnet50", "sgd", 512)
    assert simsiam.optim.base_lr * 256 / 1024 == pytest.approx(0.05)
    for cfg in (simclr, mocov3, simsiam):
        assert cfg.crops.local_crops_number == 0 and cfg.optim.epochs == 200  # the size recipe's epochs


@pytest.mark.parametrize("override, key", [
    (("nct.enabled=true",), "nct.enabled"),
    (("crops.local_crops_number=2",), "crops.local_crops_number"),
    (("train.batch_size_per_gpu=1",), "train.batch_size_per_gpu"),
    (("method.name=dinov2",), "student.arch"),  # a ResNet with DINOv2
    (("method.name=byol",), "method.name"),
    (("optim.optimizer=adam",), "optim.optimizer"),
])
def test_configs_the_methods_cannot_run_are_refused(override, key, tmp_path):
    args = parse_args([*_configs("simclr"), "--output-dir", str(tmp_path / "run"), *_overrides("simclr"), *override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        prepare(args, world_size=1)
    assert not (tmp_path / "run").exists()


def test_batchnorm_parameters_get_no_weight_decay_and_lars_is_lightlys():
    cfg = load_config([SMOKE, TRAIN_CONFIGS / "method_simclr.yaml"], list(_overrides("simclr")))
    model = ContrastiveMetaArch(cfg)
    groups = build_param_groups(model.student.items(), 1, 1.0, 1.0)
    decayed = {name for group in groups if group["wd_multiplier"] for name in group["names"]}
    assert "backbone.conv1.weight" in decayed and "projection.layers.0.weight" in decayed
    assert not any(".bn" in name or name.endswith(".bias") or "layers.1." in name for name in decayed)
    assert type(build_optimizer(cfg, groups, use_cuda=False)).__name__ == "LARS"


def test_the_random_resnet_baseline_is_the_seeded_initialisation(tmp_path):
    from dinov2.eval.baselines import random_teacher_export
    from dinov2.models import ResNetBackbone

    cfg = load_config([SMOKE, TRAIN_CONFIGS / "method_simclr.yaml"], list(_overrides("simclr")))
    random_teacher_export(tmp_path / "random", cfg, seed=3)
    loaded = load_backbone(tmp_path / "random")
    torch.manual_seed(3)
    expected = ResNetBackbone("resnet18", "cifar")
    assert isinstance(loaded, ResNetBackbone) and loaded.stem == "cifar"
    assert all(torch.equal(value, expected.state_dict()[key]) for key, value in loaded.state_dict().items())
