"""A 2-process gloo DDP run on the CPU (torchrun) ends with identical weights on both ranks."""

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from dinov2.utils.config import CONFIGS_DIR
from utils.make_toy_dataset import build_toy_dataset
from tests.environment import command_env

REPO = Path(__file__).resolve().parents[1]

RANK_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from utils import distributed
    from dinov2.train.train import parse_args, prepare, run_training

    args = parse_args(sys.argv[1:])
    ctx = distributed.setup()
    cfg = prepare(args, ctx.world_size)
    trainer = run_training(cfg, ctx)
    state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    torch.save(state, Path(cfg.train.output_dir) / f"weights_rank{ctx.rank}.pt")
    distributed.cleanup()
    """
)


def test_two_rank_gloo_run_keeps_ranks_identical(tmp_path):
    tree = tmp_path / "digits"
    build_toy_dataset(tree, limit=2)
    script = tmp_path / "rank_main.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
        "--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir", str(out),
        f"train.dataset_path={tree}", "optim.epochs=1", "student.drop_path_rate=0.1",
    ]
    env = command_env(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(out / "weights_rank0.pt", weights_only=True)
    rank1 = torch.load(out / "weights_rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    initial_center = torch.zeros_like(rank0["dino_loss.center"])
    assert not torch.equal(rank0["dino_loss.center"], initial_center)  # the run really trained
    saved = torch.load(out / "model_0000002.pth", weights_only=True)
    assert len(saved["rng"]) == 2 and "derived" in saved["config"] and "world_size: 2" in saved["config"]
