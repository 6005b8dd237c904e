#!/usr/bin/env bash
# Your own noisy images, end to end (no clean copy, no labels needed): index and verify DATA, train
# Neighbor2Neighbor on it, write the denoised tree, pretrain DINOv2 on the denoised images and on the noisy ones,
# branch the curriculum (NC) and NC with the frozen denoised teacher (NCT) into the noisy images, export the final
# NCT teacher (OUT/export: model.safetensors + config.json), and write a report page (noisy and denoised examples,
# loss, DINO target-entropy and health curves, the probes when LABELED is given).
#
#   DATA=path/to/noisy_images OUT=outputs/mine bash exps/own_data.sh [--dry-run]
#   DATA=... LABELED=path/to/labelled_tree bash exps/own_data.sh   # + linear probe and k-NN on LABELED's train/val
#   bash exps/own_data.sh --demo [--dry-run]                       # the embedded demo (see below)
#
# DATA: any folder of images (PNG, JPEG, TIFF 8/16-bit or float, FITS, NPY; flat or nested, with or without
# train/<class>/ folders: a labelled DATA trains the denoiser on its train split). LABELED: optional, an ImageFolder
# tree (train/ and val/ class folders) of the same kind of noisy images, for the probes; the N2N + DINOv2 arm is
# probed on its denoised copy. OUT (default outputs/own_data): everything this run writes (runs with another OUT
# never collide). PROFILE: cpu (tiny ViT, 32 px crops; default), gpu (ViT-S/16, 224 px, the ImageNet-100 recipe)
# or smoke (a few steps per stage, as the tests run it).
# WEIGHTS: optional backbone the two from-scratch arms start from (student.pretrained_weights; its architecture
# must be the profile's). CHANNELS: 3 (default: grey images reach the ViT replicated to RGB, as official weights
# expect) or 1 (a single-channel ViT, student.in_chans=1; 3-channel WEIGHTS are converted exactly).
# Also: EPOCHS, SWITCH_EPOCH (NC / NCT branch point), EPOCH_ITERS, NCT_WEIGHT (default 1.0), SEED, THREADS
# (torch threads of every stage; default OMP_NUM_THREADS when set, else 2), WORKERS.
# Every step skips what is done and training resumes, so an interrupted run continues where it stopped.
#
# --demo builds, from scikit-image's scientific images and the embedded digits (utils/make_demo_data.py, in
# DATA_ROOT, default data), an unlabeled tree of 16-bit single-channel tiles and a labelled tree of 16-bit
# single-channel digits, noises both with Poisson-Gaussian sensor noise (DEMO_NOISE, default pg20_10), and runs
# the command on the tiles (OUT/tiles) and on the digits with LABELED = the digits (OUT/digits).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/miniature_pipeline.sh
source exps/lib/miniature_pipeline.sh

take_flag --demo own_data.sh "DATA=... names the images" "$@"
DEMO="$FLAG_GIVEN"
parse_recipe_args "$0" 0 ${FLAG_OTHERS[@]+"${FLAG_OTHERS[@]}"}
set_threads own_data.sh
OUT="${OUT:-outputs/own_data}"
PROFILE="${PROFILE:-cpu}"
WORKERS="${WORKERS:-2}"
SEED="${SEED:-0}"
NCT_WEIGHT="${NCT_WEIGHT:-1.0}"
DEMO_DATA=()  # utils/make_demo_data.py options of the profile
PROBE_OPTIONS=(--epochs "${PROBE_EPOCHS:-10}")  # the linear probe's
case "$PROFILE" in
  cpu) DINO_CONFIG="dinov2/configs/train/tiny_cpu.yaml"; CROP=32; PATCH=32
       EPOCHS="${EPOCHS:-6}"; SWITCH_EPOCH="${SWITCH_EPOCH:-4}"; EPOCH_ITERS="${EPOCH_ITERS:-20}"
       N2N_OPTIONS=("${N2N_FULL[@]}") ;;
  smoke) DINO_CONFIG="dinov2/configs/train/smoke_cpu.yaml"; CROP=16; PATCH=16  # seconds per stage: the tests
       EPOCHS="${EPOCHS:-2}"; SWITCH_EPOCH="${SWITCH_EPOCH:-1}"; EPOCH_ITERS="${EPOCH_ITERS:-2}"
       N2N_OPTIONS=("${N2N_SMOKE[@]}"); DEMO_DATA=(--digits-per-class 6 --tiles-per-image 3)
       PROBE_OPTIONS=(--epochs 2 --holdout-fraction 0.4) ;;
  gpu) DINO_CONFIG="dinov2/configs/train/imagenet100_vits16.yaml"; CROP=224; PATCH=128
       EPOCHS="${EPOCHS:-100}"; SWITCH_EPOCH="${SWITCH_EPOCH:-70}"; EPOCH_ITERS="${EPOCH_ITERS:-1250}"
       N2N_OPTIONS=(--epochs 100 --batch-size 4) ;;
  *) echo "own_data.sh: PROFILE must be cpu, gpu or smoke, got '$PROFILE'" >&2; exit 2 ;;
esac
case "$EPOCHS $SWITCH_EPOCH $EPOCH_ITERS" in
  *[!0-9\ ]*) echo "own_data.sh: EPOCHS, SWITCH_EPOCH and EPOCH_ITERS must be whole numbers" >&2; exit 2 ;;
esac
if [ "$SWITCH_EPOCH" -lt 1 ] || [ "$SWITCH_EPOCH" -ge "$EPOCHS" ]; then
    echo "own_data.sh: SWITCH_EPOCH must lie in [1, EPOCHS), got $SWITCH_EPOCH with EPOCHS $EPOCHS" >&2; exit 2
fi
DINO_ARGS=("train.OFFICIAL_EPOCH_LENGTH=$EPOCH_ITERS" "train.checkpoint_period=$EPOCH_ITERS"
           "evaluation.eval_period_iterations=$EPOCH_ITERS" "train.max_to_keep=$EPOCHS")
CHANNELS="${CHANNELS:-3}"
case "$CHANNELS" in
  3) ;;
  1) DINO_ARGS+=("student.in_chans=1") ;;
  *) echo "own_data.sh: CHANNELS must be 1 or 3, got '$CHANNELS'" >&2; exit 2 ;;
esac

is_labelled() {  # is_labelled TREE: true when TREE has train/<class>/ folders
    [ "$DRY_RUN" = 0 ] && python -c "import sys; from utils.dataset_index import is_labelled
sys.exit(0 if is_labelled(sys.argv[1]) else 1)" "$1"
}

own_data() {  # own_data DATA LABELED OUT: the whole command on one tree
    local data="$1" labeled="$2"
    OUT="$3"; NOISY="$data"; REPORT="$OUT/report"; N2N_DIR="$OUT/n2n"; DENOISED="$OUT/denoised"; QUIET=(--quiet)
    if [ "$DRY_RUN" = 0 ]; then
        if [ ! -d "$data" ]; then echo "own_data.sh: DATA folder '$data' does not exist" >&2; exit 2; fi
        if [ -n "$labeled" ] && [ ! -d "$labeled" ]; then
            echo "own_data.sh: LABELED folder '$labeled' does not exist" >&2; exit 2
        fi
        mkdir -p "$OUT" "$REPORT"
    fi
    record_setting "$OUT"
    step "1. index and verify $data${labeled:+ and $labeled}"
    run_cmd python process_metadata.py "$data" --verify --num-workers "$WORKERS" --quiet
    if [ -n "$labeled" ] && [ "$labeled" != "$data" ]; then
        run_cmd python process_metadata.py "$labeled" --verify --num-workers "$WORKERS" --quiet
    fi

    step "2. Neighbor2Neighbor on the noisy images, then their denoised copy $DENOISED"
    local n2n_data="$data"
    if is_labelled "$data"; then n2n_data="$data/train"; fi
    run_cmd python Neighbor2Neighbor/train.py --data-dir "$n2n_data" --output-dir "$N2N_DIR" "${N2N_OPTIONS[@]}" \
        --patch-size "$PATCH" --num-workers 0 --quiet
    run_cmd python Neighbor2Neighbor/denoise.py --weights "$N2N_DIR/last.pt" --src "$data" --output-dir "$DENOISED" \
        --num-workers 0 --quiet
    run_cmd python process_metadata.py "$DENOISED" --pair "$data" "$DENOISED" --quiet
    run_cmd python Neighbor2Neighbor/plot_examples.py --noisy "$data" --denoised "$DENOISED" --images 8 \
        --out "$REPORT/denoising_examples.png"
    local denoised_labeled="$DENOISED"
    if [ -n "$labeled" ] && [ "$labeled" != "$data" ]; then
        denoised_labeled="$OUT/labeled_denoised"
        run_cmd python Neighbor2Neighbor/denoise.py --weights "$N2N_DIR/last.pt" --src "$labeled" \
            --output-dir "$denoised_labeled" --num-workers 0 --quiet
        run_cmd python process_metadata.py "$denoised_labeled" --pair "$labeled" "$denoised_labeled" --quiet
    fi

    step "3. DINOv2 on the noisy and on the denoised images; NC and NCT branch into the noisy ones at epoch" \
        "$SWITCH_EPOCH of $EPOCHS"
    local start=() recipe_args=("${DINO_ARGS[@]}")
    if [ -n "${WEIGHTS:-}" ]; then start=("student.pretrained_weights=$WEIGHTS"); fi
    if [ -n "$labeled" ]; then  # every arm's online k-NN on LABELED's val images (DATA may have no labels)
        DINO_ARGS+=("evaluation.online_knn.dataset_path=$labeled")
    fi
    train_arm "$OUT/dinov2_noisy" "$data" ${start[@]+"${start[@]}"}
    train_arm "$OUT/dinov2_denoised" "$DENOISED" ${start[@]+"${start[@]}"}
    branch_arm "$OUT" nc
    branch_arm "$OUT" nct
    DINO_ARGS=("${recipe_args[@]}")

    step "4. the final NCT teacher as model.safetensors + config.json: $OUT/export"
    run_cmd python -m dinov2.export --weights "$OUT/nct" --output-dir "$OUT/export"

    local includes=("$REPORT/denoising_examples.png" "$REPORT/curves.md" "$REPORT/curves.png")
    if [ -n "$labeled" ]; then
        step "5. linear probe and k-NN on $labeled (noisy; its denoised copy for N2N + DINOv2)"
        NOISE="own"  # the probes' label of the data
        probe_own "$OUT/dinov2_noisy" "$labeled" dinov2
        probe_own "$OUT/nc" "$labeled" nc
        probe_own "$OUT/nct" "$labeled" nct
        probe_own "$OUT/dinov2_denoised" "$denoised_labeled" n2n_dinov2
    fi

    step "6. training curves and the page: $REPORT/index.html"
    run_cmd python exps/training_curves.py "$OUT/dinov2_noisy" "$OUT/dinov2_denoised" "$OUT/nc" "$OUT/nct" \
        --out "$REPORT/curves.png" --markdown "$REPORT/curves.md"
    run_cmd python exps/report.py "$OUT/eval" --output-dir "$REPORT" --allow-empty \
        --page "Your own data: $(basename "$data")" --include "${includes[@]}"
    if [ "$DRY_RUN" = 0 ] && [ -f "$REPORT/summary.md" ]; then
        cat "$REPORT/summary.md"
    fi
}

probe_own() {  # probe_own RUN_DIR LABELED METHOD: linear probe and k-NN of the run's final teacher
    local method="$3"
    case "$method" in nc|nct) local offset="$SWITCH_EPOCH" ;; *) local offset=0 ;; esac
    local common=(--pretrained-weights "$1" --train-dataset "$2/train" --val-dataset "$2/val"
                  --output-dir "$OUT/eval/$(basename "$1")" --crop-size "$CROP" --method "$method" --noise-label "$NOISE"
                  --epoch-offset "$offset" --num-workers 0 "${QUIET[@]}")
    run_cmd python -m dinov2.eval.linear "${common[@]}" "${PROBE_OPTIONS[@]}"
    run_cmd python -m dinov2.eval.knn "${common[@]}"
}

if [ "$DEMO" = 1 ]; then
    DATA_ROOT="${DATA_ROOT:-data}"
    DEMO_NOISE="${DEMO_NOISE:-pg20_10}"
    check_noise own_data.sh "$DEMO_NOISE"
    DEMO_DIR="$DATA_ROOT/own_data_demo"
    if [ "$PROFILE" = smoke ]; then DEMO_DIR+="_smoke"; fi  # a smaller tree: never the full demo's
    step "0. the demo's data: 16-bit single-channel tiles and digits in $DEMO_DIR, noised with $DEMO_NOISE"
    shared python utils/make_demo_data.py --output-dir "$DEMO_DIR" ${DEMO_DATA[@]+"${DEMO_DATA[@]}"} --quiet
    for tree in tiles digits16; do
        shared python utils/generate_noise.py --src "$DEMO_DIR/$tree" --noise "$DEMO_NOISE" \
            --out-prefix "$DEMO_DIR/noisy_$tree" --num-workers "$WORKERS" --quiet
    done
    ROOT_OUT="$OUT"
    own_data "$DEMO_DIR/noisy_tiles-$DEMO_NOISE" "" "$ROOT_OUT/tiles"
    own_data "$DEMO_DIR/noisy_digits16-$DEMO_NOISE" "$DEMO_DIR/noisy_digits16-$DEMO_NOISE" "$ROOT_OUT/digits"
    step "done in $(( SECONDS - PIPELINE_START )) s: pages $ROOT_OUT/tiles/report/index.html and" \
        "$ROOT_OUT/digits/report/index.html"
    exit 0
fi

if [ -z "${DATA:-}" ]; then
    if [ "$DRY_RUN" = 0 ]; then
        echo "own_data.sh: set DATA to a folder of your noisy images (or run --demo)" >&2; exit 2
    fi
    DATA="DATA"  # the plan of a --dry-run without DATA
fi
own_data "$DATA" "${LABELED:-}" "$OUT"
step "done in $(( SECONDS - PIPELINE_START )) s: outputs in $OUT, page $REPORT/index.html"
