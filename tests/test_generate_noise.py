"""utils/generate_noise.py: naming, modes, determinism across workers, resume, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.generate_noise import GenerationError, default_out_prefix, generate_noise
from utils.image_io import iter_image_files, load_rgb, png_relpath
from utils.manifest import ManifestMismatch
from utils.noise import noisy_image, parse_noise

from tests.imagetrees import write_image

REPO = Path(__file__).resolve().parents[1]


def read_tree(root: Path) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in iter_image_files(root)}


def test_names_sizes_modes_and_labels(tiny_tree: Path, tmp_path: Path):
    summary = generate_noise(tiny_tree, ["gauss100", "shot3"], tmp_path / "out", progress=False)
    assert summary["gauss100"]["written"] == 12 and summary["shot3"]["written"] == 12
    for setting in ("gauss100", "shot3"):
        out = tmp_path / f"out-{setting}"
        assert (out / "labels.txt").read_text() == (tiny_tree / "labels.txt").read_text()
        expected = sorted(png_relpath(rel) for rel in iter_image_files(tiny_tree))
        assert sorted(iter_image_files(out)) == expected
        for rel in iter_image_files(tiny_tree):
            clean = load_rgb(tiny_tree / rel)
            noisy = load_rgb(out / png_relpath(rel))
            assert noisy.shape == clean.shape  # never resized, always RGB
            assert np.array_equal(noisy, noisy_image(clean, parse_noise(setting), 42, rel))  # exactly the pure function


def test_default_prefix_is_beside_the_source(tiny_tree: Path):
    assert default_out_prefix(tiny_tree) == tiny_tree.resolve().parent / "noisy_clean"
    generate_noise(tiny_tree, ["gauss50"], progress=False)
    assert (tiny_tree.parent / "noisy_clean-gauss50" / "train").is_dir()


def test_identical_output_for_any_worker_count(tiny_tree: Path, tmp_path: Path):
    generate_noise(tiny_tree, ["speckle0.7"], tmp_path / "w0", workers=0, progress=False)
    generate_noise(tiny_tree, ["speckle0.7"], tmp_path / "w2", workers=2, progress=False)
    assert read_tree(tmp_path / "w0-speckle0.7") == read_tree(tmp_path / "w2-speckle0.7")


def test_psnr_reported_and_decreasing_with_noise(tiny_tree: Path, tmp_path: Path):
    summary = generate_noise(tiny_tree, ["gauss50", "gauss255"], tmp_path / "o", progress=False)
    assert summary["gauss50"]["psnr_db"] > summary["gauss255"]["psnr_db"]
    assert summary["gauss50"]["snr_db"] > summary["gauss255"]["snr_db"]


def test_resume_skips_and_overwrite_redoes(tiny_tree: Path, tmp_path: Path):
    prefix = tmp_path / "o"
    generate_noise(tiny_tree, ["gauss100"], prefix, progress=False)
    out = tmp_path / "o-gauss100"
    victim = out / "train" / "n000" / "train_0_0.png"
    victim.unlink()
    marker = out / "train" / "n000" / "train_0_1.png"
    marker.write_bytes(b"stale")
    summary = generate_noise(tiny_tree, ["gauss100"], prefix, progress=False)
    assert summary["gauss100"] == pytest.approx({"written": 1, "skipped": 11, "psnr_db": summary["gauss100"]["psnr_db"],
                                                 "snr_db": summary["gauss100"]["snr_db"]})
    assert victim.is_file() and marker.read_bytes() == b"stale"
    summary = generate_noise(tiny_tree, ["gauss100"], prefix, overwrite=True, progress=False)
    assert summary["gauss100"]["written"] == 12 and marker.read_bytes() != b"stale"


def test_other_seed_into_same_folder_is_refused(tiny_tree: Path, tmp_path: Path):
    generate_noise(tiny_tree, ["gauss100"], tmp_path / "o", seed=1, progress=False)
    with pytest.raises(ManifestMismatch, match="seed"):
        generate_noise(tiny_tree, ["gauss100"], tmp_path / "o", seed=2, progress=False)
    manifest = json.loads((tmp_path / "o-gauss100" / "noise_manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["quantization"] == "truncate"


def test_name_collision_is_an_error(tmp_path: Path):
    write_image(tmp_path / "src" / "train" / "a" / "x.jpg")
    write_image(tmp_path / "src" / "train" / "a" / "x.png")
    with pytest.raises(ValueError, match="x.png"):
        generate_noise(tmp_path / "src", ["gauss50"], tmp_path / "o", progress=False)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_fails_naming_it_without_partial_files(tiny_tree: Path, tmp_path: Path, workers: int):
    bad = tiny_tree / "val" / "n001" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    truncated = tiny_tree / "train" / "n000" / "train_0_1.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(GenerationError, match="train_0_1.JPEG|broken.png"):
        generate_noise(tiny_tree, ["gauss50"], tmp_path / "o", workers=workers, progress=False)
    leftovers = [name for _, _, files in os.walk(tmp_path / "o-gauss50") for name in files
                 if name.startswith(".") and not name.startswith(".lock")]  # the lock file stays, unlocked
    assert leftovers == []


def test_cli_exit_code_and_message(tiny_tree: Path, tmp_path: Path):
    (tiny_tree / "train" / "n000" / "zero.png").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "utils/generate_noise.py", "--src", str(tiny_tree), "--noise", "gauss50",
         "--out-prefix", str(tmp_path / "o"), "--workers", "0"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "zero.png" in result.stderr
    ok = subprocess.run(
        [sys.executable, "utils/generate_noise.py", "--src", str(tiny_tree), "--noise", "bogus"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert ok.returncode == 2 and "bogus" in ok.stderr


def test_shards_write_disjoint_parts_of_the_whole_run(tiny_tree: Path, tmp_path: Path, capsys):
    from utils.generate_noise import main
    from utils.sharding import Shard

    generate_noise(tiny_tree, ["gauss50", "speckle0.4"], tmp_path / "whole", progress=False)
    counts = []
    for index in range(3):
        summary = generate_noise(tiny_tree, ["gauss50", "speckle0.4"], tmp_path / "sharded", progress=False,
                                 shard=Shard(index, 3))
        counts.append(sum(s["written"] for s in summary.values()))
    assert sum(counts) == 24 and min(counts) > 0
    for setting in ("gauss50", "speckle0.4"):
        assert read_tree(tmp_path / f"sharded-{setting}") == read_tree(tmp_path / f"whole-{setting}")
    with pytest.raises(ValueError, match="--overwrite"):
        generate_noise(tiny_tree, ["gauss50"], tmp_path / "sharded", overwrite=True, shard=Shard(0, 2),
                       progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--src", str(tiny_tree), "--noise", "gauss50", "--shard", "2/2"])
    assert exit_info.value.code == 2 and "--shard" in capsys.readouterr().err
