#!/usr/bin/env bash
# Sourced by the sbatch templates. SLURM sends USR1 (see `#SBATCH --signal=B:USR1@300`) to this batch shell before
# the time limit or a pre-emption. We pass it on to every process of the training command (the launcher and its
# workers run in their own process group); they save a checkpoint at the next optimizer step and exit with 75
# (EXIT_PREEMPTED in t5kit/fault_tolerance.py). We wait until all of them have exited, so the checkpoint is complete,
# then requeue the job, which resumes with --resume_from_checkpoint latest.
# Requeued: exit status 75 (also when SLURM signalled the training processes directly), or any exit after this shell
# was signalled (launchers such as torchrun report a worker's 75 as 1). Any other status ends the job with it.
EXIT_PREEMPTED=75

run_with_requeue() {
    local signalled=0 rc=0 child
    setsid "$@" &
    child=$!
    trap 'signalled=1; echo "signal received: forwarding USR1 to the training processes (group $child)"
          kill -USR1 -- "-$child" 2>/dev/null || true' USR1 TERM
    wait "$child" || rc=$?
    while kill -0 "$child" 2>/dev/null; do  # a trapped signal interrupts `wait`: wait again
        rc=0
        wait "$child" || rc=$?
    done
    while kill -0 -- "-$child" 2>/dev/null; do sleep 1; done  # workers that outlive their launcher
    trap - USR1 TERM
    if [ "$rc" -eq "$EXIT_PREEMPTED" ] || [ "$signalled" -eq 1 ]; then
        echo "training exited $rc after a checkpoint: requeueing $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    return "$rc"
}
