"""Export a backbone in standard formats: a flat ``model.safetensors`` and a small ``config.json``.

    python -m dinov2.export --weights outputs/run --output-dir outputs/run/export        # newest encoder export
    python -m dinov2.export --weights outputs/run/model_0012499.pth --output-dir OUT      # a full checkpoint
    python -m dinov2.export --weights dinov2_vits14_pretrain.pth --output-dir OUT         # official weights
    python -m dinov2.export --weights outputs/run --output-dir OUT --format hf            # a transformers folder

The safetensors file holds the backbone under upstream DINOv2's key names (no head), so it loads into this
project (``dinov2.hub.load_backbone(OUT)``, every ``--pretrained-weights``, ``student.pretrained_weights``), into
timm's ViT, and through the repository's ``hubconf.py``:

    import json, timm
    config = json.load(open("OUT/config.json"))
    model = timm.create_model(config["timm"]["model_name"], pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=dict(file="OUT/model.safetensors"), **config["timm"]["kwargs"])
    model = torch.hub.load("path/to/this/repo", "backbone", source="local", weights="OUT")

With ``--format hf`` the folder is a transformers ``Dinov2Model`` (``Dinov2WithRegistersModel`` with registers):
``transformers.AutoModel.from_pretrained("OUT")`` loads it, and so does everything here that takes weights.

``config.json`` records the architecture (size, patch size, input channels, registers, image size, FFN,
LayerScale, position interpolation), the input normalisation (``mean`` / ``std`` per channel, of pixels in
[0, 1]), the iteration and the training config when known, and the timm arguments (none for SwiGLU backbones,
which timm builds differently).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from dinov2.eval.backbone import checkpoint_info
from dinov2.hub import (EXPORT_CONFIG, EXPORT_WEIGHTS, export_folder, is_run_directory, load_backbone,
                        read_export_config, weights_digest)
from dinov2.models.backbone_weights import BackboneSpec, BackboneWeightsError, spec_of_model
from dinov2.models import DinoVisionTransformer
from dinov2.models.transformers_weights import flat_to_transformers, transformers_config
from dinov2.utils.choices import VIT_SIZES
from dinov2.utils.normalization import channel_normalization
from utils.cli import one_line
from utils.atomic import atomic_write_bytes, atomic_write_json, make_folder

EXPORT_FORMAT = "dinov2-backbone"
EXPORT_FORMAT_VERSION = 1
EXPORT_FORMATS = ("dinov2", "hf")


def timm_arguments(spec: BackboneSpec) -> Optional[dict[str, Any]]:
    """``timm.create_model`` arguments that build ``spec`` as timm's VisionTransformer (None for SwiGLU FFNs).

    The model name only selects timm's ViT class and defaults; the keyword arguments set every shape."""
    if spec.ffn_layer != "mlp":
        return None
    size = VIT_SIZES[spec.arch]
    kwargs: dict[str, Any] = {
        "img_size": spec.img_size, "patch_size": spec.patch_size, "embed_dim": size["embed_dim"],
        "depth": size["depth"], "num_heads": size["num_heads"], "mlp_ratio": size["mlp_ratio"],
        "init_values": 1e-5 if spec.layerscale else None,
    }
    if spec.in_chans != 3:
        kwargs["in_chans"] = spec.in_chans
    if spec.num_register_tokens:  # timm keeps registers and the class token out of the position embedding
        kwargs.update(reg_tokens=spec.num_register_tokens, no_embed_class=True)
    return {"model_name": "vit_base_patch16_224", "kwargs": kwargs}


def export_backbone(source: Path, output_dir: Path, arch: Optional[str] = None,
                    patch_size: Optional[int] = None, export_format: str = "dinov2") -> Path:
    """Write ``output_dir/model.safetensors`` and ``output_dir/config.json`` for the backbone of ``source`` (run
    directory, encoder export, full checkpoint, export or transformers folder, bare state dict); returns
    ``output_dir``. ``export_format="hf"`` writes them as a transformers ``Dinov2Model`` (or
    ``Dinov2WithRegistersModel``) that ``AutoModel.from_pretrained(output_dir)`` loads."""
    from safetensors.torch import save

    if is_run_directory(output_dir):
        raise BackboneWeightsError(f"--output-dir {output_dir} is a run directory: an export there would be taken "
                                   "for the run and go stale as it resumes; choose another folder")
    model = load_backbone(source, arch=arch, patch_size=patch_size)
    if not isinstance(model, DinoVisionTransformer):
        raise BackboneWeightsError(
            f"{source} holds a {type(model).__name__} ({getattr(model, 'arch', '')}): the safetensors export is "
            "for ViTs; its encoder export loads with dinov2.hub.load_backbone, and its weights keep torchvision's "
            "ResNet names (torchvision.models.<arch>().load_state_dict(weights, strict=False) leaves out only fc)")
    spec = spec_of_model(model)
    folder = export_folder(Path(source))
    if folder is not None:
        previous = read_export_config(folder)
        iteration, training_config = previous.get("iteration"), previous.get("training_config")
    else:
        info = checkpoint_info(Path(source))
        iteration = info.iteration
        training_config = _yaml(info.config)
    tensors = {key: value.detach().contiguous().clone() for key, value in model.state_dict().items()}
    if export_format == "hf":
        data = save(flat_to_transformers(tensors, spec), metadata={"format": "pt"})
        make_folder(output_dir)
        atomic_write_bytes(output_dir / EXPORT_WEIGHTS, data)
        atomic_write_json(output_dir / EXPORT_CONFIG, transformers_config(spec))
        return output_dir
    data = save(tensors, metadata={"format": "pt"})
    make_folder(output_dir)
    # weights first, config last: the config names the weights' digest, so a kill between the two writes leaves a
    # pair that load_export refuses, never new weights read as the old export
    atomic_write_bytes(output_dir / EXPORT_WEIGHTS, data)
    mean, std = channel_normalization(spec.in_chans)
    atomic_write_json(output_dir / EXPORT_CONFIG, {
        "format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, **spec.to_dict(),
        "mean": list(mean), "std": list(std),
        "iteration": iteration, "source": str(source), "timm": timm_arguments(spec),
        "training_config": training_config, "weights_sha256": weights_digest(data),
    })
    return output_dir


def _yaml(config: Any) -> Optional[str]:
    if config is None:
        return None
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(config)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``python -m dinov2.export``."""
    parser = argparse.ArgumentParser(prog="python -m dinov2.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True,
                        help="run directory, encoder export, full checkpoint, export folder or bare state dict")
    parser.add_argument("--output-dir", type=Path, required=True, help="folder for model.safetensors + config.json")
    parser.add_argument("--arch", choices=sorted(VIT_SIZES), default=None,
                        help="check a bare state dict's architecture (it is read from the tensors)")
    parser.add_argument("--patch-size", type=int, default=None, help="check a bare state dict's patch size")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="dinov2", dest="export_format",
                        help="dinov2: upstream's key names + this project's config.json (timm loads it too); hf: a "
                             "transformers Dinov2Model folder (AutoModel.from_pretrained)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point: exit status 2 for a source that is missing or not a backbone."""
    args = build_parser().parse_args(argv)
    try:
        out = export_backbone(args.weights, args.output_dir, args.arch, args.patch_size, args.export_format)
    except (OSError, KeyError, ValueError) as error:  # a bad source (BackboneWeightsError, WeightsFileError); an
        print(f"error: {one_line(error)}", file=sys.stderr)  # unwritable or full output folder
        return 2
    spec = spec_of_model(load_backbone(out))
    parameters = sum(t.numel() for t in load_backbone(out).state_dict().values())
    print(f"{out}: {spec.arch}/{spec.patch_size} ({spec.in_chans} input channel(s), {spec.num_register_tokens} "
          f"registers, {spec.img_size} px), {parameters:,} parameters"
          + (" as a transformers folder" if args.export_format == "hf" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
