"""process_metadata.py and utils/dataset_index.py: indexing, verification, pairing, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from process_metadata import main as process_metadata
from utils.dataset_index import INDEX_FILENAME, DatasetError, build_index, load_split, paired_relpaths
from utils.generate_noise import generate_noise

from tests.imagetrees import make_tree, write_image

REPO = Path(__file__).resolve().parents[1]


def test_index_lists_classes_names_and_files(tiny_tree: Path):
    assert process_metadata([str(tiny_tree)]) == 0
    index = json.loads((tiny_tree / INDEX_FILENAME).read_text())
    assert index["classes"] == ["n000", "n001"]
    assert index["class_names"] == {"n000": "class number 0", "n001": "class number 1"}
    assert index["splits"]["train"]["num_images"] == 6 and index["splits"]["val"]["num_images"] == 6
    split = load_split(tiny_tree, "val")
    assert len(split) == 6 and split.counts_per_class() == [3, 3]
    assert split.samples[0] == ("val/n000/val_0_0.png", 0)
    assert all(split.path(i).is_file() for i in range(len(split)))


def test_loader_uses_index_and_notices_changes(tiny_tree: Path):
    process_metadata([str(tiny_tree)])
    index_path = tiny_tree / INDEX_FILENAME
    data = json.loads(index_path.read_text())
    data["splits"]["train"]["classes"]["n000"]["files"] = ["train_0_0.png"]  # the loader must trust the index ...
    index_path.write_text(json.dumps(data))
    assert len(load_split(tiny_tree, "train")) == 4
    class_dir = tiny_tree / "train" / "n001"
    indexed = class_dir.stat().st_mtime_ns
    write_image(class_dir / "new.png")  # ... until the tree changes
    # a write this soon after indexing may leave the folder's time as it was (a coarse file-system clock)
    os.utime(class_dir, ns=(indexed + 10**9, indexed + 10**9))
    with pytest.warns(UserWarning, match="out of date"):
        assert len(load_split(tiny_tree, "train")) == 7


def test_class_indices_do_not_depend_on_the_split(tmp_path: Path):
    root = make_tree(tmp_path / "t", classes=3, per_class=1)
    shutil.rmtree(root / "val" / "n000")
    split = load_split(root, "val")  # no index written: scanned, classes still from train
    assert split.classes == ["n000", "n001", "n002"]
    assert [label for _, label in split.samples] == [1, 2]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: shutil.rmtree(r / "val"), "missing split folder"),
        (lambda r: [p.unlink() for p in (r / "train" / "n001").iterdir()], "holds no image"),
        (lambda r: (r / "labels.txt").write_text("n000,zero\n"), "names no class"),
        (lambda r: (r / "labels.txt").write_text("n000 zero\n"), "expected 'wnid,class name'"),
        (lambda r: (r / "val" / "n009").mkdir() or write_image(r / "val" / "n009" / "x.png"), "absent from"),
    ],
)
def test_layout_errors_are_clear(tiny_tree: Path, damage, message: str):
    damage(tiny_tree)
    with pytest.raises(DatasetError, match=message):
        build_index(tiny_tree)


def test_verify_reports_undecodable_file(tiny_tree: Path, capsys):
    (tiny_tree / "val" / "n000" / "val_0_2.jpg").write_bytes(b"not an image")
    assert process_metadata([str(tiny_tree), "--verify", "--workers", "2"]) == 2
    assert "val_0_2.jpg" in capsys.readouterr().err
    assert not (tiny_tree / INDEX_FILENAME).exists()


def test_pair_check(tiny_tree: Path, tmp_path: Path, capsys):
    generate_noise(tiny_tree, ["gauss50"], tmp_path / "noisy", progress=False)
    noisy = tmp_path / "noisy-gauss50"
    assert process_metadata(["--pair", str(tiny_tree), str(noisy)]) == 0
    pairs = paired_relpaths(noisy, tiny_tree, "train")
    assert pairs["train/n000/train_0_1.png"] == "train/n000/train_0_1.JPEG"
    (noisy / "val" / "n001" / "val_1_0.png").unlink()
    write_image(noisy / "train" / "n000" / "intruder.png")
    assert process_metadata(["--pair", str(tiny_tree), str(noisy)]) == 2
    err = capsys.readouterr().err
    assert "val/n001/val_1_0" in err and "train/n000/intruder" in err
    with pytest.raises(DatasetError, match="intruder"):
        paired_relpaths(noisy, tiny_tree, "train")


def test_cli_runs_from_anywhere(tiny_tree: Path, tmp_path: Path):
    result = subprocess.run([sys.executable, str(REPO / "process_metadata.py"), str(tiny_tree)],
                            cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert "2 classes" in result.stdout
