#!/usr/bin/env bash
# Continued pretraining of a backbone (official weights, a transformers or timm folder, any export) on noisy images
# without forgetting what it knew: a head warm-up on the noisy images (the backbone frozen: train_backbone: false),
# then the adaptation with the starting backbone frozen as the NCT anchor (nct.teacher = WEIGHTS, projected by the
# live heads; on DENOISED's paired crops when given, else on the noisy crops themselves) and, as the control, the
# same adaptation without the anchor. Both branch off the warm-up. The starting weights and both results are
# probed (linear probe and k-NN) on clean and on noisy labelled data, into one table: OUT/adapt.md (+ .json).
#
#   WEIGHTS=dinov2-small DATA=path/to/noisy LABELED_CLEAN=clean_tree LABELED_NOISY=noisy_tree OUT=outputs/adapt \
#       PROFILE=gpu bash exps/adapt.sh [--dry-run]
#   bash exps/adapt.sh --miniature [--dry-run]   # the CPU miniature on the embedded digits (see below)
#
# WEIGHTS: the starting backbone (anything dinov2.hub.load_backbone reads; its architecture must be the
# profile's). DATA: the noisy images to adapt to (a tree or a spelling such as noisy:gauss100:ROOT). DENOISED:
# optional denoised copy of DATA. LABELED_CLEAN, LABELED_NOISY: ImageFolder trees (train/ and val/) for the probes.
# OUT (default outputs/adapt). PROFILE: cpu (tiny ViT, 32 px crops; default), gpu (ViT-S/16, 224 px) or smoke (a
# few steps per stage, as the tests run it). WARMUP_EPOCHS (default 1), EPOCHS (adaptation epochs, default 5),
# EPOCH_ITERS, NCT_WEIGHT (the anchor's weight, default 1.0), LR (optim.base_lr of the adaptation; default the
# profile's), SEED, THREADS (torch threads of every stage; default OMP_NUM_THREADS when set, else 2).
# Every step skips what is done and training resumes, so an interrupted run continues where it stopped.
#
# --miniature pretrains the profile's backbone on the clean embedded digits (data/mnist5k: the quick start's recipe,
# 10 epochs), saves it in transformers' format (python -m dinov2.export --format hf, so that the loader is
# exercised), and adapts it to the digits under gauss100 noise, probed on the clean and the noisy digits.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/miniature_pipeline.sh
source exps/lib/miniature_pipeline.sh

take_flag --miniature adapt.sh "WEIGHTS=... and DATA=... name the inputs" "$@"
MINIATURE="$FLAG_GIVEN"
parse_recipe_args "$0" 0 ${FLAG_OTHERS[@]+"${FLAG_OTHERS[@]}"}
set_threads adapt.sh
OUT="${OUT:-outputs/adapt}"
PROFILE="${PROFILE:-cpu}"
SEED="${SEED:-0}"
NCT_WEIGHT="${NCT_WEIGHT:-1.0}"
WARMUP_EPOCHS="${WARMUP_EPOCHS:-1}"
PROBE_OPTIONS=(--epochs 10)
case "$PROFILE" in
  cpu) DINO_CONFIG="dinov2/configs/train/tiny_cpu.yaml"; CROP=32; EPOCHS="${EPOCHS:-5}"
       EPOCH_ITERS="${EPOCH_ITERS:-40}"; START_ARGS=() ;;
  smoke) DINO_CONFIG="dinov2/configs/train/smoke_cpu.yaml"; CROP=16; EPOCHS="${EPOCHS:-1}"
       EPOCH_ITERS="${EPOCH_ITERS:-2}"; START_ARGS=(optim.epochs=2)
       PROBE_OPTIONS=(--epochs 2 --holdout-fraction 0.4) ;;
  gpu) DINO_CONFIG="dinov2/configs/train/imagenet100_vits16.yaml"; CROP=224; EPOCHS="${EPOCHS:-10}"
       EPOCH_ITERS="${EPOCH_ITERS:-1250}"; START_ARGS=() ;;
  *) echo "adapt.sh: PROFILE must be cpu, gpu or smoke, got '$PROFILE'" >&2; exit 2 ;;
esac
case "$WARMUP_EPOCHS $EPOCHS $EPOCH_ITERS" in
  *[!0-9\ ]*) echo "adapt.sh: WARMUP_EPOCHS, EPOCHS and EPOCH_ITERS must be whole numbers" >&2; exit 2 ;;
esac
if [ "$WARMUP_EPOCHS" -lt 1 ] || [ "$EPOCHS" -lt 1 ]; then
    echo "adapt.sh: WARMUP_EPOCHS and EPOCHS must be at least 1" >&2; exit 2
fi
DINO_ARGS=("train.OFFICIAL_EPOCH_LENGTH=$EPOCH_ITERS" "train.checkpoint_period=$EPOCH_ITERS" "train.seed=$SEED"
           "evaluation.eval_period_iterations=$EPOCH_ITERS" "optim.warmup_epochs=0" "train.max_to_keep=2")
QUIET=(--quiet)
EVAL="$OUT/eval"

if [ "$MINIATURE" = 1 ]; then
    DATA_ROOT="${DATA_ROOT:-data}"
    LIMIT=()
    if [ "$PROFILE" = smoke ]; then LIMIT=(--limit 30); fi
    CLEAN_DIGITS="$DATA_ROOT/mnist5k"
    if [ "$PROFILE" = smoke ]; then CLEAN_DIGITS="$DATA_ROOT/mnist5k_smoke"; fi
    step "0. the clean digits ($CLEAN_DIGITS), a backbone pretrained on them, saved as a transformers folder"
    shared python utils/make_toy_dataset.py --output-dir "$CLEAN_DIGITS" ${LIMIT[@]+"${LIMIT[@]}"}
    shared python process_metadata.py "$CLEAN_DIGITS"
    run_cmd python -m dinov2.train --config-file "$DINO_CONFIG" --output-dir "$OUT/start_run" \
        "train.dataset_path=$CLEAN_DIGITS" "train.seed=$SEED" ${START_ARGS[@]+"${START_ARGS[@]}"}
    run_cmd python -m dinov2.export --weights "$OUT/start_run" --output-dir "$OUT/start_hf" --format hf
    WEIGHTS="$OUT/start_hf"
    DATA="noisy:gauss100:$CLEAN_DIGITS"
    LABELED_CLEAN="$CLEAN_DIGITS"
    LABELED_NOISY="noisy:gauss100:$CLEAN_DIGITS"
fi
for name in WEIGHTS DATA LABELED_CLEAN LABELED_NOISY; do
    if [ -z "${!name:-}" ]; then
        if [ "$DRY_RUN" = 0 ]; then
            echo "adapt.sh: set $name (see --help), or run the CPU miniature with --miniature" >&2; exit 2
        fi
        printf -v "$name" '%s' "$name"  # the plan of a --dry-run without it
    fi
done
if [ "$DRY_RUN" = 0 ] && [ "$MINIATURE" = 0 ] && [ ! -e "$WEIGHTS" ]; then
    echo "adapt.sh: WEIGHTS '$WEIGHTS' does not exist" >&2; exit 2
fi
if [ "$DRY_RUN" = 0 ]; then mkdir -p "$OUT"; fi
record_setting "$OUT"
ADAPT=("optim.epochs=$EPOCHS" "curriculum.branch_from=$OUT/warmup@$WARMUP_EPOCHS")
if [ -n "${LR:-}" ]; then ADAPT+=("optim.base_lr=$LR"); fi

step "1. head warm-up on $DATA: $WARMUP_EPOCHS epoch(s), the backbone of $WEIGHTS frozen"
run_cmd python -m dinov2.train --config-file "$DINO_CONFIG" --output-dir "$OUT/warmup" "train.dataset_path=$DATA" \
    "student.pretrained_weights=$WEIGHTS" "optim.epochs=$WARMUP_EPOCHS" "${DINO_ARGS[@]}" \
    "curriculum.phases=[{dataset_path: '\${train.dataset_path}', epochs: '\${optim.epochs}', train_backbone: false}]"

step "2. adaptation, $EPOCHS epoch(s): without the anchor (the control) and anchored to $WEIGHTS (weight $NCT_WEIGHT)"
run_cmd python -m dinov2.train --config-file "$DINO_CONFIG" --config-file dinov2/configs/train/branch_nc.yaml \
    --output-dir "$OUT/no_anchor" "train.dataset_path=$DATA" "${DINO_ARGS[@]}" "${ADAPT[@]}"
ANCHOR=("nct.teacher=$WEIGHTS" "nct.weight=$NCT_WEIGHT")
if [ -n "${DENOISED:-}" ]; then ANCHOR+=("nct.denoised_dataset_path=$DENOISED"); fi
run_cmd python -m dinov2.train --config-file "$DINO_CONFIG" --config-file dinov2/configs/train/branch_nct.yaml \
    --output-dir "$OUT/anchored" "train.dataset_path=$DATA" "${DINO_ARGS[@]}" "${ADAPT[@]}" "${ANCHOR[@]}"

probe_on() {  # probe_on WEIGHTS ARM: linear probe and k-NN of WEIGHTS on the clean and on the noisy labelled trees
    local data label
    for label in clean noisy; do
        if [ "$label" = clean ]; then data="$LABELED_CLEAN"; else data="$LABELED_NOISY"; fi
        run_cmd python -m dinov2.eval.linear --pretrained-weights "$1" --train-dataset "$data/train" \
            --val-dataset "$data/val" --output-dir "$EVAL/$2_$label" --crop-size "$CROP" --method "$2" \
            --noise-label "$label" --num-workers 0 "${PROBE_OPTIONS[@]}" "${QUIET[@]}"
    done
}

step "3. probes of the start, the control and the anchored backbone on $LABELED_CLEAN and $LABELED_NOISY"
probe_on "$WEIGHTS" start
probe_on "$OUT/no_anchor" no_anchor
probe_on "$OUT/anchored" anchored

step "4. the table: $OUT/adapt.md"
run_cmd python exps/adapt_table.py "$EVAL" --out "$OUT/adapt.md"
step "done in $(( SECONDS - PIPELINE_START )) s: $OUT/adapt.md"
