"""Exit statuses of the scripts, the sweep runner and the suite (SLURM requeue scripts test for EXIT_PREEMPTED)."""

EXIT_USAGE = 2  # a user mistake, reported in one line before any work (argparse's convention)
EXIT_NONFINITE = 3  # the loss or gradients turned NaN/inf; the run stopped before applying them
EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: a checkpoint was saved on SIGTERM/SIGUSR1; requeue and resume
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
