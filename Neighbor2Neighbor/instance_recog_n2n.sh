#!/usr/bin/env bash
# Neighbor2Neighbor arm of the revisited Oxford/Paris retrieval experiments, for all nine noise settings:
# every image of roxford5k and rparis6k is noised on the fly (the shared noise model, seeded by setting,
# NOISE_SEED and "jpg/<file>") and denoised by the denoiser trained for that setting by linear_probe_n2n.sh.
# Outputs: OUT_ROOT/<dataset>_<setting>/jpg/<name>.png plus the dataset's gnd_<dataset>.pkl.
# Run from the repository root:  bash Neighbor2Neighbor/instance_recog_n2n.sh
# Finished images are skipped, so rerunning after an interruption continues where it stopped.
set -euo pipefail

# ---- paths and settings (edit these) ----
REVISITOP_ROOT=data/revisitop                  # holds datasets/roxford5k and datasets/rparis6k (jpg/ + gnd_*.pkl)
RUNS=outputs/n2n                               # training runs of linear_probe_n2n.sh, one folder per setting
OUT_ROOT=data/revisitop_denoised
NOISES="gauss50 gauss100 gauss255 shot10 shot3 shot1 speckle0.4 speckle0.7 speckle1.0"
DATASETS="roxford5k rparis6k"
CHECKPOINT=last.pt
NOISE_SEED=42
WORKERS=4
# ------------------------------------------

for noise in $NOISES; do
    weights="$RUNS/$noise/$CHECKPOINT"
    if [ ! -f "$weights" ]; then
        echo "error: no denoiser for $noise at $weights (run Neighbor2Neighbor/linear_probe_n2n.sh first)" >&2
        exit 1
    fi
    for dataset in $DATASETS; do
        echo "=== $dataset, $noise -> $OUT_ROOT/${dataset}_$noise"
        python Neighbor2Neighbor/denoise.py --weights "$weights" --src "$REVISITOP_ROOT/datasets/$dataset" \
            --dst "$OUT_ROOT/${dataset}_$noise" --revisitop-noise "$noise" --noise-seed "$NOISE_SEED" \
            --workers "$WORKERS" --batch-size 1
    done
done
echo "done: denoised datasets are $OUT_ROOT/<dataset>_<setting>"
