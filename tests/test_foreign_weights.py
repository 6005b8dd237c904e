"""Weights of the libraries users get DINOv2 from: random models built by transformers and timm themselves load
here with the same tokens, and ``python -m dinov2.export --format hf`` writes what transformers loads back."""

from __future__ import annotations

import json

import pytest
import torch

from dinov2.eval import knn
from dinov2.export import main as export_main
from dinov2.hub import load_backbone
from dinov2.models.backbone_weights import BackboneWeightsError
from tests.eval_fixtures import make_separable_tree, make_teacher_export

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

TINY = dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, patch_size=8, image_size=32)


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter drawn at random (LayerScale, tokens and biases away from their initial values)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def _hf_model(registers: int = 0, swiglu: bool = False, channels: int = 3) -> torch.nn.Module:
    if registers:
        config = transformers.Dinov2WithRegistersConfig(**TINY, num_register_tokens=registers, use_swiglu_ffn=swiglu,
                                                        num_channels=channels)
        return _randomised(transformers.Dinov2WithRegistersModel(config), 1)
    config = transformers.Dinov2Config(**TINY, use_swiglu_ffn=swiglu, num_channels=channels)
    return _randomised(transformers.Dinov2Model(config), 0)


def _ours(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model.forward_features(x)
    return torch.cat([out["x_norm_clstoken"][:, None], out["x_norm_patchtokens"]], dim=1)


def _hf(model: torch.nn.Module, x: torch.Tensor, registers: int) -> torch.Tensor:
    with torch.no_grad():
        hidden = model(pixel_values=x).last_hidden_state
    return torch.cat([hidden[:, :1], hidden[:, 1 + registers:]], dim=1)


def _images(channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("registers, swiglu, channels", [(0, False, 3), (4, False, 3), (0, True, 3), (4, True, 1)])
def test_a_transformers_folder_loads_with_the_same_tokens(tmp_path, registers, swiglu, channels):
    model = _hf_model(registers, swiglu, channels)
    model.save_pretrained(tmp_path / "hf")
    ours = load_backbone(tmp_path / "hf")
    assert ours.num_register_tokens == registers and ours.patch_embed.proj.in_channels == channels
    x = _images(channels)
    torch.testing.assert_close(_ours(ours, x), _hf(model, x, registers), rtol=1e-5, atol=1e-5)
    bigger = _images(channels, size=48)  # another size: both resample the position embedding the same way
    torch.testing.assert_close(_ours(ours, bigger), _hf(model, bigger, registers), rtol=1e-4, atol=1e-4)


def test_transformers_weights_of_a_task_model_or_a_bin_file_load_too(tmp_path):
    model = _hf_model(swiglu=True)  # its state_dict holds transformers 5's names (q_proj, gate_proj, ...)
    state = {f"dinov2.{key}": value for key, value in model.state_dict().items()}  # Dinov2ForImageClassification
    assert any(".mlp.gate_proj." in key for key in state)
    state["classifier.weight"] = torch.zeros(10, 384)
    (tmp_path / "bin").mkdir()
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    model.config.to_json_file(tmp_path / "bin" / "config.json")
    x = _images()
    torch.testing.assert_close(_ours(load_backbone(tmp_path / "bin"), x), _hf(model, x, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, registers", [("vit_small_patch14_dinov2", 0), ("vit_small_patch14_reg4_dinov2", 4),
                                            ("vit_giant_patch14_dinov2", 0)])  # giant: packed SwiGLU
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_dinov2_weights_load_with_the_same_tokens(tmp_path, name, registers, suffix):
    from safetensors.torch import save_file

    model = _randomised(timm.create_model(name, pretrained=False, num_classes=0, embed_dim=192, depth=4,
                                          num_heads=3, patch_size=8, img_size=32), 2)
    path = tmp_path / f"timm{suffix}"
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    ours = load_backbone(path)
    x = _images()
    with torch.no_grad():
        theirs = model.forward_features(x)
    torch.testing.assert_close(_ours(ours, x), torch.cat([theirs[:, :1], theirs[:, 1 + registers:]], dim=1),
                               rtol=1e-5, atol=1e-5)
    (tmp_path / "hub").mkdir()  # timm's Hub folder: its config.json names the architecture
    save_file(state, tmp_path / "hub" / "model.safetensors")
    (tmp_path / "hub" / "config.json").write_text(json.dumps({"architecture": name, "num_classes": 0}))
    torch.testing.assert_close(_ours(load_backbone(tmp_path / "hub"), x), _ours(ours, x))


@pytest.mark.parametrize("registers", [0, 4])
def test_export_format_hf_is_what_transformers_loads(tmp_path, registers):
    model = _hf_model(registers, swiglu=bool(registers))
    model.save_pretrained(tmp_path / "source")
    assert export_main(["--weights", str(tmp_path / "source"), "--output-dir", str(tmp_path / "out"),
                        "--format", "hf"]) == 0
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(loaded).__name__ == type(model).__name__
    x = _images()
    torch.testing.assert_close(_hf(loaded, x, registers), _hf(model, x, registers), rtol=1e-5, atol=1e-5)


def test_a_trained_run_exports_to_transformers_and_the_probes_read_it(tmp_path):
    run = tmp_path / "run"
    make_teacher_export(run, 9)
    assert export_main(["--weights", str(run), "--output-dir", str(tmp_path / "hf"), "--format", "hf"]) == 0
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    x = _images()
    torch.testing.assert_close(_hf(loaded, x, 0), _ours(load_backbone(run), x), rtol=1e-5, atol=1e-5)
    data = make_separable_tree(tmp_path / "data", num_classes=2, train_per_class=4, val_per_class=2)
    assert knn.main(["--pretrained-weights", str(tmp_path / "hf"), "--train-dataset", str(data / "train"),
                     "--val-dataset", str(data / "val"), "--output-dir", str(tmp_path / "eval"), "--crop-size", "32",
                     "--num-workers", "0", "--nb-knn", "1", "--quiet"]) == 0


def test_foreign_files_that_do_not_fit_are_one_line_naming_the_file(tmp_path, capsys):
    vit = tmp_path / "vit"
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=16, patch_size=8)
    transformers.ViTModel(config).save_pretrained(vit)
    with pytest.raises(BackboneWeightsError, match="model of type 'vit', not a DINOv2 backbone"):
        load_backbone(vit)
    wrong = tmp_path / "wrong"
    _hf_model().save_pretrained(wrong)
    config = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**config, "patch_size": 16}))
    with pytest.raises(BackboneWeightsError, match=r"model.safetensors does not fit the vit_tiny_4blocks/16"):
        load_backbone(wrong)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((wrong / "model.safetensors").read_bytes()[:1000])
    capsys.readouterr()  # transformers' progress bars
    for source in (vit, truncated):
        assert export_main(["--weights", str(source), "--output-dir", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1 and str(source) in error
