#!/usr/bin/env bash
# Neighbor2Neighbor arm of the revisited Oxford/Paris retrieval experiments, for all nine noise settings:
# every image of roxford5k and rparis6k is noised on the fly (the shared noise model, seeded by setting,
# NOISE_SEED and "jpg/<file>") and denoised by the denoiser trained for that setting by linear_probe_n2n.sh.
# Outputs: OUT_ROOT/<dataset>_<setting>/jpg/<name>.png plus the dataset's gnd_<dataset>.pkl.
#
#   bash Neighbor2Neighbor/instance_recog_n2n.sh [--dry-run]
#
# Finished images are skipped, so rerunning after an interruption continues where it stopped. Settings are the
# variables below (set them in the environment); DENOISE_LAUNCHER="torchrun --nproc_per_node=4" splits each
# dataset over 4 GPUs. --dry-run prints the plan and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/recipe.sh
source exps/lib/recipe.sh
load_paper_facts  # PAPER_NOISES: the paper's nine settings (utils/paper_facts.py)

# ---- paths and settings (edit these, or set them in the environment) ----
REVISITOP_ROOT="${REVISITOP_ROOT:-data/revisitop}"   # holds datasets/roxford5k and datasets/rparis6k (jpg/ + gnd_*.pkl)
RUNS="${RUNS:-outputs/n2n}"                          # training runs of linear_probe_n2n.sh, one folder per setting
OUT_ROOT="${OUT_ROOT:-data/revisitop_denoised}"
NOISES="${NOISES:-$PAPER_NOISES}"
DATASETS="${DATASETS:-roxford5k rparis6k}"
CHECKPOINT="${CHECKPOINT:-last.pt}"
NOISE_SEED="${NOISE_SEED:-42}"
WORKERS="${WORKERS:-4}"
DENOISE_LAUNCHER="${DENOISE_LAUNCHER:-python}"   # split on spaces, e.g. "torchrun --nproc_per_node=4"
# ---------------------------------------------------------------------------

parse_recipe_args "$0" 0 "$@"
read -r -a DENOISE_LAUNCH <<< "$DENOISE_LAUNCHER"

for noise in $NOISES; do
    weights="$RUNS/$noise/$CHECKPOINT"
    if [ "$DRY_RUN" = 0 ] && [ ! -f "$weights" ]; then
        echo "error: no denoiser for $noise at $weights (run Neighbor2Neighbor/linear_probe_n2n.sh first)" >&2
        exit 2
    fi
    for dataset in $DATASETS; do
        echo "=== $dataset, $noise -> $OUT_ROOT/${dataset}_$noise"
        run_cmd "${DENOISE_LAUNCH[@]}" Neighbor2Neighbor/denoise.py --weights "$weights" \
            --src "noisy:$noise,seed=$NOISE_SEED:$REVISITOP_ROOT/datasets/$dataset" \
            --output-dir "$OUT_ROOT/${dataset}_$noise" --num-workers "$WORKERS" --batch-size 1
    done
done
echo "done: denoised datasets are $OUT_ROOT/<dataset>_<setting>"
