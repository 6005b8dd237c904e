"""Unlabeled trees: any folder of images (flat or nested, no split or class folders) is indexed, noised, denoised
and pretrained on (the curriculum's NCT phase included); the probes refuse it in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dinov2.data import ImageFolderDataset, PairedImageFolderDataset
from dinov2.eval import linear
from dinov2.train.train import main as train_main
from dinov2.utils.config import CONFIGS_DIR
from Neighbor2Neighbor.denoise import main as denoise_main
from Neighbor2Neighbor.train import main as n2n_main
from process_metadata import main as process_metadata
from tests.eval_fixtures import make_teacher_export
from tests.imagetrees import write_image
from utils.dataset_index import INDEX_FILENAME, UNLABELED, build_index, current_index, is_labelled, load_split
from utils.tree_pairing import paired_relpaths
from utils.generate_noise import generate_noise, output_root
from utils.image_io import iter_image_files

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")
LAYOUT = ["a.png", "b.jpg", "tiles/c.png", "tiles/d.png", "tiles/deep/e.png", "tiles/deep/f.png", "g/h.png",
          "g/i.png"]


def make_unlabeled(root: Path, copies: int = 1) -> Path:
    for k in range(copies):
        for i, relpath in enumerate(LAYOUT):
            path = root / (relpath if k == 0 else f"copy{k}/{relpath}")
            write_image(path, size=(32, 32), mode="L" if i % 2 else "RGB", seed=100 * k + i)
    return root


def test_any_folder_of_images_is_an_unlabeled_tree(tmp_path, capsys):
    root = make_unlabeled(tmp_path / "mine")
    assert not is_labelled(root)
    index = build_index(root)
    assert index["layout"] == UNLABELED and index["files"] == sorted(LAYOUT) and index["num_images"] == 8
    assert process_metadata([str(root), "--verify", "--num-workers", "0", "--quiet"]) == 0
    assert f"{root}: unlabeled, 8 images" in capsys.readouterr().out
    split = load_split(root, "train")
    assert not split.labelled and [relpath for relpath, _ in split.samples] == sorted(LAYOUT)
    assert {label for _, label in split.samples} == {-1}


def test_the_index_notices_a_new_image_anywhere_and_ignores_its_own_writes(tmp_path):
    root = make_unlabeled(tmp_path / "mine")
    assert process_metadata([str(root), "--quiet"]) == 0
    (root / "manifest.json").write_text("{}")  # written into ROOT, as trees' manifests and locks are
    assert current_index(root, "train") is not None
    for added in ("top.png", "tiles/deep/new.png", "g/new_folder/x.png"):
        write_image(root / added)
        with pytest.warns(UserWarning, match="out of date"):
            assert current_index(root, "train") is None
        with pytest.warns(UserWarning, match="out of date"):
            assert added in [relpath for relpath, _ in load_split(root, "train").samples]
        assert process_metadata([str(root), "--quiet"]) == 0
        assert added in json.loads((root / INDEX_FILENAME).read_text())["files"]


def test_a_labelled_tree_is_indexed_as_before(digit_tree):
    index = build_index(digit_tree, ["train"])
    assert "layout" not in index and len(index["classes"]) == 10 and is_labelled(digit_tree)


def test_noise_denoising_and_pairing_keep_the_layout(tmp_path):
    root = make_unlabeled(tmp_path / "mine")
    generate_noise(root, ["gauss50"], tmp_path / "noisy", progress=False)
    noisy = output_root(tmp_path / "noisy", "gauss50")
    assert sorted(iter_image_files(noisy)) == sorted(f"{r.rsplit('.', 1)[0]}.png" for r in LAYOUT)
    torch.manual_seed(0)
    assert n2n_main(["--data-dir", str(noisy), "--output-dir", str(tmp_path / "n2n"), "--epochs", "1",
                     "--batch-size", "4", "--patch-size", "16", "--n-feature", "8", "--num-workers", "0",
                     "--device", "cpu", "--quiet"]) == 0
    assert denoise_main(["--weights", str(tmp_path / "n2n" / "last.pt"), "--src", str(noisy), "--output-dir",
                         str(tmp_path / "denoised"), "--num-workers", "0", "--quiet"]) == 0
    pairs = paired_relpaths(noisy, tmp_path / "denoised", "train")
    assert len(pairs) == 8 and all(a == b for a, b in pairs.items())
    paired = PairedImageFolderDataset(noisy, tmp_path / "denoised", "train")
    single = ImageFolderDataset(f"noisy:gauss50:{root}", "train")
    assert len(paired) == len(single) == 8
    assert np.array_equal(np.asarray(single.index.read_pil(0)), np.asarray(paired.index.read_pil(0)))


@pytest.mark.slow
def test_dinov2_pretrains_on_an_unlabeled_tree_then_branches_into_nct(tmp_path):
    clean = make_unlabeled(tmp_path / "mine", copies=3)
    denoised = tmp_path / "denoised"
    shutil.copytree(clean, denoised)  # stands in for the denoised copy: the same relative paths
    noisy = f"noisy:gauss100:{clean}"
    common = ["optim.epochs=2", "train.checkpoint_period=1", "train.OFFICIAL_EPOCH_LENGTH=2"]
    assert train_main(["--config-file", SMOKE, "--output-dir", str(tmp_path / "denoised_run"),
                       f"train.dataset_path={denoised}", *common]) == 0
    assert train_main(["--config-file", SMOKE, "--output-dir", str(tmp_path / "nct"), f"train.dataset_path={noisy}",
                       f"curriculum.branch_from={tmp_path / 'denoised_run'}@1", "nct.enabled=true", "nct.weight=4.0",
                       f"nct.denoised_dataset_path={denoised}", *common]) == 0
    records = [json.loads(line) for line in (tmp_path / "nct" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(np.isfinite(r["nct_dino_global_crops_loss"]) for r in records)


def test_the_probes_refuse_a_tree_without_class_folders(tmp_path, capsys):
    flat = tmp_path / "flat"
    for i in range(4):
        write_image(flat / f"{i}.png", size=(32, 32), seed=i)
    teacher = make_teacher_export(tmp_path / "run", 9)
    assert linear.main(["--pretrained-weights", str(teacher), "--train-dataset", str(flat), "--val-dataset",
                        str(flat), "--output-dir", str(tmp_path / "eval"), "--num-workers", "0", "--quiet",
                        "--crop-size", "32"]) == 2
    error = capsys.readouterr().err
    assert f"error: {flat} has no class folders" in error and "the probes need labelled images" in error
