"""Two gloo ranks (torchrun, one launch) train two steps of every method and backbone family the recipes use, and end
with identical weights: DDP needs a gradient for every trainable parameter, so a parameter a method never uses
(the ViT's mask token without iBOT) would stop it at the second step. DINOv2 itself runs with stochastic depth."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.environment import command_env
from tests.test_contrastive_methods import SMALL_HEADS
from tests.test_dinov2_method_recipes import SMOKE, SMOKE_SIZES, TRAIN_CONFIGS
from dinov2.train.run_files import read_metrics
from utils.make_toy_dataset import build_toy_dataset

REPO = Path(__file__).resolve().parents[1]
# each rank's BatchNorm statistics are its own images' on the CPU (SyncBatchNorm needs CUDA; the checkpoint keeps rank
# 0's), while every parameter stays identical
BATCHNORM_STATISTICS = {"running_mean", "running_var", "num_batches_tracked"}
RESNET18 = ("student.arch=resnet18", "student.resnet_stem=cifar")
HEALTH = ("evaluation.health.rank_images=8",)  # rank 0 measures every iteration, every rank learns the verdict
# name -> (method config, overrides): the recipes' methods, each on the backbone family its recipes train
RUNS = {
    "dinov2_vit": (None, ("student.drop_path_rate=0.1", *HEALTH)),
    "dino_vit": ("method_dino.yaml", SMOKE_SIZES),
    "dino_resnet": ("method_dino.yaml", (*SMOKE_SIZES, *RESNET18)),
    "ibot_vit": ("method_ibot.yaml", SMOKE_SIZES),
    "mocov3_vit": ("method_mocov3.yaml", SMALL_HEADS),
    "simclr_resnet50": ("method_simclr.yaml", (*SMALL_HEADS, "student.resnet_stem=cifar")),
    "simsiam_resnet": ("method_simsiam.yaml", (*SMALL_HEADS, *RESNET18, *HEALTH)),
}

WARM_UP = "dinov2_head_warm_up"

RANK_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path
    import torch
    from utils import distributed
    from dinov2.train.train import parse_args, prepare, run_training

    ctx = distributed.setup("cpu")
    for name, argv in json.loads(Path(sys.argv[1]).read_text()).items():
        cfg, phases = prepare(parse_args(argv), ctx.world_size)
        trainer = run_training(cfg, ctx, phases)
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        torch.save(state, Path(cfg.train.output_dir) / f"weights_rank{ctx.rank}.pt")
    distributed.cleanup()
    """
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_methods")
    build_toy_dataset(root / "digits", limit=2)
    plan = {name: ["--config-file", str(SMOKE), *(["--config-file", str(TRAIN_CONFIGS / config)] if config else []),
                   "--output-dir", str(root / name), f"train.dataset_path={root / 'digits'}", "optim.epochs=1",
                   "optim.warmup_epochs=0", "train.OFFICIAL_EPOCH_LENGTH=2", "train.checkpoint_period=2",
                   *overrides]
            for name, (config, overrides) in RUNS.items()}
    # a head warm-up (frozen backbone: outside its DDP wrapper) then both trained, across the phase boundary
    plan[WARM_UP] = ["--config-file", str(SMOKE), "--output-dir", str(root / WARM_UP), "optim.warmup_epochs=0",
                     "train.OFFICIAL_EPOCH_LENGTH=2", "train.checkpoint_period=2", "student.drop_path_rate=0.1",
                     f"curriculum.phases=[{{dataset_path: '{root / 'digits'}', epochs: 1, train_backbone: false}}, "
                     f"{{dataset_path: '{root / 'digits'}', epochs: 1}}]"]
    (root / "plan.json").write_text(json.dumps(plan))
    (root / "rank_main.py").write_text(RANK_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(root / "rank_main.py"), str(root / "plan.json")]
    result = subprocess.run(command, cwd=REPO, env=command_env(OMP_NUM_THREADS="1"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", [*RUNS, WARM_UP])
def test_two_ranks_train_two_steps_and_stay_identical(trained, name):
    rank0 = torch.load(trained / name / "weights_rank0.pt", weights_only=True)
    rank1 = torch.load(trained / name / "weights_rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        if key.rsplit(".", 1)[-1] not in BATCHNORM_STATISTICS:
            assert torch.equal(rank0[key], rank1[key]), key
    saved = torch.load(trained / name / "model_0000001.pth", weights_only=True)
    assert "world_size: 2" in saved["config"] and len(saved["rng"]) == 2
    assert "derived" in saved["config"]


@pytest.mark.slow
def test_dinov2_ranks_share_the_centers_they_updated(trained):
    rank0 = torch.load(trained / "dinov2_vit" / "weights_rank0.pt", weights_only=True)
    assert not torch.equal(rank0["dino_loss.center"], torch.zeros_like(rank0["dino_loss.center"]))  # it trained


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dinov2_vit", "simsiam_resnet"])
def test_health_is_measured_on_rank_0_while_the_ranks_stay_in_step(trained, name):
    ranks = [record["effective_rank"] for record in read_metrics(trained / name)]
    assert len(ranks) == 2 and all(0.99 <= rank <= 8.0 for rank in ranks)  # 8 images: a rank of at most 8
