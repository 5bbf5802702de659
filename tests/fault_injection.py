"""Runs pre_train_t5.py or fine_tune_t5.py with one deterministic fault (test-only; the scripts never import this).

    python tests/fault_injection.py FAULT SCRIPT.py ARGS...

FAULT is `none` or KIND:N with KIND one of
    kill_micro       SIGKILL right after the N-th training micro-batch (forward and backward) of this process
    kill_after_save  SIGKILL right after checkpoint-N is complete
    kill_in_save     SIGKILL while checkpoint-N is being written (model and optimizer written, RNG state not)
    enospc_in_save   "No space left on device" while checkpoint-N is being written
    sigterm_micro    SIGTERM to itself right after the N-th micro-batch (as SLURM does before a time limit)
    nan_micro        the N-th micro-batch's loss is NaN
Every logged row, and every collated training batch, is appended to <output_dir>/fault_log.jsonl as it happens, so a
killed run leaves its trace.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path

import torch

import data_collators
from t5kit import training
from t5kit.training import T5Trainer


def main() -> None:
    fault, script, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    kind, _, at = fault.partition(":")
    at = int(at or 0)
    torch.set_num_threads(1)
    log = Path(_flag_value(argv, "--output_dir")) / "fault_log.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)

    def record(row: dict) -> None:
        with log.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    record({"run": fault})
    micro = {"count": 0}
    original_step, original_loss = T5Trainer.training_step, T5Trainer.compute_loss
    original_save, original_rng, original_log = T5Trainer._save_checkpoint, T5Trainer._save_rng_state, T5Trainer.log

    def training_step(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        micro["count"] += 1
        if micro["count"] == at and kind == "kill_micro":
            os.kill(os.getpid(), signal.SIGKILL)
        if micro["count"] == at and kind == "sigterm_micro":
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        result = original_loss(self, model, inputs, *args, **kwargs)
        if kind == "nan_micro" and model.training and micro["count"] + 1 == at:
            if isinstance(result, tuple):
                return (result[0] * float("nan"), *result[1:])
            return result * float("nan")
        return result

    def save_checkpoint(self, model, trial):
        original_save(self, model, trial)
        if kind == "kill_after_save" and self.state.global_step == at:
            os.kill(os.getpid(), signal.SIGKILL)

    def save_rng_state(self, output_dir):
        if self.state.global_step == at and kind == "kill_in_save":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.state.global_step == at and kind == "enospc_in_save":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output_dir))
        original_rng(self, output_dir)

    def log_row(self, logs, *args, **kwargs):
        original_log(self, logs, *args, **kwargs)
        record({"step": self.state.global_step, **{k: v for k, v in logs.items() if k in ("loss", "eval_loss")}})

    T5Trainer.training_step, T5Trainer.compute_loss = training_step, compute_loss
    T5Trainer._save_checkpoint, T5Trainer._save_rng_state, T5Trainer.log = save_checkpoint, save_rng_state, log_row
    for collator in (data_collators.T5DataCollator, data_collators.Seq2SeqCollator):
        collator.__call__ = _recording(collator.__call__, record)

    sys.argv = [script, *argv]
    module = __import__(Path(script).stem)
    training.run_main(module.main, argv)


def _flag_value(argv: list[str], flag: str) -> str:
    """The value of `--flag VALUE` or `--flag=VALUE` (the sweep runner's form)."""
    for i, item in enumerate(argv):
        if item == flag:
            return argv[i + 1]
        if item.startswith(flag + "="):
            return item[len(flag) + 1 :]
    raise SystemExit(f"fault_injection: {flag} is missing")


def _recording(call, record):
    def wrapped(self, examples, *args, **kwargs):
        record({"collated": len(examples)})
        return call(self, examples, *args, **kwargs)

    return wrapped


if __name__ == "__main__":
    main()
