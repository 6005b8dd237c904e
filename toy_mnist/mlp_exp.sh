#!/usr/bin/env bash
# The toy MLP experiment: R repetitions (seeds 0..R-1) of the clean, noisy and clean->noisy arms, then the summary.
#
#   bash toy_mnist/mlp_exp.sh [--out outputs/toy_mnist] [--reps 20] [--epochs 50] [--device auto|cpu|cuda]
#                             [--data-root PATH] [--budget steps|epochs] [--threads N] [-- more toy_mnist.run options]
#
# Finished repetitions are skipped, so rerunning the same command resumes. Nothing is deleted: each repetition
# writes only inside OUT/seed_<k>/, and the summary goes to OUT/results.json, OUT/results.md and
# OUT/probe_accuracy.png.
set -euo pipefail

out="outputs/toy_mnist"; reps=20; epochs=50; device="auto"; budget="steps"; threads=0; data_root=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --data-root) data_root="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "mlp_exp.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$reps" =~ ^[0-9]+$ && "$reps" -ge 1 ]]; then
  echo "mlp_exp.sh: --reps must be a positive integer, got '$reps'" >&2; exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
python_bin="${PYTHON:-python}"
common=(--out "$out" --epochs "$epochs" --device "$device" --budget "$budget" --threads "$threads")
if [[ -n "$data_root" ]]; then common+=(--data-root "$data_root"); fi

start=$SECONDS
for ((seed = 0; seed < reps; seed++)); do
  if [[ -f "$out/seed_$seed/result.json" ]]; then
    echo "seed $seed: finished earlier, skipped"
    continue
  fi
  "$python_bin" -m toy_mnist.run "${common[@]}" --seeds "$seed" ${extra[@]+"${extra[@]}"}
done
"$python_bin" -m toy_mnist.aggregate "$out"
echo "mlp_exp.sh: $reps repetition(s) in $out, $((SECONDS - start)) s in this call"
