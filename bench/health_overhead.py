"""What training health costs: the quick start's recipe trained with its health checks and without, same seed.

    python bench/health_overhead.py [--iterations 400] [--data data/noisy_mnist5k-gauss100] [--threads 2]
        [--repeats 1] [--out outputs/bench/health_overhead] [--override KEY=VALUE ...]

Each repeat trains ``dinov2/configs/train/tiny_cpu.yaml`` twice (health off: ``evaluation.health.rank_images=0
evaluation.online_knn.images=0``; on: the recipe's settings), off first then on, and prints the wall times and
their ratio (``--override`` adds config overrides to both: ``--iterations 120 --override
evaluation.eval_period_iterations=40`` is the size of the quick start's NC / NCT arms), beside the run's own
account: the cumulative ``health_seconds`` of its last metrics record (reading
the image sets, the effective-rank and k-NN passes) over the rest of its wall time. Both runs write the same
weights (the health pass draws no random number), so the difference is the health pass alone. Results:
``OUT/results.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dinov2.train.run_files import read_metrics
from dinov2.utils.config import CONFIGS_DIR
from utils.atomic import atomic_write_json, atomic_write_text

RECIPE = CONFIGS_DIR / "train" / "tiny_cpu.yaml"
HEALTH_OFF = ["evaluation.health.rank_images=0", "evaluation.online_knn.images=0"]


def train_seconds(out: Path, data: str, iterations: int, threads: int, overrides: list[str]) -> float:
    """Wall time of one fresh training run (its folder is replaced)."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "dinov2.train", "--config-file", str(RECIPE), "--output-dir", str(out),
               f"train.dataset_path={data}", f"train.stop_after_iterations={iterations}", *overrides]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=400, help="iterations per run (400: a whole arm)")
    parser.add_argument("--data", default="data/noisy_mnist5k-gauss100", help="the training tree")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/health_overhead"))
    parser.add_argument("--override", nargs="+", default=[], help="config overrides of both runs")
    args = parser.parse_args(argv)
    rows = []
    for repeat in range(args.repeats):
        off = train_seconds(args.out / "off", args.data, args.iterations, args.threads, args.override + HEALTH_OFF)
        on = train_seconds(args.out / "on", args.data, args.iterations, args.threads, args.override)
        health = max(record.get("health_seconds", 0.0) for record in read_metrics(args.out / "on"))
        rows.append({"repeat": repeat, "off_s": round(off, 1), "on_s": round(on, 1), "ratio": round(on / off, 3),
                     "health_s": round(health, 2), "health_share": round(health / (on - health), 4)})
        print(rows[-1], flush=True)
    lines = ["| repeat | health off (s) | health on (s) | on / off | health_seconds | health / rest of the run |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['repeat']} | {r['off_s']} | {r['on_s']} | {r['ratio']:.3f} | {r['health_s']} | "
              f"{100 * r['health_share']:.1f} % |" for r in rows]
    atomic_write_json(args.out / "results.json", {"iterations": args.iterations, "threads": args.threads,
                                                 "data": args.data, "overrides": args.override, "runs": rows})
    atomic_write_text(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
