#!/usr/bin/env bash
# The paper's Table 2 in miniature on the embedded digits: for each SSL method, its three arms at one noise setting
# (gauss100 by default), one seed, the quick start's CPU schedule (dinov2/configs/train/tiny_cpu.yaml: batch 32,
# 10 epochs of 40 iterations, 32 px crops) for every method, so that only the method differs:
#   OUT/<method>/noisy      the method on the noisy digits
#   OUT/<method>/denoised   the method on the Neighbor2Neighbor-denoised digits (the N2N + method arm)
#   OUT/<method>/nc         branch off the denoised run at 70 % of the epochs, the rest on noisy digits (NC)
# then the linear probe and k-NN of each arm's final export (denoised train / val for the N2N arm) in OUT/eval, the
# baselines (k-NN on raw pixels; the ViT and the ResNet-18 at initialisation) in OUT/baselines/{vit,resnet18}, and
# the table OUT/report/ssl_methods.{md,csv} (python exps/report.py). Methods: dinov2, dino, ibot (ViT-Ti/4 blocks,
# their overlays dinov2/configs/train/method_<m>.yaml), mocov3 (the same ViT), simclr and simsiam (a ResNet-18
# with torchvision's stem: the ResNet-50 recipes' family at a CPU size). The contrastive methods' heads are
# scaled down and their learning rates set for a 400-step batch-32 run (see MINIATURE_OVERRIDES below).
#
#   bash exps/table2_miniature.sh [NOISE] [--dry-run]
#
# Variables (environment): DATA_ROOT, OUT (outputs/table2_miniature), METHODS, SEED (0), WORKERS, THREADS (every
# stage's torch threads; default OMP_NUM_THREADS when set, else 2; recorded in OUT/environment.json).
# Every step skips what is done and training resumes, so an interrupted run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/miniature_pipeline.sh
source exps/lib/miniature_pipeline.sh

parse_recipe_args "$0" 1 "$@"
NOISE="${RECIPE_ARGS[0]:-gauss100}"
DATA_ROOT="${DATA_ROOT:-data}"
OUT="${OUT:-outputs/table2_miniature}"
METHODS="${METHODS:-dinov2 dino ibot simclr mocov3 simsiam}"
SEED="${SEED:-0}"
WORKERS="${WORKERS:-2}"
DATASET="mnist5k"
LIMIT=()
N2N_OPTIONS=("${N2N_FULL[@]}")
DINO_CONFIG="dinov2/configs/train/tiny_cpu.yaml"
EPOCHS=10
EPOCH_ITERS=40
PROBE_ARGS=(--epochs 10)
check_noise table2_miniature.sh "$NOISE"
SWITCH_EPOCH=$(( EPOCHS * 7 / 10 ))

method_setup() {  # method_setup METHOD: METHOD_CONFIG, DINO_ARGS and the probe's feature layers for METHOD
    local method="$1"
    METHOD_CONFIG=""
    METHOD_PROBE_ARGS=()
    DINO_ARGS=()
    if [ "$method" != dinov2 ]; then
        METHOD_CONFIG="dinov2/configs/train/method_$method.yaml"
        if [ ! -f "$METHOD_CONFIG" ]; then
            echo "table2_miniature.sh: no recipe for the method '$method' ($METHOD_CONFIG not found)" >&2
            exit 2
        fi
    fi
    # MINIATURE_OVERRIDES: the CPU size of each method (the tiny recipe's 1,024 prototypes for DINO and iBOT)
    case "$method" in
      dino|ibot)  # and the tiny recipe's learning rate (theirs, 0.0005 per 256 images, barely moves in 400 steps)
        DINO_ARGS+=(dino.head_n_prototypes=1024 dino.head_hidden_dim=256 dino.head_bottleneck_dim=64
                    crops.local_crops_number=4 crops.local_crops_size=16 optim.base_lr=0.004
                    optim.scaling_rule=sqrt_wrt_1024 optim.warmup_epochs=1) ;;
      simclr)  # SimCLR's square-root rule for small batches: 0.075 * sqrt(batch)
        DINO_ARGS+=(student.arch=resnet18 method.projection_hidden_dim=512 optim.base_lr=2.4
                    optim.scaling_rule=sqrt_wrt_1024 optim.warmup_epochs=1)
        METHOD_PROBE_ARGS=(--n-last-blocks 1 --avgpool false) ;;
      mocov3)  # the tiny recipe's AdamW learning rate (MoCo v3's 1.5e-4 per 256 barely moves in 400 steps)
        DINO_ARGS+=(method.projection_hidden_dim=512 method.projection_dim=128 method.prediction_hidden_dim=512
                    optim.base_lr=0.004 optim.scaling_rule=sqrt_wrt_1024 optim.warmup_epochs=1) ;;
      simsiam)  # SimSiam's CIFAR learning rate, 0.03 per 256 images at batch 512
        DINO_ARGS+=(student.arch=resnet18 method.projection_hidden_dim=512 method.projection_dim=512
                    method.prediction_hidden_dim=128 optim.base_lr=0.06 optim.scaling_rule=none)
        METHOD_PROBE_ARGS=(--n-last-blocks 1 --avgpool false) ;;
    esac
}

set_threads table2_miniature.sh
set_paths
step "data: $CLEAN and its noisy copy $NOISY"
record_setting "$OUT"
prepare_data
step "Neighbor2Neighbor on the noisy train images, the denoised tree"
train_denoiser
PROBE_BASE=(${PROBE_ARGS[@]+"${PROBE_ARGS[@]}"})
for method in $METHODS; do
    method_setup "$method"
    PROBE_ARGS=(${PROBE_BASE[@]+"${PROBE_BASE[@]}"} ${METHOD_PROBE_ARGS[@]+"${METHOD_PROBE_ARGS[@]}"})
    runs="$OUT/$method"
    labels=("$method" "n2n_$method" "nc_$method")
    if [ "$method" = dinov2 ]; then
        labels=(dinov2 n2n_dinov2 nc)  # the labels of the DINOv2 recipes (exps/linear_probe.sh)
    fi
    step "$method: noisy, denoised (N2N + $method), NC from the denoised run's epoch $SWITCH_EPOCH"
    train_arm "$runs/noisy" "$NOISY"
    train_arm "$runs/denoised" "$DENOISED"
    train_arm "$runs/nc" "$NOISY" --branch nc "optim.epochs=$(( EPOCHS - SWITCH_EPOCH ))" \
        "curriculum.branch_from=$runs/denoised@$SWITCH_EPOCH" "evaluation.eval_period_iterations=$EPOCH_ITERS"
    step "$method: linear probe and k-NN of each arm's final export"
    probe "$runs/noisy" "$NOISY" "${labels[0]}" 0 "$OUT/eval/$method" final
    probe "$runs/denoised" "$DENOISED" "${labels[1]}" 0 "$OUT/eval/$method" final
    probe "$runs/nc" "$NOISY" "${labels[2]}" "$SWITCH_EPOCH" "$OUT/eval/$method" final
done
step "baselines on the noisy images: raw pixels, and each backbone at its initialisation"
run_cmd python exps/miniature_baselines.py --config-file "$DINO_CONFIG" --data "$NOISY" \
    --output-dir "$OUT/baselines/vit" --noise-label "$NOISE" -- ${PROBE_BASE[@]+"${PROBE_BASE[@]}"}
run_cmd python exps/miniature_baselines.py --config-file "$DINO_CONFIG" \
    --config-file dinov2/configs/train/method_simclr.yaml --set student.arch=resnet18 --data "$NOISY" \
    --output-dir "$OUT/baselines/resnet18" --noise-label "$NOISE" -- ${PROBE_BASE[@]+"${PROBE_BASE[@]}"} \
    --n-last-blocks 1 --avgpool false
step "the table"
run_cmd python exps/report.py "$OUT/eval" --out "$REPORT"
step "done in $(( SECONDS - PIPELINE_START )) s: $REPORT/ssl_methods.md"
