# The stages of the paper in miniature on the embedded digits, shared by exps/quickstart.sh (one seed, every
# stage) and exps/miniature.sh (several seeds, the four arms and their probes). Source it, then call the stages.
#
# Settings (set them before calling):
#   DATA_ROOT, DATASET, NOISE, OUT   then set_paths: CLEAN, NOISY, RETRIEVAL, REPORT, N2N_DIR, QUIET and
#                    DENOISED_PREFIX (the denoised tree is DENOISED_PREFIX-<digest of the denoiser's weights>, set
#                    as DENOISED by train_denoiser: it belongs to the denoiser that made it, so runs with other
#                    denoisers never collide and runs with the same one, another OUT or SEED, reuse it)
#   LIMIT            array: make_toy_dataset.py arguments (e.g. (--limit 30)), may be empty
#   WORKERS          processes for noise generation and verification
#   N2N_OPTIONS      array: the denoiser's training options (N2N_FULL or N2N_SMOKE below; ZS_N2N_OPTIONS likewise
#                    for make_denoiser zs_n2n)
#   DINO_CONFIG DINO_ARGS EPOCHS SWITCH_EPOCH EPOCH_ITERS SEED NCT_WEIGHT   the four arms (DINO_ARGS: array)
#   METHOD_CONFIG    optional: a method overlay put after DINO_CONFIG (exps/table2_miniature.sh)
#   PROBE_ARGS                                                             array: extra probe arguments
#   THREADS          every stage's torch threads (set_threads; default: OMP_NUM_THREADS when set, else 2): the
#                    figures move with it (the order of floating-point sums), so it is fixed and recorded
# Every step skips what is done and training resumes, so an interrupted caller continues where it stopped.

PIPELINE_START=$SECONDS
step() { printf '\n== [%d s] %s\n' "$(( SECONDS - PIPELINE_START ))" "$*"; }  # a stage header with elapsed time

# shellcheck source=exps/lib/recipe.sh
source exps/lib/recipe.sh  # run_cmd, parse_recipe_args (--help, --dry-run)

check_noise() {  # check_noise SCRIPT NOISE: an unknown setting exits 2 before any work
    python -c "import sys; from utils.noise import parse_noise; parse_noise(sys.argv[1])" "$2" 2>/dev/null \
        || { echo "$1: unknown noise setting '$2' (e.g. gauss100, shot3, speckle0.7)" >&2; exit 2; }
}

paper_nct_weight() {  # the paper's NCT weight for a setting (utils/paper_facts.py), 1.0 where it ran no NCT
    python -m utils.paper_facts nct-weight "$1"
}

# The denoiser of the miniatures on the digits (Neighbor2Neighbor/train.py options). The full one was chosen with
# bench/n2n_stability.py so that its PSNR moves by at most 0.2 dB with the thread count and the seed: width 32 and 3
# epochs (lr 1e-3 divided by 4 after epochs 1 and 2), regulariser weight rising to 0.5, not the paper's 2 (on the
# digits at sigma = 100 the weight 2 lowers the PSNR epoch after epoch, and more epochs fit the noise of the 4,000
# training images: docs/miniature.md, "Stable stages").
N2N_FULL=(--epochs 3 --batch-size 16 --lr 1e-3 --increase-ratio 0.5 --n-feature 32)
N2N_SMOKE=(--epochs 1 --batch-size 8 --lr 1e-3)
# The second self-supervised denoiser (train.py --objective zs_n2n): Zero-Shot Noise2Noise's network, loss and lr,
# fitted once on the training crops for the full N2N's number of epochs (per image it would cost 2,500 times more:
# bench/zs_n2n_per_image.py).
ZS_N2N_FULL=(--objective zs_n2n --epochs 3 --batch-size 16 --lr 1e-3)
ZS_N2N_SMOKE=(--objective zs_n2n --epochs 1 --batch-size 8 --lr 1e-3)
DENOISER_KINDS=(n2n zs_n2n blur none)

MINIATURE_FULL_CONFIG="dinov2/configs/train/tiny_cpu.yaml"    # 10 epochs of 40 iterations per arm
MINIATURE_SMOKE_CONFIG="dinov2/configs/train/smoke_miniature.yaml"  # 4 epochs of 2 iterations per arm

read_recipe_length() {  # read_recipe_length SCRIPT CONFIG [override ...]: EPOCHS and EPOCH_ITERS of the recipe, and
    # SWITCH_EPOCH, where NC / NCT branch off the denoised arm: the paper's 140 of 200 epochs (utils/paper_facts.py)
    local script="$1" values; shift
    values="$(python -c "import sys
from dinov2.utils.config import load_config
from utils.paper_facts import IMAGENET100
cfg = load_config(sys.argv[1], sys.argv[2:])
switch = cfg.optim.epochs * IMAGENET100.switch_epoch // IMAGENET100.epochs
print(cfg.optim.epochs, cfg.train.OFFICIAL_EPOCH_LENGTH, switch)
" "$@")" || { echo "$script: cannot read the recipe $1" >&2; exit 2; }
    read -r EPOCHS EPOCH_ITERS SWITCH_EPOCH <<< "$values"
}

miniature_profile() {  # miniature_profile SCRIPT VARIABLE VALUE [CONFIG]: the quick start's sizes for VALUE (full |
    # smoke): DATASET LIMIT N2N_OPTIONS ZS_N2N_OPTIONS DINO_CONFIG (CONFIG when given, else the profile's recipe)
    # DINO_ARGS PROBE_ARGS, and the recipe's EPOCHS EPOCH_ITERS SWITCH_EPOCH (read_recipe_length)
    case "$3" in
      full)   # 4,000 / 1,000 digits; NC / NCT branch at epoch 7 of 10
        DATASET="mnist5k"; LIMIT=(); N2N_OPTIONS=("${N2N_FULL[@]}"); ZS_N2N_OPTIONS=("${ZS_N2N_FULL[@]}")
        DINO_CONFIG="$MINIATURE_FULL_CONFIG"; PROBE_ARGS=(--epochs 10) ;;
      smoke)  # 300 digits; NC / NCT branch at epoch 2 of 4; the test suite runs this end to end
        DATASET="mnist300"; LIMIT=(--limit 30); N2N_OPTIONS=("${N2N_SMOKE[@]}")
        ZS_N2N_OPTIONS=("${ZS_N2N_SMOKE[@]}"); DINO_CONFIG="$MINIATURE_SMOKE_CONFIG"
        PROBE_ARGS=(--epochs 2 --learning-rates 1e-3 1e-2) ;;
      *) echo "$1: $2 must be full or smoke, got '$3'" >&2; exit 2 ;;
    esac
    DINO_CONFIG="${4:-$DINO_CONFIG}"
    DINO_ARGS=()
    read_recipe_length "$1" "$DINO_CONFIG"
}

set_threads() {  # set_threads SCRIPT: THREADS (default: OMP_NUM_THREADS when set, else 2) for every stage
    THREADS="${THREADS:-${OMP_NUM_THREADS:-2}}"
    case "$THREADS" in
        ''|*[!0-9]*|0*) echo "$1: THREADS must be a positive whole number, got '$THREADS'" >&2; exit 2 ;;
    esac
    export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
}

record_setting() {  # record_setting DIR: the thread count, torch version and CPU model in DIR/environment.json
    run_cmd python -m utils.environment --out "$1/environment.json"
}

set_paths() {  # the paths of the stages, from DATA_ROOT, DATASET, NOISE and OUT
    CLEAN="$DATA_ROOT/$DATASET"
    NOISY="$DATA_ROOT/noisy_$DATASET-$NOISE"
    DENOISED_PREFIX="$NOISY-denoised"  # + the denoiser's digest: the tree belongs to the denoiser that made it
    RETRIEVAL="$DATA_ROOT/retrieval"
    REPORT="$OUT/report"
    N2N_DIR="$OUT/n2n"
    QUIET=(--quiet)
    if [ "$DRY_RUN" = 0 ]; then
        mkdir -p "$OUT" "$REPORT"
    fi
}

shared() {  # shared COMMAND...: a step writing into DATA_ROOT, which runs with another OUT share: one at a time,
    # the others wait their turn and then find it done (utils/wait_turn.py)
    run_cmd python -m utils.wait_turn "$DATA_ROOT/.lock-shared-stages" -- "$@"
}

prepare_data() {  # the embedded digits, the toy retrieval set, the noisy copy (indexed, verified, paired), the grid
    shared python utils/make_toy_dataset.py --output-dir "$CLEAN" ${LIMIT[@]+"${LIMIT[@]}"}
    shared python process_metadata.py "$CLEAN"
    shared python utils/make_toy_retrieval.py --output-dir "$RETRIEVAL"
    shared python utils/generate_noise.py --src "$CLEAN" --noise "$NOISE" --num-workers "$WORKERS"
    shared python process_metadata.py "$NOISY" --verify --num-workers "$WORKERS" --pair "$CLEAN" "$NOISY"
    run_cmd python utils/plot_noise_grid.py --src "$CLEAN" --noise all --images 4 --out "$REPORT/noise_grid.png"
}

train_denoiser() {  # Neighbor2Neighbor (N2N_OPTIONS) in N2N_DIR; sets DENOISED; examples in REPORT
    make_denoiser n2n "$N2N_DIR" "$REPORT/denoising_examples.png"
}

make_denoiser() {  # make_denoiser KIND DIR EXAMPLES_PNG: a denoiser from the noisy train images only, in DIR; sets
    # DENOISED (the noisy tree denoised), writes DIR/psnr.json (on val) and the examples. KIND (DENOISER_KINDS):
    # n2n (N2N_OPTIONS), zs_n2n (ZS_N2N_OPTIONS), blur (Gaussian, sigma chosen on the noisy images) or none (the
    # noisy tree itself)
    local kind="$1" dir="$2" examples="$3"
    case "$kind" in
        n2n|zs_n2n)
            local options=("${N2N_OPTIONS[@]}")
            if [ "$kind" = zs_n2n ]; then options=("${ZS_N2N_OPTIONS[@]}"); fi
            run_cmd python Neighbor2Neighbor/train.py --data-dir "$NOISY/train" --output-dir "$dir" \
                "${options[@]}" --patch-size 32 --num-workers 0 --quiet ;;
        blur) run_cmd python -m Neighbor2Neighbor.gaussian_blur --data-dir "$NOISY/train" --output-dir "$dir" --quiet ;;
        none) DENOISED="$NOISY" ;;
        *) echo "unknown denoiser '$kind' (expected one of ${DENOISER_KINDS[*]})" >&2; exit 2 ;;
    esac
    if [ "$kind" != none ]; then
        local digest="DIGEST"  # of the weights a --dry-run has not made
        if [ "$DRY_RUN" = 0 ]; then
            digest="$(python -m Neighbor2Neighbor.weights "$dir/last.pt")"
        fi
        DENOISED="$DENOISED_PREFIX-${digest:0:16}"
        shared python Neighbor2Neighbor/denoise.py --weights "$dir/last.pt" --src "$NOISY" \
            --output-dir "$DENOISED" --num-workers 0 --quiet
        shared python process_metadata.py "$DENOISED" --pair "$NOISY" "$DENOISED"
    fi
    run_cmd python Neighbor2Neighbor/evaluate_psnr.py --clean "$CLEAN/val" --noisy "$NOISY/val" \
        --denoised "$DENOISED/val" --out "$dir/psnr.json" --quiet
    run_cmd python Neighbor2Neighbor/plot_examples.py --clean "$CLEAN" --noisy "$NOISY" --denoised "$DENOISED" \
        --images 8 --out "$examples"
}

train_arm() {  # train_arm RUN_DIR DATASET [--branch nc|nct] [override ...]; METHOD_CONFIG: an overlay, if set
    local run_dir="$1" dataset="$2" configs=(--config-file "$DINO_CONFIG"); shift 2
    if [ -n "${METHOD_CONFIG:-}" ]; then
        configs+=(--config-file "$METHOD_CONFIG")
    fi
    if [ "${1:-}" = --branch ]; then  # the recipe's size and data settings, then the branch recipe over them
        configs+=(--config-file "dinov2/configs/train/branch_$2.yaml"); shift 2
    fi
    run_cmd python -m dinov2.train "${configs[@]}" --output-dir "$run_dir" "train.dataset_path=$dataset" \
        "optim.epochs=$EPOCHS" "train.seed=$SEED" ${DINO_ARGS[@]+"${DINO_ARGS[@]}"} "$@"
}

branch_arm() {  # branch_arm RUNS nc|nct [SOURCE]: EPOCHS - SWITCH_EPOCH noisy epochs from SOURCE@SWITCH_EPOCH
    local runs="$1" kind="$2" source="${3:-$1/dinov2_denoised}" extra=()  # (SOURCE: RUNS/dinov2_denoised)
    if [ "$kind" = nct ]; then
        extra=("nct.weight=$NCT_WEIGHT" "nct.denoised_dataset_path=$DENOISED")
    fi
    train_arm "$runs/$kind" "$NOISY" --branch "$kind" "optim.epochs=$(( EPOCHS - SWITCH_EPOCH ))" \
        "curriculum.branch_from=$source@$SWITCH_EPOCH" "evaluation.eval_period_iterations=$EPOCH_ITERS" \
        ${extra[@]+"${extra[@]}"}
}

train_arms() {  # train_arms RUNS: the four arms of one seed under RUNS
    local runs="$1"
    train_arm "$runs/dinov2_noisy" "$NOISY"
    train_arm "$runs/dinov2_denoised" "$DENOISED"
    branch_arm "$runs" nc
    branch_arm "$runs" nct
}

probe() {  # probe RUN_DIR DATA METHOD EPOCH_OFFSET EVALS [all|final]: linear probe + k-NN of the run's exports
    local which=(--run-dir "$1")
    if [ "${6:-all}" = final ]; then
        which=(--pretrained-weights "$1")  # a run directory: its newest encoder export
    fi
    run_cmd python -m dinov2.eval.linear "${which[@]}" --train-dataset "$2/train" --val-dataset "$2/val" \
        --output-dir "$5/$(basename "$1")" --crop-size 32 --method "$3" --noise-label "$NOISE" \
        --epoch-offset "$4" --num-workers 0 ${PROBE_ARGS[@]+"${PROBE_ARGS[@]}"} ${QUIET[@]+"${QUIET[@]}"}
}

probe_arms() {  # probe_arms RUNS EVALS [all|final]: noisy val; denoised val for the N2N arm, as in the paper
    local runs="$1" evals="$2" which="${3:-all}"
    probe "$runs/dinov2_noisy" "$NOISY" dinov2 0 "$evals" "$which"
    probe "$runs/dinov2_denoised" "$DENOISED" n2n_dinov2 0 "$evals" "$which"
    probe "$runs/nc" "$NOISY" nc "$SWITCH_EPOCH" "$evals" "$which"
    probe "$runs/nct" "$NOISY" nct "$SWITCH_EPOCH" "$evals" "$which"
}

robust() {  # robust RUN_DIR METHOD OUTPUT_DIR: robustness of the run's final export (dinov2/eval/robustness.py): one
    # head on the noisy train features, scored on clean val and the nine settings noised on the fly, no denoiser
    run_cmd python -m dinov2.eval.robustness --pretrained-weights "$1" --train-dataset "$NOISY/train" \
        --clean-val "$CLEAN/val" --noises all --output-dir "$3" --crop-size 32 --method "$2" --noise-label "$NOISE" \
        --num-workers 0 ${QUIET[@]+"${QUIET[@]}"}
}
