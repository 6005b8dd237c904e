"""Continued pretraining from official weights: a head warm-up phase (``train_backbone: false``), then the
frozen starting backbone as the NCT anchor, on the noisy crops themselves when there is no denoised tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dinov2.export import main as export_main
from dinov2.train.curriculum import build_phases
from dinov2.train.train import main as train_main
from dinov2.utils.checkpoint import load_checkpoint
from dinov2.utils.config import CONFIGS_DIR, ConfigError, load_config
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
    from dinov2.hub import load_backbone

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
    from dinov2.hub import load_backbone

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
