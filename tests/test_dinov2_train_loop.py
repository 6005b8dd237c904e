"""The training loop's outputs: metrics, saved config, encoder export loaded strictly (also through dinov2.hub),
and non-finite losses stopping the run before the step and before any save."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dinov2.hub import backbone_state_dict, config_from_yaml, load_backbone
from dinov2.loss import KoLeoLoss, iBOTPatchLoss
from dinov2.models import build_model_from_cfg
from dinov2.train.run_files import read_metrics
from dinov2.train.train import main
from dinov2.utils.checkpoint import list_checkpoints
from dinov2.utils.config import CONFIGS_DIR
from utils.make_toy_dataset import build_toy_dataset

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    build_toy_dataset(root, limit=2)
    return root


def _argv(tree: Path, out: Path, *overrides: str) -> list[str]:
    return ["--config-file", SMOKE, "--output-dir", str(out), f"train.dataset_path={tree}", "optim.epochs=1",
            *overrides]


@pytest.fixture(scope="module")
def run_dir(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(_argv(tree, out)) == 0
    return out


def test_metrics_and_saved_config(run_dir):
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [0, 1, 2]
    needed = {"total_loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss", "lr",
              "wd", "momentum", "teacher_temp", "images_per_s", "epoch"}
    assert needed <= set(records[0])
    terms = ("dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss")
    assert records[1]["total_loss"] == pytest.approx(sum(records[1][t] for t in terms))
    assert records[0]["lr"] == 0.0 and records[2]["lr"] > 0  # warm-up over the first epoch
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.derived.lr == pytest.approx(0.004 * (4 / 1024) ** 0.5)
    assert saved.optim.base_lr == 0.004 and "lr" not in saved.optim
    assert saved.train.output_dir == str(run_dir)


def test_teacher_export_loads_strictly_into_a_plain_backbone(run_dir):
    export = run_dir / "eval" / "training_2" / "teacher_checkpoint.pth"
    state = torch.load(export, map_location="cpu", weights_only=True)
    cfg = config_from_yaml((run_dir / "config.yaml").read_text())
    backbone, _ = build_model_from_cfg(cfg, only_teacher=True)
    backbone.load_state_dict(backbone_state_dict(state, export), strict=True)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = backbone.eval()(images)
        for source in (run_dir, export, list_checkpoints(run_dir)[0]):
            assert torch.equal(load_backbone(source)(images), expected), source
    wrong = config_from_yaml((run_dir / "config.yaml").read_text())
    wrong.student.arch = "vit_small"
    with pytest.raises(RuntimeError, match="size mismatch|Missing|Unexpected"):
        load_backbone(export, config=wrong)


def _poison(monkeypatch, cls, method, value, at_call):
    original = getattr(cls, method)
    calls = {"n": 0}

    def patched(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls["n"] += 1
        return result + value if calls["n"] == at_call else result

    monkeypatch.setattr(cls, method, patched)


def test_inf_koleo_stops_before_step_and_save(tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _poison(monkeypatch, KoLeoLoss, "forward", float("inf"), at_call=5)  # two KoLeo calls per iteration: it 2
    assert main(_argv(tree, out)) == 1
    error = capsys.readouterr().err
    assert "koleo_loss=inf" in error and "iteration 2" in error
    assert [p.name for p in list_checkpoints(out)] == ["model_0000001.pth"]  # the save of it 2 never happened
    assert not (out / "eval").exists()
    assert [r["iteration"] for r in read_metrics(out)] == [0, 1]


def test_nan_ibot_at_first_iteration_saves_nothing(tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _poison(monkeypatch, iBOTPatchLoss, "forward_masked", float("nan"), at_call=1)
    assert main(_argv(tree, out)) == 1
    error = capsys.readouterr().err
    assert "ibot_loss=nan" in error and "iteration 0" in error
    assert list_checkpoints(out) == [] and not (out / "eval").exists()
