"""The curriculum: phase switch with restarted schedules, continued schedules, init_from (weights only, fresh
optimizer), exact resume across a phase boundary, and config errors naming the phase key."""

from dataclasses import fields
from pathlib import Path

import pytest
import torch

from utils import distributed
from dinov2.train.curriculum import PhaseSpec, build_phases, parse_checkpoint_reference, read_phase_spec
from dinov2.train.data_setup import build_phase_dataset
from dinov2.train.run_files import read_metrics
from dinov2.train.train import main, parse_args, prepare
from dinov2.train.trainer import Trainer
from dinov2.utils.checkpoint import list_checkpoints, load_checkpoint
from dinov2.utils.config import CONFIGS_DIR, DEFAULT_CONFIG_PATH, ConfigError, load_config
from utils.make_toy_dataset import build_toy_dataset

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")
SCHEDULE_KEYS = ("lr", "last_layer_lr", "wd", "momentum", "teacher_temp")
EPOCH = 2  # iterations per epoch in these tests


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> tuple[Path, Path]:
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    build_toy_dataset(first, limit=2)
    build_toy_dataset(second, limit=2, seed=1)
    return first, second


def _phases(*phases: str) -> str:
    return "curriculum.phases=[" + ", ".join(phases) + "]"


def _argv(out: Path, *overrides: str) -> list[str]:
    return ["--config-file", SMOKE, "--output-dir", str(out), f"train.OFFICIAL_EPOCH_LENGTH={EPOCH}", *overrides]


@pytest.fixture(scope="module")
def plain_run(trees, tmp_path_factory) -> Path:
    """4 epochs on the first tree, one schedule."""
    out = tmp_path_factory.mktemp("plain") / "run"
    assert main(_argv(out, f"train.dataset_path={trees[0]}", "optim.epochs=4")) == 0
    return out


def _two_phases(trees, restart: bool, extra: str = "") -> str:
    first, second = trees
    return _phases(f"{{dataset_path: '{first}', epochs: 2}}",
                   f"{{dataset_path: '{second}', epochs: 2, restart_schedules: {str(restart).lower()}{extra}}}")


def test_switch_restarts_every_schedule_at_the_boundary(trees, tmp_path):
    out = tmp_path / "run"
    assert main(_argv(out, _two_phases(trees, restart=True), "train.checkpoint_period=100")) == 0
    assert [p.name for p in list_checkpoints(out)] == ["model_0000007.pth", "model_0000003.pth"]  # phase ends
    records = read_metrics(out)
    assert [r["phase"] for r in records] == [0] * 4 + [1] * 4
    boundary = records[2 * EPOCH]
    assert boundary["iteration"] == 4
    assert boundary["lr"] == 0.0 and boundary["last_layer_lr"] == 0.0  # warm-up and last-layer freeze again
    assert boundary["momentum"] == pytest.approx(0.992) and boundary["teacher_temp"] == pytest.approx(0.04)
    assert records[3]["lr"] > 0 and records[3]["momentum"] > 0.992 and records[3]["teacher_temp"] == pytest.approx(0.07)
    for before, after in zip(records[:4], records[4:]):  # phase 2 replays phase 1's schedules
        assert all(before[k] == after[k] for k in SCHEDULE_KEYS)


@pytest.mark.slow
def test_no_restart_continues_the_schedules_of_one_long_run(trees, plain_run, tmp_path):
    curriculum = tmp_path / "curriculum"
    assert main(_argv(curriculum, _two_phases(trees, restart=False))) == 0
    got, expected = read_metrics(curriculum), read_metrics(plain_run)
    assert len(got) == len(expected) == 8
    for a, b in zip(got, expected):
        assert all(a[k] == b[k] for k in SCHEDULE_KEYS), a["iteration"]
    assert got[3]["total_loss"] == expected[3]["total_loss"]  # same data and weights before the switch
    assert got[4]["total_loss"] != expected[4]["total_loss"]  # the second tree from the boundary on


def test_no_restart_branch_continues_the_source_schedule_from_its_epoch(trees, plain_run, tmp_path):
    branch = tmp_path / "branch"
    phase = f"{{dataset_path: '{trees[1]}', epochs: 2, restart_schedules: false, init_from: '{plain_run}@2'}}"
    assert main(_argv(branch, _phases(phase), "train.checkpoint_period=100")) == 0
    got, expected = read_metrics(branch), read_metrics(plain_run)[4:]
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert all(a[k] == b[k] for k in SCHEDULE_KEYS), a["iteration"]


def _trainer(out: Path, *overrides: str) -> Trainer:
    cfg, phases = prepare(parse_args(_argv(out, *overrides)), world_size=1)
    datasets = [build_phase_dataset(cfg, phase) for phase in phases]
    trainer = Trainer(cfg, distributed.setup("cpu"), out, datasets, phases)
    trainer.samples_consumed = 0
    return trainer


def test_init_from_loads_student_teacher_centers_but_not_the_optimizer(trees, plain_run, tmp_path):
    source = plain_run
    reference = f"{source}@2"
    path, epoch = parse_checkpoint_reference(reference, 3)  # the source run's own epoch length wins
    assert path == source / "model_0000003.pth" and epoch == 2 and path.is_file()
    saved = load_checkpoint(path)
    trainer = _trainer(tmp_path / "branch", _phases(f"{{dataset_path: '{trees[1]}', epochs: 1}}",
                                                    f"{{dataset_path: '{trees[1]}', epochs: 1, init_from: '{reference}'}}"))
    trainer.optimizer.load_state_dict(saved["optimizer"])  # a used optimizer, as at the end of phase 0
    assert trainer.optimizer.state
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.enter_phase(trainer.phases[1])
    state = trainer.model.state_dict()
    assert state.keys() == saved["model"].keys()
    for key, value in saved["model"].items():
        assert torch.equal(state[key], value), key
    assert any(not torch.equal(before[k], saved["model"][k]) for k in before)
    assert not trainer.optimizer.state  # fresh AdamW moments


@pytest.mark.slow
def test_resume_across_the_boundary_is_exact(trees, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = (_two_phases(trees, restart=True), "student.drop_path_rate=0.2")
    assert main(_argv(straight, *common)) == 0
    assert main(_argv(resumed, *common, "train.stop_after_iterations=3")) == 0  # one short of the boundary
    assert main(_argv(resumed, *common, "train.stop_after_iterations=1")) == 0  # stops exactly at the boundary
    assert load_checkpoint(list_checkpoints(resumed)[0])["phase"] == 0
    assert main(_argv(resumed, *common)) == 0
    keys = ("iteration", "phase", "total_loss", "dino_global_crops_loss", "ibot_loss", *SCHEDULE_KEYS)
    assert [{k: r[k] for k in keys} for r in read_metrics(resumed)] == [
        {k: r[k] for k in keys} for r in read_metrics(straight)]
    a, b = load_checkpoint(straight / "model_0000007.pth"), load_checkpoint(resumed / "model_0000007.pth")
    assert a["phase"] == b["phase"] == 1
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for (pa, sa), (pb, sb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert pa == pb and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "phase, key",
    [
        ("{dataset_path: x}", "curriculum.phases[0].epochs"),
        ("{dataset_path: x, epochs: 2, restart: true}", "curriculum.phases[0].restart"),
        ("{dataset_path: x, epochs: two}", "curriculum.phases[0].epochs"),
        ("{dataset_path: x, epochs: 1, nct: true}", "curriculum.phases[0].nct"),
    ],
)
def test_bad_phases_name_the_key(phase, key):
    cfg = load_config(Path(SMOKE), [_phases(phase)])
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        build_phases(cfg)


def test_missing_init_from_checkpoint_fails_before_any_output(trees, tmp_path, capsys):
    out = tmp_path / "run"
    phase = f"{{dataset_path: '{trees[0]}', epochs: 1, init_from: '{tmp_path}/nowhere@3'}}"
    assert main(_argv(out, _phases(phase))) == 2
    assert "curriculum.phases[0].init_from" in capsys.readouterr().err
    assert not out.exists()


def test_a_launch_builds_its_phases_and_resolves_run_at_epoch_once(trees, plain_run, tmp_path, monkeypatch):
    from dinov2.train import curriculum, trainer

    built, resolved = [], []
    real_build, real_parse = curriculum.build_phases, curriculum.parse_checkpoint_reference
    monkeypatch.setattr(curriculum, "build_phases", lambda cfg: built.append(1) or real_build(cfg))
    monkeypatch.setattr(trainer, "build_phases", lambda cfg: built.append(1) or real_build(cfg))
    monkeypatch.setattr(curriculum, "parse_checkpoint_reference", lambda *a: resolved.append(a) or real_parse(*a))
    phase = f"{{dataset_path: '{trees[1]}', epochs: 1, restart_schedules: false, init_from: '{plain_run}@2'}}"
    assert main(_argv(tmp_path / "branch", _phases(phase), "train.checkpoint_period=100")) == 0
    assert len(built) == 1 and [reference for reference, _ in resolved] == [f"{plain_run}@2"]


def test_the_defaults_file_documents_every_phase_key():
    text = DEFAULT_CONFIG_PATH.read_text()
    comment = text[text.index("curriculum:"):text.index("  phases: []")]
    assert [item.name for item in fields(PhaseSpec) if f"#   {item.name}: " not in comment] == []


@pytest.mark.parametrize("raw, message", [
    ({"dataset_path": "a", "epochs": 1, "epocs": 2}, r"phases\[3\].epocs': unknown key \(expected dataset_path, epochs"),
    ({"dataset_path": "a"}, r"phases\[3\].epochs': is required"),
    ({"dataset_path": "a", "epochs": True}, r"phases\[3\].epochs': expected an integer, got True"),
    ({"dataset_path": "a", "epochs": 1, "nct": "yes"}, r"phases\[3\].nct': expected a bool, got 'yes'"),
    ({"dataset_path": "a", "epochs": 0}, r"phases\[3\].epochs': must be positive"),
    ({"dataset_path": "", "epochs": 1}, r"phases\[3\].dataset_path': is empty"),
    ("a", r"phases\[3\]': expected a mapping"),
])
def test_a_phase_entry_is_checked_against_the_phase_spec_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        read_phase_spec(3, raw)


def test_a_phase_entry_gets_the_spec_defaults():
    assert read_phase_spec(0, {"dataset_path": "a", "epochs": 2}) == PhaseSpec(dataset_path="a", epochs=2)
    assert read_phase_spec(0, {"dataset_path": "a", "epochs": 2}).restart_schedules is True


def test_a_launch_parses_its_tree_spelling_once(trees, tmp_path, monkeypatch):
    from utils import image_tree

    spelling, parsed = f"noisy:gauss50:{trees[0]}", []
    real_parse = image_tree._parse_options
    monkeypatch.setattr(image_tree, "_parse_options", lambda text, *a: parsed.append(text) or real_parse(text, *a))
    assert main(_argv(tmp_path / "run", f"train.dataset_path={spelling}", "optim.epochs=1")) == 0
    assert parsed == [spelling]  # when the phases are built; the checks and the dataset take the parsed tree
