"""denoise.py: relative paths, sizes, resume, clear failures, weight formats, tiling and the revisitop layout."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from Neighbor2Neighbor import denoise as denoise_module
from Neighbor2Neighbor.arch_unet import UNet
from Neighbor2Neighbor.inference import denoise_tensor, denoise_uint8
from utils.image_io import load_rgb, save_png_atomic
from utils.noise import noisy_image, parse_noise


@pytest.fixture()
def weights(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "bare.pt"
    torch.save(UNet(features=8).state_dict(), path)
    return path


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    rng = np.random.default_rng(1)
    sizes = {"train/a/x.png": (20, 20), "train/a/y.jpg": (20, 20), "train/b/z.png": (37, 23), "val/a/w.png": (20, 20)}
    for relpath, (h, w) in sizes.items():
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if relpath.endswith(".jpg"):
            from PIL import Image
            Image.fromarray(image).save(path, quality=95)
        else:
            save_png_atomic(image, path)
    (root / "labels.txt").write_text("a,first\nb,second\n")
    return sizes


def _run(weights: Path, src: Path | str, dst: Path, *extra: str) -> int:
    return denoise_module.main(["--weights", str(weights), "--src", str(src), "--dst", str(dst), "--workers", "0",
                                "--batch-size", "2", "--device", "cpu", "--no-progress", *extra])


def test_keeps_relative_paths_and_sizes_copies_labels_and_resumes(tmp_path, weights):
    sizes = _tree(tmp_path / "noisy")
    dst = tmp_path / "denoised"
    assert _run(weights, tmp_path / "noisy", dst) == 0
    for relpath, (h, w) in sizes.items():
        out = dst / (relpath.rsplit(".", 1)[0] + ".png")
        assert load_rgb(out).shape == (h, w, 3), relpath
    assert (dst / "labels.txt").read_text() == "a,first\nb,second\n"
    # the written pixels are the model's output for that image, batched or not
    model = denoise_module.load_denoiser(weights)
    expected = denoise_uint8(model, load_rgb(tmp_path / "noisy/train/b/z.png")[None], torch.device("cpu"))[0]
    assert np.array_equal(load_rgb(dst / "train/b/z.png"), expected)
    # resume: existing outputs are left alone, missing ones are written again
    marker = np.zeros((20, 20, 3), dtype=np.uint8)
    save_png_atomic(marker, dst / "train/a/x.png")
    (dst / "val/a/w.png").unlink()
    assert _run(weights, tmp_path / "noisy", dst) == 0
    assert np.array_equal(load_rgb(dst / "train/a/x.png"), marker)
    assert (dst / "val/a/w.png").is_file()


def test_corrupt_images_are_named_and_the_rest_is_written(tmp_path, weights, capsys):
    _tree(tmp_path / "noisy")
    (tmp_path / "noisy/train/a/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (tmp_path / "noisy/train/a/x.png").read_bytes()
    (tmp_path / "noisy/train/b/truncated.png").write_bytes(good[: len(good) // 2])
    assert _run(weights, tmp_path / "noisy", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "truncated.png" in err
    assert (tmp_path / "out/train/b/z.png").is_file() and (tmp_path / "out/val/a/w.png").is_file()
    assert not (tmp_path / "out/train/a/broken.png").exists()


def test_accepts_training_checkpoints_and_wrapped_state_dicts(tmp_path, weights, capsys):
    state = torch.load(weights, weights_only=True)
    torch.save({"model": state, "epoch": 3}, tmp_path / "ckpt.pt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")
    torch.save({"something": torch.zeros(1)}, tmp_path / "wrong.pt")
    _tree(tmp_path / "noisy")
    assert _run(tmp_path / "ckpt.pt", tmp_path / "noisy", tmp_path / "o1") == 0
    assert _run(tmp_path / "ddp.pt", tmp_path / "noisy", tmp_path / "o2") == 0
    assert (tmp_path / "o1/train/a/x.png").read_bytes() == (tmp_path / "o2/train/a/x.png").read_bytes()
    assert _run(tmp_path / "wrong.pt", tmp_path / "noisy", tmp_path / "o3") == 2
    assert "wrong.pt" in capsys.readouterr().err


def test_tiles_cover_the_image_exactly():
    pointwise = torch.nn.Conv2d(3, 3, 1)  # no spatial context: tiled and whole-image outputs must agree
    x = torch.rand(1, 3, 150, 97)
    whole = denoise_tensor(pointwise, x)
    tiled = denoise_tensor(pointwise, x, tile=64, overlap=8)
    assert torch.allclose(whole, tiled, atol=1e-6)
    model = UNet(features=8).eval()
    assert denoise_tensor(model, x, tile=64, overlap=16).shape == x.shape


def test_revisitop_images_are_noised_on_the_fly_then_denoised(tmp_path, weights, capsys):
    src = tmp_path / "roxford5k"
    rng = np.random.default_rng(2)
    clean = {name: rng.integers(0, 256, (24, 30, 3), dtype=np.uint8) for name in ("all_souls_1", "bodleian_2")}
    for name, image in clean.items():
        (src / "jpg").mkdir(parents=True, exist_ok=True)
        save_png_atomic(image, src / "jpg" / f"{name}.png")  # lossless stand-in for the jpg files
    with open(src / "gnd_roxford5k.pkl", "wb") as handle:
        pickle.dump({"imlist": list(clean), "qimlist": [], "gnd": []}, handle)
    dst = tmp_path / "roxford5k_gauss100"
    assert _run(weights, f"noisy:gauss100,seed=7:{src}", dst) == 0
    assert (dst / "gnd_roxford5k.pkl").read_bytes() == (src / "gnd_roxford5k.pkl").read_bytes()
    model = denoise_module.load_denoiser(weights)
    for name, image in clean.items():
        noisy = noisy_image(image, parse_noise("gauss100"), 7, f"jpg/{name}.png")
        expected = denoise_uint8(model, noisy[None], torch.device("cpu"))[0]
        assert np.array_equal(load_rgb(dst / "jpg" / f"{name}.png"), expected)
    missing_dst = tmp_path / "missing_gauss100"
    assert _run(weights, f"noisy:gauss100:{tmp_path / 'noisy_missing'}", missing_dst) == 2
    assert "noisy_missing does not exist" in capsys.readouterr().err
    assert not missing_dst.exists()  # refused before any folder is made


@pytest.mark.parametrize("option, spelling", [(["--revisitop-noise", "gauss100"], "--src noisy:SETTING:FOLDER"),
                                              (["--noise-seed", "7"], "--src noisy:SETTING,seed=N:FOLDER")])
def test_the_older_revisitop_noise_options_name_the_tree_spelling(tmp_path, weights, capsys, option, spelling):
    with pytest.raises(SystemExit) as stopped:
        _run(weights, tmp_path, tmp_path / "out", *option)
    assert stopped.value.code == 2
    assert f"{option[0]} is now {spelling}" in capsys.readouterr().err


def test_refuses_to_mix_outputs_of_another_denoiser(tmp_path, weights, capsys):
    _tree(tmp_path / "noisy")
    dst = tmp_path / "denoised"
    assert _run(weights, tmp_path / "noisy", dst) == 0
    assert _run(weights, tmp_path / "noisy", dst) == 0  # same weights: a resume, nothing to redo
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save(UNet(features=8).state_dict(), other)
    before = load_rgb(dst / "train/a/x.png")
    assert _run(other, tmp_path / "noisy", dst) == 2
    assert "model_sha256" in capsys.readouterr().err
    assert np.array_equal(load_rgb(dst / "train/a/x.png"), before)
