"""Every writer of an output tree (each shard of a job, a whole run beside them) claims the tree's manifest under
one lock, knowing whether another writer is at work: two writers with different settings never mix a tree, even
before the first image lands, and a finished tree made from another source is refused."""

import pytest
import torch

from Neighbor2Neighbor import denoise as denoise_module
from Neighbor2Neighbor.arch_unet import UNet
from tests.imagetrees import make_tree
from utils.generate_noise import MANIFEST_FILENAME, generate_noise, output_root
from utils.manifest import ManifestMismatch, check_or_write_manifest, read_manifest
from utils.run_lock import tree_writers
from utils.sharding import Shard


def _another_writer(root, manifest):
    """A writer at work on ``root`` (its claim done, its shared lock held) that has written no image yet."""
    return tree_writers(root, lambda others: check_or_write_manifest(root / MANIFEST_FILENAME, manifest,
                                                                     others_writing=others))


def _seed_1_tree(tmp_path):
    """A clean tree, the root of its gauss25 copy, and the manifest of that copy at seed 1."""
    src = make_tree(tmp_path / "clean")
    manifest = {"setting": "gauss25", "canonical": "gauss25", "seed": 1, "quantization": "truncate",
                "source": str(src.resolve())}
    return src, output_root(tmp_path / "noisy", "gauss25"), manifest


def test_a_shard_with_another_seed_is_refused_while_the_first_writes(tmp_path):
    src, root, manifest = _seed_1_tree(tmp_path)
    with _another_writer(root, manifest):
        with pytest.raises(ManifestMismatch, match="seed: 1 there, 2 now.*another run is writing it now"):
            generate_noise(src, ["gauss25"], tmp_path / "noisy", seed=2, progress=False, shard=Shard(1, 2))
        with pytest.raises(ManifestMismatch, match="another run is writing"):  # nor a whole run
            generate_noise(src, ["gauss25"], tmp_path / "noisy", seed=2, progress=False)
        # the same settings join the writers: shards of one job write the tree together
        generate_noise(src, ["gauss25"], tmp_path / "noisy", seed=1, progress=False, shard=Shard(1, 2))
    assert read_manifest(root / MANIFEST_FILENAME)["seed"] == 1


def test_with_no_writer_left_an_imageless_tree_takes_the_new_settings(tmp_path):
    src, root, manifest = _seed_1_tree(tmp_path)
    with _another_writer(root, manifest):
        pass  # it ended before writing anything
    generate_noise(src, ["gauss25"], tmp_path / "noisy", seed=2, progress=False)
    assert read_manifest(root / MANIFEST_FILENAME)["seed"] == 2


def _denoise(weights, src, dst):
    return denoise_module.main(["--weights", str(weights), "--src", str(src), "--dst", str(dst), "--workers", "0",
                                "--batch-size", "2", "--device", "cpu", "--no-progress"])


def test_denoising_another_source_into_a_finished_folder_is_refused(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(UNet(features=8).state_dict(), tmp_path / "w.pt")
    first, second = make_tree(tmp_path / "first", per_class=1), make_tree(tmp_path / "second", per_class=1)
    assert _denoise(tmp_path / "w.pt", first, tmp_path / "out") == 0
    capsys.readouterr()
    assert _denoise(tmp_path / "w.pt", second, tmp_path / "out") == 2
    assert "src:" in capsys.readouterr().err
    assert _denoise(tmp_path / "w.pt", first, tmp_path / "out") == 0  # the same request resumes


def test_an_old_manifest_without_the_source_is_completed_not_refused(tmp_path):
    from Neighbor2Neighbor.denoise import MANIFEST_FILENAME as DENOISE_MANIFEST

    torch.manual_seed(0)
    torch.save(UNet(features=8).state_dict(), tmp_path / "w.pt")
    src = make_tree(tmp_path / "noisy", per_class=1)
    assert _denoise(tmp_path / "w.pt", src, tmp_path / "out") == 0
    path = tmp_path / "out" / DENOISE_MANIFEST
    old = {key: value for key, value in read_manifest(path).items() if key != "src"}
    path.write_text(__import__("json").dumps(old))
    assert _denoise(tmp_path / "w.pt", src, tmp_path / "out") == 0
    assert read_manifest(path)["src"] == str(src.resolve())
