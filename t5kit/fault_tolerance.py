"""Fault tolerance for both scripts: atomic checkpoints, pre-emption signals, non-finite losses, resumable data order.

- Atomic checkpoints: a checkpoint is written to `tmp-checkpoint-N/`, flushed to disk, and renamed to
  `checkpoint-N/` only when complete. A kill during a save leaves the previous checkpoint; `latest` only ever sees
  complete ones, and stale `tmp-*` folders are removed at the next start. Rotation (`--save_total_limit`) runs
  after the rename and always keeps the newest complete checkpoint.
- Pre-emption: SIGTERM or SIGUSR1 (what SLURM sends before a time limit or pre-emption) makes the run save a
  checkpoint at the next optimizer-step boundary and exit with EXIT_PREEMPTED (75, EX_TEMPFAIL: "try again"),
  which slurm/requeue_on_signal.sh answers with `scontrol requeue`.
- Non-finite losses: a NaN/inf loss or gradient stops the run (EXIT_NONFINITE) before the optimizer applies it, so
  no checkpoint holds the damage; `--skip_nonfinite_steps N` skips up to N such optimizer updates instead.
- Exact resume: data order and span-corruption masks are functions of (seed, epoch, position), so resumed epochs
  see the same batches; skipped batches are skipped at the batch-sampler level (never fetched or collated).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import threading
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

from t5kit.args import UsageError
from t5kit.exit_codes import EXIT_PREEMPTED

logger = logging.getLogger("t5kit")

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STAGING_PREFIX = "tmp-"  # tmp-checkpoint-N: a checkpoint being written (never resumed from)
TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class Preempted(Exception):
    """Raised after the pre-emption checkpoint is saved; scripts exit with EXIT_PREEMPTED."""


class NonFiniteLoss(Exception):
    """The loss or gradients became NaN/inf; scripts print the message and exit with EXIT_NONFINITE."""


class CheckpointSaveError(UsageError):
    """Saving a checkpoint failed (disk full, permissions); the previous checkpoint is intact."""


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def complete_checkpoints(folder: Path) -> list[Path]:
    """`checkpoint-N` folders that hold a trainer state (written last), oldest step first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found) if (path / TRAINER_STATE).is_file()]


WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")


def checkpoint_damage(checkpoint: Path) -> str | None:
    """Why a complete-looking checkpoint cannot be resumed from (its weights file missing or cut short), or None.
    A safetensors file is checked against its own header: 8 bytes of header length, the JSON header, then the data
    up to the largest offset it lists. Sharded and DeepSpeed checkpoints are not checked here."""
    if (checkpoint / "model.safetensors.index.json").is_file() or any(checkpoint.glob("global_step*")):
        return None
    weights = [checkpoint / name for name in WEIGHT_FILES if (checkpoint / name).is_file()]
    if not weights:
        return f"no weights file ({' or '.join(WEIGHT_FILES)})"
    for path in weights:
        size = path.stat().st_size
        try:
            with path.open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                if length <= 0 or 8 + length > size:
                    return f"{path.name} is cut short ({size} bytes, header of {length})"
                header = json.loads(handle.read(length))
        except (OSError, ValueError) as err:
            return f"{path.name} is unreadable ({err})"
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + length + end > size:
            return f"{path.name} is cut short ({size} of {8 + length + end} bytes)"
    return None


def remove_incomplete_checkpoints(folder: Path) -> None:
    """Deletes `tmp-checkpoint-*` folders left by a save that was killed. A re-save of a step killed between its
    two renames (`_move_into_place`) left no `checkpoint-N` but the old copy aside and perhaps the complete new one:
    the new one goes into place if it is complete, else the old one goes back."""
    if not folder.is_dir():
        return
    aside = f"{STAGING_PREFIX}old-"
    for old in folder.glob(f"{aside}{PREFIX_CHECKPOINT_DIR}-*"):
        final = folder / old.name[len(aside) :]
        staging = folder / f"{STAGING_PREFIX}{final.name}"
        if not final.exists():
            source = staging if (staging / TRAINER_STATE).is_file() else old
            logger.warning("%s: a re-save of this step was interrupted; restored from %s", final, source.name)
            os.replace(source, final)
        shutil.rmtree(old, ignore_errors=True)
    for path in folder.glob(f"{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-*"):
        logger.warning("removing %s: an interrupted checkpoint save", path)
        shutil.rmtree(path, ignore_errors=True)


SHAPE_KEYS = (
    "vocab_size",
    "d_model",
    "d_ff",
    "d_kv",
    "num_heads",
    "num_layers",
    "num_decoder_layers",
    "feed_forward_proj",
)


def check_checkpoint_shape(model, checkpoint: str) -> None:
    """A UsageError (not a size-mismatch traceback) when the checkpoint holds a model of another shape."""
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    differ = [
        f"{key} {saved[key]} vs {getattr(model.config, key, None)}"
        for key in SHAPE_KEYS
        if key in saved and saved[key] != getattr(model.config, key, None)
    ]
    if differ:
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint}: {path} is a model of another shape ({', '.join(differ)}: "
            "checkpoint vs this run); resume with the model flags it was trained with, or use another --output_dir"
        )


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(trainer, trial=None) -> Path:
    """Trainer._save_checkpoint (transformers 5), written to a staging folder and renamed into place when complete."""
    args, state = trainer.args, trainer.state
    run_dir = Path(trainer._get_output_dir(trial=trial))
    final = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
    staging = run_dir / f"{STAGING_PREFIX}{final.name}"
    if trainer.hp_search_backend is None and trial is None:
        trainer.store_flos()
    try:
        if args.should_save and staging.exists():
            shutil.rmtree(staging)
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(staging), _internal_call=True)
        if args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST) and state.best_global_step:
            best = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}"
            if best.exists() or best == final:
                state.best_model_checkpoint = str(best)
        if not args.save_only_model:
            trainer._save_optimizer_and_scheduler(str(staging))
            trainer._save_scaler(str(staging))
            trainer._save_rng_state(str(staging))
        if args.should_save:
            for callback in trainer.callback_handler.callbacks + [trainer.control]:
                if isinstance(callback, ExportableState):
                    name, value = callback.__class__.__name__, callback.state()
                    if isinstance(state.stateful_callbacks[name], list):
                        state.stateful_callbacks[name].append(value)
                    else:
                        state.stateful_callbacks[name] = value
            state.save_to_json(str(staging / TRAINER_STATE))
            _fsync_tree(staging)
        trainer.accelerator.wait_for_everyone()
        if args.should_save:
            _move_into_place(staging, final)
            # By step, as `latest` picks: checkpoints past the step a run resumed from were removed at its start
            # (t5kit.training.announce_resume), so the highest steps are always this run's newest.
            rotate_checkpoints(str(run_dir), args.save_total_limit, state.best_model_checkpoint, use_mtime=False)
    except OSError as err:
        if args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        previous = complete_checkpoints(run_dir)
        kept = f"the previous checkpoint {previous[-1].name} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointSaveError(
            f"saving {final.name} to {run_dir} failed at step {state.global_step}: {err.strerror or err} "
            f"(--output_dir); {kept}. Free space and rerun with --resume_from_checkpoint latest"
        ) from None
    trainer.accelerator.wait_for_everyone()
    if args.push_to_hub:
        trainer._push_from_checkpoint(str(final))
    return final


def _move_into_place(staging: Path, final: Path) -> None:
    """Renames staging -> final; a re-save of the same step first moves the old copy aside."""
    old = None
    if final.exists():
        old = final.with_name(f"{STAGING_PREFIX}old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself
    finally:
        os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Signals and non-finite steps

_received: list[str] = []  # names of pre-emption signals received by this process


def _note_signal(signum, frame) -> None:
    name = signal.Signals(signum).name
    if not _received:
        logger.warning("%s received: saving a checkpoint at the next step, then exiting %d", name, EXIT_PREEMPTED)
    _received.append(name)


@contextlib.contextmanager
def preemption_signals():
    """While training, SIGTERM/SIGUSR1 only set a flag (the trainer saves and exits at the next optimizer step);
    the previous handlers come back afterwards, so in-process callers keep their own."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {sig: signal.signal(sig, _note_signal) for sig in PREEMPTION_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _any_process(trainer, flags: list[bool]) -> list[bool]:
    """Element-wise OR over processes, so every process stops, skips or saves at the same step."""
    if trainer.args.world_size <= 1 or not torch.distributed.is_initialized():
        return flags
    values = torch.tensor([float(f) for f in flags], device=trainer.args.device)
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


class FaultToleranceCallback(TrainerCallback):
    """Checks each optimizer step for a pre-emption signal and for non-finite losses or gradients."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.preempt = False
        self.nonfinite_steps_skipped = 0
        self._nonfinite = None  # device bool tensor: a non-finite loss in this step's micro-batches
        self.epoch_shift: tuple[int, float] | None = None  # (epoch, fraction) a resumed stream skipped at its source

    def observe_loss(self, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        nonfinite = bool(self._nonfinite) if self._nonfinite is not None else False
        self._nonfinite = None
        grads = [p.grad for p in model.parameters() if p.grad is not None] if model is not None else []
        if grads and not nonfinite:
            nonfinite = not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())
        nonfinite, self.preempt = _any_process(self.trainer, [nonfinite, bool(_received)])
        if not nonfinite:
            return
        step = state.global_step + 1
        if self.nonfinite_steps_skipped >= args.skip_nonfinite_steps:
            skipped = f" ({self.nonfinite_steps_skipped} skipped before)" if self.nonfinite_steps_skipped else ""
            # DeepSpeed's engine has already stepped inside backward(); elsewhere the update is not applied.
            unapplied = "" if self.trainer.is_deepspeed_enabled else "this update was not applied and "
            raise NonFiniteLoss(
                f"the loss or gradients became NaN/inf at step {step}{skipped}; {unapplied}"
                f"no checkpoint holds it. Hints: use --bf16 (never fp16), lower --learning_rate or add "
                f"--warmup_steps, keep --max_grad_norm on; --skip_nonfinite_steps N tolerates N such steps"
            )
        self.nonfinite_steps_skipped += 1
        logger.warning(
            "step %d: non-finite loss or gradients, update skipped (%d of --skip_nonfinite_steps %d)",
            step, self.nonfinite_steps_skipped, args.skip_nonfinite_steps,
        )  # fmt: skip
        for param in model.parameters():
            param.grad = None  # optimizers (AdamW, Adafactor) leave parameters without a gradient untouched

    def on_step_end(self, args, state, control, **kwargs):
        if self.epoch_shift and int(state.epoch) == self.epoch_shift[0]:
            state.epoch += self.epoch_shift[1]
        if self.preempt:
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        if self.preempt:
            raise Preempted(
                f"{_received[0] if _received else 'a signal'} received: saved {PREFIX_CHECKPOINT_DIR}-"
                f"{state.global_step} in {args.output_dir}; resume with --resume_from_checkpoint latest"
            )


# ---------------------------------------------------------------------------------------------------------------
# Data order


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch), not from the global RNG: a resumed epoch gets the same order.

    transformers' LengthGroupedSampler draws its permutation from the global torch RNG when iterated, so an epoch
    resumed in a fresh process would see other batches. accelerate calls `set_epoch` before each epoch.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()
