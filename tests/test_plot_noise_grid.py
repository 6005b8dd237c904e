"""utils/plot_noise_grid.py: the figure is a PNG and its PSNRs are those of the stored noisy images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from utils.generate_noise import generate_noise
from utils.image_io import load_rgb, png_relpath
from utils.metrics import psnr
from utils.plot_noise_grid import main as plot_main
from utils.plot_noise_grid import pick_images, plot_noise_grid


def test_grid_matches_generated_trees(tiny_tree: Path, tmp_path: Path):
    relpaths = pick_images(tiny_tree, "val", 5)
    assert len(relpaths) == 2 and relpaths[0].startswith("val/n000/") and relpaths[1].startswith("val/n001/")
    out = tmp_path / "grid.png"
    psnrs = plot_noise_grid(tiny_tree, ["gauss50", "gauss255"], relpaths, out, seed=7)
    with Image.open(out) as figure:
        assert figure.format == "PNG" and figure.width > figure.height > 0
    generate_noise(tiny_tree, ["gauss50"], tmp_path / "n", seed=7, progress=False)
    stored = [psnr(load_rgb(tiny_tree / rel), load_rgb(tmp_path / "n-gauss50" / png_relpath(rel))) for rel in relpaths]
    assert np.allclose(psnrs["gauss50"], stored)
    assert all(a > b for a, b in zip(psnrs["gauss50"], psnrs["gauss255"]))


def test_cli_rejects_unknown_setting(tiny_tree: Path, tmp_path: Path, capsys):
    assert plot_main(["--src", str(tiny_tree), "--noise", "gauss", "--out", str(tmp_path / "g.png")]) == 2
    assert "gauss" in capsys.readouterr().err and not (tmp_path / "g.png").exists()


def test_denoising_examples_show_stored_images_and_their_psnr(tiny_tree: Path, tmp_path: Path, capsys):
    from Neighbor2Neighbor.plot_examples import main as examples_main
    from Neighbor2Neighbor.plot_examples import plot_examples

    generate_noise(tiny_tree, ["gauss50"], tmp_path / "n", seed=7, progress=False)
    noisy = tmp_path / "n-gauss50"
    denoised = tmp_path / "denoised"
    relpaths = pick_images(tiny_tree, "val", 2)
    for rel in relpaths:  # a stand-in "denoiser": the clean image with a one-level offset
        clean = load_rgb(tiny_tree / rel)
        target = denoised / png_relpath(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(clean.astype(int) + 1, 0, 255).astype(np.uint8)).save(target)
    out = tmp_path / "examples.png"
    psnrs = plot_examples(tiny_tree, noisy, denoised, relpaths, out)
    with Image.open(out) as figure:
        assert figure.format == "PNG"
    expected = [psnr(load_rgb(tiny_tree / rel), load_rgb(noisy / png_relpath(rel))) for rel in relpaths]
    assert np.allclose(psnrs["noisy"], expected)
    assert all(d > n for d, n in zip(psnrs["denoised"], psnrs["noisy"]))
    (denoised / png_relpath(relpaths[0])).unlink()
    argv = ["--clean", str(tiny_tree), "--noisy", str(noisy), "--denoised", str(denoised), "--images", "2",
            "--out", str(tmp_path / "broken.png")]
    assert examples_main(argv) == 2
    assert png_relpath(relpaths[0]) in capsys.readouterr().err and not (tmp_path / "broken.png").exists()
