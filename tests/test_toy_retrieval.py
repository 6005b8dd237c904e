"""The toy retrieval set, noise on the fly, and retrieval end to end."""

import argparse
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dinov2.eval import instance_recog
from dinov2.eval.features import make_loader
from dinov2.eval.results import load_result
from dinov2.eval.retrieval_data import RetrievalImages, load_retrieval_set
from dinov2.eval.transforms import make_eval_transform
from tests.eval_fixtures import make_teacher_export
from utils.image_io import load_rgb
from utils.make_toy_retrieval import build_toy_retrieval
from utils.noise import noisy_image, parse_noise


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    build_toy_retrieval(root, "toy", size=64)
    return root


def test_layout_and_ground_truth(toy):
    payload = pickle.loads((toy / "toy" / "gnd_toy.pkl").read_bytes())
    assert set(payload) == {"imlist", "qimlist", "gnd"}
    assert len(payload["qimlist"]) == 8  # nine photographs, cat and chelsea are one scene
    for name in payload["imlist"] + payload["qimlist"]:
        assert load_rgb(toy / "toy" / "jpg" / f"{name}.jpg").shape[2] == 3
    for query, entry in zip(payload["qimlist"], payload["gnd"]):
        scene = query[2:]
        lists = [set(entry[k].tolist()) for k in ("easy", "hard", "junk")]
        assert lists[0] and lists[1], query
        assert not (lists[0] & lists[1]) and not (lists[0] & lists[2]) and not (lists[1] & lists[2])
        for index in set().union(*lists):  # every positive or junk image is a crop of the query's scene
            name = payload["imlist"][index]
            assert name.startswith(f"db_{scene}_") or (scene == "chelsea" and name.startswith("db_cat_"))
        x1, y1, x2, y2 = entry["bbx"]
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64


def test_noise_on_the_fly_is_identical_for_any_batch_size_and_workers(toy):
    data = load_retrieval_set(toy, "toy")
    names = data.imlist[:5]
    dataset = RetrievalImages(data.folder, names, [make_eval_transform(32)], noise=parse_noise("gauss100"), seed=42)

    def batches(batch_size, workers):
        return torch.cat([views[0] for views, _ in make_loader(dataset, batch_size, workers)])

    reference = batches(1, 0)
    assert torch.equal(reference, batches(3, 0))
    assert torch.equal(reference, batches(2, 2))
    expected = noisy_image(load_rgb(data.folder / "jpg" / f"{names[0]}.jpg"), parse_noise("gauss100"), 42, f"jpg/{names[0]}.jpg")
    assert np.array_equal(dataset.image(0), expected)
    other_seed = RetrievalImages(data.folder, names, [make_eval_transform(32)], noise=parse_noise("gauss100"), seed=100)
    assert not np.array_equal(other_seed.image(0), expected)


def test_denoised_arm_reads_pngs_and_rejects_extra_noise(toy, tmp_path):
    data = load_retrieval_set(toy, "toy")
    with pytest.raises(FileNotFoundError, match="denoised"):
        RetrievalImages(data.folder, data.imlist[:2], [], denoised_root=tmp_path)
    with pytest.raises(ValueError):
        RetrievalImages(data.folder, data.imlist[:2], [], noise=parse_noise("gauss50"), denoised_root=tmp_path)


class PixelBackbone(torch.nn.Module):
    """A stand-in whose class token is a 4x4 thumbnail of the image: good enough to retrieve crops."""

    patch_size = 8

    def get_intermediate_layers(self, x, n=1, reshape=False, return_class_token=False, norm=True):
        cls = F.adaptive_avg_pool2d(x, 4).flatten(1)
        return tuple((torch.zeros(x.shape[0], 1, cls.shape[1]), cls) for _ in range(n))


def _args(**overrides):
    values = dict(multiscale=False, scales=[1.0], crop_size=64, resize_size=None, noise=None,
                  quantization="truncate", denoised_root=None, noise_seed=42, query_noise_seed=100,
                  query_bbox=False, quiet=True, batch_size=8, num_workers=0, precision="fp32")
    return argparse.Namespace(**{**values, **overrides})


def test_retrieval_pipeline_ranks_crops_of_the_same_photograph(toy):
    data = load_retrieval_set(toy, "toy")
    results = instance_recog.evaluate_retrieval(PixelBackbone(), data, _args(), torch.device("cpu"))
    assert results["medium"]["mAP"] > 60 and results["easy"]["mAP"] > 70
    # the same features, ranked at random, score far lower
    random_ranks = np.stack([np.random.default_rng(q).permutation(len(data.imlist)) for q in range(8)], axis=1)
    from dinov2.eval.revisited import evaluate_revisited
    assert evaluate_revisited(random_ranks, data.gnd)["medium"]["mAP"] < results["medium"]["mAP"] - 30
    boxed = instance_recog.evaluate_retrieval(PixelBackbone(), data, _args(query_bbox=True, multiscale=True),
                                              torch.device("cpu"))
    assert boxed["medium"]["mAP"] > 50


class GreyPixelBackbone(PixelBackbone):
    """The thumbnail stand-in with a single-channel patch embedding: retrieval must give it grey views."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(1, 4, self.patch_size)

    def get_intermediate_layers(self, x, n=1, reshape=False, return_class_token=False, norm=True):
        assert x.shape[1] == 1, x.shape
        return super().get_intermediate_layers(x, n, reshape, return_class_token, norm)


def test_a_single_channel_backbone_retrieves_from_grey_views(toy):
    results = instance_recog.evaluate_retrieval(GreyPixelBackbone(), load_retrieval_set(toy, "toy"),
                                                _args(multiscale=True), torch.device("cpu"))
    assert results["medium"]["mAP"] > 50


def test_cli_end_to_end_with_a_teacher_export(toy, tmp_path):
    checkpoint = make_teacher_export(tmp_path / "run", 9)
    out = tmp_path / "out"
    argv = ["--pretrained-weights", str(checkpoint), "--data-root", str(toy), "--dataset", "toy",
            "--noise", "shot3", "--crop-size", "32", "--num-workers", "0", "--output-dir", str(out),
            "--method", "dinov2", "--checkpoint-label", "final", "--quiet"]
    assert instance_recog.main(argv) == 0
    (path,) = out.glob("*.json")
    result = load_result(path)
    assert result["noise"] == "shot3" and result["method"] == "dinov2" and result["checkpoint_label"] == "final"
    assert result["settings"]["arm"] == "noisy" and result["results"]["dataset"] == "toy"
    assert 0 <= result["results"]["hard"]["mAP"] <= 100
    assert instance_recog.main(argv[:5] + ["toy_missing"] + argv[6:]) == 2
