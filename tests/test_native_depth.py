"""Images at their own depth: 16-bit and float sources keep their levels through noise generation and reading
noised on the fly; 8-bit sources give the pixels they always gave (digests measured before the native-depth
readers existed)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from astropy.io import fits
from PIL import Image

from dinov2.data import DataAugmentationDINO, ImageFolderDataset, MaskingGenerator, collate_data_and_cast
from dinov2.data.crops import normalize_crops
from dinov2.eval.features import ImageListDataset
from dinov2.eval.transforms import IMAGENET_MEAN, IMAGENET_STD, make_eval_transform
from dinov2.train.train import main as train_main
from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor.denoise import DenoiseTask, denoise_tree, main as denoise_main
from Neighbor2Neighbor.train import main as n2n_main
from process_metadata import main as process_metadata
from tests.imagetrees import make_tree, write_image
from utils.dataset_index import DatasetError, build_index, recorded_float_range
from utils.generate_noise import generate_noise, output_root
from utils.image_io import (ImageReadError, as_rgb8, iter_image_files, load_rgb, read_image_header, read_pixels,
                            to_unit)
from utils.image_tree import open_tree
from utils.make_toy_dataset import build_toy_dataset

# sha256 of the decoded pixels (relative path, then RGB bytes, per image in sorted order; the pixels only for the
# trees read noised on the fly), measured at the commit
# before images were read at their own depth; PNG bytes are not compared (they follow the zlib build)
EIGHT_BIT_DIGESTS = {
    "mixed/gauss100": "3773bf923f0ebcfd1bebce0a8f56db2affb18ff11d9a8fe94345f90f0e933947",
    "mixed/shot3": "1a2d7d7928e86400d4be943daa7818d67366104f6171557355b26c78b51510b0",
    "mixed/speckle0.4": "8879a72671fb7cbb7cbe7a7a820cdae8ffea16df23768b74c107d128b8a7e304",
    "mixed/on_the_fly": "2f2fa92c15be59074b98fb6074d7ded709a6a1dfb90cb436f17b92a8b6c44431",
    "digits/gauss100": "d0607c87a6254ca12b77cac75ae6e2dd64c9224b45ba2f71eb486a235c825fc3",
    "digits/shot3": "942cf4ada35183f9f729780a6dae782a6e43aa65358c3822c4119a2dfd718d57",
    "digits/speckle0.4": "0d4e4a116fd0572c823c89b9b8eb9ce56e55fcc39fa47d1806582cf8a0dae792",
    "digits/on_the_fly": "6cbfbc0d5768e8fbfd253cd7f5b5f08617248feab6b1f1ea47bf14370a5a249b",
}
SETTINGS = ("gauss100", "shot3", "speckle0.4")


def _pixel_digest(root: Path, read, with_names: bool = True) -> str:
    digest = hashlib.sha256()
    for relpath in sorted(iter_image_files(root)):
        if with_names:
            digest.update(relpath.encode())
        digest.update(np.ascontiguousarray(read(relpath)).tobytes())
    return digest.hexdigest()


def test_eight_bit_trees_give_the_pixels_they_always_gave(tmp_path):
    sources = {"mixed": make_tree(tmp_path / "mixed", classes=2, per_class=6), "digits": tmp_path / "digits"}
    build_toy_dataset(sources["digits"], limit=3)
    for name, source in sources.items():
        generate_noise(source, list(SETTINGS), tmp_path / f"noisy_{name}", progress=False)
        for setting in SETTINGS:
            copy = output_root(tmp_path / f"noisy_{name}", setting)
            assert _pixel_digest(copy, lambda r, c=copy: load_rgb(c / r)) == EIGHT_BIT_DIGESTS[f"{name}/{setting}"]
        tree = open_tree(f"noisy:gauss100,seed=3,quantization=round:{source}")
        assert _pixel_digest(source, tree.read, with_names=False) == EIGHT_BIT_DIGESTS[f"{name}/on_the_fly"]


def _ramp(height: int = 64, width: int = 64) -> np.ndarray:
    return (np.arange(height * width).reshape(height, width) * 13 % 65536).astype(np.uint16)


@pytest.mark.parametrize("name, write", [
    ("ramp.png", lambda path, a: Image.fromarray(a).save(path)),
    ("ramp.tif", lambda path, a: tifffile.imwrite(path, a)),
    ("ramp.npy", lambda path, a: np.save(path, a)),
])
def test_a_16_bit_ramp_survives_noise_generation_with_its_levels(tmp_path, name, write):
    clean = tmp_path / "clean"
    clean.mkdir()
    ramp = _ramp()
    write(clean / name, ramp)
    assert read_image_header(clean / name) == ("uint16", 1, 64, 64)
    assert np.array_equal(read_pixels(clean / name)[:, :, 0], ramp)
    generate_noise(clean, ["gauss5", "identity"], tmp_path / "noisy", progress=False)
    stored = output_root(tmp_path / "noisy", "gauss5") / f"{Path(name).stem}.tif"
    noisy = read_pixels(stored)
    assert noisy.dtype == np.uint16 and noisy.shape == (64, 64, 1) and len(np.unique(noisy)) > 256
    assert np.array_equal(read_pixels(output_root(tmp_path / "noisy", "identity") / stored.name)[:, :, 0], ramp)
    residual = to_unit(noisy)[:, :, 0] - to_unit(ramp[:, :, None])[:, :, 0]
    interior = (ramp > 2000) & (ramp < 63000)  # away from the clipping
    assert residual[interior].std() == pytest.approx(5 / 255, rel=0.1)
    on_the_fly = open_tree(f"noisy:gauss5:{clean}").read_pixels(name)
    assert np.array_equal(on_the_fly, noisy)  # the stored copy and the tree noised when read agree
    assert as_rgb8(noisy).shape == (64, 64, 3)  # what 8-bit consumers see


def test_float_images_are_read_by_the_range_their_tree_records(tmp_path, capsys):
    root = tmp_path / "sky"
    values = np.linspace(-50.0, 950.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    (root / "deep").mkdir(parents=True)
    fits.PrimaryHDU(values).writeto(root / "a.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(values * 2)]).writeto(root / "deep" / "b.fits")
    tifffile.imwrite(root / "c.tif", values / 2)
    with pytest.raises(ImageReadError, match="need its tree's value range"):
        open_tree(root).read_pixels("a.fits")
    assert process_metadata([str(root), "--verify", "--num-workers", "0", "--quiet"]) == 0
    low, high = recorded_float_range(root)
    assert low == pytest.approx(np.percentile(values * 2, 0.5), rel=1e-3)  # the widest image sets both ends
    assert high == pytest.approx(np.percentile(values * 2, 99.5), rel=1e-3)
    pixels = open_tree(root).read_pixels("deep/b.fits")
    assert pixels.dtype == np.float32 and 0.0 <= pixels.min() and pixels.max() <= 1.0
    assert len(np.unique(pixels)) > 256
    expected = np.clip((values * 2 - low) / (high - low), 0, 1)
    assert np.allclose(pixels[:, :, 0], expected, atol=1e-6)
    generate_noise(root, ["pg30_2"], tmp_path / "noisy", progress=False)
    noisy = read_pixels(output_root(tmp_path / "noisy", "pg30_2") / "deep" / "b.tif")
    assert noisy.dtype == np.float32 and np.abs(noisy - pixels).mean() > 0.005


def test_files_that_hold_no_image_name_themselves(tmp_path):
    fits.PrimaryHDU().writeto(tmp_path / "header_only.fits")
    np.save(tmp_path / "table.npy", np.zeros(3, dtype=[("a", "f4")]))
    (tmp_path / "text.npy").write_text("not an array")
    (tmp_path / "cube.npy").write_bytes(b"")
    np.save(tmp_path / "stack.npy", np.zeros((5, 8, 8, 2), dtype=np.uint16))
    for name, says in (("header_only.fits", "holds no 2-D image"), ("table.npy", "no plain numeric array"),
                       ("text.npy", "not a NumPy .npy file"), ("cube.npy", "the file is empty"),
                       ("stack.npy", "holds an array of shape (5, 8, 8, 2)")):
        named = re.escape(f"cannot read image {tmp_path / name}: ") + ".*" + re.escape(says)
        with pytest.raises(ImageReadError, match=named):
            read_pixels(tmp_path / name)
    with pytest.raises(DatasetError, match=re.escape(f"cannot read image {tmp_path / 'cube.npy'}: the file is empty")):
        build_index(tmp_path)  # the index reads the float images' values: the first bad file stops it


def _sixteen_bit_tree(root: Path, count: int = 6) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        tifffile.imwrite(root / f"tile_{i}.tif", np.roll(_ramp(48, 48), 97 * i))
    return root


def test_neighbor2neighbor_trains_and_denoises_single_channel_16_bit_images(tmp_path):
    clean = _sixteen_bit_tree(tmp_path / "clean")
    generate_noise(clean, ["gauss10"], tmp_path / "noisy", progress=False)
    noisy = output_root(tmp_path / "noisy", "gauss10")
    assert n2n_main(["--data-dir", str(noisy), "--output-dir", str(tmp_path / "n2n"), "--epochs", "1",
                     "--batch-size", "2", "--patch-size", "32", "--n-feature", "8", "--num-workers", "0",
                     "--device", "cpu", "--quiet", "--val-clean", str(clean), "--val-noise", "gauss10"]) == 0
    checkpoint = torch.load(tmp_path / "n2n" / "last.pt", weights_only=False)
    assert checkpoint["model_config"]["in_channels"] == checkpoint["model_config"]["out_channels"] == 1
    record = json.loads((tmp_path / "n2n" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["val_psnr"]) and record["val_noisy_psnr"] == pytest.approx(20 * np.log10(255 / 10),
                                                                                         abs=0.3)
    assert denoise_main(["--weights", str(tmp_path / "n2n" / "last.pt"), "--src", str(noisy), "--output-dir",
                         str(tmp_path / "denoised"), "--num-workers", "0", "--quiet"]) == 0
    denoised = read_pixels(tmp_path / "denoised" / "tile_0.tif")
    assert denoised.dtype == np.uint16 and denoised.shape == (48, 48, 1)

    class Identity(torch.nn.Module):  # a denoiser that changes nothing: the levels must come back exactly
        in_channels = 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    task = DenoiseTask(open_tree(noisy), tmp_path / "identity")
    assert denoise_tree(Identity(), task, torch.device("cpu"), progress=False).written == 6
    assert np.array_equal(read_pixels(tmp_path / "identity" / "tile_3.tif"), read_pixels(noisy / "tile_3.tif"))
    assert len(np.unique(read_pixels(tmp_path / "identity" / "tile_3.tif"))) > 256
    rgb = tmp_path / "rgb"
    write_image(rgb / "a.png", size=(48, 48))
    assert denoise_main(["--weights", str(tmp_path / "n2n" / "last.pt"), "--src", str(rgb), "--output-dir",
                         str(tmp_path / "d2"), "--num-workers", "0", "--quiet"]) == 2  # 3 channels: refused


def test_a_tree_that_mixes_kinds_is_refused_naming_one_file_of_each(tmp_path, capsys):
    mixed = _sixteen_bit_tree(tmp_path / "mixed", count=2)
    write_image(mixed / "photo.png", size=(48, 48))
    assert n2n_main(["--data-dir", str(mixed), "--output-dir", str(tmp_path / "n2n"), "--epochs", "1",
                     "--batch-size", "2", "--patch-size", "32", "--n-feature", "8", "--num-workers", "0",
                     "--device", "cpu", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "mixes images of different depths or channels" in error
    assert f"{mixed / 'photo.png'} (8-bit, 3 channels)" in error
    assert f"{mixed / 'tile_0.tif'} (16-bit, 1 channel)" in error


def test_dinov2_crops_of_16_bit_images_keep_more_than_256_levels(tmp_path):
    tree = _sixteen_bit_tree(tmp_path / "tiles", count=4)
    transform = DataAugmentationDINO((0.5, 1.0), (0.2, 0.5), 2, global_crops_size=32, local_crops_size=16,
                                     as_uint8=True)
    dataset = ImageFolderDataset(tree, "train", transform=transform)
    crops, label = dataset[(0, 7)]
    assert label == -1 and crops["global_crops"][0].dtype == torch.float32
    assert crops["global_crops"][0].shape == (3, 32, 32) and crops["local_crops"][0].shape == (3, 16, 16)
    assert len(torch.unique(crops["global_crops"][0])) > 256
    again, _ = dataset[(0, 7)]
    assert all(torch.equal(a, b) for a, b in zip(crops["global_crops"], again["global_crops"]))  # seeded


def test_dinov2_pretrains_on_16_bit_single_channel_images(tmp_path):
    tree = _sixteen_bit_tree(tmp_path / "tiles", count=8)
    assert train_main(["--config-file", str(CONFIGS_DIR / "train" / "smoke_cpu.yaml"), "--output-dir",
                       str(tmp_path / "run"), f"train.dataset_path=noisy:pg20_3:{tree}", "optim.epochs=1"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(np.isfinite(r["total_loss"]) for r in records)


def test_a_batch_mixing_8_bit_and_16_bit_crops_is_stacked_as_float(tmp_path):
    tree = _sixteen_bit_tree(tmp_path / "mixed", count=2)
    write_image(tree / "photo.png", size=(48, 48))
    transform = DataAugmentationDINO((0.5, 1.0), (0.2, 0.5), 1, global_crops_size=16, local_crops_size=8,
                                     as_uint8=True)
    dataset = ImageFolderDataset(tree, "train", transform=transform)
    samples = [dataset[(i, i)] for i in range(3)]
    assert {s[0]["global_crops"][0].dtype for s in samples} == {torch.uint8, torch.float32}
    batch = collate_data_and_cast(samples, (0.1, 0.5), 0.5, torch.float32, 4, MaskingGenerator((2, 2), 2))
    photo = [i for i, s in enumerate(samples) if s[0]["global_crops"][0].dtype == torch.uint8][0]
    assert batch["collated_global_crops"].dtype == torch.float32
    assert torch.equal(batch["collated_global_crops"][photo], normalize_crops(samples[photo][0]["global_crops"][0]))


def test_the_probes_see_16_bit_images_at_their_depth(tmp_path):
    tree = _sixteen_bit_tree(tmp_path / "tiles", count=2)
    dataset = ImageListDataset(tree, [("tile_0.tif", 0)], make_eval_transform(48, 48))
    image, label = dataset[0]
    assert image.shape == (3, 48, 48) and label == 0 and len(torch.unique(image)) > 256
    expected = torch.from_numpy(to_unit(read_pixels(tree / "tile_0.tif"))).permute(2, 0, 1).expand(3, -1, -1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(image, (expected - mean) / std, atol=1e-5)  # resize and crop at the image's size: none


def test_a_validation_folder_that_mixes_kinds_is_refused_naming_one_file_of_each(tmp_path):
    from Neighbor2Neighbor.validation import Validator

    mixed = _sixteen_bit_tree(tmp_path / "mixed", count=2)
    write_image(mixed / "photo.png", size=(48, 48))
    with pytest.raises(ValueError, match="mixes images of different depths or channels") as refused:
        Validator(mixed, "pg20_3", seed=0)
    message = str(refused.value)
    assert "photo.png (8-bit, 3 channels)" in message and "tile_0.tif (16-bit, 1 channel)" in message
    assert Validator(_sixteen_bit_tree(tmp_path / "tiles", count=2), "pg20_3", seed=0).channels == 1
