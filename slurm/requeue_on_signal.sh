#!/usr/bin/env bash
# Sourced by the sbatch templates. SLURM sends USR1 (see `#SBATCH --signal=B:USR1@300`) before the time limit or a
# pre-emption; we pass it on to the training processes, wait for them to finish, and requeue the job, which resumes
# with --resume_from_checkpoint latest. Until the scripts checkpoint on the signal themselves (issue #7), the job
# resumes from the last checkpoint they saved (every --save_steps).
run_with_requeue() {
    "$@" &
    local child=$!
    trap 'echo "signal received: forwarding to $child and requeueing $SLURM_JOB_ID"; kill -USR1 "$child" 2>/dev/null; wait "$child" || true; scontrol requeue "$SLURM_JOB_ID"; exit 0' USR1 TERM
    wait "$child"
}
