"""The training core shared by both scripts: run-folder checks, resume, trackers, the Trainer, and the outputs.

A script builds its model, data and collator, then calls `train_evaluate_save(...)`. Everything launcher-, tracker-
and output-related lives here once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute
import torch
import transformers
from transformers import Seq2SeqTrainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from data_collators import LABEL_PAD_ID
from t5kit import fault_tolerance
from t5kit.args import T5TrainingArguments, UsageError, is_main_process
from t5kit.exit_codes import EXIT_NONFINITE, EXIT_PREEMPTED, EXIT_USAGE
from t5kit.loss import token_cross_entropy
from t5kit.optim import AdamWScale
from t5kit.outputs import RESULTS_FILE, plot_loss, refresh_model_card, remove_model_card, save_results
from t5kit.tracking import (
    WANDB_RUN_FILE,
    append_metrics_log,
    configure_trackers,
    flags_config,
    follow_wandb_history,
    truncate_metrics_log,
)

logger = logging.getLogger("t5kit")

LATEST = "latest"
ARGS_FILE = "args.yaml"  # every flag of the run, readable by --config


class RunComplete(Exception):
    """`--resume_from_checkpoint latest` on a run that has finished: nothing is trained or written (exit 0)."""


def setup_logging(args: T5TrainingArguments) -> None:
    level = logging.INFO if is_main_process() else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level, force=True)
    # transformers' INFO lines (every file it saves) drown ours; keep its warnings.
    transformers.utils.logging.set_verbosity(max(level, logging.WARNING))
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    import datasets

    datasets.utils.logging.set_verbosity(logging.WARNING)


def run_main(main: Callable[[list[str] | None], dict], argv: list[str] | None = None) -> None:
    """Runs a script's main(); user mistakes print one line and exit 2, bugs keep their traceback.

    Pre-emption (SIGTERM/SIGUSR1) exits EXIT_PREEMPTED after its checkpoint; a NaN/inf loss exits EXIT_NONFINITE.
    A process of a distributed launch ends through `exit_distributed` once main() is done.
    """
    code = 0
    try:
        main(argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        code = EXIT_USAGE
    except RunComplete as done:
        print(str(done), flush=True)
    except fault_tolerance.Preempted as err:
        print(f"pre-empted: {err}", file=sys.stderr)
        code = EXIT_PREEMPTED
    except fault_tolerance.NonFiniteLoss as err:
        print(f"error: {err}", file=sys.stderr)
        code = EXIT_NONFINITE
    except BaseException:
        if _distributed():
            torch.distributed.destroy_process_group()  # a bug: its traceback prints, the group closes first
        raise
    if _distributed():
        exit_distributed(code)
    if code:
        sys.exit(code)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def exit_distributed(code: int) -> None:
    """Ends a process of a distributed run with `code`, skipping the interpreter's teardown.

    With 2 gloo processes (accelerate DDP and DeepSpeed ZeRO-2 on CPU), a run that had finished and saved everything
    can die at teardown with "terminate called without an active exception" (SIGABRT, exit -6 / 250 under the
    deepspeed launcher), about once in 10 runs of the test suite, also when the process group is closed first. No
    single run reproduced it (32 repeats, with and without two busy neighbours), so the C++ object whose
    destructor aborts is unknown. Nothing is left to do at that point, so the process ends with os._exit once every
    process has finished its work (a barrier, after a clean run), its W&B run is closed and its output is flushed:
    no destructor runs, and the exit status is the run's.
    """
    if code == 0:
        torch.distributed.barrier()  # every process is past its last collective (saves, eval gathers)
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# Process counts that launchers put in the environment, in the order they are trusted.
LAUNCHER_WORLD_SIZE_VARS = ("WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def check_launch(args: T5TrainingArguments) -> None:
    """Stops a run whose launcher started N processes that would each train alone (unsynchronised copies)."""
    for var in LAUNCHER_WORLD_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            launched = int(value)
            break
    else:
        return
    if launched > 1 and args.world_size != launched:
        raise UsageError(
            f"the launcher started {launched} processes ({var}={launched}) but this one trains as {args.world_size} "
            "of them, unsynchronised. Start the script through a distributed launcher: `srun ... accelerate launch` "
            "/ `torchrun --nproc_per_node N`, or on CPU `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
            "--num_processes N`; with srun, run one task per node that starts the launcher."
        )


def start_run(args: T5TrainingArguments, run_name: str, group: str | None, flag_groups: tuple = ()) -> str | None:
    """Logging, launch and output-dir checks, trackers; returns the checkpoint to resume from (or None).

    `flag_groups`: the script's other parsed argument dataclasses, logged with `args` as the tracker config.
    """
    setup_logging(args)
    # Seed before the model is built: the Trainer seeds only in its constructor, after a from-scratch init.
    transformers.set_seed(args.seed)
    check_launch(args)
    for flags in flag_groups:
        source = getattr(flags, "model_name_or_path", None)
        if source and Path(source).is_dir() and Path(source).resolve() == Path(args.output_dir).resolve():
            raise UsageError(
                f"--output_dir {args.output_dir} is the folder --model_name_or_path reads its model from: the run "
                "would replace that model. Choose another --output_dir."
            )
    resume = prepare_output_dir(args)
    if is_main_process():
        write_args_file(args, flag_groups)
        if not args.resume_from_checkpoint:  # a new run: an earlier run's model card and W&B run describe no run here
            remove_model_card(Path(args.output_dir))
            (Path(args.output_dir) / WANDB_RUN_FILE).unlink(missing_ok=True)
    configure_trackers(args, run_name, group, flag_groups)  # a resumed run continues the folder's W&B run
    return resume


def write_args_file(args: T5TrainingArguments, flag_groups: tuple = ()) -> Path:
    """<output_dir>/args.yaml: every flag of every group, as parsed (config file and command line merged), in the
    form `--config` reads, so `--config runs/X/args.yaml` runs the same run again. Secrets (`*_token`) are left out.
    """
    import yaml

    config = {key: value for key, value in flags_config(args, flag_groups).items() if not key.endswith("_token")}
    sections = [(type(group).__name__, [f.name for f in dataclasses.fields(group)]) for group in flag_groups]
    sections.append((type(args).__name__, [key for key in config if not any(key in names for _, names in sections)]))
    lines = [f"# Every flag of this run: python {Path(sys.argv[0]).name} --config {ARGS_FILE} reruns it."]
    for title, names in sections:
        values = {name: config[name] for name in names if name in config}
        if values:
            lines += ["", f"# {title}", yaml.safe_dump(values, sort_keys=False, allow_unicode=True).rstrip()]
    path = Path(args.output_dir) / ARGS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def prepare_output_dir(args: T5TrainingArguments) -> str | None:
    """Checks the output dir is writable and free for this run, resolves `--resume_from_checkpoint latest`; returns
    the checkpoint. Under several processes, each one checks before any of them writes into the folder."""
    resume = _check_output_dir(args)
    if args.world_size > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
    return resume


def _check_output_dir(args: T5TrainingArguments) -> str | None:
    out = Path(args.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--output_dir {out}: not writable ({err.strerror})") from None
    if is_main_process():
        fault_tolerance.remove_incomplete_checkpoints(out)
    complete = fault_tolerance.complete_checkpoints(out)
    resume = args.resume_from_checkpoint
    last = None
    for checkpoint in reversed(complete if resume == LATEST else []):
        damage = fault_tolerance.checkpoint_damage(checkpoint)
        if damage is None:
            last = str(checkpoint)
            break
        logger.warning("%s is damaged (%s): skipping it for the checkpoint before it", checkpoint, damage)
    if resume == LATEST and complete and last is None:
        raise UsageError(f"--resume_from_checkpoint latest: every checkpoint in {out} is damaged, the newest "
                         f"{complete[-1]}: {fault_tolerance.checkpoint_damage(complete[-1])}")  # fmt: skip
    if resume == LATEST:
        finished = finished_run(out, args)
        if finished:
            raise RunComplete(f"{out}: already complete ({finished}); nothing to do, the run folder is unchanged")
        if last is None:
            logger.info("--resume_from_checkpoint latest: no checkpoint in %s yet, starting from scratch", out)
            if is_main_process():
                truncate_metrics_log(out, 0)  # what an attempt without a checkpoint logged is logged again
            return None
        resume = last
    elif resume and not (Path(resume) / fault_tolerance.TRAINER_STATE).is_file():
        raise UsageError(f"--resume_from_checkpoint {resume}: no such checkpoint folder (or an incomplete one)")
    elif resume and fault_tolerance.checkpoint_damage(Path(resume)):
        raise UsageError(f"--resume_from_checkpoint {resume}: {fault_tolerance.checkpoint_damage(Path(resume))}")
    if resume:
        announce_resume(args, Path(resume))
        return resume
    held = run_outputs(out)
    if held and args.overwrite_output_dir:
        if is_main_process():
            logger.warning("--overwrite_output_dir: deleting the earlier run's %s in %s", ", ".join(held), out)
            for name in held:
                target = out / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        return None
    if held:
        raise UsageError(
            f"--output_dir {out} holds another run ({', '.join(held[:4])}{', ...' if len(held) > 4 else ''}); pass "
            "--resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or choose another "
            "--output_dir"
        )
    return None


# What a run writes into its folder; a new run refuses a folder holding any of them (t5kit.training.prepare_output_dir).
# (args.yaml is not one: a run that stopped at a mistake before training leaves only it, and may be run again.)
RUN_OUTPUTS = (
    RESULTS_FILE,
    fault_tolerance.TRAINER_STATE,
    "metrics.jsonl",
    "model.safetensors",
    "adapter_model.safetensors",
    "tokenizer",
    "predictions",
    "submission",
)


def run_outputs(out: Path) -> list[str]:
    """The names of an earlier run's outputs in `out`: its checkpoints and RUN_OUTPUTS."""
    names = [p.name for p in fault_tolerance.complete_checkpoints(out)] + [n for n in RUN_OUTPUTS if (out / n).exists()]
    return names


def _read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / fault_tolerance.TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def finished_run(out: Path, args: T5TrainingArguments) -> str | None:
    """Why the run in `out` counts as finished for these flags (None if it does not): its final results and state
    are there, and the flags ask for no more steps or epochs than it ran (a larger --max_steps continues it)."""
    if not (out / RESULTS_FILE).is_file():
        return None
    state = _read_state(out)
    if not state:
        return None
    if asks_for_more(args, state):
        return None
    return f"step {state.get('global_step', 0)} of {state.get('max_steps', 0)}, {RESULTS_FILE} written"


def asks_for_more(args: T5TrainingArguments, state: dict) -> bool:
    """Whether the flags ask for steps beyond the saved `state`: unfinished, or a larger --max_steps or epochs."""
    steps, planned = state.get("global_step", 0), state.get("max_steps", 0)
    if steps < planned:
        return True
    if args.max_steps > 0:
        return args.max_steps > steps
    return args.num_train_epochs > state.get("num_train_epochs", 0)


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def announce_resume(args: T5TrainingArguments, checkpoint: Path) -> None:
    """One line naming the checkpoint and step resumed from; metrics.jsonl loses the rows logged after it."""
    state = _read_state(checkpoint)
    step = state.get("global_step", 0)
    total = args.max_steps if args.max_steps > 0 else state.get("max_steps", "?")
    if is_main_process():
        later = [c for c in fault_tolerance.complete_checkpoints(Path(args.output_dir)) if _step_of(c) > step]
        if later:  # from the run that went on past this checkpoint (or damaged): this run saves those steps anew
            logger.warning("resuming from %s: removing the later %s", checkpoint.name, ", ".join(c.name for c in later))
            for folder in later:
                shutil.rmtree(folder)
        dropped = truncate_metrics_log(args.output_dir, len(state.get("log_history", [])))
        logger.info(
            "resuming from %s (step %d of %s)%s", checkpoint.name, step, total,
            f"; {dropped} metrics.jsonl row(s) logged after it removed (they are logged again)" if dropped else "",
        )  # fmt: skip


def warn_if_fsdp_ignored(distributed_type) -> None:
    """accelerate 1.15 turns an FSDP launch into plain DDP (MULTI_CPU) when there is no GPU: say so."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not str(distributed_type).endswith("FSDP"):
        logger.warning(
            "the launcher asked for FSDP, but accelerate runs %s: FSDP needs GPUs (or another accelerator), so "
            "every process holds the full model. Use DeepSpeed ZeRO-3 (zero_stage3_config.json) to shard on CPU.",
            str(distributed_type).split(".")[-1],
        )


def column_lengths(dataset, length_column: str = "length") -> list[int] | None:
    """Per-row lengths of a `datasets.Dataset` (its `length_column` if it has one, else the lengths of its input_ids
    lists) read in one Arrow pass, in the dataset's order (select/shuffle mappings included); None for other
    datasets. Example: rows with input_ids [1, 2, 1] and [5, 1] -> [3, 2]."""
    if not isinstance(dataset, datasets.Dataset):
        return None
    columns = dataset.column_names
    if length_column in columns:
        lengths = dataset.with_format("arrow")[length_column]
    elif "input_ids" in columns:
        lengths = pyarrow.compute.list_value_length(dataset.with_format("arrow")["input_ids"])
    else:
        return None
    return lengths.to_numpy().astype(np.int64).tolist()


def tied_aliases(model, missing: set[str]) -> set[str]:
    """The names in `missing` that share their tensor with a parameter that was loaded (tied weights)."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(param.data_ptr(), []).append(name)
    return {
        name
        for names in groups.values()
        if len(names) > 1 and any(other not in missing for other in names)
        for name in names
        if name in missing
    }


class T5Trainer(Seq2SeqTrainer):
    """Seq2SeqTrainer that also logs the input-token throughput of each logging interval, and metrics.jsonl.

    A callback passed to a script's `main(argv, callbacks=[...])` that defines `on_trainer(trainer)` is handed the
    trainer once it is built (benchmarks read its collator and datasets; nothing needs to patch this class).
    The transformers internals overridden here and in t5kit/evaluation.py are listed in docs/trainer_internals.md.
    """

    _last_log: tuple[float, int] | None = None
    _flop_parameters: int | None = None  # floating_point_ops: non-embedding parameters, counted once

    # Fault tolerance (t5kit.fault_tolerance): atomic checkpoints, pre-emption, NaN/inf steps, resumable data order.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.rms_scaled_updates and self.optimizer_cls_and_kwargs is None:
            # The Trainer still builds the parameter groups (weight decay, frozen weights) and the schedule.
            self.optimizer_cls_and_kwargs = (AdamWScale, {
                "lr": self.args.learning_rate, "betas": (self.args.adam_beta1, self.args.adam_beta2),
                "eps": self.args.adam_epsilon,
            })  # fmt: skip
        warn_if_fsdp_ignored(self.accelerator.distributed_type)
        self.fault_tolerance = fault_tolerance.FaultToleranceCallback(self)
        self.add_callback(self.fault_tolerance)
        for callback in self.callback_handler.callbacks:  # a benchmark's timer, a test's probe: see the trainer
            if callable(getattr(callback, "on_trainer", None)):
                callback.on_trainer(self)

    def train(self, *args, **kwargs):
        with fault_tolerance.preemption_signals():
            return super().train(*args, **kwargs)

    def _determine_best_metric(self, metrics: dict[str, float], trial) -> bool:
        """The Trainer's choice of the best checkpoint, with a tie on the metric going to the lower eval loss (the
        Trainer keeps the earliest of equal scores, however much worse its loss)."""
        before = (self.state.best_metric, self.state.best_global_step)
        if super()._determine_best_metric(metrics, trial):
            return True
        key = self.args.metric_for_best_model or ""
        key = key if key.startswith("eval_") else f"eval_{key}"
        if before[0] is None or key == "eval_loss" or "eval_loss" not in metrics or metrics.get(key) != before[0]:
            return False
        best_loss = next((row["eval_loss"] for row in self.state.log_history
                          if row.get("step") == before[1] and "eval_loss" in row), None)  # fmt: skip
        if best_loss is None or metrics["eval_loss"] >= best_loss:
            return False
        self.state.best_global_step = self.state.global_step
        return True

    def _issue_warnings_after_load(self, load_result) -> None:
        # A checkpoint holds one copy of tied weights (the shared embedding); their other names are not missing.
        expected = tied_aliases(self.accelerator.unwrap_model(self.model), set(load_result.missing_keys))
        missing = [key for key in load_result.missing_keys if key not in expected]
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))

    def _save_checkpoint(self, model, trial) -> None:
        fault_tolerance.save_checkpoint(self, trial)

    def training_step(self, model, inputs, num_items_in_batch=None):
        # No key/value cache in a teacher-forced training pass: T5's decoder would build one per forward (~1 ms).
        inputs = {**inputs, "use_cache": False}
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.fault_tolerance.observe_loss(loss)
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """T5's teacher-forced loss as a sum over target tokens divided by the Trainer's token count over the whole
        accumulated batch (`num_items_in_batch`), so N accumulated micro-batches give the loss and gradient of one
        N-times larger batch. T5's own loss is a per-micro-batch mean that ignores that count, although its forward
        signature tells the Trainer otherwise: with --gradient_accumulation_steps 2 the logged loss and the gradient
        would be doubled (tests/test_training_core.py checks they are not).

        Eager mode computes the loss with `t5kit.loss.token_cross_entropy` (no fp32 copies of the logits: ~0.14 s
        of a 1.4 s `mini` step on 2 CPU cores). Under --torch_compile the model's own cross-entropy is kept and
        rescaled: inductor fuses it into the compiled graph, which measured faster than calling ours after it.
        Label smoothing and a custom `compute_loss_func` keep the Trainer's own path.
        """
        labels = inputs.get("labels")
        if labels is None or self.label_smoother is not None or self.compute_loss_func is not None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.args.torch_compile:
            outputs = model(**inputs)
            loss = outputs["loss"]  # mean over this micro-batch's targets
            if num_items_in_batch is not None:
                loss = loss * ((labels != LABEL_PAD_ID).sum() / num_items_in_batch)
        else:
            inputs = {key: value for key, value in inputs.items() if key != "labels"}
            if inputs.get("decoder_input_ids") is None:
                inputs["decoder_input_ids"] = self.model._shift_right(labels)  # as T5's forward does with labels
            outputs = model(**inputs)
            loss = token_cross_entropy(outputs["logits"], labels, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts every process's tokens and DDP averages gradients: as the Trainer does.
            loss = loss * self.accelerator.num_processes
        outputs["loss"] = loss
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        if self.args.train_sampling_strategy == "group_by_length":
            # The Trainer would read every row to measure it (1.4 s for SST-2's 67k rows); Arrow gives the lengths
            # of the whole column at once.
            dataset = self.train_dataset if train_dataset is None else train_dataset
            lengths = column_lengths(dataset, self.args.length_column_name)
            if lengths is not None:
                batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
                return fault_tolerance.EpochSeededLengthGroupedSampler(batch, lengths, seed)
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return fault_tolerance.EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

    def floating_point_ops(self, inputs) -> int:
        """The Trainer's estimate (6 x input tokens x non-embedding parameters), with the parameter count taken once:
        the Trainer recounts it by walking every module at every step (~1 ms a step, 4% of a small model's)."""
        if "input_ids" not in inputs or not hasattr(self.model, "num_parameters"):
            return super().floating_point_ops(inputs)
        if self._flop_parameters is None:
            self._flop_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs["input_ids"].numel() * self._flop_parameters

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, *args, **kwargs):
        epochs, skip = super()._init_training_state(max_steps, num_update_steps_per_epoch, *args, **kwargs)
        if skip and hasattr(self.train_dataset, "resume_at"):
            # A stream is fast-forwarded at its source, not by fetching and collating the skipped batches
            # (accelerate's skip for iterable datasets). The RNG state is restored after the first fetch, where
            # the Trainer restores it when it skips batches itself.
            examples = skip * self.args.per_device_train_batch_size * self.args.world_size
            self.train_dataset.resume_at(epochs, examples)
            self._deferred_rng_checkpoint = True
            # The Trainer now counts this epoch's progress from 0: the logged epoch is shifted back by the skip.
            steps_in_epoch = num_update_steps_per_epoch * self.args.gradient_accumulation_steps
            self.fault_tolerance.epoch_shift = (epochs, skip / steps_in_epoch)
            return epochs, 0
        return epochs, skip

    def _load_rng_state(self, checkpoint):
        if getattr(self, "_deferred_rng_checkpoint", None) is True:
            self._deferred_rng_checkpoint = checkpoint
            return
        super()._load_rng_state(checkpoint)

    def get_batch_samples(self, *args, **kwargs):
        batches = super().get_batch_samples(*args, **kwargs)
        checkpoint = getattr(self, "_deferred_rng_checkpoint", None)
        if checkpoint:
            self._deferred_rng_checkpoint = None
            super()._load_rng_state(checkpoint)
        return batches

    def _run_epoch(self, *args, **kwargs):
        # accelerate's DataLoaderShard.set_epoch skips the dataset when a sampler took the call, as it does for the
        # dataloader that skips a resumed epoch's trained batches: the masks' epoch would stay 0. Set it here.
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(kwargs["epoch"])
        return super()._run_epoch(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.args.include_num_input_tokens_seen != "no":
            now, tokens = time.perf_counter(), self.state.num_input_tokens_seen
            if self._last_log is not None and now > self._last_log[0]:
                logs["tokens_per_second"] = round((tokens - self._last_log[1]) / (now - self._last_log[0]), 1)
            self._last_log = (now, tokens)
        super().log(logs, start_time)
        if self.is_world_process_zero() and self.state.log_history:
            append_metrics_log(self.args.output_dir, self.state.log_history[-1])  # followed by the sweep runner


def describe_batch(args: T5TrainingArguments) -> dict[str, int]:
    world = args.world_size
    return {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": world,
        "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
    }


def train_evaluate_save(
    trainer: T5Trainer,
    tokenizer,
    resume_checkpoint: str | None,
    extra_results: dict | None = None,
    final_eval: bool = True,
) -> dict:
    """Trains (resuming where asked), evaluates, saves the final model, tokenizer, results, plot and model card."""
    args = trainer.args
    follow_wandb_history(trainer)  # a resumed run logs no row twice to its W&B run
    batch = describe_batch(args)
    logger.info(
        "effective batch %d = %d per device x %d accumulation x %d processes",
        batch["effective_batch_size"],
        batch["per_device_train_batch_size"],
        batch["gradient_accumulation_steps"],
        batch["world_size"],
    )
    out = Path(args.output_dir)
    results: dict = {}
    if trainer.train_dataset is not None:
        if resume_checkpoint:
            fault_tolerance.check_checkpoint_shape(trainer.model, resume_checkpoint)
        if (
            resume_checkpoint
            and not trainer.is_deepspeed_enabled
            and not asks_for_more(args, _read_state(Path(resume_checkpoint)))
        ):
            # The Trainer would train one step past the end; the run was stopped after its last checkpoint.
            logger.info("%s is the run's last step: nothing left to train", Path(resume_checkpoint).name)
            trainer._load_from_checkpoint(resume_checkpoint)
            trainer.state = transformers.TrainerState.load_from_json(
                str(Path(resume_checkpoint) / fault_tolerance.TRAINER_STATE)
            )
            if args.load_best_model_at_end and trainer.state.best_model_checkpoint:
                trainer._load_best_model()
            results["train_metrics"] = f"not measured: training ended at {Path(resume_checkpoint).name}"
        else:
            results.update(trainer.train(resume_from_checkpoint=resume_checkpoint).metrics)
        results["nonfinite_steps_skipped"] = trainer.fault_tolerance.nonfinite_steps_skipped
        agree = parameters_agree_across_processes(trainer)
        if agree is not None:
            results["parameters_agree_across_processes"] = agree
            if not agree:
                raise RuntimeError(
                    "after training, the processes hold different weights: they trained unsynchronised copies. "
                    "Launch with torchrun / accelerate launch (on CPU: ACCELERATE_USE_CPU=true ... --multi_gpu)."
                )
        trainer.save_model(str(out))  # safetensors + config (+ tokenizer, via processing_class)
        trainer.save_state()
    if final_eval and trainer.eval_dataset is not None:
        results.update(trainer.evaluate())
    results.update(batch)
    results["distributed_type"] = str(trainer.accelerator.distributed_type).split(".")[-1]
    results["precision"] = "bf16" if args.bf16 else "fp32"
    results["torch_compile"] = bool(args.torch_compile)
    results.update(extra_results or {})
    if trainer.is_world_process_zero():
        save_results(trainer, results)
        plot_loss(trainer.state.log_history, out / "loss.png")
        tokenizer.save_pretrained(str(out))
        refresh_model_card(out)  # README.md, from the files above; refreshed by whoever adds to all_results.json
    return results


def parameters_agree_across_processes(trainer) -> bool | None:
    """Whether every process holds bit-identical weights (None on one process, or where weights are sharded).

    Compares two float64 checksums of the replicated weights with one all-gather: cheap, and it catches the
    silent failure of N processes that each train alone.
    """
    if trainer.args.world_size == 1 or trainer.is_fsdp_enabled:
        return None
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    sums = torch.zeros(2, dtype=torch.float64, device=trainer.args.device)
    for i, param in enumerate(model.parameters()):
        values = param.detach().to(torch.float64)
        sums[0] += values.sum()
        sums[1] += (values * (i + 1)).abs().sum()  # position-weighted, so swapped tensors also differ
    gathered = trainer.accelerator.gather(sums.unsqueeze(0))
    return bool((gathered == gathered[0]).all())


def token_accuracy_metrics() -> tuple[Callable, Callable]:
    """(preprocess_logits_for_metrics, compute_metrics) for teacher-forced token accuracy on label positions (%)."""

    def preprocess(logits, labels):
        if isinstance(logits, tuple):
            logits = logits[0]
        return logits.argmax(dim=-1)

    def compute(eval_pred):
        predictions, labels = eval_pred.predictions, eval_pred.label_ids
        mask = labels != LABEL_PAD_ID
        correct = (predictions == labels) & mask
        return {"span_accuracy": 100.0 * float(correct.sum() / max(mask.sum(), 1))}  # percent, as every metric

    return preprocess, compute
