#!/usr/bin/env bash
# Check every CUDA path of the project (mixed precision, fused AdamW, flash attention, torch.compile, DDP over NCCL,
# fp16 N2N denoising) and measure its throughput (the ImageNet-100 DINOv2 step with its FLOP utilisation, N2N
# training and denoising, probe feature extraction), into one JSON file. At most 5 minutes on one H100 / H200.
#
#   bash bench/gpu_check.sh [--cpu-smoke] [--quick] [--output-json PATH] [--only NAME ...]
#
#   --cpu-smoke         the same code paths at toy sizes on the CPU, in well under 90 s on 2 cores (what CI runs)
#   --quick             fewer timed iterations (rougher figures)
#   --output-json PATH  the results, written atomically (default gpu_check.json in the current folder)
#   --only NAME ...     only these entries (python bench/gpu_check.py --help lists them)
#
# bench/gpu_check.py runs the checks and measurements in one process; then torchrun runs the DDP check (one rank per
# GPU, NCCL; 2 gloo ranks on the CPU with --cpu-smoke) and its result is merged into the same JSON.
# Exit status: 0 when every entry is ok, 1 when one failed (the JSON says which and why; the others still ran),
# 2 on bad arguments or without a CUDA device (and without --cpu-smoke).
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CHECK="$REPO/bench/gpu_check.py"

OUTPUT="gpu_check.json"
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help)
            sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
            exit 0 ;;
        --output-json)
            if [ $# -lt 2 ]; then
                echo "gpu_check.sh: --output-json needs a path" >&2
                exit 2
            fi
            OUTPUT="$2"
            shift 2 ;;
        --output-json=*)
            OUTPUT="${1#*=}"
            shift ;;
        *)
            ARGS+=("$1")
            shift ;;
    esac
done

python "$CHECK" --output-json "$OUTPUT" ${ARGS[@]+"${ARGS[@]}"}
status=$?
if [ "$status" -eq 2 ]; then  # bad arguments or no CUDA device: nothing ran
    exit 2
fi

read -r NPROC TIMEOUT_S < <(python "$CHECK" --stage ddp-plan --output-json "$OUTPUT")
if [ "${NPROC:-0}" -eq 0 ]; then  # --only without ddp
    exit "$status"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "[gpu_check] ddp: torchrun --standalone --nproc_per_node=$NPROC ..."
started=$SECONDS
# one CPU thread per rank unless told otherwise: ranks share the cores (torchrun's own default)
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" timeout "$TIMEOUT_S" \
    python -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
    "$CHECK" --stage ddp-worker --ddp-result "$WORK/ddp.json" ${ARGS[@]+"${ARGS[@]}"} >"$WORK/ddp.log" 2>&1
ddp_status=$?
if [ "$ddp_status" -ne 0 ]; then
    echo "[gpu_check] ddp: torchrun exited with status $ddp_status; the end of its log:" >&2
    tail -n 20 "$WORK/ddp.log" >&2
fi
python "$CHECK" --stage merge --output-json "$OUTPUT" --ddp-result "$WORK/ddp.json" \
    --ddp-exit-code "$ddp_status" --ddp-log "$WORK/ddp.log" --ddp-seconds "$((SECONDS - started))"
