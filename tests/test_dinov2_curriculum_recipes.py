"""Every training recipe loads and validates against the defaults; the NC / NCT recipes hold the paper's values."""

from pathlib import Path

import pytest

from dinov2.train.curriculum import build_curriculum_schedules, build_phases
from dinov2.utils.checks import check_config
from dinov2.utils.config import CONFIGS_DIR, ConfigError, derived_values, load_config
from dinov2.utils.schedules import build_schedules
from tests.environment import REPO, command_env

RECIPES = sorted((CONFIGS_DIR / "train").glob("*.yaml"))
BRANCHING = {"branch_nc", "branch_nct", "imagenet100_nc", "imagenet100_nc_norestart", "imagenet100_nct", "imagenet1k_nc",
             "imagenet1k_nct"}
FILL = ["curriculum.branch_from=runs/denoised@140", "nct.denoised_dataset_path=data/denoised"]
REQUIRED = {"imagenet1k_nct": ["nct.teacher=runs/denoised@100"]}  # the recipes' ``???`` keys


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_and_validates(recipe: Path):
    cfg = load_config(recipe, [*FILL, *REQUIRED.get(recipe.stem, [])])
    world_size = 4 if recipe.stem.startswith("imagenet1k") else 1
    check_config(cfg, world_size)
    phases = build_phases(cfg)
    assert phases and all(p.epochs > 0 for p in phases)
    assert (recipe.stem in BRANCHING) == bool(cfg.curriculum.phases)
    assert any(p.nct for p in phases) == recipe.stem.endswith("_nct")


@pytest.mark.parametrize("stem", sorted(BRANCHING))
def test_branching_recipes_need_the_branch_point(stem):
    with pytest.raises(ConfigError, match="curriculum.branch_from"):
        build_phases(load_config(CONFIGS_DIR / "train" / f"{stem}.yaml", FILL[1:]))


def _recipe(stem: str, *overrides: str):
    return load_config(CONFIGS_DIR / "train" / f"{stem}.yaml", [*FILL, *REQUIRED.get(stem, []), *overrides])


def test_imagenet100_nc_and_nct_restart_60_epochs_from_epoch_140():
    for stem in ("imagenet100_nc", "imagenet100_nct"):
        cfg = _recipe(stem, "train.dataset_path=data/noisy")
        (phase,) = build_phases(cfg)
        assert (phase.epochs, phase.restart_schedules, phase.init_from) == (60, True, "runs/denoised@140")
        assert phase.dataset_path == "data/noisy" and phase.end == 75000
        schedules = build_curriculum_schedules(cfg, derived_values(cfg, 1)["lr"], [phase])
        assert schedules.lr[0] == 0.0 and schedules.teacher_temp[0] == pytest.approx(0.04)
        assert schedules.lr[12500] == pytest.approx(0.004 * (40 / 1024) ** 0.5)  # peak after the 10-epoch warm-up
    nct = _recipe("imagenet100_nct")
    assert nct.nct.head == "live" and nct.nct.update_centers and nct.nct.blur_mode == "literal"
    assert build_phases(nct)[0].denoised_dataset_path == "data/denoised"


def test_imagenet100_norestart_continues_the_200_epoch_schedule_from_140():
    cfg = _recipe("imagenet100_nc_norestart")
    (phase,) = build_phases(cfg)
    lr = derived_values(cfg, 1)["lr"]
    continued = build_curriculum_schedules(cfg, lr, [phase])
    full = build_schedules(cfg, lr, 200 * 1250)
    assert len(continued) == 60 * 1250
    for name in ("lr", "weight_decay", "momentum", "teacher_temp", "last_layer_lr"):
        assert (getattr(continued, name) == getattr(full, name)[140 * 1250:]).all(), name


def test_imagenet1k_branches_warm_up_5_and_teacher_temperature_15():
    for stem in ("imagenet1k_nc", "imagenet1k_nct"):
        cfg = _recipe(stem, "curriculum.branch_from=runs/denoised@30")
        (phase,) = build_phases(cfg)
        assert (phase.epochs, phase.init_from, phase.end) == (70, "runs/denoised@30", 175000)
        assert cfg.optim.warmup_epochs == 5 and cfg.teacher.warmup_teacher_temp_epochs == 15
        assert cfg.student.arch == "vit_base" and cfg.train.batch_size_per_gpu == 128


def test_imagenet1k_nct_needs_the_final_denoised_teacher_and_freezes_it():
    """The paper froze the denoised run's final (epoch 100) teacher on ImageNet-1k, not the branch point's."""
    without = load_config(CONFIGS_DIR / "train" / "imagenet1k_nct.yaml", FILL)
    with pytest.raises(ConfigError, match=r"'nct.teacher': this recipe needs a value for it"):
        check_config(without, 4)
    cfg = _recipe("imagenet1k_nct", "curriculum.branch_from=runs/denoised@30")
    check_config(cfg, 4)
    assert cfg.nct.teacher == "runs/denoised@100" and build_phases(cfg)[0].init_from == "runs/denoised@30"
    sbatch = (REPO / "exps" / "slurm" / "train_imagenet1k.sbatch").read_text()
    assert "@70" not in sbatch and "denoised@30" in sbatch and "nct.teacher=" in sbatch


def _plan(script: str) -> list[list[str]]:
    import shlex
    import subprocess

    env = command_env(NOISES="gauss100", RUNS="runs", EVALS="evals")
    result = subprocess.run(["bash", script, "--dry-run"], capture_output=True, text=True, env=env, check=True)
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["exps/linear_probe.sh", "exps/linear_probe_nct.sh", "exps/table2.sh"])
def test_shell_recipes_plan_valid_runs_in_dependency_order(script):
    from dinov2.eval.arguments import build_parser, settings_from_args
    from dinov2.train.train import parse_args

    plan = _plan(script)
    trainings = [cmd for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.train"]]
    evaluations = [cmd for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.eval.linear"]]
    assert trainings and len(evaluations) == len(trainings)
    outputs, n_nct = [], 0
    for cmd in trainings:
        args = parse_args(cmd[3:])
        cfg = load_config(args.config_file, args.opts)
        check_config(cfg)
        for phase in build_phases(cfg):
            n_nct += phase.nct
            if phase.init_from:  # branches off a run planned earlier in the script
                assert phase.init_from.rpartition("@")[0] in outputs, phase.init_from
        outputs.append(str(args.output_dir))
    assert "runs/gauss100-200-denoised" in outputs
    assert n_nct == (4 if script.endswith("nct.sh") else 0)  # the paper's four NCT settings
    for cmd in evaluations:  # every probe parses, and reproduces the paper's protocol
        probe = build_parser("linear").parse_args(cmd[3:])
        assert probe.probe_protocol == "paper" and settings_from_args(probe).total_iterations(1) == 12500


def test_table2_plans_three_arms_per_method_with_its_overlay():
    plan = _plan("exps/table2.sh")
    labels = [cmd[cmd.index("--method") + 1] for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.eval.linear"]]
    methods = ["dinov2", "dino", "ibot", "simclr", "mocov3", "simsiam"]
    assert labels == [label for m in methods for label in ((m, f"n2n_{m}", f"nc_{m}") if m != "dinov2"
                                                            else ("dinov2", "n2n_dinov2", "nc"))]
    trainings = [cmd for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.train"]]
    overlays = [[arg for arg in cmd if "method_" in arg] for cmd in trainings]
    assert overlays == [[]] * 3 + [[f"dinov2/configs/train/method_{m}.yaml"] for m in methods[1:] for _ in range(3)]
    nc_dino = trainings[5]
    assert "curriculum.branch_from=runs/table2/dino-gauss100-denoised@140" in nc_dino
    # the ResNet-50 methods are probed on their one feature layer, the ViT methods on the default grid
    evaluations = [cmd for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.eval.linear"]]
    resnet_probes = [cmd[cmd.index("--method") + 1] for cmd in evaluations if "--n-last-blocks" in cmd]
    assert resnet_probes == ["simclr", "n2n_simclr", "nc_simclr", "simsiam", "n2n_simsiam", "nc_simsiam"]


@pytest.mark.slow
def test_table2_miniature_plans_each_methods_three_arms_on_the_cpu_schedule():
    from dinov2.train.train import parse_args

    plan = _plan("exps/table2_miniature.sh")
    trainings = [cmd for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.train"]]
    probes = [cmd for cmd in plan if cmd[:3] == ["python", "-m", "dinov2.eval.linear"]]
    methods = ["dinov2", "dino", "ibot", "simclr", "mocov3", "simsiam"]
    assert len(trainings) == len(probes) == 3 * len(methods)
    for index, cmd in enumerate(trainings):
        method, arm = methods[index // 3], ("noisy", "denoised", "nc")[index % 3]
        args = parse_args(cmd[3:])
        cfg = load_config(args.config_file, args.opts)
        check_config(cfg)
        assert args.output_dir == Path(f"outputs/table2_miniature/{method}/{arm}")
        assert cfg.method.name == (method if method in ("simclr", "mocov3", "simsiam") else "dinov2")
        assert cfg.train.batch_size_per_gpu == 32 and cfg.train.OFFICIAL_EPOCH_LENGTH == 40  # the tiny schedule
        (phase,) = build_phases(cfg)
        if arm == "nc":
            assert phase.init_from == f"outputs/table2_miniature/{method}/denoised@7" and phase.epochs == 3
        else:
            assert phase.epochs == 10 and not phase.init_from
            assert ("denoised" in phase.dataset_path) == (arm == "denoised")
    labels = [cmd[cmd.index("--method") + 1] for cmd in probes]
    assert labels[:6] == ["dinov2", "n2n_dinov2", "nc", "dino", "n2n_dino", "nc_dino"]
    resnet_probes = [cmd[cmd.index("--method") + 1] for cmd in probes if "--n-last-blocks" in cmd]
    assert resnet_probes == ["simclr", "n2n_simclr", "nc_simclr", "simsiam", "n2n_simsiam", "nc_simsiam"]
    baselines = [cmd for cmd in plan if cmd[:2] == ["python", "exps/miniature_baselines.py"]]
    assert [cmd[cmd.index("--output-dir") + 1] for cmd in baselines] == [
        "outputs/table2_miniature/baselines/vit", "outputs/table2_miniature/baselines/resnet18"]
    assert "student.arch=resnet18" in baselines[1] and "--n-last-blocks" in baselines[1]
    assert plan[-1][:2] == ["python", "exps/report.py"]
