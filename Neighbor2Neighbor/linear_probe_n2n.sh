#!/usr/bin/env bash
# Neighbor2Neighbor arm of the ImageNet-100 linear-probe experiments ("N2N + DINOv2"), for all nine noise settings:
#   1. make the noisy copy of the dataset (utils/generate_noise.py), unless NOISE_ON_THE_FLY=1: then the clean tree
#      is noised at read time (noisy:<noise>,seed=<NOISE_SEED>:CLEAN_ROOT, the same pixels, no copy on disk),
#   2. train one denoiser per setting on the noisy train split only,
#   3. write the denoised copy of the whole noisy tree (train and val), which the DINOv2 runs then use.
#
#   bash Neighbor2Neighbor/linear_probe_n2n.sh [--dry-run]
#
# Every step skips what is already done, so rerunning after an interruption continues where it stopped.
# Settings are the variables below (set them in the environment). N2N_LAUNCHER and DENOISE_LAUNCHER run the
# training and the denoising: one process by default, e.g. "torchrun --nproc_per_node=4" for 4 GPUs (the batch
# stays global). On a cluster, exps/slurm/torchrun.sbatch runs a training over nodes and
# exps/slurm/denoise_array.sbatch spreads the denoising over a job array.
# --dry-run prints the plan and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/recipe.sh
source exps/lib/recipe.sh
load_paper_facts  # PAPER_NOISES: the paper's nine settings (utils/paper_facts.py)

# ---- paths and settings (edit these, or set them in the environment) ----
CLEAN_ROOT="${CLEAN_ROOT:-data/mini-imagenet}"      # clean ImageFolder tree: train/<class>/*, val/<class>/*, labels.txt
NOISY_PREFIX="${NOISY_PREFIX:-data/noisy_mini-imagenet}"  # noisy trees NOISY_PREFIX-<setting>, denoised ...-denoised
NOISE_ON_THE_FLY="${NOISE_ON_THE_FLY:-0}"           # 1: no noisy copy; the clean tree is noised at read time
RUNS="${RUNS:-outputs/n2n}"                         # one training run folder per setting
NOISES="${NOISES:-$PAPER_NOISES}"
EPOCHS="${EPOCHS:-100}"
BATCH_SIZE="${BATCH_SIZE:-4}"
PATCH_SIZE="${PATCH_SIZE:-256}"
SMALL_IMAGES="${SMALL_IMAGES:-skip}"   # the paper trained only on images at least 256 px on both sides
WORKERS="${WORKERS:-8}"
CHECKPOINT="${CHECKPOINT:-last.pt}"    # which checkpoint denoises the data (best.pt needs VAL_CLEAN)
VAL_CLEAN="${VAL_CLEAN:-}"             # optional clean validation images (e.g. Kodak24), noised on the fly
NOISE_SEED="${NOISE_SEED:-42}"
N2N_LAUNCHER="${N2N_LAUNCHER:-python}"          # split on spaces, e.g. "torchrun --nproc_per_node=4"
DENOISE_LAUNCHER="${DENOISE_LAUNCHER:-python}"  # the same for denoise.py (ranks split the images)
# ---------------------------------------------------------------------------

parse_recipe_args "$0" 0 "$@"
read -r -a TRAIN_LAUNCH <<< "$N2N_LAUNCHER"
read -r -a DENOISE_LAUNCH <<< "$DENOISE_LAUNCHER"

if [ "$DRY_RUN" = 0 ] && [ ! -d "$CLEAN_ROOT" ]; then
    echo "error: clean dataset $CLEAN_ROOT not found (set CLEAN_ROOT)" >&2
    exit 1
fi

for noise in $NOISES; do
    run="$RUNS/$noise"
    denoised="$NOISY_PREFIX-$noise-denoised"
    if [ "$NOISE_ON_THE_FLY" = 1 ]; then
        noisy="noisy:$noise,seed=$NOISE_SEED:$CLEAN_ROOT"
        train_images="$noisy:train"
    else
        noisy="$NOISY_PREFIX-$noise"
        train_images="$noisy/train"
        echo "=== $noise: noisy copy -> $noisy"
        run_cmd python utils/generate_noise.py --src "$CLEAN_ROOT" --noise "$noise" --out-prefix "$NOISY_PREFIX" \
            --seed "$NOISE_SEED" --num-workers "$WORKERS"
    fi

    echo "=== $noise: training the denoiser on $train_images -> $run"
    validation=()
    if [ -n "$VAL_CLEAN" ]; then
        validation=(--val-clean "$VAL_CLEAN" --val-noise "$noise")
    fi
    run_cmd "${TRAIN_LAUNCH[@]}" Neighbor2Neighbor/train.py --data-dir "$train_images" --output-dir "$run" \
        --epochs "$EPOCHS" --batch-size "$BATCH_SIZE" --patch-size "$PATCH_SIZE" --increase-ratio 2.0 \
        --small-images "$SMALL_IMAGES" --num-workers "$WORKERS" ${validation[@]+"${validation[@]}"}

    echo "=== $noise: denoising the whole tree -> $denoised"
    run_cmd "${DENOISE_LAUNCH[@]}" Neighbor2Neighbor/denoise.py --weights "$run/$CHECKPOINT" --src "$noisy" \
        --output-dir "$denoised" --num-workers "$WORKERS"
done
echo "done: denoised trees are $NOISY_PREFIX-<setting>-denoised"
