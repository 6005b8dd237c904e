"""The linear probe under torchrun: each rank takes its share of every global batch, the head gradients are summed
over ranks, and rank 0 writes one result. Two gloo ranks at batch B train the heads of one process at batch 2B."""

import subprocess
import sys
import textwrap

import pytest
import torch

from dinov2.eval import linear
from dinov2.eval.linear_heads import GridTrainer, HeadSpec, LinearHeadGrid
from dinov2.eval.linear_probe import rank_share
from dinov2.eval.results import load_result
from tests.environment import REPO, command_env
from tests.eval_fixtures import make_separable_tree, make_teacher_export

SPECS = [HeadSpec(1, False, 0.5), HeadSpec(2, True, 0.1), HeadSpec(1, True, 2.0)]
STEPS = 4

# the same data and initial heads on every rank; each steps on its share of each global batch of 8
GRID_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from utils import distributed
    from dinov2.eval.linear_heads import GridTrainer
    from dinov2.eval.linear_probe import rank_share
    from tests.test_ddp_probe import STEPS, grid_and_data

    distributed.setup("cpu")
    grid, cls, means, labels = grid_and_data()
    trainer = GridTrainer(grid, STEPS)
    share = rank_share(torch.arange(len(labels)), distributed.rank(), distributed.world_size())
    for step in range(STEPS):
        chosen = share[step * 4:(step + 1) * 4]
        trainer.step(cls[chosen], means[chosen], labels[chosen])
    torch.save(grid.state_dict(), sys.argv[1] + f"/grid_rank{distributed.rank()}.pt")
    distributed.cleanup()
    """
)


def grid_and_data():
    """A small head grid and 32 samples, the same in every process."""
    generator = torch.Generator().manual_seed(0)
    cls, means = torch.randn(32, 2, 6, generator=generator), torch.randn(32, 6, generator=generator)
    labels = torch.randint(0, 3, (32,), generator=generator)
    torch.manual_seed(1)
    return LinearHeadGrid(SPECS, embed_dim=6, num_classes=3), cls, means, labels


@pytest.mark.slow
def test_two_ranks_step_the_heads_of_one_process_on_the_global_batch(tmp_path):
    (tmp_path / "grid_main.py").write_text(GRID_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(tmp_path / "grid_main.py"), str(tmp_path)]
    # the script imports this test module, which is not part of the installed project
    result = subprocess.run(command, cwd=REPO, env=command_env(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    grid, cls, means, labels = grid_and_data()
    trainer = GridTrainer(grid, STEPS)
    for step in range(STEPS):
        trainer.step(cls[step * 8:(step + 1) * 8], means[step * 8:(step + 1) * 8], labels[step * 8:(step + 1) * 8])
    ranks = [torch.load(tmp_path / f"grid_rank{rank}.pt", weights_only=True) for rank in range(2)]
    for key, value in grid.state_dict().items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)


def test_rank_shares_make_up_the_global_batches_of_one_process():
    permutation = torch.randperm(18, generator=torch.Generator().manual_seed(0))
    shares = [rank_share(permutation, rank, 2) for rank in range(2)]
    for start in range(0, 9, 4):  # batch k of 4 on each rank = positions [8k, 8k + 8) of the pass
        together = torch.cat([share[start:start + 4] for share in shares])
        assert sorted(together.tolist()) == sorted(permutation[2 * start:2 * start + 8].tolist())
    padded = [rank_share(permutation[:7], rank, 3) for rank in range(3)]
    assert [len(share) for share in padded] == [3, 3, 3]  # wrapped around, as DistributedSampler pads
    assert set(torch.cat(padded).tolist()) == set(permutation[:7].tolist())
    assert torch.equal(rank_share(permutation, 0, 1), permutation)


def _argv(root, out, batch_size, *extra):
    return ["--train-dataset", str(root / "data" / "train"), "--val-dataset", str(root / "data" / "val"),
            "--pretrained-weights", str(root / "run"), "--output-dir", str(out), "--crop-size", "32",
            "--num-workers", "0", "--batch-size", str(batch_size), "--epochs", "3", "--learning-rates", "1e-2", "1",
            "--holdout-fraction", "0.25", "--device", "cpu", "--no-knn", "--quiet", *extra]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_probe")
    make_teacher_export(root / "run", 19)
    make_separable_tree(root / "data", num_classes=3, train_per_class=8, val_per_class=4)
    plans = [_argv(root, root / "ddp_cached", 4),
             _argv(root, root / "ddp_paper", 4, "--protocol", "paper", "--epoch-length", "3")]
    for argv in plans:  # one launch each, as a user runs it
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   "-m", "dinov2.eval.linear", *argv]
        result = subprocess.run(command, cwd=REPO, env=command_env(OMP_NUM_THREADS="1"),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
    return root


@pytest.mark.slow
def test_two_ranks_at_batch_b_train_the_heads_of_one_process_at_2b(two_ranks):
    assert linear.main(_argv(two_ranks, two_ranks / "single", 8)) == 0
    ddp = load_result(two_ranks / "ddp_cached" / "linear_training_19.json")
    single = load_result(two_ranks / "single" / "linear_training_19.json")
    assert ddp["settings"]["world_size"] == 2 and single["settings"]["world_size"] == 1
    assert ddp["settings"]["iterations"] == single["settings"]["iterations"] == 3 * 3  # 18 fit images, 8 a step
    assert list(ddp["results"]["heads"]) == list(single["results"]["heads"])  # the same scaled learning rates
    for name, head in single["results"]["heads"].items():
        assert ddp["results"]["heads"][name]["val"] == head["val"], name
        assert ddp["results"]["heads"][name]["holdout"] == head["holdout"], name


@pytest.mark.slow
def test_the_paper_protocol_runs_on_two_ranks_and_rank_0_writes_once(two_ranks):
    files = sorted(path.name for path in (two_ranks / "ddp_paper").iterdir() if not path.name.startswith("."))
    assert files == ["linear_training_19.json"]
    result = load_result(two_ranks / "ddp_paper" / "linear_training_19.json")
    assert result["settings"]["world_size"] == 2 and result["settings"]["mode"] == "augment"
    assert result["settings"]["iterations"] == 9
    assert [point["iteration"] for point in result["results"]["val_curve"]] == [3, 6, 9]
