#!/usr/bin/env bash
# ImageNet-100 linear-probe experiments of the paper, for every noise setting, in dependency order:
#   1. DINOv2 on the noisy tree (200 epochs)                     -> $RUNS/<noise>-200
#   2. N2N+DINOv2 on the denoised tree (200 epochs, checkpoints every 5 epochs kept)
#                                                                 -> $RUNS/<noise>-200-denoised
#   3. NC: branch off run 2 at epoch $SWITCH_EPOCH, the remaining epochs on the noisy tree, schedules restarted
#                                                                 -> $RUNS/<noise>-nc-$SWITCH_EPOCH
#   4. ablations: other switch epochs ($ABLATION_SWITCH_EPOCHS) and the continued-schedule variant ("norestart")
# Each training is followed by the linear probe (and k-NN) of all its encoder exports: noisy train/val for
# DINOv2 and NC, denoised train/val for N2N+DINOv2 (the denoiser is used at test time), as in the paper.
#
#   bash exps/linear_probe.sh [--dry-run]
#
# Needs the denoised trees of Neighbor2Neighbor/linear_probe_n2n.sh and its noisy copies, or, with
# NOISE_ON_THE_FLY=1, the clean tree CLEAN_ROOT noised at read time (noisy:<noise>,seed=<NOISE_SEED>:CLEAN_ROOT: the
# same pixels, no copy on disk). LAUNCHER runs each training: the default is one process; exps/slurm/*.sbatch set
# it to srun + torchrun over the job's nodes and GPUs, so the same plan runs on a workstation or a cluster.
# A training whose last encoder export
# exists is skipped (an unfinished one resumes from its newest checkpoint); an evaluation skips the checkpoints
# that already have a result. --dry-run prints the plan and runs nothing. exps/linear_probe_nct.sh sources this
# file for its settings and functions.
set -euo pipefail

# shellcheck source=exps/lib/recipe.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/recipe.sh"
load_paper_facts  # PAPER_*: the paper's schedule, settings and export names (utils/paper_facts.py)

# ---- paths and settings (edit these, or set them in the environment) ----
NOISY_PREFIX="${NOISY_PREFIX:-data/noisy_mini-imagenet}"   # trees NOISY_PREFIX-<noise> and NOISY_PREFIX-<noise>-denoised
CLEAN_ROOT="${CLEAN_ROOT:-data/mini-imagenet}"            # the clean tree (read only with NOISE_ON_THE_FLY=1)
NOISE_ON_THE_FLY="${NOISE_ON_THE_FLY:-0}"                 # 1: noisy trees are CLEAN_ROOT noised at read time
NOISE_SEED="${NOISE_SEED:-42}"                            # seed of the noise (as utils/generate_noise.py --seed)
RUNS="${RUNS:-outputs/imagenet100}"                       # training runs
EVALS="${EVALS:-outputs/imagenet100/eval}"                # evaluation results (one folder per run)
NOISES="${NOISES:-gauss100 gauss50 gauss255 speckle0.7 speckle1.0 speckle0.4 shot3 shot10 shot1}"
LAUNCHER="${LAUNCHER:-python -m}"                         # or: torchrun --nproc_per_node=4 -m (split on spaces)
EVAL_LAUNCHER="${EVAL_LAUNCHER:-python -m}"
CONFIGS="${CONFIGS:-dinov2/configs/train}"
EPOCHS="${EPOCHS:-$PAPER_EPOCHS}"                         # length of the noisy and denoised runs (200)
EPOCH_LENGTH="${EPOCH_LENGTH:-$PAPER_EPOCH_LENGTH}"       # iterations per epoch (train.OFFICIAL_EPOCH_LENGTH: 1250)
SWITCH_EPOCH="${SWITCH_EPOCH:-$PAPER_SWITCH_EPOCH}"       # NC branches off the denoised run here (140)
ABLATION_NOISES="${ABLATION_NOISES:-gauss100}"            # settings that get the ablations below
ABLATION_SWITCH_EPOCHS="${ABLATION_SWITCH_EPOCHS:-$PAPER_ABLATION_SWITCH_EPOCHS}"  # 110 120 130 150
NORESTART_ABLATION="${NORESTART_ABLATION:-1}"             # 1: also run the continued-schedule ablation
TRAIN_ARGS="${TRAIN_ARGS:-}"                              # extra overrides of every training (split on spaces)
METHOD_CONFIGS=()                                         # overlays after each recipe (exps/table2.sh: per method)
METHOD_EVAL_ARGS=()                                       # and their probe arguments (a ResNet: one feature layer)
PROBE_PROTOCOL="${PROBE_PROTOCOL:-paper}"                 # paper: augmented, 10 x 1,250 iterations, best on val;
                                                          # cached: features once, head chosen on a train holdout
EVAL_ARGS="${EVAL_ARGS:-}"                                # extra arguments of dinov2.eval.linear (split on spaces)
# ---------------------------------------------------------------------------

say() { printf '\n=== %s\n' "$*"; }

# Commands are argument arrays, never strings passed to eval: paths may hold spaces or shell characters.
# LAUNCHER, EVAL_LAUNCHER, TRAIN_ARGS and EVAL_ARGS are lists of words, split on whitespace (no globbing).
words() {  # words NAME TEXT: the array NAME holds the whitespace-separated words of TEXT
    read -r -a "$1" <<< "$2" || true
}
words LAUNCH_WORDS "$LAUNCHER"
words EVAL_LAUNCH_WORDS "$EVAL_LAUNCHER"
words TRAIN_EXTRA "$TRAIN_ARGS"
words EVAL_EXTRA "$EVAL_ARGS"

last_export_dir() {  # last_export_dir RUN_DIR EPOCHS -> the folder of the encoder export written at the run's end
    # shellcheck disable=SC2059  # the pattern is the project's own (utils/paper_facts.py)
    printf "%s/$PAPER_EXPORT_DIR\n" "$1" $(( $2 * EPOCH_LENGTH - 1 ))
}

run_finished() {  # run_finished RUN_DIR EPOCHS: the run wrote its last encoder export (teacher or student)
    local folder name
    folder="$(last_export_dir "$1" "$2")"
    for name in $PAPER_EXPORT_NAMES; do
        if [ -f "$folder/$name" ]; then
            return 0
        fi
    done
    return 1
}

train() {  # train RUN_DIR EPOCHS CONFIG [overrides...]: EPOCHS of the run (its optim.epochs)
    local run_dir="$1" epochs="$2" config="$3"
    shift 3
    if run_finished "$run_dir" "$epochs"; then
        echo "skip (done): $run_dir"
        return 0
    fi
    run_cmd "${LAUNCH_WORDS[@]}" dinov2.train --config-file "$config" \
        ${METHOD_CONFIGS[@]+"${METHOD_CONFIGS[@]}"} --output-dir "$run_dir" \
        "optim.epochs=$epochs" "$@" ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"}
}

noisy_tree() {  # noisy_tree NOISE: the stored noisy copy, or the clean tree noised on the fly
    if [ "$NOISE_ON_THE_FLY" = 1 ]; then
        echo "noisy:$1,seed=$NOISE_SEED:$CLEAN_ROOT"
    else
        echo "$NOISY_PREFIX-$1"
    fi
}

tree_split() {  # tree_split TREE SPLIT: the split folder (noisy:...:ROOT:SPLIT keeps the noise seeded from ROOT)
    case "$1" in
        noisy:*) echo "$1:$2" ;;
        *) echo "$1/$2" ;;
    esac
}

evaluate() {  # evaluate RUN_DIR TREE METHOD NOISE EPOCH_OFFSET
    local run_dir="$1" tree="$2" method="$3" noise="$4" offset="$5"
    run_cmd "${EVAL_LAUNCH_WORDS[@]}" dinov2.eval.linear --run-dir "$run_dir" \
        --train-dataset "$(tree_split "$tree" train)" --val-dataset "$(tree_split "$tree" val)" \
        --output-dir "$EVALS/$(basename "$run_dir")" --method "$method" --noise-label "$noise" \
        --epoch-offset "$offset" --protocol "$PROBE_PROTOCOL" ${METHOD_EVAL_ARGS[@]+"${METHOD_EVAL_ARGS[@]}"} ${EVAL_EXTRA[@]+"${EVAL_EXTRA[@]}"}
}

check_tree() {  # check_tree TREE: its train split exists (the clean one, for a tree noised on the fly)
    local folder="${1##*:}"
    if [ "$DRY_RUN" = 0 ] && [ ! -d "$folder/train" ]; then
        echo "error: $folder/train not found (make it with Neighbor2Neighbor/linear_probe_n2n.sh, or edit" \
            "NOISY_PREFIX / CLEAN_ROOT)" >&2
        exit 1
    fi
}

denoised_run() {  # the N2N+DINOv2 run of a setting (NC and NCT branch off it)
    local noise="$1" denoised="$NOISY_PREFIX-$1-denoised"
    local run_dir="$RUNS/$noise-$EPOCHS-denoised"
    check_tree "$denoised"
    say "$noise: N2N+DINOv2 on $denoised -> $run_dir"
    train "$run_dir" "$EPOCHS" "$CONFIGS/imagenet100_denoised.yaml" "train.dataset_path=$denoised"
    evaluate "$run_dir" "$denoised" n2n_dinov2 "$noise" 0
}

nc_run() {  # nc_run NOISE SWITCH_EPOCH [restart|norestart]
    local noise="$1" switch="$2" mode="${3:-restart}" noisy
    noisy="$(noisy_tree "$1")"
    local source="$RUNS/$noise-$EPOCHS-denoised" epochs=$(( EPOCHS - $2 ))
    local run_dir="$RUNS/$noise-nc-$switch" recipe="$CONFIGS/imagenet100_nc.yaml"
    if [ "$mode" = norestart ]; then
        run_dir="$run_dir-norestart"
        recipe="$CONFIGS/imagenet100_nc_norestart.yaml"
    fi
    say "$noise: NC ($mode), denoised epochs 0-$switch then noisy epochs $switch-$EPOCHS -> $run_dir"
    train "$run_dir" "$epochs" "$recipe" "train.dataset_path=$noisy" "curriculum.branch_from=$source@$switch"
    evaluate "$run_dir" "$noisy" nc "$noise" "$switch"
}

parse_args() {  # --dry-run / --help of the running recipe (this one or linear_probe_nct.sh); no positional one
    parse_recipe_args "$0" 0 "$@"
}

# sourced by exps/linear_probe_nct.sh: settings and functions only
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    return 0
fi

cd "$(dirname "$0")/.."
parse_args "$@"
for noise in $NOISES; do
    noisy="$(noisy_tree "$noise")"
    check_tree "$noisy"
    say "$noise: DINOv2 on $noisy -> $RUNS/$noise-$EPOCHS"
    train "$RUNS/$noise-$EPOCHS" "$EPOCHS" "$CONFIGS/imagenet100_vits16.yaml" "train.dataset_path=$noisy"
    evaluate "$RUNS/$noise-$EPOCHS" "$noisy" dinov2 "$noise" 0
    denoised_run "$noise"
    nc_run "$noise" "$SWITCH_EPOCH"
done
for noise in $ABLATION_NOISES; do
    for switch in $ABLATION_SWITCH_EPOCHS; do
        nc_run "$noise" "$switch"
    done
    if [ "$NORESTART_ABLATION" = 1 ]; then
        nc_run "$noise" "$SWITCH_EPOCH" norestart
    fi
done
say "done: runs in $RUNS, results in $EVALS (tables: python exps/report.py $(printf %q "$EVALS") --out outputs/report)"
