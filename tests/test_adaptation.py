"""Continued pretraining from official weights: a head warm-up phase (``train_backbone: false``), then the
frozen starting backbone as the NCT anchor, on the noisy crops themselves when there is no denoised tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from dinov2.eval.results import make_result, write_result
from dinov2.export import main as export_main
from dinov2.hub import load_backbone
from dinov2.train.curriculum import build_phases
from dinov2.train.train import main as train_main
from dinov2.utils.checkpoint import load_checkpoint
from dinov2.utils.config import CONFIGS_DIR, ConfigError, load_config
from exps.adapt_table import main as table_main
from tests.environment import REPO, command_env
from utils.make_toy_dataset import build_toy_dataset

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")
EPOCH = 2


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    build_toy_dataset(root, limit=2)
    return root


@pytest.fixture(scope="module")
def start(digits, tmp_path_factory) -> Path:
    """A backbone pretrained on the clean digits, exported as transformers would hold it."""
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("start")
    assert train_main(["--config-file", SMOKE, "--output-dir", str(root / "run"), f"train.dataset_path={digits}",
                       f"train.OFFICIAL_EPOCH_LENGTH={EPOCH}", "optim.epochs=1"]) == 0
    assert export_main(["--weights", str(root / "run"), "--output-dir", str(root / "hf"), "--format", "hf"]) == 0
    return root / "hf"


def _backbone(state: dict, encoder: str) -> dict[str, torch.Tensor]:
    prefix = f"{encoder}.backbone."
    return {key[len(prefix):]: value for key, value in state["model"].items() if key.startswith(prefix)}


def test_a_warm_up_phase_trains_the_heads_only_and_the_next_phase_the_backbone(digits, start, tmp_path):
    noisy = f"noisy:gauss100:{digits}"
    phases = (f"curriculum.phases=[{{dataset_path: '{noisy}', epochs: 1, train_backbone: false}}, "
              f"{{dataset_path: '{noisy}', epochs: 1, restart_schedules: false, keep_optimizer: true}}]")
    run = tmp_path / "run"
    assert train_main(["--config-file", SMOKE, "--output-dir", str(run), f"train.OFFICIAL_EPOCH_LENGTH={EPOCH}",
                       "train.checkpoint_period=1", "train.max_to_keep=10", f"student.pretrained_weights={start}",
                       phases]) == 0
    initial = load_backbone(start).state_dict()
    warm, adapted = load_checkpoint(run / "model_0000001.pth"), load_checkpoint(run / "model_0000003.pth")
    for encoder in ("student", "teacher"):
        assert all(torch.equal(value, initial[key]) for key, value in _backbone(warm, encoder).items()), encoder
    heads = [key for key in warm["model"] if key.startswith("student.dino_head.")]
    first = load_checkpoint(run / "model_0000000.pth")
    assert any(not torch.equal(warm["model"][k], first["model"][k]) for k in heads)  # the heads learned
    assert any(not torch.equal(value, initial[key]) for key, value in _backbone(adapted, "student").items())
    log = (run / "log.txt").read_text()
    assert "(backbone frozen: heads only)" in log


def test_an_official_backbone_anchors_the_noisy_crops_without_a_denoised_tree(digits, start, tmp_path):
    run = tmp_path / "anchored"
    assert train_main(["--config-file", SMOKE, "--output-dir", str(run), f"train.OFFICIAL_EPOCH_LENGTH={EPOCH}",
                       f"train.dataset_path=noisy:gauss100:{digits}", "optim.epochs=1", "nct.enabled=true",
                       f"nct.teacher={start}", "nct.weight=2.0", f"student.pretrained_weights={start}"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == EPOCH and all(r["nct_dino_global_crops_loss"] > 0 for r in records)
    log = (run / "log.txt").read_text()
    assert "anchors the noisy crops themselves" in log and f"frozen the backbone {start} as the anchor" in log
    frozen = _backbone(load_checkpoint(run / "model_0000001.pth"), "nct.teacher")
    initial = load_backbone(start).state_dict()
    assert frozen.keys() == initial.keys() and all(torch.equal(frozen[k], initial[k]) for k in initial)


def test_an_anchor_without_heads_needs_the_live_heads(digits, start, tmp_path, capsys):
    def train(out: str, *overrides: str) -> int:
        return train_main(["--config-file", SMOKE, "--output-dir", str(tmp_path / out), f"train.dataset_path={digits}",
                           "optim.epochs=1", "nct.enabled=true", *overrides])

    assert train("run", f"nct.teacher={start}", "nct.head=frozen") == 2
    error = capsys.readouterr().err
    assert "config key 'nct.teacher'" in error and "needs nct.head=live" in error
    assert train("run2", f"nct.teacher={tmp_path / 'nowhere'}") == 2
    error = capsys.readouterr().err
    assert "config key 'nct.teacher'" in error and "nowhere does not exist" in error


def test_train_backbone_is_a_boolean_of_dino_style_phases(digits):
    def phases(method: str, value: str) -> list:
        cfg = load_config(overrides=[f"method.name={method}", "crops.local_crops_number=0",
                                     f"curriculum.phases=[{{dataset_path: '{digits}', epochs: 1, "
                                     f"train_backbone: {value}}}]"])
        return build_phases(cfg)

    assert phases("dinov2", "false")[0].train_backbone is False
    with pytest.raises(ConfigError, match=r"phases\[0\].train_backbone': expected a bool"):
        phases("dinov2", "'no'")
    with pytest.raises(ConfigError, match="train_backbone': false is for the DINO-style methods, not simclr"):
        phases("simclr", "false")


def _linear_result(folder: Path, iteration: int, linear: float, knn: float) -> None:
    heads = {"h": {"val": {"top1": linear, "top5": 100.0}}}
    results = {"heads": heads, "selected": {"name": "h", "selected_on": "holdout"},
               "final": {"top1": linear, "top5": 100.0}, "best_on_val": {"name": "h", "top1": linear, "top5": 100.0},
               "knn": {"k": {"10": {"top1": 0.0, "top5": 0.0}, "20": {"top1": knn, "top5": 100.0}},
                       "temperature": 0.07}}
    write_result(make_result("linear", "ckpt", {}, results, iteration=iteration), folder / f"linear_{iteration}.json")


def test_the_adaptation_table_reads_the_newest_result_of_each_arm(tmp_path, capsys):
    values = {"start": (90.0, 40.0), "no_anchor": (70.0, 60.0), "anchored": (89.5, 55.0)}
    for arm, (clean, noisy) in values.items():
        _linear_result(tmp_path / "eval" / f"{arm}_clean", 9, clean - 1, clean)
        _linear_result(tmp_path / "eval" / f"{arm}_noisy", 9, noisy - 1, noisy)
        _linear_result(tmp_path / "eval" / f"{arm}_noisy", 3, 0.0, 0.0)  # an older checkpoint: not the one shown
    assert table_main([str(tmp_path / "eval"), "--out", str(tmp_path / "adapt.md")]) == 0
    table = (tmp_path / "adapt.md").read_text()
    assert "| adapted, anchored | 89.5 (-0.5) | 88.5 (-0.5) | 55.0 (+15.0) | 54.0 (+15.0) |" in table
    assert "| start (before) | 90.0 | 89.0 | 40.0 | 39.0 |" in table
    scores = json.loads((tmp_path / "adapt.json").read_text())
    assert scores["no_anchor"]["clean_knn"] == 70.0 and scores["no_anchor"]["noisy_linear"] == 59.0
    (tmp_path / "eval" / "anchored_clean" / "linear_9.json").unlink()
    assert table_main([str(tmp_path / "eval"), "--out", str(tmp_path / "again.md")]) == 2
    assert "anchored_clean holds no linear-probe result" in capsys.readouterr().err


def _adapt(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    env = command_env(OUT=str(tmp_path / "out"), PROFILE="smoke", OMP_NUM_THREADS="1", **variables)
    return subprocess.run(["bash", "exps/adapt.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_adaptation_recipe_plans_warm_up_control_anchor_and_probes(tmp_path):
    shown = _adapt(tmp_path, "--help")
    assert shown.returncode == 0 and "WEIGHTS" in shown.stdout and "--miniature" in shown.stdout
    weights = tmp_path / "official"
    plan = _adapt(tmp_path, "--dry-run", WEIGHTS=str(weights), DATA="noisy:gauss100:data/x",
                  LABELED_CLEAN="data/x", LABELED_NOISY="noisy:gauss100:data/x", DENOISED="data/x_denoised")
    assert plan.returncode == 0, plan.stderr
    trainings = [line for line in plan.stdout.splitlines() if line.startswith("+ python -m dinov2.train")]
    warm_up, control, anchored = trainings
    assert f"student.pretrained_weights={weights}" in warm_up and "train_backbone:\\ false" in warm_up
    out = tmp_path / "out"
    for arm in (control, anchored):
        assert f"curriculum.branch_from={out}/warmup@1" in arm and "pretrained_weights" not in arm
    assert "nct.teacher" not in control and "branch_nc.yaml" in control
    assert f"nct.teacher={weights}" in anchored and "nct.denoised_dataset_path=data/x_denoised" in anchored
    probes = [line for line in plan.stdout.splitlines() if "dinov2.eval.linear" in line]
    assert len(probes) == 6 and sum(f"--pretrained-weights {weights} " in line for line in probes) == 2
    missing = _adapt(tmp_path, DATA="x", LABELED_CLEAN="y", LABELED_NOISY="z")
    assert missing.returncode == 2 and "set WEIGHTS" in missing.stderr and not (tmp_path / "out").exists()


def test_the_anchor_is_a_checkpoint_by_its_contents_not_its_name(start, tmp_path):
    import shutil

    from dinov2.train.curriculum import nct_teacher_checkpoint

    run = start.parent / "run"
    (checkpoint,) = run.glob("model_*.pth")
    renamed = shutil.copy(checkpoint, tmp_path / "renamed.pth")
    assert nct_teacher_checkpoint(str(renamed), EPOCH) == renamed  # its teacher and centers are frozen
    assert nct_teacher_checkpoint(f"{run}@1", EPOCH) == run / "model_0000001.pth"
    (export,) = run.glob("eval/training_*/teacher_checkpoint.pth")
    for backbone in (export, start, run):  # an encoder export, a transformers folder, a run directory: backbones
        assert nct_teacher_checkpoint(str(backbone), EPOCH) is None
