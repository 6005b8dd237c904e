"""Weights in and out: upstream-format state dicts (flat, chunked, registers) load strictly with identical outputs
into the hub, the probes and training; exports load into this project, timm and torch.hub."""

import json
from pathlib import Path

import pytest
import torch

from dinov2.eval import knn
from dinov2.eval.results import load_result
from dinov2.export import main as export_main
from dinov2.hub import load_backbone
from dinov2.models import vit_tiny_4blocks
from dinov2.models.backbone_weights import BackboneWeightsError
from dinov2.train.ssl_meta_arch import SSLMetaArch
from dinov2.utils.config import ConfigError, load_config
from tests.eval_fixtures import TINY_OVERRIDES, make_separable_tree, make_teacher_export

REPO = Path(__file__).resolve().parents[1]


def _model(registers: int = 0, img_size: int = 32) -> torch.nn.Module:
    torch.manual_seed(registers)
    model = vit_tiny_4blocks(patch_size=8, img_size=img_size, num_register_tokens=registers).eval()
    with torch.no_grad():  # LayerScale and the special tokens away from their initial values
        for name, parameter in model.named_parameters():
            if name.endswith("gamma") or "token" in name:
                parameter.normal_()
    return model


def _upstream_format(model: torch.nn.Module, chunks: int = 0) -> dict[str, torch.Tensor]:
    """The keys upstream DINOv2 saves: flat, or ``blocks.<chunk>.<i>`` with block chunking (``i`` global)."""
    state = {}
    per_chunk = len(model.blocks) // chunks if chunks else 0
    for key, value in model.state_dict().items():
        if chunks and key.startswith("blocks."):
            index, rest = key.split(".", 2)[1:]
            key = f"blocks.{int(index) // per_chunk}.{index}.{rest}"
        state[key] = value.clone()
    return state


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int = 32) -> bool:
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.forward_features(x)["x_norm_clstoken"], b.forward_features(x)["x_norm_clstoken"]) and \
            torch.equal(a.forward_features(x)["x_norm_patchtokens"], b.forward_features(x)["x_norm_patchtokens"])


@pytest.mark.parametrize("registers, chunks, prefix", [(0, 0, ""), (0, 2, ""), (4, 0, ""), (4, 4, "module.")])
def test_upstream_format_state_dicts_load_strictly_with_identical_outputs(tmp_path, registers, chunks, prefix):
    model = _model(registers)
    path = tmp_path / "upstream.pth"
    torch.save({prefix + k: v for k, v in _upstream_format(model, chunks).items()}, path)
    loaded = load_backbone(path, arch="vit_tiny_4blocks", patch_size=8)
    assert loaded.num_register_tokens == registers and _same_outputs(model, loaded)
    assert _same_outputs(model, load_backbone(path))  # the architecture is read from the tensors
    with pytest.raises(BackboneWeightsError, match="--arch vit_small"):
        load_backbone(path, arch="vit_small")
    with pytest.raises(BackboneWeightsError, match="--patch-size 16"):
        load_backbone(path, patch_size=16)


def test_probes_evaluate_a_bare_state_dict(tmp_path):
    path = tmp_path / "upstream.pth"
    torch.save(_upstream_format(_model(), chunks=2), path)
    data = make_separable_tree(tmp_path / "data", num_classes=3, train_per_class=6, val_per_class=3)
    argv = ["--pretrained-weights", str(path), "--arch", "vit_tiny_4blocks", "--patch-size", "8",
            "--train-dataset", f"noisy:gauss50:{data}:train", "--val-dataset", f"noisy:gauss50:{data}:val",
            "--output-dir", str(tmp_path / "out"), "--crop-size", "32", "--num-workers", "0", "--batch-size", "8",
            "--nb-knn", "1", "--device", "cpu", "--quiet", "--method", "pretrained", "--noise-label", "gauss50"]
    assert knn.main(argv) == 0
    result = load_result(tmp_path / "out" / "knn_upstream.json")
    assert result["method"] == "pretrained" and result["iteration"] is None
    assert knn.main(argv[:3] + ["vit_small"] + argv[4:] + ["--overwrite"]) == 2  # the check names the mismatch


def test_export_loads_in_the_project_timm_and_torch_hub(tmp_path):
    timm = pytest.importorskip("timm")
    source = make_teacher_export(tmp_path / "run", 9)
    out = tmp_path / "export"
    assert export_main(["--weights", str(tmp_path / "run"), "--output-dir", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["arch"], config["patch_size"], config["img_size"], config["iteration"]) == \
        ("vit_tiny_4blocks", 8, 32, 9)
    reference = load_backbone(source)
    assert _same_outputs(reference, load_backbone(out))
    hub_model = torch.hub.load(str(REPO), "backbone", source="local", weights=str(out))
    assert _same_outputs(reference, hub_model)
    timm_model = timm.create_model(config["timm"]["model_name"], pretrained=True, num_classes=0,
                                   pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")),
                                   **config["timm"]["kwargs"]).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = reference.forward_features(x)["x_norm_clstoken"]
        torch.testing.assert_close(timm_model.forward_features(x)[:, 0], ours, rtol=1e-5, atol=1e-5)


def test_export_of_a_register_model_loads_in_timm(tmp_path):
    timm = pytest.importorskip("timm")
    model = _model(registers=4)
    torch.save(_upstream_format(model), tmp_path / "bare.pth")
    out = tmp_path / "export"
    assert export_main(["--weights", str(tmp_path / "bare.pth"), "--output-dir", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["num_register_tokens"] == 4 and config["timm"]["kwargs"]["reg_tokens"] == 4
    timm_model = timm.create_model(config["timm"]["model_name"], pretrained=True, num_classes=0,
                                   pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")),
                                   **config["timm"]["kwargs"]).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(timm_model.forward_features(x)[:, 0],
                                   model.forward_features(x)["x_norm_clstoken"], rtol=1e-5, atol=1e-5)


def test_hubconf_builds_upstream_models_from_a_local_copy_of_their_weights(tmp_path):
    hubconf = torch.hub.load(str(REPO), "dinov2_vits14", source="local", pretrained=False)
    assert hubconf.patch_size == 14 and hubconf.pos_embed.shape[1] == 1 + 37 * 37
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    reference = torch.hub.load(str(REPO), "dinov2_vits14_reg", source="local", pretrained=False)
    torch.save(_upstream_format(reference), path)
    loaded = torch.hub.load(str(REPO), "dinov2_vits14_reg", source="local", weights=str(path))
    assert loaded.num_register_tokens == 4 and loaded.interpolate_antialias
    assert _same_outputs(reference, loaded, size=28)


def test_training_starts_from_a_pretrained_backbone(tmp_path):
    model = _model(img_size=64)  # another image size: pos_embed is resampled to the training grid
    path = tmp_path / "upstream.pth"
    torch.save(_upstream_format(model, chunks=2), path)
    cfg = load_config(overrides=[*TINY_OVERRIDES, f"student.pretrained_weights={path}"])
    arch = SSLMetaArch(cfg)
    student, teacher = arch.student.backbone.state_dict(), arch.teacher.backbone.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(student[key], teacher[key])
        if key != "pos_embed":
            assert torch.equal(student[key], value), key
    assert student["pos_embed"].shape[1] == 1 + 4 * 4 and torch.equal(student["pos_embed"][:, 0], model.pos_embed[:, 0])
    wrong = load_config(overrides=[*TINY_OVERRIDES, "student.patch_size=16", f"student.pretrained_weights={path}"])
    with pytest.raises(ConfigError, match="student.pretrained_weights"):
        SSLMetaArch(wrong)
