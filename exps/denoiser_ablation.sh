#!/usr/bin/env bash
# How good must the denoiser be? The curriculum (NC) and its denoised teacher (NCT) on the embedded digits with
# each denoiser of DENOISERS, the denoised tree's PSNR against the gain over DINOv2 on the noisy images.
#
#   bash exps/denoiser_ablation.sh [NOISE] [--dry-run]   # NOISE defaults to gauss100
#   ABLATION_PROFILE=smoke bash exps/denoiser_ablation.sh   # 300 digits, a few steps per stage (the tests run it)
#
# Denoisers (DENOISERS, default "n2n zs_n2n blur none"), each made from the noisy train images only:
#   n2n      Neighbor2Neighbor, the quick start's U-Net and options
#   zs_n2n   Zero-Shot Noise2Noise's network and loss, fitted once on the training crops (Neighbor2Neighbor/zs_n2n.py)
#   blur     a Gaussian blur whose sigma minimises the J-invariant self-supervised loss on 64 noisy training images
#            (Noise2Self through scikit-image; Neighbor2Neighbor/gaussian_blur.py): no clean image is used
#   none     no denoiser: the "denoised" tree is the noisy one (NC is then a restart of the schedules, NCT a frozen
#            noisy teacher): the control
# Per seed s (SEEDS, default "0": train.seed of every arm) the quick start's recipe (dinov2/configs/train/tiny_cpu.yaml,
# 10 epochs, NC / NCT branch at epoch 7):
#   OUT/seed_s/dinov2_noisy                          DINOv2 on the noisy images, the baseline
#   OUT/seed_s/<denoiser>/{dinov2_denoised,nc,nct}   per denoiser (none: NC / NCT branch off dinov2_noisy)
#   OUT/seed_s/eval/...                              linear probe + k-NN of each final export (noisy val; the
#                                                    denoised val for dinov2_denoised, the denoiser kept)
# With ROBUSTNESS=1 every arm's final export is also scored on clean val and the nine noise settings
# (dinov2/eval/robustness.py, about 50 s per arm on the full profile at 1 thread), in OUT/seed_s/eval/.../robustness.
# The denoisers and their PSNR: OUT/denoisers/<denoiser>/ (psnr.json, examples.png). The table and figure:
# OUT/report/denoiser_ablation.{md,csv,json,png} (exps/denoiser_ablation_table.py), gains paired by seed, with 95 %
# intervals over the seeds. Every step skips what is done and training resumes, so a rerun continues. Variables
# (environment): DATA_ROOT, OUT, SEEDS, DENOISERS, ROBUSTNESS, WORKERS, NCT_WEIGHT, THREADS (see
# exps/quickstart.sh), ABLATION_PROFILE.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/miniature_pipeline.sh
source exps/lib/miniature_pipeline.sh

parse_recipe_args "$0" 1 "$@"
NOISE="${RECIPE_ARGS[0]:-gauss100}"
check_noise denoiser_ablation.sh "$NOISE"
set_threads denoiser_ablation.sh
PROFILE="${ABLATION_PROFILE:-full}"
DATA_ROOT="${DATA_ROOT:-data}"
OUT="${OUT:-outputs/denoiser_ablation}"
WORKERS="${WORKERS:-2}"
SEEDS="${SEEDS:-0}"
ROBUSTNESS="${ROBUSTNESS:-0}"
read -r -a DENOISERS <<< "${DENOISERS:-${DENOISER_KINDS[*]}}"
for kind in "${DENOISERS[@]}"; do
    case " ${DENOISER_KINDS[*]} " in
        *" $kind "*) ;;
        *) echo "denoiser_ablation.sh: unknown denoiser '$kind' in DENOISERS (expected some of" \
               "${DENOISER_KINDS[*]})" >&2; exit 2 ;;
    esac
done
miniature_profile denoiser_ablation.sh ABLATION_PROFILE "$PROFILE"
NCT_WEIGHT="${NCT_WEIGHT:-$(paper_nct_weight "$NOISE")}"

set_paths
record_setting "$OUT"
step "data: $CLEAN and its noisy copy $NOISY"
prepare_data

declare -A TREE  # each denoiser's denoised tree
for kind in "${DENOISERS[@]}"; do
    step "denoiser $kind: made from the noisy train images, then the denoised tree and its PSNR"
    make_denoiser "$kind" "$OUT/denoisers/$kind" "$OUT/denoisers/$kind/examples.png"
    TREE[$kind]="$DENOISED"
done

scored() {  # scored RUN_DIR METHOD EVALS: the robustness of the run's export, with ROBUSTNESS=1
    if [ "$ROBUSTNESS" = 1 ]; then robust "$1" "$2" "$3/$(basename "$1")/robustness"; fi
}

for SEED in $SEEDS; do
    runs="$OUT/seed_$SEED"
    step "seed $SEED: DINOv2 on the noisy images ($EPOCHS epochs), the baseline"
    train_arm "$runs/dinov2_noisy" "$NOISY"
    probe "$runs/dinov2_noisy" "$NOISY" dinov2 0 "$runs/eval" final
    scored "$runs/dinov2_noisy" dinov2 "$runs/eval"
    for kind in "${DENOISERS[@]}"; do
        DENOISED="${TREE[$kind]}"
        source_run="$runs/$kind/dinov2_denoised"
        step "seed $SEED, denoiser $kind: NC and NCT (denoised epochs 0-$SWITCH_EPOCH, then noisy)"
        if [ "$kind" = none ]; then
            source_run="$runs/dinov2_noisy"  # DINOv2 on the "denoised" (noisy) tree is the baseline itself
        else
            train_arm "$source_run" "$DENOISED"
            probe "$source_run" "$DENOISED" n2n_dinov2 0 "$runs/eval/$kind" final
            scored "$source_run" n2n_dinov2 "$runs/eval/$kind"
        fi
        branch_arm "$runs/$kind" nc "$source_run"
        branch_arm "$runs/$kind" nct "$source_run"
        probe "$runs/$kind/nc" "$NOISY" nc "$SWITCH_EPOCH" "$runs/eval/$kind" final
        probe "$runs/$kind/nct" "$NOISY" nct "$SWITCH_EPOCH" "$runs/eval/$kind" final
        scored "$runs/$kind/nc" nc "$runs/eval/$kind"
        scored "$runs/$kind/nct" nct "$runs/eval/$kind"
    done
done

step "the table and figure: denoised PSNR against the gain over DINOv2"
run_cmd python exps/denoiser_ablation_table.py "$OUT" --denoisers "${DENOISERS[@]}"
if [ "$DRY_RUN" = 0 ]; then
    cat "$REPORT/denoiser_ablation.md"
fi
step "done in $(( SECONDS - PIPELINE_START )) s: $REPORT/denoiser_ablation.md"
