#!/usr/bin/env bash
# The paper in miniature with statistics: the four arms on the embedded digits for several seeds, with a recipe
# (DINO_CONFIG, by default the quick start's dinov2/configs/train/tiny_cpu.yaml), then mean +- std per arm and paired
# differences with 95 % intervals (exps/miniature_stats.py).
#
#   bash exps/miniature.sh [NOISE] [--dry-run]    # NOISE defaults to gauss100; SEEDS="0 1 2", THREAD_COUNTS="2 1"
#   MINIATURE_PROFILE=smoke bash exps/miniature.sh    # 300 digits, a few steps per stage (the tests run it)
#
# Thread counts: the order of floating-point sums changes with the thread count (and the processor), and CPU runs
# amplify it like another seed, so the whole pipeline (denoiser included) runs once per value of THREAD_COUNTS
# ("2 1" by default): a second source of variation reported beside the seeds.
# Shared by every thread count and seed: the noisy copy. Per thread count t:
#   OUT/threads_t/n2n                                  the Neighbor2Neighbor denoiser (its denoised tree is named by
#                                                      the denoiser's digest, so no other denoiser's tree collides)
#   OUT/threads_t/environment.json                     the setting (threads, torch version, CPU model)
# Per thread count t and seed s (train.seed: data order, augmentation and initialisation):
#   OUT/threads_t/seed_s/{dinov2_noisy,dinov2_denoised,nc,nct}   the four arms (NC / NCT branch off dinov2_denoised)
#   OUT/threads_t/seed_s/eval/                         linear probe + k-NN of each arm's final encoder export
# Baselines (at the first thread count): k-NN (and the linear probe) of the recipe's backbone at initialisation and
# k-NN on raw pixels, on the same noisy train / val images. Tables: OUT/report/miniature.{md,csv,json}, and
# OUT/report/expected.json: per arm the mean and 95 % prediction range over every (thread count, seed) run, and the
# denoiser's PSNR range (what exps/quickstart.sh compares a run with; exps/expected/ holds the README's).
# Every step skips what is done and training resumes, so an interrupted run continues where it stopped.
# Variables (environment): DATA_ROOT, OUT, SEEDS, THREAD_COUNTS, WORKERS, NCT_WEIGHT, DINO_CONFIG, MINIATURE_PROFILE.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/miniature_pipeline.sh
source exps/lib/miniature_pipeline.sh

parse_recipe_args "$0" 1 "$@"
NOISE="${RECIPE_ARGS[0]:-gauss100}"
DATA_ROOT="${DATA_ROOT:-data}"
OUT="${OUT:-outputs/miniature}"
SEEDS="${SEEDS:-0 1 2}"
THREAD_COUNTS="${THREAD_COUNTS:-2 1}"
WORKERS="${WORKERS:-2}"
PROFILE="${MINIATURE_PROFILE:-full}"
# the quick start's sizes; the recipe (DINO_CONFIG when given) sets the length and the branch point (NC / NCT: the
# last 30 % of the epochs on noisy images, as the paper's 140/200)
miniature_profile miniature.sh MINIATURE_PROFILE "$PROFILE" "${DINO_CONFIG:-}"
check_noise miniature.sh "$NOISE"
NCT_WEIGHT="${NCT_WEIGHT:-$(paper_nct_weight "$NOISE")}"  # the paper's weight for the setting by default

read -r -a THREAD_LIST <<< "$THREAD_COUNTS"
THREADS="${THREAD_LIST[0]:-}"
set_threads miniature.sh
set_paths

step "data: $CLEAN and its noisy copy $NOISY"
prepare_data
for THREADS in "${THREAD_LIST[@]}"; do
    set_threads miniature.sh
    RUNS="$OUT/threads_$THREADS"
    N2N_DIR="$RUNS/n2n"
    step "$THREADS thread(s): Neighbor2Neighbor on the noisy train images, the denoised tree"
    record_setting "$RUNS"
    train_denoiser  # its PSNR: $N2N_DIR/psnr.json
    for SEED in $SEEDS; do
        step "$THREADS thread(s), seed $SEED: the four arms ($EPOCHS epochs; NC / NCT: denoised epochs" \
            "0-$SWITCH_EPOCH, then noisy)"
        train_arms "$RUNS/seed_$SEED"
        step "$THREADS thread(s), seed $SEED: linear probe and k-NN of each arm's final export"
        probe_arms "$RUNS/seed_$SEED" "$RUNS/seed_$SEED/eval" final
    done
done
THREADS="${THREAD_LIST[0]}"
set_threads miniature.sh
step "baselines ($THREADS thread(s)): raw pixels and the backbone at initialisation, on the noisy images"
run_cmd python exps/miniature_baselines.py --config-file "$DINO_CONFIG" --data "$NOISY" --output-dir "$OUT/baselines" \
    --noise-label "$NOISE" -- ${PROBE_ARGS[@]+"${PROBE_ARGS[@]}"}
step "statistics over thread counts $THREAD_COUNTS and seeds $SEEDS"
run_cmd python exps/miniature_stats.py "$OUT"
step "done in $(( SECONDS - PIPELINE_START )) s: $REPORT/miniature.md"
