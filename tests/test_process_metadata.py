"""process_metadata.py and utils/dataset_index.py: indexing, verification, pairing, clear errors."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from process_metadata import main as process_metadata
from utils.dataset_index import (INDEX_DIR_ENV, INDEX_FILENAME, DatasetError, UnindexedTreeWarning, build_index,
                                 index_cache_path, load_split)
from utils.tree_pairing import paired_relpaths
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


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """Folders that refuse writes (EROFS), as a read-only dataset mount (chmod does not stop root); the index
    cache in a temporary folder."""
    from utils import dataset_index

    refused: list[Path] = []
    real_write = dataset_index.atomic_write_json

    def write(path, obj, indent=2):
        if any(Path(path).parent == folder for folder in refused):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real_write(path, obj, indent)

    monkeypatch.setattr(dataset_index, "atomic_write_json", write)
    monkeypatch.setenv(INDEX_DIR_ENV, str(tmp_path / "index_cache"))
    return refused


def test_a_read_only_tree_keeps_its_index_in_the_cache_where_loaders_find_it(tiny_tree: Path, read_only):
    read_only.append(tiny_tree)
    with pytest.warns(UserWarning, match="cannot be written: its index is kept in"):
        assert process_metadata([str(tiny_tree)]) == 0
    cached = index_cache_path(tiny_tree)
    assert cached.is_file() and not (tiny_tree / INDEX_FILENAME).exists()
    data = json.loads(cached.read_text())
    data["splits"]["train"]["classes"]["n000"]["files"] = ["train_0_0.png"]  # the loader must trust the cache
    cached.write_text(json.dumps(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(load_split(tiny_tree, "train")) == 4
        assert len(load_split(f"noisy:gauss50:{tiny_tree}", "train")) == 4  # noisy on the fly: the clean index
    assert not [w for w in caught if issubclass(w.category, UnindexedTreeWarning)]


def test_a_tree_without_index_is_scanned_with_a_warning_naming_it(tiny_tree: Path, read_only):
    with pytest.warns(UnindexedTreeWarning, match=rf"{tiny_tree} has no index; scanning its files"):
        assert len(load_split(tiny_tree, "train")) == 6


def test_pairing_reads_the_indexes_of_both_trees(tmp_path: Path, read_only):
    first, second = make_tree(tmp_path / "a", per_class=2), make_tree(tmp_path / "b", per_class=2)
    assert process_metadata([str(first)]) == 0 and process_metadata([str(second)]) == 0
    walked = paired_relpaths(first, second, "train")
    (second / "train" / "n000" / "train_0_0.png").unlink()  # the index is trusted while the folder's time holds
    os.utime(second / "train" / "n000", ns=(json.loads((second / INDEX_FILENAME).read_text())
                                            ["splits"]["train"]["classes"]["n000"]["mtime_ns"],) * 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert paired_relpaths(first, second, "train") == walked
    assert not [w for w in caught if issubclass(w.category, UnindexedTreeWarning)]
