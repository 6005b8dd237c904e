# shellcheck shell=bash
# Sourced by the exps/slurm/*.sbatch templates: TORCHRUN, the command that starts one torchrun per node of the
# job (srun, one task per node), each with GPUS_PER_NODE ranks, meeting at a c10d rendezvous on the first node.
# The same word list serves one node (4 GPUs, the paper's ImageNet-1k recipe) and N nodes x G GPUs.
#   GPUS_PER_NODE  ranks per node (default: SLURM_GPUS_ON_NODE, else 1)
#   RDZV_PORT      rendezvous port on the first node (default 29500)
# TORCHRUN_WORDS is TORCHRUN as one string, for the shell recipes' LAUNCHER variables (split on spaces).
# Every srun of a template gets the job's --cpus-per-task: since Slurm 22.05 srun no longer inherits it, and a
# step without it runs its ranks and their data loaders on one CPU.

if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"
fi

NODES="${SLURM_NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}"
RDZV_HOST="$(scontrol show hostnames "${SLURM_JOB_NODELIST:-localhost}" | head -n 1)"
RDZV_PORT="${RDZV_PORT:-29500}"
TORCHRUN=(
    srun --nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1
    torchrun --nnodes="$NODES" --nproc_per_node="$GPUS_PER_NODE" --rdzv_backend=c10d
    --rdzv_endpoint="$RDZV_HOST:$RDZV_PORT" --rdzv_id="${SLURM_JOB_ID:-local}"
)
TORCHRUN_WORDS="${TORCHRUN[*]}"
