"""Checkpoint and weight files of the denoisers: plain state dicts, loadable with ``weights_only=True``.

``model_config["arch"]`` names the denoiser (the Neighbor2Neighbor U-Net when absent, as in older files): the U-Net,
Zero-Shot Noise2Noise's network or a calibrated Gaussian blur, all denoised through ``denoise.py`` alike."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from Neighbor2Neighbor.arch_unet import UNet
from Neighbor2Neighbor.gaussian_blur import GaussianBlur
from Neighbor2Neighbor.zs_n2n import ZeroShotNet
from utils.cli import squeezed
from utils.weights_file import WeightsFileError, describe_contents, load_torch_file

CHECKPOINT_FORMAT = 1
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def plain_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the key prefixes that DDP and ``torch.compile`` wrappers add."""
    cleaned = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"unet": UNet, "zs_n2n": ZeroShotNet, "gaussian_blur": GaussianBlur}


def model_config(model: torch.nn.Module) -> dict[str, Any]:
    """What is needed to rebuild ``model`` (one of ``ARCHITECTURES``): its architecture (absent for the U-Net, as
    in older files), channel counts, and width or sigma."""
    return model.config()


DENOISER = "denoiser weights (a Neighbor2Neighbor/train.py checkpoint, a calibrated blur or a bare U-Net state dict)"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors that name the file (:class:`WeightsFileError`)."""
    return load_torch_file(Path(path), DENOISER, map_location)


def load_denoiser(path: Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the denoiser of a checkpoint (``model`` + ``model_config``; see ``ARCHITECTURES``) or of a bare U-Net
    state dict."""
    payload = load_checkpoint(path)
    if not isinstance(payload, dict):
        raise WeightsFileError(f"{path} holds {describe_contents(payload)}: expected {DENOISER}")
    state = payload["model"] if isinstance(payload.get("model"), dict) else payload
    state = plain_state_dict(state)
    config = payload.get("model_config")
    if not isinstance(config, dict):
        first = state.get("encoder.0.0.0.weight")
        last = state.get("output_stage.4.weight")
        if first is None or last is None:
            raise WeightsFileError(f"{path} holds {describe_contents(payload)}: expected {DENOISER}")
        config = {"in_channels": first.shape[1], "out_channels": last.shape[0], "features": first.shape[0]}
    config = dict(config)
    arch = config.pop("arch", "unet")
    if arch not in ARCHITECTURES:
        raise WeightsFileError(f"{path}: unknown denoiser architecture {arch!r} (expected one of "
                               f"{', '.join(ARCHITECTURES)})")
    model = ARCHITECTURES[arch](**config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsFileError(f"{path} does not match the {arch} {config}: "
                               f"{squeezed(error, 200)}") from error
    return model.to(device).eval()


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of a model's weights: parameter names, shapes, dtypes and bytes, in key order. Equal weights
    give equal digests whatever else the file holds (optimizer, metrics, command-line arguments)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}:".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python -m Neighbor2Neighbor.weights WEIGHTS``: print the weights' digest (names the denoised trees)."""
    import argparse
    import sys

    from utils.cli import EXIT_BAD_INPUT

    parser = argparse.ArgumentParser(prog="python -m Neighbor2Neighbor.weights",
                                     description="Print the digest of a denoiser's weights (model_sha256 of the "
                                                 "denoised trees it writes).")
    parser.add_argument("weights", type=Path, help="train.py checkpoint or a bare state dict")
    args = parser.parse_args(argv)
    try:
        print(model_digest(load_denoiser(args.weights)))
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
