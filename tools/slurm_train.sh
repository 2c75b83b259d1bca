#!/usr/bin/env bash
# Slurm training: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# Env: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS, SIGNAL_LEAD (120), AUTO_RESUME (1), REQUEUE (1).
#
# Preemption and time limits (docs/robustness.md#preemption):
# * srun --signal=USR1@$SIGNAL_LEAD: SLURM sends SIGUSR1 to every task SIGNAL_LEAD seconds before the time limit;
#   a preempting scheduler sends SIGTERM (then SIGKILL after the cluster's KillWait / GraceTime). Either way each
#   training process finishes its iteration, rank 0 writes a checkpoint (PreemptionHook) and every task exits with
#   status 75. This script forwards SIGTERM / SIGUSR1 it receives itself (sbatch --signal=B:USR1@...) to srun.
# * --resume is passed (AUTO_RESUME=1): a restarted job continues from the newest complete checkpoint of WORK_DIR;
#   the first start finds none and starts from scratch. A --resume PATH among the train.py args wins.
# * Requeue: submitted as a batch job with --requeue, e.g.
#       sbatch --requeue -p PARTITION -N 1 --gres=gpu:8 --time=24:00:00 tools/slurm_train.sh PARTITION JOB CFG DIR
#   status 75 requeues the job (scontrol requeue, REQUEUE=1), which then resumes by itself. A job preempted by a
#   scheduler with PreemptMode=REQUEUE is requeued by SLURM itself (--requeue or JobRequeue=1).
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
SIGNAL_LEAD=${SIGNAL_LEAD:-120}
RESUME=""
[[ "${AUTO_RESUME:-1}" == 1 ]] && RESUME="--resume"
PY_ARGS=${@:5}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=python
[[ -x "$ROOT/.venv/bin/python" ]] && PYTHON="$ROOT/.venv/bin/python"

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    --gres=gpu:${GPUS_PER_NODE} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    --signal=USR1@${SIGNAL_LEAD} \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$ROOT/tools/train.py" ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" ${RESUME} ${PY_ARGS} &
SRUN=$!
trap "kill -TERM $SRUN 2>/dev/null" TERM
trap "kill -USR1 $SRUN 2>/dev/null" USR1
wait $SRUN
STATUS=$?
while kill -0 $SRUN 2>/dev/null; do  # a trapped signal interrupted wait: wait for srun to finish
    wait $SRUN
    STATUS=$?
done
wait $SRUN 2>/dev/null && STATUS=0 || { LAST=$?; [[ $LAST -ne 127 ]] && STATUS=$LAST; }
if [[ $STATUS -eq 75 && -n "${SLURM_JOB_ID:-}" && "${REQUEUE:-1}" == 1 ]]; then
    echo "preempted: requeueing job $SLURM_JOB_ID (it resumes from the checkpoint just written)" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit $STATUS
