#!/usr/bin/env bash
# Neighbor2Neighbor arm of the ImageNet-100 linear-probe experiments ("N2N + DINOv2"), for all nine noise settings:
#   1. make the noisy copy of the dataset (utils/generate_noise.py),
#   2. train one denoiser per setting on the noisy train split only,
#   3. write the denoised copy of the whole noisy tree (train and val), which the DINOv2 runs then use.
# Run from the repository root:  bash Neighbor2Neighbor/linear_probe_n2n.sh
# Every step skips what is already done, so rerunning after an interruption continues where it stopped.
set -euo pipefail

# ---- paths and settings (edit these) ----
CLEAN_ROOT=data/mini-imagenet                 # clean ImageFolder tree: train/<class>/*, val/<class>/*, labels.txt
NOISY_PREFIX=data/noisy_mini-imagenet          # noisy trees are NOISY_PREFIX-<setting>, denoised ones ...-denoised
RUNS=outputs/n2n                               # one training run folder per setting
NOISES="gauss50 gauss100 gauss255 shot10 shot3 shot1 speckle0.4 speckle0.7 speckle1.0"
EPOCHS=100
BATCH_SIZE=4
PATCH_SIZE=256
SMALL_IMAGES=skip          # the paper trained only on images at least 256 px on both sides
WORKERS=8
CHECKPOINT=last.pt         # which checkpoint denoises the data (best.pt needs VAL_CLEAN)
VAL_CLEAN=""               # optional clean validation images (e.g. Kodak24), noised on the fly; empty: none
NOISE_SEED=42
# ------------------------------------------

if [ ! -d "$CLEAN_ROOT" ]; then
    echo "error: clean dataset $CLEAN_ROOT not found (edit CLEAN_ROOT at the top of $0)" >&2
    exit 1
fi

for noise in $NOISES; do
    noisy="$NOISY_PREFIX-$noise"
    run="$RUNS/$noise"
    echo "=== $noise: noisy copy -> $noisy"
    python utils/generate_noise.py --src "$CLEAN_ROOT" --noise "$noise" --out-prefix "$NOISY_PREFIX" \
        --seed "$NOISE_SEED" --workers "$WORKERS"

    echo "=== $noise: training the denoiser -> $run"
    validation=()
    if [ -n "$VAL_CLEAN" ]; then
        validation=(--val-clean "$VAL_CLEAN" --val-noise "$noise")
    fi
    python Neighbor2Neighbor/train.py --data-dir "$noisy/train" --output-dir "$run" --epochs "$EPOCHS" \
        --batch-size "$BATCH_SIZE" --patch-size "$PATCH_SIZE" --increase-ratio 2.0 --small-images "$SMALL_IMAGES" \
        --workers "$WORKERS" "${validation[@]}"

    echo "=== $noise: denoising the whole tree -> $noisy-denoised"
    python Neighbor2Neighbor/denoise.py --weights "$run/$CHECKPOINT" --src "$noisy" --dst "$noisy-denoised" \
        --workers "$WORKERS"
done
echo "done: denoised trees are $NOISY_PREFIX-<setting>-denoised"
