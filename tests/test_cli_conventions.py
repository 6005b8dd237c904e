"""Every Python CLI answers --help with usage and follows the shared spellings; every shell recipe answers --help
with its header and --dry-run with its plan, running and writing nothing."""

import importlib
import subprocess
from pathlib import Path

import pytest

from tests.environment import command_env

REPO = Path(__file__).resolve().parents[1]
CLIS = [
    "dinov2.train.train", "dinov2.eval.linear", "dinov2.eval.knn", "dinov2.eval.instance_recog", "dinov2.export",
    "Neighbor2Neighbor.train", "Neighbor2Neighbor.denoise", "Neighbor2Neighbor.evaluate_psnr",
    "Neighbor2Neighbor.plot_examples", "Neighbor2Neighbor.weights", "process_metadata", "utils.generate_noise",
    "utils.make_toy_dataset", "utils.make_toy_retrieval", "utils.plot_noise_grid", "toy_mnist.run",
    "toy_mnist.aggregate", "exps.report", "exps.miniature_stats", "exps.miniature_baselines", "exps.expected_values",
    "exps.generate_instance_recog_script", "utils.environment", "bench.data_pipeline", "bench.denoise_shards",
    "bench.dino_recipe_search", "bench.linear_probe", "bench.n2n", "bench.n2n_stability", "bench.noise_generation",
    "bench.train_step", "bench.gpu_check", "bench.prototype_loss", "bench.activation_checkpointing",
    "utils.make_subset", "utils.make_demo_data", "exps.training_curves", "Neighbor2Neighbor.gaussian_blur",
    "exps.denoiser_ablation_table", "bench.zs_n2n_per_image", "utils.paper_facts",
]
RECIPES = sorted(str(p.relative_to(REPO)) for pattern in ("exps/*.sh", "Neighbor2Neighbor/*.sh", "toy_mnist/*.sh")
                 for p in REPO.glob(pattern))


@pytest.mark.parametrize("module", CLIS)
def test_every_cli_answers_help_with_the_shared_spellings(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--help"])
    usage = capsys.readouterr().out
    assert exit_info.value.code == 0 and usage.startswith("usage:")
    for old, new in (("--workers", "--num-workers"), ("--no-progress", "--quiet"), ("--dst", "--output-dir")):
        assert old not in usage or new in usage, f"{module}: {old} without {new}"
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--no-such-option"])
    assert exit_info.value.code == 2  # bad arguments: exit status 2


def test_every_recipe_is_listed():
    assert set(RECIPES) >= {"exps/quickstart.sh", "exps/miniature.sh", "exps/linear_probe.sh",
                            "exps/linear_probe_nct.sh", "Neighbor2Neighbor/linear_probe_n2n.sh",
                            "Neighbor2Neighbor/instance_recog_n2n.sh", "toy_mnist/mlp_exp.sh"}


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_answers_help_and_dry_run_without_work(recipe, tmp_path):
    env = command_env(DATA_ROOT=str(tmp_path / "data"), OUT=str(tmp_path / "out"),
                      RUNS=str(tmp_path / "runs"), EVALS=str(tmp_path / "evals"), TOY_OUT=str(tmp_path / "toy"),
                      NOISES="gauss100", SEEDS="0", TOY_REPS="1")
    shown = subprocess.run(["bash", recipe, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.startswith("#") and "--dry-run" in shown.stdout, shown.stderr
    plan = subprocess.run(["bash", recipe, "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert any(line.startswith("+ ") for line in plan.stdout.splitlines())  # the plan, one command per line
    assert list(tmp_path.iterdir()) == []  # nothing written
    bad = subprocess.run(["bash", recipe, "--no-such-option"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--no-such-option" in bad.stderr
