"""The SLURM templates render and run their commands as 2 gloo processes on the CPU (srun and scontrol are
replaced by stubs that run the command on this machine)."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dinov2.eval.results import load_result
from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor.arch_unet import UNet
from tests.environment import command_env
from tests.eval_fixtures import make_separable_tree, make_teacher_export
from tests.imagetrees import make_tree
from utils.image_io import iter_image_files
from utils.make_toy_dataset import build_toy_dataset

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((REPO / "exps" / "slurm").glob("*.sbatch"))

SRUN_STUB = textwrap.dedent("""\
    #!/usr/bin/env bash
    # srun --opt=value ... COMMAND: run COMMAND here (one node), noting the CPUs the step would get
    echo "cpus=${SRUN_CPUS_PER_TASK:-unset}" >> "$SRUN_LOG"
    while [ "$#" -gt 0 ] && [ "${1#--}" != "$1" ]; do shift; done
    exec "$@"
""")
SCONTROL_STUB = "#!/usr/bin/env bash\necho localhost\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def slurm_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", SRUN_STUB), ("scontrol", SCONTROL_STUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = command_env(OMP_NUM_THREADS="1", SLURM_SUBMIT_DIR=str(REPO), SLURM_NNODES="1",
                      SLURM_JOB_NODELIST="node001", SLURM_JOB_ID="4242", GPUS_PER_NODE="2",
                      RDZV_PORT=str(_free_port()), SLURM_CPUS_PER_TASK="6", SRUN_LOG=str(tmp_path / "srun.log"))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"  # the stubs before any real srun
    return env


def _sbatch(template: str, env: dict, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(REPO / "exps" / "slurm" / template), *args], cwd=REPO,
                            env={**env, **extra_env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    steps = Path(env["SRUN_LOG"]).read_text().split() if Path(env["SRUN_LOG"]).is_file() else []
    assert set(steps) <= {"cpus=6"}, f"{template}: a step did not get the job's --cpus-per-task: {steps}"
    return result


def test_every_template_parses_and_asks_for_sbatch_resources():
    assert {t.name for t in TEMPLATES} >= {"torchrun.sbatch", "train_imagenet1k.sbatch", "denoise_array.sbatch",
                                           "linear_probe.sbatch", "probe_imagenet1k.sbatch"}
    for template in TEMPLATES:
        subprocess.run(["bash", "-n", str(template)], check=True)
        assert "#SBATCH --nodes=" in template.read_text() and "#SBATCH --gpus-per-node=" in template.read_text()


def test_recipe_plan_uses_the_multi_node_launcher(slurm_env):
    plan = _sbatch("linear_probe.sbatch", slurm_env, "exps/linear_probe.sh", "--dry-run", SLURM_NNODES="2",
                   NOISES="gauss100").stdout
    assert ("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 torchrun --nnodes=2 --nproc_per_node=2 "
            "--rdzv_backend=c10d --rdzv_endpoint=localhost:") in plan
    assert "--rdzv_id=4242 -m dinov2.train" in plan and "srun --nodes=1 --ntasks=1 python -m dinov2.eval.linear" in plan


@pytest.mark.slow
def test_imagenet1k_template_trains_with_two_ranks(slurm_env, tmp_path):
    build_toy_dataset(tmp_path / "digits", limit=2)
    run = tmp_path / "run"
    _sbatch("train_imagenet1k.sbatch", slurm_env, "optim.epochs=1",
            CONFIG=str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"),
            DATA=f"noisy:gauss100:{tmp_path / 'digits'}", RUN=str(run))
    saved = torch.load(run / "model_0000002.pth", weights_only=True)
    assert (tmp_path / "srun.log").read_text() == "cpus=6\n"
    assert "world_size: 2" in saved["config"] and "noisy:gauss100:" in saved["config"]


@pytest.mark.slow
def test_imagenet1k_probe_template_runs_the_paper_protocol_on_two_ranks(slurm_env, tmp_path):
    make_teacher_export(tmp_path / "run", 19)
    make_separable_tree(tmp_path / "data", num_classes=3, train_per_class=4, val_per_class=2)
    out = tmp_path / "eval"
    _sbatch("probe_imagenet1k.sbatch", slurm_env, "--epochs", "2", "--epoch-length", "2", "--crop-size", "32",
            "--num-workers", "0", "--device", "cpu", "--learning-rates", "1e-2", "--quiet",
            WEIGHTS=str(tmp_path / "run"), DATA=f"noisy:gauss50:{tmp_path / 'data'}", OUT=str(out), BATCH="3",
            METHOD="dinov2", NOISE="gauss50")
    result = load_result(out / "linear_training_19.json")
    assert result["settings"]["protocol"] == "paper" and result["settings"]["world_size"] == 2
    assert result["settings"]["batch_size"] == 3 and result["settings"]["iterations"] == 4
    assert result["method"] == "dinov2" and "knn" not in result["results"]
    assert result["settings"]["train_dataset"].startswith("noisy:gauss50")


@pytest.mark.slow
def test_torchrun_template_trains_the_denoiser_with_two_ranks(slurm_env, tmp_path):
    clean = make_tree(tmp_path / "clean", classes=2, per_class=4)
    out = tmp_path / "n2n"
    _sbatch("torchrun.sbatch", slurm_env, "Neighbor2Neighbor/train.py", "--data-dir", f"noisy:gauss50:{clean}:train",
            "--output-dir", str(out), "--epochs", "1", "--batch-size", "4", "--patch-size", "16", "--n-feature", "8",
            "--num-workers", "0", "--device", "cpu", "--quiet")
    assert (out / "last.pt").is_file() and '"world_size": 2' in (out / "config.json").read_text()


@pytest.mark.slow
def test_denoise_array_tasks_and_ranks_write_the_one_process_tree(slurm_env, tmp_path):
    clean = make_tree(tmp_path / "clean", classes=2, per_class=6)
    torch.manual_seed(0)
    torch.save(UNet(features=8).state_dict(), tmp_path / "unet.pt")
    options = ["--num-workers", "0", "--batch-size", "2", "--block-images", "2", "--device", "cpu"]
    src, weights = f"noisy:shot3:{clean}", str(tmp_path / "unet.pt")
    reference = tmp_path / "one_process"
    subprocess.run([sys.executable, "Neighbor2Neighbor/denoise.py", "--weights", weights, "--src", src, "--output-dir",
                    str(reference), "--quiet", *options], cwd=REPO, env=slurm_env, check=True,
                   capture_output=True)
    dst = tmp_path / "sharded"
    for task in (5, 6):  # sbatch --array=5-6: tasks 0/2 and 1/2, two ranks each
        out = _sbatch("denoise_array.sbatch", slurm_env, weights, src, str(dst), *options,
                      SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN="5", SLURM_ARRAY_TASK_COUNT="2").stdout
        assert f"(shard {2 * (task - 5)}/4)" in out and f"(shard {2 * (task - 5) + 1}/4)" in out
    files = sorted(iter_image_files(reference))
    assert files == sorted(iter_image_files(dst)) and len(files) == 24
    assert all((reference / rel).read_bytes() == (dst / rel).read_bytes() for rel in files)
