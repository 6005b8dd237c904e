"""Sharded denoising (--shard, torchrun ranks) writes the same bytes as one process, from stored or on-the-fly
noisy trees, and resumes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from Neighbor2Neighbor import denoise as denoise_module
from Neighbor2Neighbor.arch_unet import UNet
from tests.environment import command_env
from tests.imagetrees import make_tree
from utils.generate_noise import generate_noise
from utils.image_io import iter_image_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    torch.manual_seed(0)
    torch.save(UNet(features=8).state_dict(), root / "unet.pt")
    make_tree(root / "clean", classes=3, per_class=5)
    generate_noise(root / "clean", ["gauss100"], root / "noisy", progress=False)
    return root


def _denoise(setup: Path, src: str, dst: Path, *extra: str) -> int:
    return denoise_module.main(["--weights", str(setup / "unet.pt"), "--src", src, "--output-dir", str(dst),
                                "--num-workers", "0", "--batch-size", "2", "--block-images", "3", "--device", "cpu",
                                "--quiet", *extra])


def _files(root: Path) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in iter_image_files(root)}


@pytest.fixture(scope="module")
def reference(setup):
    dst = setup / "one_process"
    assert _denoise(setup, str(setup / "noisy-gauss100"), dst) == 0
    return _files(dst)


def test_on_the_fly_source_gives_the_bytes_of_the_stored_copy(setup, reference, tmp_path):
    assert _denoise(setup, f"noisy:gauss100:{setup / 'clean'}", tmp_path / "dst") == 0
    assert _files(tmp_path / "dst") == reference and len(reference) == 30


def test_union_of_shards_equals_one_process_and_resumes(setup, reference, tmp_path, capsys):
    dst = tmp_path / "dst"
    for index in range(3):
        assert _denoise(setup, str(setup / "noisy-gauss100"), dst, "--shard", f"{index}/3") == 0
        partial = _files(dst)
        assert all(reference[rel] == data for rel, data in partial.items())
        assert len(partial) < len(reference) or index == 2
    assert _files(dst) == reference
    removed = sorted(reference)[::4]
    for rel in removed:
        (dst / rel).unlink()
    capsys.readouterr()
    assert _denoise(setup, str(setup / "noisy-gauss100"), dst) == 0
    assert f"{len(removed)} written" in capsys.readouterr().out
    assert _files(dst) == reference


@pytest.mark.slow
def test_torchrun_ranks_split_the_work(setup, reference, tmp_path):
    dst = tmp_path / "dst"
    env = command_env(OMP_NUM_THREADS="1")
    for shard in ("0/2", "1/2"):  # 2 array tasks x 2 ranks = 4 shares
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   str(REPO / "Neighbor2Neighbor" / "denoise.py"), "--weights", str(setup / "unet.pt"),
                   "--src", f"noisy:gauss100:{setup / 'clean'}", "--output-dir", str(dst), "--num-workers", "0",
                   "--batch-size", "2", "--block-images", "3", "--device", "cpu", "--quiet", "--shard", shard]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        first = int(shard[0]) * 2
        assert f"(shard {first}/4)" in result.stdout and f"(shard {first + 1}/4)" in result.stdout
    assert _files(dst) == reference


def test_bad_shards_and_destinations_are_refused_before_any_work(setup, tmp_path, capsys):
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(SystemExit) as exit_info:
            _denoise(setup, str(setup / "noisy-gauss100"), tmp_path / "dst", "--shard", bad)
        assert exit_info.value.code == 2 and "--shard" in capsys.readouterr().err
    inside = setup / "noisy-gauss100" / "denoised"
    assert _denoise(setup, str(setup / "noisy-gauss100"), inside) == 2
    assert "lies inside it" in capsys.readouterr().err and not inside.exists()
    assert _denoise(setup, f"noisy:gauss100:{setup / 'clean'}", setup / "clean" / "out") == 2
    assert not (setup / "clean" / "out").exists()


def test_other_noise_options_into_one_folder_are_refused(setup, tmp_path, capsys):
    dst = tmp_path / "dst"
    assert _denoise(setup, f"noisy:gauss100:{setup / 'clean'}", dst, "--shard", "0/2") == 0
    capsys.readouterr()
    assert _denoise(setup, f"noisy:gauss100,seed=1:{setup / 'clean'}", dst, "--shard", "1/2") == 2
    assert "src_noise" in capsys.readouterr().err
