"""Instance retrieval on revisited Oxford/Paris (or any set in the revisitop layout) with a frozen backbone.

    python -m dinov2.eval.instance_recog --pretrained-weights CKPT --data-root DIR --dataset roxford5k \
        --output-dir OUT [--noise gauss100] [--denoised-root DIR/roxford5k_gauss100] [--method M]

Features are the final-norm class tokens, L2-normalised (single scale: Resize 256, CenterCrop 224 as the paper;
``--multiscale`` averages the normalised features of several scales); database and queries are ranked by
cosine similarity and scored with the revisited protocol (Easy / Medium / Hard mAP and mP@1,5,10). Noise is
added on the fly and depends only on (seed, setting, image path): database images use ``--noise-seed``,
queries ``--query-noise-seed``. Queries are full images unless ``--query-bbox``. The arm (clean, noisy,
denoised) follows from the arguments; ``--method`` and ``--checkpoint-label`` only label the result.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dinov2.eval.arguments import add_weights_arguments
from dinov2.eval.backbone import checkpoint_info, iter_checkpoints, load_frozen_backbone
from dinov2.eval.features import block_features, make_loader
from dinov2.eval.results import make_result, write_result
from dinov2.eval.retrieval_data import RetrievalImages, RetrievalSet, load_retrieval_set
from dinov2.eval.revisited import DEFAULT_KAPPAS, evaluate_revisited
from dinov2.eval.transforms import default_resize_size, make_eval_transform
from dinov2.models.input_channels import input_channels
from utils.device import PRECISIONS, autocast, resolve_device, resolve_precision
from utils.cli import add_num_workers, check_outside, one_line
from utils.image_io import ImageReadError
from utils.noise import parse_noise
from utils.run_lock import FolderLocked, folder_lock

DEFAULT_SCALES = (1.0, 0.7071, 0.5)


def scale_transforms(crop_size: int, resize_size: Optional[int], scales: Sequence[float], patch_size: int,
                     channels: int = 3) -> list:
    """One eval transform per scale (of ``channels``-channel images); crops are rounded to a multiple of the patch
    size."""
    resize_size = resize_size or default_resize_size(crop_size)
    out = []
    for scale in scales:
        crop = max(patch_size, int(round(crop_size * scale / patch_size)) * patch_size)
        out.append(make_eval_transform(crop, max(crop, int(round(resize_size * scale))), channels))
    return out


def extract_global_features(backbone: torch.nn.Module, dataset: RetrievalImages, batch_size: int,
                            num_workers: int, device: torch.device, precision: str, desc: str,
                            progress: bool = True) -> torch.Tensor:
    """L2-normalised class tokens ``[N, D]`` (mean over scales, renormalised), in dataset order; ``precision`` is
    a resolved one (fp32, bf16 or fp16)."""
    features = []
    for views, _ in tqdm(make_loader(dataset, batch_size, num_workers), desc=desc, unit="batch", leave=False,
                         disable=not progress):
        per_scale = [F.normalize(block_features(backbone, view.to(device), 1, autocast(device, precision))[0]
                                 [:, -1], dim=1) for view in views]
        features.append(F.normalize(torch.stack(per_scale).mean(0), dim=1).cpu())
    return torch.cat(features)


def rank_database(database: torch.Tensor, queries: torch.Tensor) -> np.ndarray:
    """Database indices by decreasing cosine similarity, one column per query: shape ``(n_db, n_q)``."""
    similarity = database @ queries.T
    return torch.argsort(similarity, dim=0, descending=True, stable=True).numpy()


def evaluate_retrieval(backbone: torch.nn.Module, data: RetrievalSet, args: argparse.Namespace,
                       device: torch.device) -> dict:
    """Features of database and queries, ranking, revisited metrics (``args.precision`` is a resolved one)."""
    scales = tuple(args.scales) if args.multiscale else (1.0,)
    channels = input_channels(backbone)
    transforms = scale_transforms(args.crop_size, args.resize_size, scales, int(backbone.patch_size), channels)
    common = dict(transforms=transforms, noise=args.noise, quantization=args.quantization,
                  denoised_root=args.denoised_root, channels=channels)
    database = RetrievalImages(data.folder, data.imlist, seed=args.noise_seed, **common)
    boxes = [entry["bbx"] for entry in data.gnd] if args.query_bbox else None
    queries = RetrievalImages(data.folder, data.qimlist, seed=args.query_noise_seed, boxes=boxes, **common)
    progress = not args.quiet
    db_features = extract_global_features(backbone, database, args.batch_size, args.num_workers, device,
                                          args.precision, "database", progress)
    q_features = extract_global_features(backbone, queries, args.batch_size, args.num_workers, device,
                                         args.precision, "queries", progress)
    ranks = rank_database(db_features, q_features)
    return {"dataset": data.name, **evaluate_revisited(ranks, data.gnd, DEFAULT_KAPPAS)}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_arguments(parser)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding <dataset>/ (revisitop)")
    parser.add_argument("--dataset", required=True, help="roxford5k, rparis6k or any set in that layout")
    parser.add_argument("--noise", default=None, help="noise added on the fly, e.g. gauss100 (default: clean)")
    parser.add_argument("--noise-seed", type=int, default=42, help="seed of the database images' noise")
    parser.add_argument("--query-noise-seed", type=int, default=100, help="seed of the queries' noise")
    parser.add_argument("--quantization", default="truncate", choices=("truncate", "round"))
    parser.add_argument("--denoised-root", type=Path, default=None,
                        help="pre-denoised copy (DIR/jpg/<name>.png), the N2N arm; no extra noise")
    parser.add_argument("--denoised-from", default=None,
                        help="with --denoised-root: the noise setting the denoised images were made from (label)")
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--resize-size", type=int, default=None, help="default crop*256/224")
    parser.add_argument("--multiscale", action="store_true", help="average features over --scales")
    parser.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--query-bbox", action="store_true", help="crop queries to their bounding box")
    parser.add_argument("--method", default=None, help="label of the result, e.g. dinov2, n2n_dinov2, nc")
    parser.add_argument("--checkpoint-label", default=None, help="label of the result, e.g. best or final")
    parser.add_argument("--batch-size", type=int, default=32)
    add_num_workers(parser, 4)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="autocast of the backbone; auto is bf16 on CUDA (fp16 without bf16), fp32 on CPU")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> tuple[RetrievalSet, list[Path], torch.device]:
    """Check the arguments before any work: the noise setting (``args.noise`` becomes a NoiseSpec, or None when
    clean), canonical noise labels, the retrieval set, the checkpoints, and the device; ``args.precision`` becomes
    the precision resolved for that device (once per run)."""
    if args.noise is not None:  # parsed once, here: the datasets take the setting
        args.noise = parse_noise(args.noise)
        if args.noise.family == "identity":
            args.noise = None
    if args.noise is not None and args.denoised_root is not None:
        raise ValueError("--denoised-root images are evaluated as they are; drop --noise")
    if args.denoised_from is not None:
        if args.denoised_root is None:
            raise ValueError("--denoised-from labels --denoised-root images; give --denoised-root too")
        args.denoised_from = parse_noise(args.denoised_from).canonical
    data = load_retrieval_set(args.data_root, args.dataset)
    check_outside(args.output_dir, {"--data-root": args.data_root})
    checkpoints = list(iter_checkpoints(args.pretrained_weights, args.run_dir))
    device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, device)
    return data, checkpoints, device


def arm_and_noise_label(args: argparse.Namespace) -> tuple[str, str]:
    """The arm the arguments describe (clean, noisy or denoised) and the noise label of its results."""
    arm = "denoised" if args.denoised_root else ("noisy" if args.noise else "clean")
    noise_label = args.denoised_from if args.denoised_root else (args.noise.canonical if args.noise else "identity")
    return arm, noise_label


def retrieval_settings(args: argparse.Namespace, data: RetrievalSet, arm: str) -> dict:
    """Everything that defines the evaluation, as written into the result."""
    return {
        "data_root": str(args.data_root), "dataset": args.dataset, "arm": arm,
        "denoised_root": None if args.denoised_root is None else str(args.denoised_root),
        "noise_seed": args.noise_seed, "query_noise_seed": args.query_noise_seed,
        "quantization": args.quantization, "crop_size": args.crop_size,
        "resize_size": args.resize_size or default_resize_size(args.crop_size),
        "scales": list(args.scales) if args.multiscale else [1.0], "query_bbox": args.query_bbox,
        "features": "final-norm class token, L2-normalised; cosine ranking",
        "num_database": len(data.imlist), "num_queries": len(data.qimlist), "precision": args.precision,
    }


def evaluate_checkpoint(args: argparse.Namespace, checkpoint: Path, data: RetrievalSet,
                        device: torch.device) -> Optional[Path]:
    """Evaluate one checkpoint; returns the result path, or None when a result already exists."""
    info = checkpoint_info(checkpoint)
    arm, noise_label = arm_and_noise_label(args)
    label = f"{args.checkpoint_label}_" if args.checkpoint_label else ""
    out_path = args.output_dir / f"instance_recog_{args.dataset}_{arm}_{noise_label}_{label}{info.tag}.json"
    if out_path.is_file() and not args.overwrite:
        print(f"skip {checkpoint}: {out_path} exists")
        return None
    started = time.perf_counter()
    backbone = load_frozen_backbone(checkpoint, device, args.arch, args.patch_size)
    results = evaluate_retrieval(backbone, data, args, device)
    results["timing"] = {"total_seconds": round(time.perf_counter() - started, 3)}
    result = make_result("instance_recog", str(checkpoint), retrieval_settings(args, data, arm), results,
                         method=args.method, noise=noise_label, iteration=info.iteration, epoch=info.epoch,
                         checkpoint_label=args.checkpoint_label)
    write_result(result, out_path)
    print(f"{checkpoint} -> {out_path} (M mAP {results['medium']['mAP']:.2f})")
    return out_path


def main(argv: Optional[list[str]] = None) -> int:
    """Command line (see the module docstring)."""
    args = parse_args(argv)
    try:
        data, checkpoints, device = check_arguments(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with folder_lock(args.output_dir, "retrieval"):  # one retrieval evaluation per output folder at a time
            for checkpoint in checkpoints:
                evaluate_checkpoint(args, checkpoint, data, device)
    except (FolderLocked, OSError, ImageReadError) as error:  # a folder in use, an unwritable or full output folder,
        print(f"error: {one_line(error)}", file=sys.stderr)   # an undecodable image (also from a loader worker)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
