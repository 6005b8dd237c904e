#!/usr/bin/env bash
# The toy MLP experiment: R repetitions (seeds 0..R-1) of the clean, noisy and clean->noisy arms, then the summary.
#
#   bash toy_mnist/mlp_exp.sh [--output-dir outputs/toy_mnist] [--reps 20] [--epochs 50] [--device auto|cpu|cuda]
#                             [--data-root PATH] [--budget steps|epochs] [--threads N] [--dry-run]
#                             [-- more toy_mnist.run options]
#
# Finished repetitions are skipped, so rerunning the same command resumes. Nothing is deleted: each repetition
# writes only inside OUT/seed_<k>/, and the summary goes to OUT/results.json, OUT/results.md and
# OUT/probe_accuracy.png. The defaults come from the environment when set (TOY_OUT, TOY_REPS, TOY_EPOCHS,
# TOY_DEVICE, TOY_DATA_ROOT, TOY_BUDGET, TOY_THREADS); --dry-run prints the commands and runs nothing.
set -euo pipefail

out="${TOY_OUT:-outputs/toy_mnist}"; reps="${TOY_REPS:-20}"; epochs="${TOY_EPOCHS:-50}"; device="${TOY_DEVICE:-auto}"
budget="${TOY_BUDGET:-steps}"; threads="${TOY_THREADS:-0}"; data_root="${TOY_DATA_ROOT:-}"
extra=()
# shellcheck source=exps/lib/recipe.sh
source "$(dirname "${BASH_SOURCE[0]}")/../exps/lib/recipe.sh"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --output-dir|--out) out="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --data-root) data_root="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) recipe_help "$0"; exit 0 ;;
    *) echo "mlp_exp.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$reps" =~ ^[0-9]+$ && "$reps" -ge 1 ]]; then
  echo "mlp_exp.sh: --reps must be a positive integer, got '$reps'" >&2; exit 2
fi

python_bin="${PYTHON:-python}"
common=(--output-dir "$out" --epochs "$epochs" --device "$device" --budget "$budget" --threads "$threads")
if [[ -n "$data_root" ]]; then common+=(--data-root "$data_root"); fi

start=$SECONDS
for ((seed = 0; seed < reps; seed++)); do
  if [[ -f "$out/seed_$seed/result.json" ]]; then
    echo "seed $seed: finished earlier, skipped"
    continue
  fi
  run_cmd "$python_bin" -m toy_mnist.run "${common[@]}" --seeds "$seed" ${extra[@]+"${extra[@]}"}
done
run_cmd "$python_bin" -m toy_mnist.aggregate "$out"
echo "mlp_exp.sh: $reps repetition(s) in $out, $((SECONDS - start)) s in this call"
