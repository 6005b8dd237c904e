"""Check every CUDA path of the project and measure its throughput, into one JSON file.

    bash bench/gpu_check.sh [--cpu-smoke] [--quick] [--output-json gpu_check.json] [--only NAME ...]

Run it through bench/gpu_check.sh: this program runs every entry but ``ddp``, which the shell launches with torchrun
(one rank per GPU; 2 gloo ranks with --cpu-smoke) and merges in. Checks (ok or not, with the measured figures):
  precision         one DINOv2 step in fp32, fp16 (loss scaling) and bf16: loss terms within tolerance, finite grads
  fused_adamw       the trainer's AdamW is fused, and its step equals the for-loop AdamW's on the same gradients
  flash_attention   the profiler sees the flash SDPA kernel serve the ViT's attention, forward and backward
  compile           train.compile=true steps give eager's losses; compile time
  trainer_resume    python -m dinov2.train on the device: 6 iterations straight = 4, a stop, 2 resumed (losses)
  nct_step          a denoised phase then NCT steps through the training command: finite, frozen teacher kept
  ddp               ranks training on different batches end with identical weights (NCCL; gloo on the CPU)
  n2n_fp16_denoise  the N2N U-Net's uint8 output under fp16 autocast is within a few levels of fp32
Measurements: dinov2_imagenet100 (ImageNet-100 recipe, batch 40, bf16, fused AdamW: images/s, step time, peak
memory, FLOPs per step, FLOP utilisation against the measured matmul rate and the datasheet peak), n2n_training,
n2n_denoising (256 px), feature_extraction (ViT-S/16 at 224 px, bf16).
--cpu-smoke runs the same code at toy sizes on the CPU (seconds); without it a CUDA device is required.
Exit status: 0 when every entry is ok, 1 when one is not (the JSON says which and why), 2 on bad arguments or
when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

from bench.gpu_checks import report
from utils.cli import one_line

NO_CUDA = "no CUDA device: use --cpu-smoke"
DDP_TIMEOUT_S = {"smoke": 120, "quick": 240, "full": 300}


def build_parser() -> argparse.ArgumentParser:
    """The options; those after --only are the shell's plumbing and the test's lever, hidden from --help."""
    parser = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU (no GPU needed)")
    parser.add_argument("--quick", action="store_true", help="fewer timed iterations (rougher figures)")
    parser.add_argument("--output-json", type=Path, default=Path("gpu_check.json"),
                        help="results file, written atomically (default %(default)s in the current folder)")
    parser.add_argument("--only", nargs="+", choices=report.ENTRIES, metavar="NAME", default=None,
                        help=f"run only these entries (of {', '.join(report.ENTRIES)})")
    hidden = argparse.SUPPRESS
    parser.add_argument("--tolerance-scale", type=float, default=1.0, help=hidden)  # 0: any difference fails
    parser.add_argument("--stage", choices=("checks", "ddp-plan", "ddp-worker", "merge"), default="checks",
                        help=hidden)
    parser.add_argument("--ddp-result", type=Path, default=None, help=hidden)
    parser.add_argument("--ddp-exit-code", type=int, default=0, help=hidden)
    parser.add_argument("--ddp-log", type=Path, default=None, help=hidden)
    parser.add_argument("--ddp-seconds", type=float, default=None, help=hidden)
    return parser


def tasks() -> list[tuple[tuple[str, ...], Optional[Callable]]]:
    """(entries, function returning them) in running order; ``ddp`` has no function: torchrun runs it."""
    from bench.gpu_checks import attention, n2n, throughput, trainer_loop, training

    return [
        (("precision",), training.check_precision),
        (("fused_adamw",), training.check_fused_adamw),
        (("flash_attention",), attention.check_flash_attention),
        (("compile",), training.check_compile),
        (("trainer_resume",), trainer_loop.check_trainer_resume),
        (("nct_step",), trainer_loop.check_nct_step),
        (("ddp",), None),
        (("n2n_fp16_denoise", "n2n_denoising"), n2n.check_n2n_fp16_denoise),
        (("dinov2_imagenet100",), throughput.measure_dinov2_imagenet100),
        (("n2n_training",), n2n.measure_n2n_training),
        (("feature_extraction",), throughput.measure_feature_extraction),
    ]


def header(smoke: bool, quick: bool) -> dict:
    """The document's first keys: what ran where."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "mode": "cpu-smoke" if smoke else "cuda", "quick": quick,
        "device": "cpu" if smoke or not cuda else torch.cuda.get_device_name(0),
        "torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count() if cuda else 0,
        "torch_threads": torch.get_num_threads(),
    }


def run_checks(args: argparse.Namespace) -> int:
    """Run the selected entries one after the other, rewriting the JSON after each; 0 when all are ok, else 1."""
    import torch

    from bench.gpu_checks.common import Settings, release

    wanted = set(args.only or report.ENTRIES)
    device = torch.device("cpu") if args.cpu_smoke else torch.device("cuda", 0)
    document = header(args.cpu_smoke, args.quick)
    profile = "smoke" if args.cpu_smoke else "quick" if args.quick else "full"
    # every selected entry is listed, not ok, before anything runs: a crash part-way leaves no false all_ok
    for name in report.ENTRIES:
        if name in wanted:
            document[name] = {"ok": False, "detail": "not run (yet)"}
    if "ddp" in wanted:
        document["ddp"] = report.pending_ddp(2 if args.cpu_smoke else document["gpus"],
                                             "gloo" if args.cpu_smoke else "nccl", DDP_TIMEOUT_S[profile])
    document = report.write(args.output_json, document)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        settings = Settings(device, args.cpu_smoke, args.quick, args.tolerance_scale, Path(scratch))
        for names, run in tasks():
            selected = [name for name in names if name in wanted]
            if not selected or run is None:  # ddp: torchrun runs it
                continue
            print(f"[gpu_check] {' + '.join(selected)} ...", flush=True)
            torch.manual_seed(0)
            started = time.perf_counter()
            try:
                entries = run(settings)
            except Exception as error:  # recorded, and the next check still runs
                traceback.print_exc()
                message = f"{type(error).__name__}: {one_line(error)}"
                entries = {name: {"ok": False, "error": message} for name in names}
            seconds = round(time.perf_counter() - started, 2)
            for name in selected:
                document[name] = {**entries[name], "seconds": seconds}
            release(device)
            document = report.write(args.output_json, document)
    if document.get("ddp", {}).get("pending"):
        print(f"[gpu_check] ddp: next, through torchrun (bench/gpu_check.sh merges it into {args.output_json})")
    else:
        for line in report.summary(document):
            print(line)
        print(f"wrote {args.output_json}")
    return 0 if document["all_ok"] else 1


def main(argv: Optional[list[str]] = None) -> int:
    """Parse the options and run the stage (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if args.stage == "ddp-plan":
        print(report.ddp_plan(args.output_json))
        return 0
    if args.stage == "merge":
        if args.ddp_result is None:
            build_parser().error("--stage merge needs --ddp-result")
        document = report.merge_ddp(args.output_json, args.ddp_result, args.ddp_exit_code, args.ddp_log,
                                    args.ddp_seconds)
        for line in report.summary(document):
            print(line)
        print(f"wrote {args.output_json}")
        return 0 if document["all_ok"] else 1
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    if args.stage == "ddp-worker":
        if args.ddp_result is None:
            build_parser().error("--stage ddp-worker needs --ddp-result")
        from bench.gpu_checks.ddp import run_worker

        return run_worker(args.cpu_smoke, args.quick, args.tolerance_scale, args.ddp_result)
    return run_checks(args)


if __name__ == "__main__":
    sys.exit(main())
