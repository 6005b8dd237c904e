"""Noisy trees read on the fly give exactly the pixels of the stored copies that generate_noise.py writes."""

import numpy as np
import pytest

from dinov2.data.datasets import ImageFolderDataset, PairedImageFolderDataset
from dinov2.eval.runner import load_splits
from Neighbor2Neighbor.training_data import survey_images
from tests.imagetrees import make_tree
from utils.dataset_index import load_split
from utils.generate_noise import generate_noise, main as generate_main, output_root
from utils.image_io import iter_image_files, load_rgb, png_relpath
from utils.image_tree import ImageTree, TreeSpecError, open_tree
from utils.noise import parse_noise

SETTINGS = ["gauss100", "shot3", "speckle0.4", "pg10_5", "identity"]


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("trees") / "clean", classes=2, per_class=6)


@pytest.mark.parametrize("quantization", ["truncate", "round"])
def test_on_the_fly_pixels_equal_the_stored_copy(clean_tree, tmp_path, quantization):
    prefix = tmp_path / "noisy"
    generate_noise(clean_tree, SETTINGS, prefix, seed=7, quantization=quantization, progress=False)
    relpaths = list(iter_image_files(clean_tree))
    modes = {load_rgb(clean_tree / r).shape for r in relpaths}
    assert len(modes) > 3  # odd sizes; make_tree mixes RGB, L, RGBA, CMYK and palette sources
    for setting in SETTINGS:
        options = f"{setting},seed=7" + (",quantization=round" if quantization == "round" else "")
        tree = open_tree(f"noisy:{options}:{clean_tree}")
        stored = output_root(prefix, setting)
        for relpath in relpaths:
            assert np.array_equal(tree.read(relpath), load_rgb(stored / png_relpath(relpath))), (setting, relpath)


def test_a_folder_inside_the_tree_keeps_the_seeding_root(clean_tree, tmp_path):
    generate_noise(clean_tree, ["gauss50"], tmp_path / "whole", progress=False)
    generate_noise(clean_tree / "train", ["gauss50"], tmp_path / "train_only", progress=False)
    inside = open_tree(f"noisy:gauss50:{clean_tree}:train")
    of_train = open_tree(f"noisy:gauss50:{clean_tree}/train")
    assert inside.folder == of_train.folder == clean_tree / "train"
    for relpath in inside.iter_relpaths():
        copy = png_relpath(relpath)
        assert np.array_equal(inside.read(relpath), load_rgb(tmp_path / "whole-gauss50" / "train" / copy))
        assert np.array_equal(of_train.read(relpath), load_rgb(tmp_path / "train_only-gauss50" / copy))
    # the training and probe loaders see the same pixels through either spelling of the split
    split = load_split(f"noisy:gauss50:{clean_tree}", "train")
    probe_train, _ = load_splits(f"noisy:gauss50:{clean_tree}:train", f"noisy:gauss50:{clean_tree}:val")
    assert split.samples == probe_train.samples
    assert np.array_equal(np.asarray(split.read_pil(0)), np.asarray(probe_train.read_pil(0)))
    assert np.array_equal(np.asarray(split.read_pil(0)), load_rgb(tmp_path / "whole-gauss50" /
                                                                  png_relpath(split.samples[0][0])))


def test_a_stored_tree_noised_in_code_is_the_spelled_noisy_tree(clean_tree):
    noised = open_tree(clean_tree).noised(parse_noise("gauss50"))
    assert noised == open_tree(f"noisy:gauss50:{clean_tree}")
    assert noised / "train" == open_tree(f"noisy:gauss50:{clean_tree}:train")
    relpath = next((noised / "train").iter_relpaths())
    spelled = open_tree(f"noisy:gauss50:{clean_tree}:train")
    assert np.array_equal((noised / "train").read(relpath), spelled.read(relpath))
    assert not np.array_equal((noised / "train").read(relpath), open_tree(clean_tree / "train").read(relpath))
    with pytest.raises(TreeSpecError, match="noised already"):
        noised.noised(parse_noise("gauss100"))


def test_spelling_round_trips_and_subtrees():
    tree = open_tree("noisy:shot3,seed=7,quantization=round:data/x")
    assert str(tree) == "noisy:shot3,seed=7,quantization=round:data/x"
    assert str(tree / "train") == "noisy:shot3,seed=7,quantization=round:data/x:train"
    assert open_tree(str(tree / "train")) == tree / "train"
    assert (tree / "train").parent == tree
    assert (tree / "train").noise_key("n0/a.JPEG") == "train/n0/a.JPEG"
    assert open_tree("data/x") == ImageTree(open_tree("data/x").folder)
    assert not open_tree("data/x").on_the_fly and str(open_tree("data/x")) == "data/x"


def test_the_setting_is_parsed_once_where_the_tree_is_spelled(clean_tree, monkeypatch):
    from utils import image_tree, noise

    tree = open_tree(f"noisy:speckle1.0,seed=3:{clean_tree}")
    assert tree.noise == noise.parse_noise("speckle1") and str(tree).startswith("noisy:speckle1.0,seed=3:")

    def parse_again(setting: str):
        raise AssertionError(f"{setting} parsed again")

    monkeypatch.setattr(noise, "parse_noise", parse_again)
    monkeypatch.setattr(image_tree, "parse_noise", parse_again)
    relpaths = list(tree.iter_relpaths())
    assert [tree.read(r).shape[2] for r in relpaths] == [3] * len(relpaths)
    assert tree.noise_settings() == {"noise": "speckle1", "seed": 3, "quantization": "truncate"}


@pytest.mark.parametrize("spelling, named", [
    ("noisy:", "expected noisy:SETTING"), ("noisy:gauss100", "expected noisy:SETTING"),
    ("noisy:blur3:data/x", "unknown noise setting"), ("noisy:gauss100,seed=x:d", "seed must be an integer"),
    ("noisy:gauss100,sigma=3:d", "unknown option"), ("noisy:gauss100,quantization=up:d", "quantization"),
    ("noisy:gauss100:d:/abs", "relative"),
])
def test_malformed_spellings_are_refused(spelling, named):
    with pytest.raises(TreeSpecError, match=named):
        open_tree(spelling)


def test_training_datasets_read_on_the_fly_trees(clean_tree, tmp_path):
    generate_noise(clean_tree, ["speckle0.7"], tmp_path / "noisy", progress=False)
    stored, spelled = tmp_path / "noisy-speckle0.7", f"noisy:speckle0.7:{clean_tree}"
    a, b = ImageFolderDataset(stored, "train"), ImageFolderDataset(spelled, "train")
    assert len(a) == len(b) and [a.get_target(i) for i in range(len(a))] == [b.get_target(i) for i in range(len(b))]
    for i in range(len(a)):
        assert np.array_equal(np.asarray(a[i][0]), np.asarray(b[i][0]))
    paired = PairedImageFolderDataset(spelled, stored, "train")  # on-the-fly noisy with a stored partner
    noisy, partner = paired[0][0]
    assert np.array_equal(np.asarray(noisy), np.asarray(partner))
    survey = survey_images(open_tree(spelled) / "train", patch_size=8, progress=False)
    assert survey.relpaths == list(iter_image_files(clean_tree / "train"))


def test_command_lines_refuse_bad_spellings_with_usage_errors(clean_tree, capsys):
    from Neighbor2Neighbor.denoise import main as denoise_main

    with pytest.raises(SystemExit) as exit_info:
        denoise_main(["--weights", "w.pt", "--src", "noisy:gauss1000x:" + str(clean_tree), "--output-dir", "out"])
    assert exit_info.value.code == 2 and "--src" in capsys.readouterr().err
    assert generate_main(["--src", f"noisy:gauss100:{clean_tree}", "--noise", "gauss50", "--num-workers", "0"]) == 2
    assert "not one noised on the fly" in capsys.readouterr().err
