"""utils/make_subset.py: the paper's denoiser subset (per class, sides in a range, seeded), linked, resumable."""

import json
import random

import numpy as np
import pytest

from tests.imagetrees import write_image
from utils.image_tree import open_tree
from utils.make_subset import MANIFEST_FILENAME, main as make_subset

# width x height per file: 0-4 fit [12, 20] on both sides, 5 is too small, 6 too wide
SIZES = [(12, 12), (20, 14), (16, 20), (13, 17), (18, 18), (8, 16), (30, 15)]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "full"
    for c in range(2):
        for i, size in enumerate(SIZES):
            write_image(root / "train" / f"n{c}" / f"img_{i}.png", size=size, seed=10 * c + i)
    (root / "labels.txt").write_text("n0,zero\nn1,one\n")
    return root


def _args(tree, out, *more, per_class=3, seed=42):
    return ["--src", str(tree), "--output-dir", str(out), "--per-class", str(per_class), "--min-side", "12",
            "--max-side", "20", "--seed", str(seed), "--quiet", *more]


def test_each_class_draws_its_share_of_the_fitting_images_with_the_seed(tree, tmp_path, capsys):
    out = tmp_path / "subset"
    assert make_subset(_args(tree, out)) == 0
    fitting = [f"img_{i}.png" for i in range(5)]
    rng = random.Random(42)
    expected = {name: sorted(rng.sample(fitting, 3)) for name in ("n0", "n1")}
    manifest = json.loads((out / MANIFEST_FILENAME).read_text())
    assert manifest["files"] == expected and manifest["seed"] == 42
    for name, files in expected.items():
        assert sorted(p.name for p in (out / "train" / name).iterdir()) == files
        assert all((out / "train" / name / f).resolve() == (tree / "train" / name / f).resolve() for f in files)
    assert (out / "labels.txt").read_text() == (tree / "labels.txt").read_text()
    assert "6 images of 2 classes (6 written now)" in capsys.readouterr().out
    # the subset read with noise on the fly has the full tree's noisy pixels (the noise follows the relative path)
    rel = f"train/n0/{expected['n0'][0]}"
    assert np.array_equal(open_tree(f"noisy:gauss100:{out}").read(rel), open_tree(f"noisy:gauss100:{tree}").read(rel))


def test_a_rerun_skips_and_other_settings_are_refused(tree, tmp_path, capsys):
    out = tmp_path / "subset"
    assert make_subset(_args(tree, out)) == 0
    assert make_subset(_args(tree, out)) == 0
    assert "(0 written now)" in capsys.readouterr().out
    assert make_subset(_args(tree, out, seed=7)) == 2
    assert "seed: 42 there, 7 now" in capsys.readouterr().err
    assert make_subset(_args(tree, tree / "inside")) == 2


def test_a_class_with_too_few_fitting_images_keeps_them_all_with_a_warning(tree, tmp_path):
    with pytest.warns(UserWarning, match="5 images of sides in \\[12, 20\\], fewer than 6"):
        assert make_subset(_args(tree, tmp_path / "s", "--copy", per_class=6)) == 0
    copied = tmp_path / "s" / "train" / "n1" / "img_0.png"
    assert copied.is_file() and not copied.is_symlink()
