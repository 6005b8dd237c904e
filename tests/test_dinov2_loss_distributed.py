"""Loss state under torch.distributed: two gloo ranks on CPU must agree with one process on the whole batch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dinov2.loss import DINOLoss, iBOTPatchLoss


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(6, 5, generator=generator), torch.randn(2, 4, 5, generator=generator)


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        cls_scores, patch_scores = _batch()
        mine_cls, mine_patch = cls_scores[rank * 3:(rank + 1) * 3], patch_scores[rank:rank + 1]
        dino, ibot = DINOLoss(5), iBOTPatchLoss(5)
        dino.update_center(mine_cls)
        ibot.update_center(mine_patch)
        probs = dino.sinkhorn_knopp_teacher(mine_cls, teacher_temp=0.5, n_iterations=3)
        # rank 1 has no masked patch: only rank 0's tokens move the center, on both ranks alike
        sparse = iBOTPatchLoss(5)
        sparse.update_center(mine_patch if rank == 0 else torch.zeros(1, 0, 5))
        torch.save({"dino_center": dino.center, "ibot_center": ibot.center, "sinkhorn": probs,
                    "sparse_center": sparse.center},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_centers_and_sinkhorn_are_reduced_over_ranks(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    cls_scores, patch_scores = _batch()
    dino, ibot = DINOLoss(5), iBOTPatchLoss(5)
    dino.update_center(cls_scores)
    ibot.update_center(patch_scores)
    expected_probs = dino.sinkhorn_knopp_teacher(cls_scores, teacher_temp=0.5, n_iterations=3)
    sparse = iBOTPatchLoss(5)
    sparse.update_center(patch_scores[:1])
    for rank, result in enumerate(results):
        assert torch.allclose(result["dino_center"], dino.center, atol=1e-6)
        assert torch.allclose(result["ibot_center"], ibot.center, atol=1e-6)
        assert torch.allclose(result["sinkhorn"], expected_probs[rank * 3:(rank + 1) * 3], atol=1e-6)
        assert torch.allclose(result["sparse_center"], sparse.center, atol=1e-6)
        assert torch.isfinite(result["sparse_center"]).all()


def _contrastive_worker(rank: int, port: int, out_dir: str) -> None:
    from lightly.loss import NTXentLoss

    from dinov2.loss import moco_v3_infonce

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        queries, keys = torch.randn(8, 6, generator=torch.Generator().manual_seed(1)).chunk(2)
        mine = slice(rank * 2, (rank + 1) * 2)
        torch.save({"infonce": moco_v3_infonce(queries[mine], keys[mine], 0.2),
                    "ntxent": NTXentLoss(temperature=0.1, gather_distributed=True)(queries[mine], keys[mine])},
                   Path(out_dir) / f"contrastive{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_contrastive_losses_gather_every_ranks_keys(tmp_path):
    """Each rank's queries face the keys of both ranks (labels offset by the rank): the mean over ranks is the
    loss of one process on the whole batch."""
    from lightly.loss import NTXentLoss

    from dinov2.loss import moco_v3_infonce

    mp.spawn(_contrastive_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"contrastive{r}.pt") for r in range(2)]
    queries, keys = torch.randn(8, 6, generator=torch.Generator().manual_seed(1)).chunk(2)
    expected = {"infonce": moco_v3_infonce(queries, keys, 0.2),
                "ntxent": NTXentLoss(temperature=0.1)(queries, keys)}
    for name, value in expected.items():
        mean = (results[0][name] + results[1][name]) / 2
        assert torch.allclose(mean, value, atol=1e-6), name
        assert not torch.allclose(results[0][name], results[1][name])  # each rank's own queries
