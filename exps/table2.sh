#!/usr/bin/env bash
# The paper's Table 2 on ImageNet-100 (Gaussian sigma = 100 by default): the curriculum applied to other SSL
# methods. For each method of METHODS, three arms in dependency order, each followed by the linear probe (and k-NN)
# of all its encoder exports (denoised train/val for the N2N arm, as the paper):
#   on noisy data   the method on the noisy tree for EPOCHS epochs            -> $RUNS/table2/<method>-<noise>
#   N2N + method    the method on the denoised tree (checkpoints kept)        -> $RUNS/table2/<method>-<noise>-denoised
#   w/ NC           branch off the denoised run at SWITCH_EPOCH, the remaining epochs on the noisy tree, every
#                   schedule restarted                                        -> $RUNS/table2/<method>-<noise>-nc-<switch>
# Methods: dinov2 (the runs of exps/linear_probe.sh, reused when done: same folders and result labels dinov2,
# n2n_dinov2, nc); dino, ibot, simclr, mocov3 and simsiam (the same ImageNet-100 recipes with the overlay
# dinov2/configs/train/method_<method>.yaml; result labels <method>, n2n_<method>, nc_<method>). SimCLR and SimSiam
# train a ResNet-50, probed on its pooled features (--n-last-blocks 1 --avgpool false); the contrastive methods need
# lightly (pip install --no-deps -r requirements-ssl.txt).
# python exps/report.py $EVALS writes the table as ssl_methods.{md,csv}.
#
#   bash exps/table2.sh [--dry-run]
#
# Settings: METHODS (dinov2 dino ibot simclr mocov3 simsiam), TABLE2_NOISE (gauss100), and those at the top of
# exps/linear_probe.sh (NOISY_PREFIX, CLEAN_ROOT, NOISE_ON_THE_FLY, RUNS, EVALS, LAUNCHER, EPOCHS, EPOCH_LENGTH,
# SWITCH_EPOCH, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/linear_probe.sh
source exps/linear_probe.sh

METHODS="${METHODS:-dinov2 dino ibot simclr mocov3 simsiam}"
TABLE2_NOISE="${TABLE2_NOISE:-gauss100}"

method_arms() {  # method_arms METHOD NOISE: the three arms of a method that is an overlay of the DINOv2 recipes
    local method="$1" noise="$2" noisy denoised="$NOISY_PREFIX-$2-denoised"
    noisy="$(noisy_tree "$noise")"
    local run_dir="$RUNS/table2/$method-$noise" overlay="$CONFIGS/method_$method.yaml"
    if [ ! -f "$overlay" ]; then
        echo "table2.sh: no recipe for the method '$method' ($overlay not found)" >&2
        exit 2
    fi
    check_tree "$noisy"
    check_tree "$denoised"
    METHOD_CONFIGS=(--config-file "$overlay")
    METHOD_EVAL_ARGS=()
    if python -c "import sys; from dinov2.utils.config import load_config
sys.exit(not load_config(sys.argv[1:]).student.arch.startswith('resnet'))" \
        "$CONFIGS/imagenet100_vits16.yaml" "$overlay"; then
        METHOD_EVAL_ARGS=(--n-last-blocks 1 --avgpool false)  # a ResNet has one feature layer, its pooled output
    fi
    say "$noise: $method on $noisy -> $run_dir"
    train "$run_dir" "$EPOCHS" "$CONFIGS/imagenet100_vits16.yaml" "train.dataset_path=$noisy"
    evaluate "$run_dir" "$noisy" "$method" "$noise" 0
    say "$noise: N2N + $method on $denoised -> $run_dir-denoised"
    train "$run_dir-denoised" "$EPOCHS" "$CONFIGS/imagenet100_denoised.yaml" "train.dataset_path=$denoised"
    evaluate "$run_dir-denoised" "$denoised" "n2n_$method" "$noise" 0
    say "$noise: $method with NC, denoised epochs 0-$SWITCH_EPOCH then noisy -> $run_dir-nc-$SWITCH_EPOCH"
    train "$run_dir-nc-$SWITCH_EPOCH" $(( EPOCHS - SWITCH_EPOCH )) "$CONFIGS/imagenet100_nc.yaml" \
        "train.dataset_path=$noisy" "curriculum.branch_from=$run_dir-denoised@$SWITCH_EPOCH"
    evaluate "$run_dir-nc-$SWITCH_EPOCH" "$noisy" "nc_$method" "$noise" "$SWITCH_EPOCH"
    METHOD_CONFIGS=()
    METHOD_EVAL_ARGS=()
}

parse_args "$@"
for method in $METHODS; do
    if [ "$method" = dinov2 ]; then
        noisy="$(noisy_tree "$TABLE2_NOISE")"
        check_tree "$noisy"
        say "$TABLE2_NOISE: DINOv2 on $noisy -> $RUNS/$TABLE2_NOISE-$EPOCHS"
        train "$RUNS/$TABLE2_NOISE-$EPOCHS" "$EPOCHS" "$CONFIGS/imagenet100_vits16.yaml" "train.dataset_path=$noisy"
        evaluate "$RUNS/$TABLE2_NOISE-$EPOCHS" "$noisy" dinov2 "$TABLE2_NOISE" 0
        denoised_run "$TABLE2_NOISE"
        nc_run "$TABLE2_NOISE" "$SWITCH_EPOCH"
    else
        method_arms "$method" "$TABLE2_NOISE"
    fi
done
say "done: runs in $RUNS, results in $EVALS (tables: python exps/report.py $(printf %q "$EVALS") --out outputs/report)"
