"""Training health: effective rank and leave-one-out k-NN against direct computations, the alarm's verdicts on
records, and whole runs: a collapse injected, uniform targets, a recipe that learns, resume after a stop."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dinov2.train.health_alarm import COLLAPSED, UNIFORM_TARGETS, AlarmSettings, HealthAlarm
from dinov2.train.health_monitor import ImageSet
from dinov2.train.health_signals import effective_rank, leave_one_out_knn_top1
from dinov2.train.run_files import read_metrics
from dinov2.train.train import EXIT_COLLAPSED
from dinov2.train.train import main as train_main
from dinov2.utils.checkpoint import list_checkpoints
from dinov2.utils.config import CONFIGS_DIR
from exps import report
from utils.make_toy_dataset import build_toy_dataset

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")
TINY = str(CONFIGS_DIR / "train" / "tiny_cpu.yaml")
# measured every 2 iterations on 64 training images; k-NN on 80 held-out digits every 6
HEALTH_ON = ["evaluation.health.rank_images=64", "evaluation.online_knn.images=80",
             "evaluation.health.period_iterations=2", "evaluation.eval_period_iterations=6"]
LEARNS = [  # the recipe search's mild views (bench/dino_recipe_search.py MILD_VIEWS), pure DINO
    "student.layerscale=0", "dino.head_use_bn=true", "ibot.mask_sample_probability=0",
    "dino.head_norm_last_layer=true", "teacher.warmup_teacher_temp=0.04", "teacher.teacher_temp=0.04",
    "crops.blur_mode=none", "crops.color_jitter_probability=0", "crops.hflip_probability=0",
    "crops.solarize_probability=0", "optim.weight_decay_end=0.04", "teacher.momentum_teacher=0.99",
    "crops.global_crops_scale=[0.5,1.0]", "crops.local_crops_number=2", "crops.local_crops_scale=[0.3,0.6]",
    "dino.koleo_loss_weight=0", "ibot.loss_weight=0"]


# ----- signals -----
def test_effective_rank_is_rankme_of_the_singular_values():
    embeddings = torch.randn(50, 12, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 3, 12)
    singular = np.linalg.svd(embeddings.double().numpy(), compute_uv=False)
    p = singular / singular.sum() + 1e-7
    assert effective_rank(embeddings) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert effective_rank(torch.eye(8) * 3.0) == pytest.approx(8.0, rel=1e-5)  # 8 equal directions
    same = torch.randn(1, 16).repeat(30, 1)
    assert effective_rank(same) == pytest.approx(1.0, abs=1e-3)  # one direction: collapse
    with pytest.raises(ValueError, match="N >= 2"):
        effective_rank(torch.randn(1, 4))


def test_leave_one_out_knn_matches_a_direct_vote_without_the_sample_itself():
    generator = torch.Generator().manual_seed(1)
    features, labels = torch.randn(40, 6, generator=generator), torch.randint(0, 3, (40,), generator=generator)
    k, temperature = 5, 0.1
    unit = F.normalize(features, dim=1)
    hits = 0
    for i in range(40):
        similarity = unit @ unit[i]
        similarity[i] = -2.0  # never its own neighbour
        top = similarity.topk(k)
        votes = torch.zeros(3).index_add_(0, labels[top.indices], (top.values / temperature).exp())
        hits += int(votes.argmax() == labels[i])
    assert leave_one_out_knn_top1(features, labels, k, temperature, 3) == pytest.approx(100.0 * hits / 40)
    # a duplicated sample finds its twin, not itself: two copies of each of 5 points, distinct labels per pair
    twins = torch.randn(5, 6, generator=generator).repeat_interleave(2, 0)
    assert leave_one_out_knn_top1(twins, torch.arange(5).repeat_interleave(2), 1, 0.07, 5) == 100.0


# ----- the alarm on records -----
def _alarm(**changes) -> HealthAlarm:
    settings = dict(warmup_iterations=10, entropy_margin=0.01, entropy_patience=3, collapsed_rank=1.05,
                    chance_factor=1.5, collapse_patience=2, n_prototypes=1024, n_classes=10)
    settings.update(changes)
    return HealthAlarm(AlarmSettings(**settings))


def _verdicts(alarm: HealthAlarm, records: list[dict]) -> list[tuple[int, str]]:
    return [(r["iteration"], v["verdict"]) for r in records for v in alarm.observe(r)]


def test_uniform_targets_are_flagged_after_the_warm_up_and_patience_once():
    uniform = math.log(1024)
    records = [{"iteration": i, "dino_target_entropy": uniform} for i in range(30)]
    assert _verdicts(_alarm(), records) == [(12, UNIFORM_TARGETS)]  # iterations 10, 11, 12 after the warm-up
    broken = [{"iteration": i, "dino_target_entropy": uniform if i % 3 else 0.9 * uniform} for i in range(10, 30)]
    assert _verdicts(_alarm(), broken) == []  # never 3 logs in a row
    below = [{"iteration": i, "dino_target_entropy": 0.985 * uniform} for i in range(10, 30)]
    assert _verdicts(_alarm(), below) == []  # 1.5 % below ln K: outside the 1 % margin
    assert _verdicts(_alarm(n_prototypes=None), records) == []  # no DINO targets (contrastive methods)


def test_collapse_needs_a_low_rank_or_chance_knn_at_consecutive_checks():
    def checks(values):
        return [{"iteration": 10 + 5 * i, **v} for i, v in enumerate(values)]
    low, fine = {"effective_rank": 1.01}, {"effective_rank": 30.0, "online_knn": 60.0}
    assert _verdicts(_alarm(), checks([low, fine, low, low])) == [(25, COLLAPSED)]
    chance = {"effective_rank": 30.0, "online_knn": 14.0}  # 10 classes: <= 1.5 x 10 %
    assert _verdicts(_alarm(), checks([chance, chance])) == [(15, COLLAPSED)]
    assert _verdicts(_alarm(n_classes=None), checks([chance, chance])) == []  # no labels: rank only
    # entropy-only records (not health checks) neither count nor break a streak
    mixed = [{"iteration": 10, **low}, {"iteration": 11, "dino_target_entropy": 1.0}, {"iteration": 12, **low}]
    assert _verdicts(_alarm(), mixed) == [(12, COLLAPSED)]
    assert _verdicts(_alarm(), [{"iteration": i, **low} for i in range(10)]) == []  # during the warm-up


def test_a_replayed_alarm_continues_its_streak_and_remembers_its_verdicts():
    uniform = math.log(1024)
    records = [{"iteration": i, "dino_target_entropy": uniform} for i in range(10, 20)]
    straight = _alarm()
    expected = _verdicts(straight, records)
    resumed = _alarm()
    for record in records[:2]:  # what a resumed run replays from its metrics.jsonl
        resumed.observe(record)
    assert _verdicts(resumed, records[2:]) == expected == [(12, UNIFORM_TARGETS)]
    assert _verdicts(resumed, [{"iteration": 30, "dino_target_entropy": uniform}]) == []  # raised once per run


def test_the_quick_starts_recorded_curves_warn_of_uniform_targets_and_never_stop():
    """The health records of the quick start's four arms (seed 0, 2 threads, AMD EPYC; ``tests/fixtures``) replayed
    through the alarm at the recipe's settings: its DINO targets turn uniform after the warm-up, its class token
    starts collapsed (LayerScale) but recovers within the warm-up, so "representation collapsed" never fires."""
    from dinov2.utils.config import load_config

    records: dict[str, list[dict]] = {}
    for line in (Path(__file__).parent / "fixtures" / "quickstart_health.jsonl").read_text().splitlines():
        record = json.loads(line)
        records.setdefault(record.pop("arm"), []).append(record)
    settings = AlarmSettings.from_config(load_config([Path(TINY)], []), n_prototypes=1024, n_classes=10)
    assert settings.warmup_iterations == 40
    for arm, arm_records in records.items():
        alarm = HealthAlarm(settings)
        replayed = [(r["iteration"], v["verdict"]) for r in arm_records for v in alarm.observe(r)]
        assert replayed == [(r["iteration"], v) for r in arm_records for v in r.get("health", [])], arm  # as logged
        assert [v for _, v in replayed] == [UNIFORM_TARGETS], arm
        if arm.startswith("dinov2"):  # the from-scratch arms start collapsed, below the threshold
            assert min(r["effective_rank"] for r in arm_records if "effective_rank" in r) < settings.collapsed_rank


# ----- whole runs -----
@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    build_toy_dataset(root, limit=40)  # 320 train / 80 val digits
    return root


@pytest.fixture(scope="module")
def identical(tmp_path_factory, digits) -> Path:
    """Every image the same digit: a representation trained on it can only collapse."""
    root = tmp_path_factory.mktemp("identical")
    source = next((digits / "train").rglob("*.png"))
    for split in ("train", "val"):
        for label in range(2):
            for i in range(12):
                (root / split / str(label)).mkdir(parents=True, exist_ok=True)
                shutil.copy(source, root / split / str(label) / f"{i}.png")
    return root


def _train(tree: Path, out: Path, *overrides: str, config: str = SMOKE) -> int:
    return train_main(["--config-file", config, "--output-dir", str(out), f"train.dataset_path={tree}", *overrides])


def _health(out: Path) -> list[tuple[int, str]]:
    return [(r["iteration"], v["verdict"]) for r in read_metrics(out) for v in r.get("health", [])]


@pytest.mark.slow
def test_an_injected_collapse_stops_the_run_within_5_percent_of_its_budget_and_a_rerun_continues(
        identical, tmp_path, capsys):
    out, budget = tmp_path / "run", 60  # 20 epochs of 3 iterations
    overrides = [*HEALTH_ON, "optim.epochs=20", "train.stop_on_collapse=true", "evaluation.health.warmup_iterations=0",
                 "student.layerscale=0",  # no LayerScale: a collapse of the data, not of the initialisation
                 "train.checkpoint_period=50"]  # the stop's own checkpoint
    assert _train(identical, out, *overrides) == EXIT_COLLAPSED
    ((iteration, verdict),) = _health(out)
    assert verdict == COLLAPSED and iteration + 1 <= 0.05 * budget
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "representation collapsed" in error_lines[0] and "effective rank" in error_lines[0]
    assert [int(path.stem.split("_")[1]) for path in list_checkpoints(out)][-1] == iteration  # its checkpoint kept
    record = [r for r in read_metrics(out) if r["iteration"] == iteration][0]
    assert record["effective_rank"] < 1.05 and record["health_seconds"] > 0
    assert "warning: HealthWarning: representation collapsed" in (out / "log.txt").read_text()
    assert _train(identical, out, *overrides, "train.stop_after_iterations=4") == 0  # told once: a rerun goes on
    assert _health(out) == [(iteration, COLLAPSED)]


@pytest.mark.slow
def test_uniform_targets_are_flagged_within_5_percent_of_the_budget_without_stopping(digits, tmp_path):
    out, budget = tmp_path / "run", 120  # 40 epochs of 3 iterations; 10 of them run
    overrides = [*HEALTH_ON, "optim.epochs=40", "train.stop_after_iterations=10", "train.stop_on_collapse=true",
                 "evaluation.health.warmup_iterations=0", "student.layerscale=0", "dino.koleo_loss_weight=0",
                 "ibot.loss_weight=0", "teacher.warmup_teacher_temp=100", "teacher.teacher_temp=100"]
    assert _train(digits, out, *overrides) == 0
    verdicts = _health(out)
    assert [v for _, v in verdicts] == [UNIFORM_TARGETS] and verdicts[0][0] + 1 <= 0.05 * budget
    log = (out / "log.txt").read_text()
    assert "warning: HealthWarning: DINO targets uniform" in log and "KoLeo and iBOT may still teach" in log


@pytest.mark.slow
def test_a_recipe_that_learns_raises_no_alarm(digits, tmp_path):
    out = tmp_path / "run"  # the quick start's recipe with mild views: one epoch of 40 iterations
    assert _train(digits, out, *LEARNS, "optim.epochs=1", "optim.warmup_epochs=0",
                  "evaluation.eval_period_iterations=20",
                  "evaluation.health.period_iterations=5", "evaluation.health.rank_images=64",
                  "evaluation.online_knn.images=80", "evaluation.health.warmup_iterations=0",
                  "train.stop_on_collapse=true", "train.num_workers=0", config=TINY) == 0
    records = read_metrics(out)
    assert _health(out) == []
    ranks = [r["effective_rank"] for r in records if "effective_rank" in r]
    knn = [r["online_knn"] for r in records if "online_knn" in r]
    assert len(ranks) == 8 and min(ranks) > 2 and len(knn) == 2 and min(knn) > 30  # k-NN at iterations 19 and 39
    assert max(r["dino_target_entropy"] for r in records[5:]) < 0.9 * math.log(1024)


@pytest.mark.slow
def test_health_checks_leave_training_unchanged(digits, tmp_path):
    states = []
    for name, health in (("on", [*HEALTH_ON, f"evaluation.online_knn.clean_dataset_path={digits}"]), ("off", [])):
        assert _train(digits, tmp_path / name, *health, "train.num_workers=1") == 0
        states.append(torch.load(list_checkpoints(tmp_path / name)[-1], weights_only=False)["model"])
    on, off = states
    assert on.keys() == off.keys() and all(torch.equal(on[k], off[k]) for k in on)
    records = read_metrics(tmp_path / "on")
    assert [r["iteration"] for r in records if "effective_rank" in r] == [1, 3, 5]
    knn = [(r["online_knn"], r["online_knn_clean"]) for r in records if "online_knn" in r]
    assert len(knn) == 1 and knn[0][0] == knn[0][1]  # the same tree as its own clean copy: the same draw


def test_knn_k_is_capped_below_the_smallest_class():
    image_set = ImageSet("online_knn", torch.zeros(9, 1, 2, 2), torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2]), "", 3)
    assert image_set.knn_k(20) == 1 and image_set.knn_k(1) == 1
    assert ImageSet("online_knn", torch.zeros(8, 1, 2, 2), torch.arange(2).repeat(4), "", 2).knn_k(2) == 2


def test_the_report_shows_each_runs_health_curves_and_verdicts(tmp_path):
    runs = []
    for name, verdicts in (("quiet", []), ("alarmed", [{"verdict": UNIFORM_TARGETS, "message": "m"}])):
        run = tmp_path / name
        run.mkdir()
        lines = [{"iteration": i, "total_loss": 5.0 - i, "dino_target_entropy": 6.9, "effective_rank": 1.0 + i,
                  "online_knn": 20.0 + i, **({"health": verdicts} if i == 2 else {})} for i in range(3)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        runs.append(run)
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "none"), "--output-dir", str(out), "--page", "t", "--allow-empty",
                        "--runs", *map(str, runs)]) == 0
    table = (out / "training_health.md").read_text()
    assert "| quiet | 3 |" in table and "1.000 -> 3.000" in table and f"2: {UNIFORM_TARGETS}" in table
    assert "online k-NN" in table and "clean" not in table  # only the curves measured
    assert (out / "training_health.png").stat().st_size > 1000
    assert "training_health.png" in (out / "index.md").read_text()


@pytest.mark.parametrize("override, key", [
    ("evaluation.health.collapse_patience=0", "evaluation.health.collapse_patience"),
    ("evaluation.online_knn.images=1", "evaluation.online_knn.images"),
    ("evaluation.health.warmup_iterations=-2", "evaluation.health.warmup_iterations"),
])
def test_bad_health_settings_are_refused_naming_the_key(digit_tree, tmp_path, capsys, override, key):
    assert _train(digit_tree, tmp_path / "run", override) == 2
    assert f"'{key}'" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_an_online_knn_tree_without_labels_is_refused_naming_the_key(digit_tree, tmp_path, capsys):
    flat = tmp_path / "flat"
    for i, source in enumerate(sorted((digit_tree / "train").rglob("*.png"))[:6]):
        flat.mkdir(exist_ok=True)
        shutil.copy(source, flat / f"{i}.png")
    assert _train(digit_tree, tmp_path / "run", "evaluation.online_knn.images=4",
                  f"evaluation.online_knn.dataset_path={flat}") == 2
    assert "'evaluation.online_knn.dataset_path'" in capsys.readouterr().err
