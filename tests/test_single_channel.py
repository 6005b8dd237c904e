"""Single-channel backbones (``student.in_chans=1``): grey images stay grey from the crops to the export, and
3-channel weights convert exactly (on grey images) into a 1-channel patch embedding and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from dinov2.data import DataAugmentationDINO, ImageFolderDataset
from dinov2.data.crops import normalize_crops
from dinov2.data.datasets import image_for_transforms
from dinov2.eval import knn
from dinov2.eval.features import ImageListDataset
from dinov2.eval.results import load_result
from dinov2.eval.retrieval_data import RetrievalImages
from dinov2.eval.transforms import make_eval_transform
from dinov2.export import main as export_main
from dinov2.hub import load_backbone
from dinov2.models import vit_tiny_4blocks
from dinov2.models.backbone_weights import load_pretrained_into
from dinov2.models.input_channels import convert_input_layer, input_channels
from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.train.train import main as train_main
from dinov2.utils.checks import check_config
from dinov2.utils.config import CONFIGS_DIR, ConfigError, load_config
from dinov2.utils.normalization import GREY_MEAN, GREY_STD, IMAGENET_MEAN, IMAGENET_STD, channel_normalization
from tests.eval_fixtures import TINY_OVERRIDES
from tests.imagetrees import write_image
from utils.image_tree import open_tree

SMOKE = str(CONFIGS_DIR / "train" / "smoke_cpu.yaml")


def _vit(in_chans: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = vit_tiny_4blocks(patch_size=8, img_size=32, in_chans=in_chans).eval()
    with torch.no_grad():  # LayerScale, tokens and the patch bias away from their initial values
        for name, parameter in model.named_parameters():
            if name.endswith("gamma") or "token" in name or name == "patch_embed.proj.bias":
                parameter.normal_()
    return model


def _normalised(grey: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey levels ``[B, 1, H, W]`` in [0, 1] as a ``channels``-channel backbone takes them."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in channel_normalization(channels))
    return (grey.expand(-1, channels, -1, -1) - mean) / std


def _tokens(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model.forward_features(x)
    return torch.cat([out["x_norm_clstoken"][:, None], out["x_norm_patchtokens"]], dim=1)


def test_grey_normalisation_is_the_average_of_imagenets():
    assert channel_normalization(3) == (IMAGENET_MEAN, IMAGENET_STD)
    assert GREY_MEAN == pytest.approx((0.449,)) and GREY_STD == pytest.approx((0.226,))
    with pytest.raises(ValueError, match="1 .grey. or 3 .RGB. channels, not 2"):
        channel_normalization(2)


@pytest.mark.parametrize("source_chans, target_chans", [(3, 1), (1, 3)])
def test_converted_weights_give_the_same_tokens_on_grey_images(source_chans, target_chans):
    source, target = _vit(source_chans), _vit(target_chans, seed=1)
    load_pretrained_into(target, source.state_dict(), "source")
    assert input_channels(target) == target_chans
    grey = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(_tokens(target, _normalised(grey, target_chans)),
                               _tokens(source, _normalised(grey, source_chans)), rtol=1e-5, atol=1e-5)
    colour = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))  # the rule holds for grey only
    if source_chans == 3:
        assert not torch.allclose(_tokens(target, _normalised(colour.mean(1, keepdim=True), 1)),
                                  _tokens(source, _normalised(colour, 3)), atol=1e-3)


def test_a_converted_layer_round_trips():
    weight, bias = torch.randn(8, 3, 4, 4, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    grey_weight, grey_bias = convert_input_layer(weight, bias, 1)
    assert grey_weight.shape == (8, 1, 4, 4)
    back_weight, back_bias = convert_input_layer(*convert_input_layer(grey_weight, grey_bias, 3), 1)
    torch.testing.assert_close((back_weight, back_bias), (grey_weight, grey_bias))


def _grey_png(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (40, 44), dtype=np.uint8), mode="L").save(path)
    return path


def _grey_tiff(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rng.integers(0, 65536, (40, 44), dtype=np.uint16))
    return path


@pytest.mark.parametrize("write, atol", [(_grey_png, 0), (_grey_tiff, 1e-3)])
def test_one_channel_crops_are_the_grey_channel_of_the_rgb_crops(tmp_path, write, atol):
    write(tmp_path / "tree" / ("a.png" if write is _grey_png else "a.tif"))
    transform = DataAugmentationDINO((0.3, 1.0), (0.1, 0.5), 2, global_crops_size=24, local_crops_size=8,
                                     solarize_probability=0.5, as_uint8=True)
    rgb = ImageFolderDataset(tmp_path / "tree", "train", transform=transform)
    grey = ImageFolderDataset(tmp_path / "tree", "train", transform=transform, channels=1)
    for seed in range(6):  # enough draws for jitter, grayscale, blur and solarize to occur
        rgb_crops, grey_crops = rgb[(0, seed)][0], grey[(0, seed)][0]
        for key in ("global_crops", "local_crops"):
            for a, b in zip(rgb_crops[key], grey_crops[key]):
                assert a.shape[0] == 3 and b.shape[0] == 1
                a, b = (normalize_crops(c) if c.dtype == torch.uint8 else c for c in (a, b))
                mean3, std3 = (torch.tensor(v).view(3, 1, 1) for v in channel_normalization(3))
                levels3, levels1 = a * std3 + mean3, b * GREY_STD[0] + GREY_MEAN[0]
                torch.testing.assert_close(levels1[0], levels3[0], rtol=0, atol=atol + 1e-5)


def test_colour_images_become_their_luminance(tmp_path):
    write_image(tmp_path / "tree" / "photo.png", size=(20, 14))
    tree = open_tree(tmp_path / "tree")
    rgb = image_for_transforms(tree, "photo.png")
    grey = image_for_transforms(tree, "photo.png", channels=1)
    assert rgb.mode == "RGB" and grey.mode == "L"
    assert np.array_equal(np.asarray(grey), np.asarray(rgb.convert("L")))
    with pytest.raises(ValueError, match="not 2"):
        image_for_transforms(tree, "photo.png", channels=2)


def test_eval_and_retrieval_views_follow_the_backbone_channels(tmp_path):
    path = _grey_png(tmp_path / "tree" / "a.png")
    view, _ = ImageListDataset(tmp_path / "tree", [("a.png", 0)], make_eval_transform(40, 40, channels=1), 1)[0]
    levels = torch.from_numpy(np.array(Image.open(path))[:, 2:42]).float() / 255  # no resize, centre crop only
    expected = (levels - GREY_MEAN[0]) / GREY_STD[0]
    assert view.shape == (1, 40, 40)
    torch.testing.assert_close(view[0], expected)
    jpg = tmp_path / "retrieval" / "jpg"
    _grey_png(jpg / "q.jpg")
    views, _ = RetrievalImages(tmp_path / "retrieval", ["q"], [make_eval_transform(16, 16, 1)], channels=1)[0]
    assert views[0].shape == (1, 16, 16)


def test_student_in_chans_must_be_one_or_three():
    with pytest.raises(ConfigError, match="'student.in_chans': expected 1 .grey. or 3 .RGB., got 2"):
        check_config(load_config(overrides=[*TINY_OVERRIDES, "student.in_chans=2"]))


def test_a_one_channel_run_starts_from_three_channel_weights(tmp_path):
    source = _vit(3)
    torch.save(source.state_dict(), tmp_path / "rgb.pth")
    cfg = load_config(overrides=[*TINY_OVERRIDES, "student.in_chans=1",
                                 f"student.pretrained_weights={tmp_path / 'rgb.pth'}"])
    arch = SSLMetaArch(cfg)
    grey = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    for backbone in (arch.student.backbone.eval(), arch.teacher.backbone):
        assert input_channels(backbone) == 1
        torch.testing.assert_close(_tokens(backbone, _normalised(grey, 1)), _tokens(source, _normalised(grey, 3)),
                                   rtol=1e-5, atol=1e-5)


def _grey_labelled_tree(root: Path) -> Path:
    for split, count in (("train", 6), ("val", 3)):
        for label in range(2):
            for i in range(count):
                level = 15000 + 35000 * label
                pixels = np.clip(np.random.default_rng(10 * label + i).normal(level, 4000, (24, 24)), 0, 65535)
                path = root / split / f"class{label}" / f"{i}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, pixels.astype(np.uint16))
    return root


@pytest.mark.slow
def test_a_one_channel_run_trains_branches_into_nct_exports_and_is_probed(tmp_path):
    tree = _grey_labelled_tree(tmp_path / "grey")
    common = ["student.in_chans=1", "optim.epochs=2", "train.checkpoint_period=1", "train.OFFICIAL_EPOCH_LENGTH=2"]
    assert train_main(["--config-file", SMOKE, "--output-dir", str(tmp_path / "denoised_run"),
                       f"train.dataset_path={tree}", *common]) == 0
    run = tmp_path / "nct"  # the tree stands in for its own denoised copy
    assert train_main(["--config-file", SMOKE, "--output-dir", str(run), f"train.dataset_path=noisy:pg20_3:{tree}",
                       f"curriculum.branch_from={tmp_path / 'denoised_run'}@1", "nct.enabled=true",
                       f"nct.denoised_dataset_path={tree}", *common]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(np.isfinite(r["nct_dino_global_crops_loss"]) for r in records)
    assert input_channels(load_backbone(run)) == 1
    assert export_main(["--weights", str(run), "--output-dir", str(tmp_path / "export")]) == 0
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["in_chans"] == 1 and config["mean"] == list(GREY_MEAN) and config["std"] == list(GREY_STD)
    assert config["timm"]["kwargs"]["in_chans"] == 1
    exported = load_backbone(tmp_path / "export")
    grey = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(_tokens(exported, grey), _tokens(load_backbone(run), grey))
    timm = pytest.importorskip("timm")
    timm_model = timm.create_model(config["timm"]["model_name"], pretrained=True, num_classes=0,
                                   pretrained_cfg_overlay=dict(file=str(tmp_path / "export" / "model.safetensors")),
                                   **config["timm"]["kwargs"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(timm_model.forward_features(grey)[:, 0], _tokens(exported, grey)[:, 0],
                                   rtol=1e-5, atol=1e-5)
    assert knn.main(["--pretrained-weights", str(run), "--train-dataset", str(tree / "train"), "--val-dataset",
                     str(tree / "val"), "--output-dir", str(tmp_path / "eval"), "--crop-size", "16",
                     "--num-workers", "0", "--nb-knn", "1", "--quiet"]) == 0
    (result,) = (tmp_path / "eval").glob("knn_*.json")
    assert set(load_result(result)["results"]["k"]) == {"1"}


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_a_resnet_takes_single_channel_images(stem):
    from dinov2.models import build_model

    student, teacher, dim = build_model({"arch": "resnet18", "resnet_stem": stem, "in_chans": 1})
    assert input_channels(student) == input_channels(teacher) == 1
    with torch.no_grad():
        assert teacher.eval()(torch.rand(2, 1, 32, 32)).shape == (2, dim)
