#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA the processes run on CPU over gloo.
#
# Preemption (docs/robustness.md#preemption): SIGTERM, SIGUSR1, SIGINT or SIGHUP sent to this script (or to
# torchrun) reaches every training process through torchrun; training finishes its iteration, writes a checkpoint
# and stops. This script then prints the stop line and exits with status 75; run it again with --resume to
# continue. torchrun gives its workers 30 s after forwarding a signal before it kills them: for checkpoints that
# take longer to write, signal the training processes themselves (SLURM does: it signals every process).
set -uo pipefail  # no -e: torchrun's status is handled below
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=python
[[ -x "$ROOT/.venv/bin/python" ]] && PYTHON="$ROOT/.venv/bin/python"

# torchrun forwards these to its workers instead of dying at once (SIGUSR1 is not in its default list)
export TORCHELASTIC_SIGNALS_TO_HANDLE=${TORCHELASTIC_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1}
# PreemptionHook (rank 0) writes its stop line here: torchrun's own status after a signal is 1
STOPPED=$(mktemp "${TMPDIR:-/tmp}/mmrevcol_stopped.XXXXXX")
export MMREVCOL_PREEMPTED_FILE="$STOPPED"

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}" &
CHILD=$!
for SIG in TERM USR1 INT HUP; do
    trap "kill -$SIG $CHILD 2>/dev/null" "$SIG"
done
wait "$CHILD"
STATUS=$?
while kill -0 "$CHILD" 2>/dev/null; do  # a trapped signal interrupted wait: wait for torchrun to finish
    wait "$CHILD"
    STATUS=$?
done
wait "$CHILD" 2>/dev/null && STATUS=0 || { LAST=$?; [[ $LAST -ne 127 ]] && STATUS=$LAST; }
if [[ -s "$STOPPED" ]]; then
    cat "$STOPPED" >&2
    rm -f "$STOPPED"
    exit 75
fi
rm -f "$STOPPED"
exit "$STATUS"
