#!/usr/bin/env bash
# ImageNet-100 NCT experiments of the paper: NC plus the denoised-teacher regulariser, for the four settings and
# weights of the paper (utils/paper_facts.py: gauss255 1.1, gauss100 4.0, shot1 5.0, speckle1.0 2.0), in dependency
# order:
#   1. the N2N+DINOv2 run on the denoised tree (the same run as exps/linear_probe.sh; skipped when done),
#   2. NCT: branch off it at epoch $SWITCH_EPOCH (student, teacher, centers; the frozen teacher is its teacher),
#      the remaining epochs on the noisy tree paired with the denoised one     -> $RUNS/<noise>-nct-$SWITCH_EPOCH-w<weight>
#   3. linear probe (and k-NN) of every NCT encoder export on the noisy train/val.
#
#   bash exps/linear_probe_nct.sh [--dry-run]
#
# Settings (paths, LAUNCHER, EPOCHS, SWITCH_EPOCH, ...) are those at the top of exps/linear_probe.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/linear_probe.sh
source exps/linear_probe.sh

NCT_WEIGHTS="${NCT_WEIGHTS:-$PAPER_NCT_WEIGHTS}"   # noise:weight pairs

nct_run() {  # nct_run NOISE WEIGHT
    local noise="$1" weight="$2" noisy denoised="$NOISY_PREFIX-$1-denoised"
    noisy="$(noisy_tree "$1")"
    local source="$RUNS/$noise-$EPOCHS-denoised" epochs=$(( EPOCHS - SWITCH_EPOCH ))
    local run_dir="$RUNS/$noise-nct-$SWITCH_EPOCH-w$weight"
    check_tree "$noisy"
    say "$noise: NCT (weight $weight), denoised epochs 0-$SWITCH_EPOCH then noisy epochs $SWITCH_EPOCH-$EPOCHS -> $run_dir"
    train "$run_dir" "$epochs" "$CONFIGS/imagenet100_nct.yaml" "train.dataset_path=$noisy" \
        "nct.denoised_dataset_path=$denoised" "nct.weight=$weight" "curriculum.branch_from=$source@$SWITCH_EPOCH"
    evaluate "$run_dir" "$noisy" nct "$noise" "$SWITCH_EPOCH"
}

parse_args "$@"
for pair in $NCT_WEIGHTS; do
    noise="${pair%%:*}"
    denoised_run "$noise"
    nct_run "$noise" "${pair##*:}"
done
say "done: runs in $RUNS, results in $EVALS"
