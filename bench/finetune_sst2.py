"""Fine-tuning SST-2 from scratch: time to a dev-accuracy target (ours vs the plain Seq2SeqTrainer recipe), and the
speed of rank vs generate evaluation (SST-2 and RTE dev).

    .venv/bin/python -m bench.finetune_sst2            # defaults: ~5 minutes on 2 CPU cores
    .venv/bin/python -m bench.finetune_sst2 --quick    # smoke test (~1-2 minutes; numbers mean little)

Both sides of part 1 train the same from-scratch T5 (same preset, same tokenizer, same seed and therefore the same
initial weights, same dropout, AdamW with the same lr / linear schedule / batch size, fp32) on the full SST-2 train
set and evaluate on the full 872-example dev set every --eval_steps steps, until the dev accuracy reaches --target
or the side's wall-clock budget (--budget_s) runs out:

- ours: `fine_tune_t5.main` on its default path (dynamic padding `Seq2SeqCollator`, length-grouped batches
  `--train_sampling_strategy group_by_length`), evaluating with `--eval_mode rank` (the default --ours_eval_mode).
  The timing callback below goes in through `main(argv, callbacks=[...])`; everything else runs exactly as on the
  command line. Checkpointing is off on both sides (--save_strategy no) so that neither pays for disk writes.
- plain: the recipe of the usual blog post, written out here: `Seq2SeqTrainer` directly, every input padded to
  --max_length (128) with `padding="max_length"`, labels padded to --plain_target_length and -100'd, random batches,
  `predict_with_generate=True` (greedy, generation_max_length = ours' target length + 1, so plain is not slowed by
  a longer generation limit).

The default model is the `tiny` preset widened to d_model 128 (d_ff 512, 4 heads of 32; 1.6M parameters). At
tiny's own width (394k parameters) a training step is bound by per-step framework overhead (~25 ms however much
padding it carries), which hides what padding to 128 costs; `--model_overrides ''` runs tiny (ours 2.9-3.2x
faster to 70% on 2026-11-30).

Part 2 times `fine_tune_t5 --do_eval` of one saved model in both eval modes (fresh process state each run, best of
--eval_repeats, the two modes alternating) at each of --rank_eval_batch_sizes (the toolkit's default eval batch, 8,
and 64) and in each of --eval_precisions: the toolkit's default precision here (bf16 where the hardware supports it)
and fp32, the precision part 1 trains in.

Wall time to target = from the Trainer's on_train_begin to the end of the first evaluation (on_evaluate) whose
accuracy >= --target: every training step and every evaluation before it, nothing of the data preparation.
Other processes' CPU use during each measurement is recorded (bench/common.py CpuContention) and reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from bench import common  # noqa: I001  (sets the offline switches before transformers is imported)

import numpy as np
import torch
import transformers
from transformers import (
    AutoTokenizer,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    T5ForConditionalGeneration,
    TrainerCallback,
)

import fine_tune_t5
from t5kit.args import bf16_supported
from t5kit.finetune_data import to_text
from t5kit.modeling import PRESETS, V1_1_COMMON, build_config
from t5kit.task_files import load_benchmark_split
from t5kit.tasks import get_task, max_target_length
from t5kit.tokenizer import train_tokenizer

LABEL_PAD_ID = -100
PERCENT = 0.01  # fine_tune_t5 reports metrics in 0-100; this file works in 0-1


# ---------------------------------------------------------------------------------------------------------------
# Timing


class EvalClock(TrainerCallback):
    """Wall time from on_train_begin to the end of each evaluation, with the accuracy it measured.

    Stops training at the first evaluation with `metric` >= `target`, or at the first step end after `budget_s`.
    Also fingerprints the initial weights (so both sides can be checked to start from the same model) and measures
    other processes' CPU share from the start of training to the stop.
    """

    def __init__(self, target: float, budget_s: float, metric="eval_accuracy", scale=1.0, max_contention=0.10):
        self.target, self.budget_s, self.metric, self.scale = target, budget_s, metric, scale
        self.max_contention = max_contention
        self.evals: list[dict] = []
        self.reached: dict | None = None
        self.stopped_by_budget = False
        self.fingerprint: float | None = None
        self.contention: float | None = None
        self.elapsed = 0.0
        self.train_ended = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            with torch.no_grad():
                self.fingerprint = float(sum(p.double().abs().sum() for p in model.parameters()))
        self._contention = common.CpuContention().start()
        self._interval = common.CpuContention().start()  # since the previous evaluation
        self.t0 = time.perf_counter()

    def _stop(self, control):
        control.should_training_stop = True
        if self.contention is None:
            self.contention = self._contention.stop()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        self.elapsed = time.perf_counter() - self.t0
        if self.elapsed > self.budget_s and self.reached is None:
            self.stopped_by_budget = True
            return self._stop(control)
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.reached is not None or self.train_ended:
            return control  # main()'s evaluations after training
        self.elapsed = time.perf_counter() - self.t0
        row = {
            "step": state.global_step,
            "seconds": self.elapsed,
            "accuracy": float(metrics[self.metric]) * self.scale,
            "eval_runtime": float(metrics.get("eval_runtime", float("nan"))),
            "interval_contention": self._interval.stop(),
        }
        row["interval_seconds"] = row["seconds"] - (self.evals[-1]["seconds"] if self.evals else 0.0)
        self._interval.start()
        self.evals.append(row)
        print(f"[clock] step {row['step']}: dev accuracy {row['accuracy']:.4f} at {row['seconds']:.1f} s", flush=True)
        if row["accuracy"] >= self.target:
            self.reached = row
            return self._stop(control)
        if self.elapsed > self.budget_s:
            self.stopped_by_budget = True
            return self._stop(control)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.train_ended = True
        if self.contention is None:
            self.contention = self._contention.stop()

    def summary(self) -> dict:
        best = max(self.evals, key=lambda r: r["accuracy"]) if self.evals else None
        return {
            "reached": self.reached,
            "evals": self.evals,
            "best": best,
            "elapsed": self.elapsed,
            "stopped_by_budget": self.stopped_by_budget,
            "fingerprint": self.fingerprint,
            "contention": self.contention,
            "eval_seconds": sum(r["eval_runtime"] for r in self.evals),
            "idle_estimate": self.idle_estimate(self.max_contention),
        }

    def idle_estimate(self, max_contention: float = 0.10) -> dict | None:
        """Time to the stopping evaluation had every eval interval run like the uncontended ones: the number of
        intervals x the median duration of the intervals (steps + their evaluation) where other processes took
        <= max_contention of the CPUs. The first interval (warm-up) is used only if no other is clean."""
        stop = self.reached or (self.evals[-1] if self.evals else None)
        if stop is None:
            return None
        rows = self.evals[: self.evals.index(stop) + 1]
        clean = [r for r in rows if r["interval_contention"] is not None and r["interval_contention"] <= max_contention]
        later = [r for r in clean if r is not rows[0]]
        use = later or clean
        if not use:
            return None
        median = float(np.median([r["interval_seconds"] for r in use]))
        return {"seconds": median * len(rows), "clean_intervals": len(use), "intervals": len(rows)}


# ---------------------------------------------------------------------------------------------------------------
# Data and tokenizer


def glue_text(task: str, split: str, data_dir: Path, limit: int | None = None):
    spec = get_task("glue", task)
    ds, _ = load_benchmark_split(spec, split, str(data_dir))
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return spec, to_text(spec, ds, labeled=True)


def shared_tokenizer(args, work_dir: Path):
    """One SentencePiece unigram tokenizer trained on the SST-2 training text (inputs and targets), for both sides."""
    _, train = glue_text("sst2", "train", args.data_dir)
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(
        (text for column in ("source", "target") for text in train[column]), args.vocab_size, work_dir / "tokenizer"
    )
    return tokenizer, time.perf_counter() - t0


def resolve_model_config(args, work_dir: Path) -> None:
    """With --model_overrides, writes preset + overrides to <work_dir>/model_config.json and points
    args.model_config at it (vocabulary, special ids and dropout are still set by build_config)."""
    args.model_label = args.model_config
    if not args.model_overrides:
        return
    overrides = json.loads(args.model_overrides)
    if args.model_config in PRESETS:
        values = {**V1_1_COMMON, **PRESETS[args.model_config]}
    else:
        values = json.loads(Path(args.model_config).read_text(encoding="utf-8"))
    values.update(overrides)
    path = work_dir / "model_config.json"
    path.write_text(json.dumps(values, indent=2), encoding="utf-8")
    args.model_label = f"{args.model_config} + {json.dumps(overrides)}"
    args.model_config = str(path)


# ---------------------------------------------------------------------------------------------------------------
# Part 1: time to target


def common_train_flags(args) -> list[str]:
    flags = [
        "--model_config", args.model_config,
        "--dropout_rate", str(args.dropout_rate),
        "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", str(args.eval_batch_size),
        "--learning_rate", str(args.learning_rate),
        "--seed", str(args.seed),
        "--bf16", "False",
        "--report_to", "none",
        "--disable_tqdm", "True",
    ]  # fmt: skip
    if args.max_train_samples:
        flags += ["--max_train_samples", str(args.max_train_samples)]
    return flags


def run_ours(args, work_dir: Path) -> dict:
    out = work_dir / "ours"
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(args.data_dir),
        "--tokenizer_name_or_path", str(work_dir / "tokenizer"),
        *common_train_flags(args),
        "--do_train", "--do_eval", "--eval_mode", args.ours_eval_mode,
        "--max_steps", str(args.max_steps),
        "--eval_strategy", "steps", "--eval_steps", str(args.eval_steps), "--logging_steps", str(args.eval_steps),
        "--save_strategy", "no", "--load_best_model_at_end", "False",
        "--output_dir", str(out),
    ]  # fmt: skip
    clock = EvalClock(args.target, args.budget_s, scale=PERCENT, max_contention=args.max_contention)
    transformers.set_seed(args.seed)  # the model is built before the Trainer seeds: same initial weights as plain
    results = fine_tune_t5.main(argv, callbacks=[clock])
    state = json.loads((out / "trainer_state.json").read_text())
    return {
        "key": "ours",
        "name": f"ours (`fine_tune_t5.main`: dynamic padding, group_by_length, {args.ours_eval_mode} eval)",
        "argv": argv,
        "model_dir": out,
        "train_runtime": results.get("train_runtime"),
        "log_history": state["log_history"],
        **clock.summary(),
    }


def plain_accuracy(tokenizer):
    def compute(eval_pred):
        predictions, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        predictions = np.where(predictions != LABEL_PAD_ID, predictions, tokenizer.pad_token_id)
        labels = np.where(labels != LABEL_PAD_ID, labels, tokenizer.pad_token_id)
        texts = [t.strip() for t in tokenizer.batch_decode(predictions, skip_special_tokens=True)]
        targets = [t.strip() for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        return {"accuracy": float(np.mean([p == t for p, t in zip(texts, targets)]))}

    return compute


def run_plain(args, tokenizer, work_dir: Path, budget_s: float) -> dict:
    """The plain recipe: pad everything to a fixed length, random batches, Seq2SeqTrainer + predict_with_generate."""
    out = work_dir / "plain"
    shutil.rmtree(out, ignore_errors=True)
    spec, train = glue_text("sst2", "train", args.data_dir, args.max_train_samples)
    _, dev = glue_text("sst2", "validation", args.data_dir)

    def preprocess(batch):
        model_inputs = tokenizer(batch["source"], max_length=args.max_length, padding="max_length", truncation=True)
        labels = tokenizer(
            text_target=batch["target"], max_length=args.plain_target_length, padding="max_length", truncation=True
        )["input_ids"]
        model_inputs["labels"] = [[t if t != tokenizer.pad_token_id else LABEL_PAD_ID for t in row] for row in labels]
        return model_inputs

    columns = train.column_names
    train = train.map(preprocess, batched=True, remove_columns=columns)
    dev = dev.map(preprocess, batched=True, remove_columns=columns)

    config = build_config(args.model_config, tokenizer, dropout_rate=args.dropout_rate)
    transformers.set_seed(args.seed)
    model = T5ForConditionalGeneration(config)
    gen_length = max_target_length(spec, tokenizer) + 1  # what ours uses: decoder start + the longest label + EOS
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        logging_steps=args.eval_steps,
        save_strategy="no",
        predict_with_generate=True,
        generation_max_length=gen_length,
        seed=args.seed,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=True,
    )
    clock = EvalClock(args.target, budget_s, max_contention=args.max_contention)
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=transformers.default_data_collator,
        processing_class=tokenizer,
        compute_metrics=plain_accuracy(tokenizer),
        callbacks=[clock],
    )
    output = trainer.train()
    return {
        "key": "plain",
        "name": f"plain (`Seq2SeqTrainer`, pad to {args.max_length}, random batches, generate eval)",
        "train_runtime": output.metrics.get("train_runtime"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "log_history": trainer.state.log_history,
        **clock.summary(),
    }


# ---------------------------------------------------------------------------------------------------------------
# Part 2: rank vs generate evaluation


def train_rte(args, work_dir: Path) -> tuple[Path, float]:
    out = work_dir / "rte_model"
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        "--benchmark", "glue", "--dataset_name", "rte", "--data_dir", str(args.data_dir),
        "--vocab_size", str(args.rte_vocab_size),
        *common_train_flags(args),
        "--do_train", "--max_steps", str(args.rte_steps), "--eval_strategy", "no", "--save_strategy", "no",
        "--logging_steps", str(max(1, args.rte_steps // 4)),
        "--output_dir", str(out),
    ]  # fmt: skip
    if args.max_train_samples:  # common_train_flags' --max_train_samples is meant for SST-2
        at = argv.index("--max_train_samples")
        del argv[at : at + 2]
    transformers.set_seed(args.seed)
    t0 = time.perf_counter()
    fine_tune_t5.main(argv)
    return out, time.perf_counter() - t0


MODES = ("rank", "generate")


def time_evals(args, task: str, model_dir: Path, batch: int, precision: str, work_dir: Path) -> dict[str, dict]:
    """Evaluates a saved model on the task's dev set in both modes at eval batch `batch` in `precision` (bf16
    autocast or fp32), --eval_repeats times each; keeps each mode's fastest run. The modes alternate (and swap which
    goes first every repeat), so a machine that slows down or speeds up during the measurement colours both alike."""
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for repeat in range(args.eval_repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            out = work_dir / f"eval_{task}_{mode}_{batch}_{precision}_{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            argv = [
                "--benchmark", "glue", "--dataset_name", task, "--data_dir", str(args.data_dir),
                "--model_name_or_path", str(model_dir), "--do_eval", "--eval_mode", mode,
                "--per_device_eval_batch_size", str(batch), "--bf16", str(precision == "bf16"),
                "--report_to", "none", "--disable_tqdm", "True", "--output_dir", str(out),
            ]  # fmt: skip
            contention = common.CpuContention().start()
            results = fine_tune_t5.main(argv)
            if results["precision"] != precision:
                raise RuntimeError(f"asked for a {precision} eval, fine_tune_t5 ran {results['precision']}")
            runs[mode].append(
                {
                    "seconds": float(results["eval_runtime"]),
                    "accuracy": float(results["eval_accuracy"]) * PERCENT,
                    "invalid_rate": float(results.get("eval_invalid_rate", float("nan"))) * PERCENT,
                    "contention": contention.stop(),
                    "examples": int(results.get("eval_samples", 0)) or None,
                }
            )
    timed = {}
    for mode, mode_runs in runs.items():
        best = min(mode_runs, key=lambda r: r["seconds"])
        shares = [r["contention"] for r in mode_runs if r["contention"] is not None]
        timed[mode] = {
            **best, "all_seconds": [r["seconds"] for r in mode_runs], "contention": max(shares) if shares else None,
        }  # fmt: skip
    return timed


# ---------------------------------------------------------------------------------------------------------------


# fine_tune_t5's --per_device_eval_batch_size default (transformers' own: 8)
DEFAULT_EVAL_BATCH = next(
    f.default for f in dataclasses.fields(fine_tune_t5.FineTuneArguments) if f.name == "per_device_eval_batch_size"
)
# fine_tune_t5's default precision on this machine first, then fp32 (part 1's precision) where that differs
DEFAULT_EVAL_PRECISIONS = ["bf16", "fp32"] if bf16_supported() else ["fp32"]
DEFAULT_OVERRIDES = '{"d_model": 128, "d_ff": 512, "num_heads": 4, "d_kv": 32}'


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model_config", default="tiny", help="T5 preset (or config.json) for both sides")
    p.add_argument(
        "--model_overrides", default=DEFAULT_OVERRIDES,
        help="JSON merged into the preset (written to the work dir as a config.json that both sides build from). "
        f"Default {DEFAULT_OVERRIDES}: tiny widened to 1.6M parameters (see the docstring); '' runs tiny itself",
    )  # fmt: skip
    p.add_argument("--vocab_size", type=int, default=3000, help="tokenizer trained once on SST-2 train, shared")
    p.add_argument("--target", type=float, default=0.70, help="dev accuracy target (872 SST-2 dev examples)")
    p.add_argument("--eval_steps", type=int, default=100, help="evaluate on the full dev set every K steps")
    p.add_argument("--max_steps", type=int, default=2000, help="step cap (and the linear lr schedule's length)")
    p.add_argument(
        "--budget_s", type=float, default=300.0,
        help="wall-clock budget per side for part 1; plain also stops at --plain_budget_factor x ours' time to target. "
        "300 s leaves that factor room when ours needs up to 60 s",
    )  # fmt: skip
    p.add_argument(
        "--plain_budget_factor", type=float, default=5.0,
        help="stop plain once it has run this many times ours' time to target (it can then only show 'ours >= this "
        "many times faster'); 0 = plain gets the full --budget_s",
    )  # fmt: skip
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--eval_batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument(
        "--dropout_rate", type=float, default=0.0,
        help="both sides (0.0: the toolkit's from-scratch default; 0.1 learns much slower here)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_length", type=int, default=128, help="plain: every input padded to this length")
    p.add_argument("--plain_target_length", type=int, default=8, help="plain: labels padded to this length")
    p.add_argument("--ours_eval_mode", choices=["rank", "generate"], default="rank")
    p.add_argument("--max_train_samples", type=int, help="first N SST-2 training examples (default: all 67,349)")
    p.add_argument("--rte_steps", type=int, default=100, help="training steps of the RTE model for part 2")
    p.add_argument(
        "--rte_vocab_size", type=int, default=2000,
        help="the RTE model's own tokenizer, trained on RTE train text by fine_tune_t5 --vocab_size (the SST-2 "
        "one has no '_' and cannot spell not_entailment)",
    )  # fmt: skip
    p.add_argument(
        "--eval_repeats", type=int, default=5,
        help="part 2: each eval runs this often (rank and generate alternating); each mode's fastest run is kept",
    )  # fmt: skip
    p.add_argument(
        "--rank_eval_batch_sizes", type=int, nargs="+", default=[DEFAULT_EVAL_BATCH, 64],
        help=f"part 2: eval batch sizes at which both modes are timed. {DEFAULT_EVAL_BATCH} is fine_tune_t5's "
        "--per_device_eval_batch_size default; at 64 both modes run fastest here, and per-call overhead, "
        "which generate pays once per decoding step, weighs least",
    )  # fmt: skip
    p.add_argument(
        "--eval_precisions", nargs="+", choices=["bf16", "fp32"], default=DEFAULT_EVAL_PRECISIONS,
        help="part 2: precisions in which both modes are timed. Default here: "
        f"{' '.join(DEFAULT_EVAL_PRECISIONS)} (fine_tune_t5's default precision on this machine first)",
    )  # fmt: skip
    p.add_argument("--max_contention", type=float, default=0.10, help="flag measurements above this CPU share")
    p.add_argument("--quick", action="store_true", help="smoke test: the tiny model, tiny budgets, 8k train examples")
    p.add_argument("--data_dir", type=Path, default=common.SHARED_DATA / "glue")
    p.add_argument("--output", default=str(common.RESULTS_DIR / "finetune_sst2.md"), help="markdown written here")
    p.add_argument("--work_dir", default=str(common.WORK_DIR / "finetune_sst2"), help="run folders")
    args = p.parse_args(argv)
    if args.quick:
        args.model_overrides = ""
        args.target = min(args.target, 0.6)
        args.eval_steps, args.max_steps, args.budget_s = 25, 200, 30.0
        args.max_train_samples = args.max_train_samples or 8000
        args.rte_steps, args.eval_repeats = 20, 1
    if (
        min(
            args.eval_steps,
            args.max_steps,
            args.batch_size,
            args.eval_batch_size,
            args.rte_steps,
            *args.rank_eval_batch_sizes,
        )
        < 1
    ):
        p.error("step counts and batch sizes must be >= 1")
    if args.eval_repeats < 1:
        p.error("--eval_repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    machine = common.machine_info()

    resolve_model_config(args, work_dir)
    tokenizer, tokenizer_seconds = shared_tokenizer(args, work_dir)
    print(f"tokenizer: {len(tokenizer)} tokens in {tokenizer_seconds:.1f} s", flush=True)
    ours = run_ours(args, work_dir)
    plain_budget = args.budget_s
    if ours["reached"] and args.plain_budget_factor > 0:
        plain_budget = min(plain_budget, args.plain_budget_factor * ours["reached"]["seconds"])
    plain = run_plain(args, tokenizer, work_dir, plain_budget)
    plain["budget_s"] = plain_budget
    logging.getLogger("fine_tune_t5").info("part 1 done after %.0f s", time.perf_counter() - started)

    rte_dir, rte_seconds = train_rte(args, work_dir)
    evals = {}
    for task, model_dir in (("sst2", ours["model_dir"]), ("rte", rte_dir)):
        for precision, batch in itertools.product(args.eval_precisions, args.rank_eval_batch_sizes):
            for mode, timed in time_evals(args, task, model_dir, batch, precision, work_dir).items():
                evals[(task, mode, batch, precision)] = timed

    command = " ".join([".venv/bin/python -m bench.finetune_sst2", *(sys.argv[1:] if argv is None else argv)])
    label_tokens = {
        task: max_target_length(get_task("glue", task), AutoTokenizer.from_pretrained(str(model_dir)))
        for task, model_dir in (("sst2", ours["model_dir"]), ("rte", rte_dir))
    }
    markdown = render(args, command, machine, tokenizer, ours, plain, evals, rte_seconds, label_tokens)
    print("\n" + markdown, flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n", encoding="utf-8")
    print(f"\nwritten to {out}  ({time.perf_counter() - started:.0f} s in all)")
    return {"ours": ours, "plain": plain, "evals": evals, "markdown": markdown, "output": str(out)}


def _shown_path(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(common.REPO))
    except ValueError:
        return str(path)


def _fmt_estimate(run: dict) -> str:
    est = run["idle_estimate"]
    if not run["reached"] or not est:
        return "n/a"
    return f"{est['seconds']:.0f} s ({est['clean_intervals']}/{est['intervals']} intervals clean)"


def _fmt_reached(run: dict) -> tuple[str, str, str]:
    if run["reached"]:
        r = run["reached"]
        return f"**{r['seconds']:.1f} s**", str(r["step"]), f"{100 * r['accuracy']:.1f}%"
    best = run["best"]
    best_text = f"best {100 * best['accuracy']:.1f}% (step {best['step']})" if best else "no eval finished"
    return f"not reached in {run['elapsed']:.0f} s", f"{run['evals'][-1]['step'] if run['evals'] else 0}", best_text


def ratio_lines(ratios: list[tuple[str, int, str, float, bool]], precisions: list[str]) -> list[str]:
    """One bullet per precision: rank's speed-up over generate per task and eval batch, and whether it meets the
    target (>= 2x, accuracy at least generate's)."""
    lines = []
    for precision in precisions:
        parts = [
            f"{task.upper()}, eval batch {batch}" + (" (the default)" if batch == DEFAULT_EVAL_BATCH else "")
            + f": rank is **{s:.2f}x** faster than generate"
            + (" with accuracy at least as good (target >= 2x met)" if ok
               else " (target >= 2x with accuracy >= generate: NOT met)")
            for task, batch, p, s, ok in ratios if p == precision
        ]  # fmt: skip
        default = " (fine_tune_t5's default here)" if precision == DEFAULT_EVAL_PRECISIONS[0] else ""
        lines.append(f"- {precision}{default}: " + "; ".join(parts) + ".")
    return lines


def render(args, command, machine, tokenizer, ours, plain, evals, rte_seconds, label_tokens) -> str:
    target = f"{100 * args.target:g}%"
    rows = []
    for run in (ours, plain):
        seconds, step, acc = _fmt_reached(run)
        n = len(run["evals"])
        stop = run["reached"] or (run["evals"][-1] if run["evals"] else None)
        rows.append([
            run["name"], seconds, step, acc, str(n),
            f"{run['eval_seconds']:.1f}",
            f"{(stop['seconds'] - run['eval_seconds']) / max(stop['step'], 1) * 1e3:.0f}" if stop else "",
            f"{100 * run['contention']:.0f}%" if run["contention"] is not None else "n/a",
            _fmt_estimate(run),
        ])  # fmt: skip
    table1 = common.markdown_table(
        ["variant", f"wall time to {target}", "step", "dev accuracy there", "evals", "of which eval s",
         "train ms/step", "CPU taken by others", "idle-machine estimate"],
        rows,
        ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"],
    )  # fmt: skip
    est_o, est_p = ours["idle_estimate"], plain["idle_estimate"]
    if ours["reached"] and plain["reached"] and est_o and est_p:
        estimate_line = (
            f"- Idle-machine estimate (median duration of the {args.eval_steps}-step intervals, evaluation included, "
            f"during which others took <= {100 * args.max_contention:.0f}% of the CPUs, x the number of intervals): "
            f"ours {est_o['seconds']:.0f} s, plain {est_p['seconds']:.0f} s: "
            f"**{est_p['seconds'] / est_o['seconds']:.1f}x** "
            "(an estimate for a machine without neighbours, not a measurement)."
        )
    else:
        estimate_line = (
            "- Idle-machine estimate: not available (a side did not reach the target, or had no uncontended interval)."
        )
    if ours["reached"] and plain["reached"]:
        ratio = plain["reached"]["seconds"] / ours["reached"]["seconds"]
        met = "met" if ratio >= 5 else "NOT met"
        verdict = f"**ours is {ratio:.1f}x faster to {target}** (target: >= 5x: {met})"
    elif ours["reached"]:
        ratio = plain["elapsed"] / ours["reached"]["seconds"]
        verdict = (
            f"plain did not reach {target} in {plain['elapsed']:.0f} s (its budget: {plain['budget_s']:.0f} s = "
            f"min(--budget_s, {args.plain_budget_factor:g} x ours' time)): **ours is > {ratio:.1f}x faster** "
            f"(a lower bound; target >= 5x: {'met' if ratio >= 5 else 'not shown'})"
        )
    elif plain["reached"]:
        verdict = f"**ours did not reach {target} within its budget; plain did** (target NOT met)"
    else:
        verdict = f"neither side reached {target} within {args.budget_s:.0f} s: no ratio (raise --budget_s)"

    def curve(run):
        return ", ".join(
            f"{r['step']}: {100 * r['accuracy']:.1f}% @ {r['seconds']:.0f}s"
            + (f" (others {100 * r['interval_contention']:.0f}%)" if r["interval_contention"] is not None else "")
            for r in run["evals"]
        )

    rows2, ratios = [], []
    for precision, (task, n), batch in itertools.product(
        args.eval_precisions, (("sst2", "872"), ("rte", "277")), args.rank_eval_batch_sizes
    ):
        rank, gen = evals[(task, "rank", batch, precision)], evals[(task, "generate", batch, precision)]
        speedup = gen["seconds"] / rank["seconds"]
        ok = speedup >= 2 and rank["accuracy"] >= gen["accuracy"]
        ratios.append((task, batch, precision, speedup, ok))
        paired = [g / r for g, r in zip(gen["all_seconds"], rank["all_seconds"])]  # repeat i: back-to-back runs
        for mode, r in (("rank", rank), ("generate", gen)):
            rows2.append([
                f"{task.upper()} dev ({n})", precision, str(batch), mode, f"{r['seconds']:.2f}",
                f"{100 * r['accuracy']:.1f}%", f"{100 * r['invalid_rate']:.1f}%",
                f"**{speedup:.2f}x**" if mode == "rank" else "1.00x",
                f"{min(paired):.2f}-{max(paired):.2f}x" if mode == "rank" else "",
                f"{100 * r['contention']:.0f}%" if r["contention"] is not None else "n/a",
            ])  # fmt: skip
    table2 = common.markdown_table(
        ["dev set", "precision", "eval batch", "eval mode", "eval s (best of %d)" % args.eval_repeats, "accuracy",
         "invalid outputs", "speed vs generate", "paired repeats", "CPU taken by others"],
        rows2,
        ["---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:"],
    )  # fmt: skip

    shares = [r["contention"] for r in (ours, plain)] + [e["contention"] for e in evals.values()]
    contended = [s for s in shares if s is not None and s > args.max_contention]
    same_init = ours["fingerprint"] is not None and ours["fingerprint"] == plain["fingerprint"]
    data = f"first {args.max_train_samples:,}" if args.max_train_samples else "all 67,349"
    lines = [
        "## Fine-tuning SST-2 from scratch: time to accuracy, and rank vs generate eval",
        "",
        f"Command: `{command}`",
        "",
        f"Model `{args.model_label}` from scratch, {plain['parameters']:,} parameters, dropout {args.dropout_rate:g}, "
        f"fp32; one {len(tokenizer):,}-token SentencePiece unigram tokenizer trained on SST-2 train text, shared by "
        f"both sides; AdamW lr {args.learning_rate:g} (linear decay over {args.max_steps} steps), batch "
        f"{args.batch_size}, seed {args.seed} "
        + ("(identical initial weights, checked)" if same_init else "(**initial weights differ**)")
        + f". Training data: {data} SST-2 train examples. Dev: all 872 SST-2 dev examples, evaluated every "
        f"{args.eval_steps} steps (eval batch {args.eval_batch_size}). Budget: {args.budget_s:.0f} s per side; plain "
        f"also stops after {args.plain_budget_factor:g}x ours' time to target (it can then only show a lower bound).",
        "",
        f"### 1. Wall time to {target} SST-2 dev accuracy",
        "",
        table1,
        "",
        f"- {verdict}.",
        estimate_line,
        f"- Wall time = on_train_begin to the end of the first evaluation at >= {target}: all training steps and "
        "evaluations before it (data preparation and model building excluded on both sides). train ms/step = "
        "(that time - eval time) / steps.",
        f"- ours: `fine_tune_t5.main` default data path (Seq2SeqCollator dynamic padding, "
        f"`--train_sampling_strategy group_by_length`), `--eval_mode {args.ours_eval_mode}`; plain: every input "
        f"padded to {args.max_length}, labels to {args.plain_target_length} (-100 for pads), random batches, "
        "`predict_with_generate=True` (greedy, same generation length limit as ours). Checkpointing off on both.",
        "- Accuracy curves (step: dev accuracy @ wall time (CPU share other processes took since the previous "
        "evaluation)):",
        f"  - ours: {curve(ours)}",
        f"  - plain: {curve(plain)}",
        "",
        "### 2. Rank vs generate evaluation (same trained model for both modes)",
        "",
        table2,
        "",
        *ratio_lines(ratios, args.eval_precisions),
        f"- SST-2 model: ours' model from part 1 (stopped at {target} or at its budget). RTE model: the same preset "
        f"trained from scratch on RTE train for {args.rte_steps} steps ({rte_seconds:.0f} s, tokenizer included) with "
        f"its own {args.rte_vocab_size:,}-token tokenizer trained on RTE train text (`fine_tune_t5 --vocab_size`): "
        "its accuracy is near chance (50%); the timing is the point.",
        "- Eval time = the Trainer's eval_runtime (dynamic padding in both modes; both also compute the teacher-forced "
        "eval loss). Speed vs generate = generate's best time / rank's; paired repeats = the range of generate / rank "
        "over the repeats, each a rank run and a generate run back to back. Label lengths in tokens (EOS included), "
        "which bound greedy generation's decoder steps: "
        + ", ".join(f"{task.upper()} {label_tokens[task]}" for task in ("sst2", "rte"))
        + ". Rank scores every label word in one decoder pass and never produces an invalid output.",
    ]
    if contended:
        lines.append(
            f"- **CPU contention: other processes took up to {100 * max(contended):.0f}% of the CPUs during some "
            "measurements (see the columns): those timings are inflated and the ratios less reliable; rerun on an "
            "idle machine.**"
        )
    else:
        lines.append(
            "- No measurement saw other processes take more than "
            f"{100 * args.max_contention:.0f}% of the CPUs (an idle machine)."
        )
    lines += [
        f"- Run folders in {_shown_path(args.work_dir)}/ (bench/out/ is git-ignored).",
        "",
        "Machine:",
        "",
        common.machine_markdown(machine),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
