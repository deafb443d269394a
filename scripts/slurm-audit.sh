#!/bin/bash
# One shard of a fairlm audit per Slurm array task; merge them when all are done:
#   jobid=$(sbatch --parsable --export=ALL,MODEL=smollm2 scripts/slurm-audit.sh)
#   sbatch --dependency=afterok:$jobid --wrap "fairlm merge audit/shard-* --out audit/merged"
# MODEL may be a path, `smollm2`, or a served model's URL (then also set TOKENIZER).
#SBATCH --array=1-3
#SBATCH --cpus-per-task=8
#SBATCH --job-name=fairlm-audit
set -euo pipefail
: "${MODEL:?set MODEL (a model path, smollm2, or http://HOST:PORT/v1)}"
served=()
if [[ "$MODEL" == http* ]]; then
    served=(--tokenizer "${TOKENIZER:?a served MODEL needs TOKENIZER}")
fi
# --resume: a requeued (preempted) task continues from its checkpoint.
fairlm audit --model "$MODEL" "${served[@]}" --seed "${SEED:-0}" \
    --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" \
    --out "audit/shard-${SLURM_ARRAY_TASK_ID}" --resume
