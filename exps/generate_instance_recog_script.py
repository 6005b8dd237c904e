"""Write the retrieval commands for the best and the final checkpoint of every evaluated run, as the paper does.

    python exps/generate_instance_recog_script.py RESULTS_ROOT [...] --data-root DATA --output-dir OUT \
        [--script outputs/instance_recog.sh] [--datasets roxford5k rparis6k] [--denoised-methods n2n_dinov2] \
        [--denoised-root-template "{data_root}/{dataset}_{noise}"]

Linear-probe results are grouped by (method, noise) read from the result files. "best" is the checkpoint with
the highest held-out-selected top-1 (``results.final``), "final" the one with the largest iteration. Methods
listed in ``--denoised-methods`` (the N2N arm) are evaluated on pre-denoised copies found with the template;
the others get the noise added on the fly. Results labelled ``identity`` (clean) get no noise.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import defaultdict
from pathlib import Path

from dinov2.eval.results import ResultError, iter_result_files, load_result
from utils.atomic import atomic_write_text


def best_and_final(results: list[dict]) -> dict[str, dict]:
    """{"best": result, "final": result} of one run's linear-probe results."""
    def iteration(result: dict) -> int:
        return result["iteration"] if result["iteration"] is not None else -1
    best = max(results, key=lambda r: (r["results"]["final"]["top1"], iteration(r)))
    return {"best": best, "final": max(results, key=iteration)}


def build_commands(results: list[dict], data_root: str, output_dir: str, datasets: list[str],
                   denoised_methods: set[str], template: str, extra: list[str]) -> list[str]:
    """One ``python -m dinov2.eval.instance_recog`` line per (run, dataset, best/final)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for result in results:
        if result["protocol"] != "linear":
            continue
        if result["method"] is None or result["noise"] is None:
            raise ResultError(f"{result['_path']}: method and noise are needed (evaluate with --method/--noise-label)")
        groups[(result["method"], result["noise"])].append(result)
    lines = []
    for (method, noise), group in sorted(groups.items()):
        for label, result in best_and_final(group).items():
            for dataset in datasets:
                command = ["python", "-m", "dinov2.eval.instance_recog", "--pretrained-weights", result["checkpoint"],
                           "--data-root", data_root, "--dataset", dataset, "--method", method,
                           "--checkpoint-label", label, "--output-dir", output_dir]
                if method in denoised_methods:
                    denoised = template.format(data_root=data_root, dataset=dataset, noise=noise)
                    command += ["--denoised-root", denoised, "--denoised-from", noise]
                elif noise not in ("identity", "clean"):
                    command += ["--noise", noise]
                lines.append(shlex.join(command + extra))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+", help="folders holding linear-probe result files")
    parser.add_argument("--data-root", required=True, help="revisitop data root (holds roxford5k/, rparis6k/)")
    parser.add_argument("--output-dir", default="outputs/instance_recog", help="where the retrieval results go")
    parser.add_argument("--script", type=Path, default=Path("outputs/instance_recog.sh"))
    parser.add_argument("--datasets", nargs="+", default=["roxford5k", "rparis6k"])
    parser.add_argument("--denoised-methods", nargs="*", default=["n2n_dinov2"])
    parser.add_argument("--denoised-root-template", default="{data_root}/{dataset}_{noise}")
    parser.add_argument("--extra", default="", help="arguments appended to every command, e.g. '--crop-size 32'")
    args = parser.parse_args(argv)
    try:
        results = []
        for root in args.roots:
            for path in iter_result_files(root):
                result = load_result(path)
                result["_path"] = str(path)
                results.append(result)
        lines = build_commands(results, args.data_root, args.output_dir, args.datasets, set(args.denoised_methods),
                               args.denoised_root_template, shlex.split(args.extra))
    except ResultError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not lines:
        print(f"error: no linear-probe result under {', '.join(map(str, args.roots))}", file=sys.stderr)
        return 2
    header = "#!/usr/bin/env bash\n# Retrieval of the best and final checkpoints of each run.\nset -euo pipefail\n"
    atomic_write_text(args.script, header + "\n".join(lines) + "\n")
    args.script.chmod(0o755)
    print(f"{len(lines)} commands -> {args.script}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
