"""Fine-tune T5 on a task from the DATASET_VALS table (GLUE, SuperGLUE, summarization, translation, QA) or on your
own text-to-text files.

    python fine_tune_t5.py --model_name_or_path t5-small --benchmark glue --dataset_name sst2 \\
        --do_train --do_eval --output_dir runs/sst2
    python fine_tune_t5.py --model_name_or_path runs/pt --benchmark glue --dataset_name rte \\
        --data_dir glue_data --do_train --do_eval --eval_mode rank --output_dir runs/rte
    python fine_tune_t5.py --model_name_or_path t5-small --benchmark custom --train_file train.jsonl \\
        --validation_file dev.jsonl --prefix "summarize:" --do_train --do_eval --output_dir runs/mine
    python fine_tune_t5.py --model_name_or_path t5-small --benchmark superglue --dataset_name cb \
        --data_dir superglue_data --do_train --do_eval --do_predict --output_dir runs/cb
    python fine_tune_t5.py --model_name_or_path t5-small --benchmark glue --dataset_name sst2,cola,superglue/rte \
        --data_dir glue_data --do_train --do_eval --mixing_temperature 2 --output_dir runs/mix

Mixtures (--dataset_name all, or a comma-separated list, across benchmarks as benchmark/task) train one model on
one training set drawn with T5's mixing rates, rate_i ~ min(n_i, --mixing_rate_cap) ** (1 / --mixing_temperature)
(t5kit.mixtures: the rates, the epoch length and the order). Every task's validation splits are scored with its
own metrics (eval_glue_sst2_accuracy) and rank candidates; eval_average, the mean over tasks of each task's mean
metric, is what `--metric_for_best_model task` selects and early stopping watches. A single task is a mixture of
one, with the keys it always had (eval_accuracy).

Every task runs through the same code, driven by its record's fields only: ReCoRD/SQuAD score each prediction
against all gold answers (`references`), MultiRC groups answer options by question (`group`), and `--do_predict`
writes the leaderboard file the record names (GLUE TSV, SuperGLUE jsonl) under submission/.

Metrics are computed on decoded, post-processed text (never token ids); text that is no label word counts as wrong
and its share is reported as `eval_invalid_rate`. Binary tasks also report `eval_precision` and `eval_recall`, and
every evaluation reports `eval_token_accuracy` (teacher-forced: the signal before generation yields valid labels).
Every flag: `python fine_tune_t5.py --help`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transformers import EarlyStoppingCallback, TrainerCallback

from data_collators import Seq2SeqCollator
from t5kit import parameter_efficient
from t5kit.args import ModelArguments, T5TrainingArguments, UsageError, is_main_process, parse_args
from t5kit.evaluation import (
    GENERATE,
    RANK,
    TASK_METRIC,
    FineTuneTrainer,
    eval_sets_of,
    first_splits,
    predict_test_splits,
    rank_candidates_of,
    resolve_best_metric,
    score_validation,
    scored_checkpoint,
    write_reports,
)
from t5kit.finetune_data import (
    FineTuneDataArguments,
    TruncationReport,
    build_training_mixture,
    check_custom_files,
    load_splits,
    prepare_text_splits,
    resolve_tasks,
    to_text,
)
from t5kit.modeling import format_parameter_summary
from t5kit.outputs import describe_scored_model
from t5kit.parameter_efficient import ParameterEfficientArguments
from t5kit.tokenizer import resolve_tokenizer
from t5kit.training import run_main, start_run, train_evaluate_save

logger = logging.getLogger("fine_tune_t5")


@dataclass
class FineTuneArguments(T5TrainingArguments):
    """Training and evaluation flags with fine-tuning defaults."""

    learning_rate: float = field(default=3e-4, metadata={"help": "Peak learning rate (AdamW; Adafactor: 1e-3)."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps, epoch."})
    save_strategy: str | None = field(
        default=None,
        metadata={
            "help": "When to checkpoint: no, steps, epoch. Default: with every evaluation (as best-model needs)."
        },
    )
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Restore the best checkpoint at the end."})
    metric_for_best_model: str | None = field(
        default=TASK_METRIC,
        metadata={"help": "Metric for best model / early stopping; 'task' = the task's own (a mixture: eval_average)."},
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "random, sequential, or group_by_length (less padding)."}
    )
    predict_with_generate: bool = field(
        default=True, metadata={"help": "Must stay True: --eval_mode decides how predictions are made."}
    )
    include_num_input_tokens_seen: str = field(default="non_padding", metadata={"help": "Count tokens for tokens/s."})
    eval_mode: Literal["generate", "rank"] = field(
        default=GENERATE,
        metadata={"help": "generate (decode, post-process to a label) or rank (score each label word; never invalid)."},
    )
    num_beams: int = field(default=1, metadata={"help": "Beam size for generate eval (1 = greedy)."})
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without improvement of the task metric."}
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={"help": "Least gain of the watched metric that counts as an improvement (0.5 = half a point)."},
    )

    def __post_init__(self):
        if self.eval_mode not in (GENERATE, RANK):
            raise UsageError(f"--eval_mode must be {GENERATE} or {RANK}, got {self.eval_mode!r}")
        if not self.predict_with_generate:
            raise UsageError(f"--predict_with_generate False would score raw logits as text; predictions follow "
                             f"--eval_mode ({GENERATE} or {RANK}): leave --predict_with_generate at True")  # fmt: skip
        if self.num_beams < 1:
            raise UsageError(f"--num_beams must be >= 1, got {self.num_beams}")
        # Checked before the parent's __post_init__, which turns do_eval on whenever eval_strategy is not "no".
        if not (self.do_train or self.do_eval or self.do_predict):
            raise UsageError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
        if not (self.do_train or self.do_eval):
            self.eval_strategy = "no"  # predict only: no validation split is read or scored
        if str(self.eval_strategy) == "no":
            self.load_best_model_at_end = False
        if self.save_strategy is None:
            self.save_strategy = "steps" if str(self.eval_strategy) == "no" else self.eval_strategy
            if str(self.eval_strategy) == "steps" and self.eval_steps:
                self.save_steps = self.eval_steps
        super().__post_init__()
        if self.early_stopping_patience is not None and not self.load_best_model_at_end:
            raise UsageError("--early_stopping_patience needs evaluation during training (--eval_strategy steps|epoch)")
        if self.early_stopping_threshold < 0:
            raise UsageError(f"--early_stopping_threshold must be >= 0, got {self.early_stopping_threshold}")
        if self.early_stopping_threshold and self.early_stopping_patience is None:
            raise UsageError("--early_stopping_threshold needs --early_stopping_patience (it only sets what counts as "
                             "an improvement for early stopping)")  # fmt: skip


def main(argv: list[str] | None = None, callbacks: list[TrainerCallback] = ()) -> dict:
    """Runs one fine-tuning job; `callbacks` are added to the Trainer's (see T5Trainer for the on_trainer hook)."""
    model_args, data_args, train_args, pe_args = parse_args(
        (ModelArguments, FineTuneDataArguments, FineTuneArguments, ParameterEfficientArguments), argv
    )
    parameter_efficient.validate(pe_args, model_args, train_args)
    tasks = resolve_tasks(data_args, train=train_args.do_train)
    check_custom_files(data_args, train_args.do_train, train_args.do_eval, train_args.do_predict)
    if train_args.eval_mode == RANK:
        for task in tasks:
            rank_candidates_of(task)  # a free-text task is refused before any data is read
    names = [t.full_name for t in tasks]
    run_name = f"{tasks[0].benchmark}-{tasks[0].name}" if len(tasks) == 1 else "mixture"
    resume = start_run(train_args, run_name=f"{run_name}-{Path(train_args.output_dir).name}", group=",".join(names),
                       flag_groups=(model_args, data_args, pe_args))  # fmt: skip
    resolve_best_metric(train_args, tasks)

    with train_args.main_process_first(desc="loading data"):
        splits = {t: load_splits(t, data_args, train_args.do_train, train_args.do_eval, train_args.do_predict)
                  for t in tasks}  # fmt: skip

    def texts():  # what a tokenizer trained here learns from: every labeled source and target
        for t, task_splits in splits.items():
            for ds in [task_splits.train, *task_splits.validation.values()]:
                if ds is not None:
                    text = to_text(t, ds, labeled=True)
                    yield from text["source"]
                    yield from text["target"]

    tokenizer = resolve_tokenizer(model_args, train_args, texts, needs_sentinels=False)
    model = parameter_efficient.build_model(model_args, tokenizer, pe_args, train_args)  # + freeze/prompt/LoRA
    truncation, prepared, target_lens = TruncationReport(), {}, []
    with train_args.main_process_first(desc="tokenizing"):
        for t in tasks:
            *prepared[t], target_len, report = prepare_text_splits(t, splits[t], tokenizer, data_args)
            target_lens.append(target_len)
            truncation.add(report)
    logger.info("truncated: %d inputs (> %d tokens), %d targets (> %d tokens)", truncation.sources_truncated,
                data_args.max_source_length, truncation.targets_truncated, max(target_lens))  # fmt: skip
    # Generation limits for this evaluation only: the saved model keeps its own generation_config.
    if train_args.generation_max_length is None:
        train_args.generation_max_length = max(target_lens) + 1  # decoder start token + the longest target with EOS
    train_args.generation_num_beams = train_args.num_beams
    if is_main_process():
        logger.info("model:\n%s", format_parameter_summary(model))
        print(f"{parameter_efficient.method_of(model, pe_args)}: {parameter_efficient.describe(model)}")

    extra = {
        "task": ",".join(names),
        "eval_mode": train_args.eval_mode,
        "sources_truncated": truncation.sources_truncated,
        "targets_truncated": truncation.targets_truncated,
        "parameter_efficient": parameter_efficient.method_of(model, pe_args),
        "generation_max_length": train_args.generation_max_length,  # used in evaluation, not saved with the model
        "files_read": {name: count for t in tasks for name, count in splits[t].read_counts().items()},
    }
    train = None
    if train_args.do_train:  # a single task is a mixture of one: rate 1, every row once, in file order
        train, table, record = build_training_mixture(tasks, [prepared[t][0] for t in tasks], data_args, train_args)
        extra.update(record)
        if len(tasks) > 1 and is_main_process():
            print(f"\ntraining mixture:\n{table}\n")
        else:
            logger.info("training set:\n%s", table)
    all_sets = eval_sets_of(tasks, {t.full_name: prepared[t][1] for t in tasks})
    during_training = first_splits(all_sets) if train_args.eval_strategy != "no" else []
    trainer = FineTuneTrainer(
        model=model,
        args=train_args,
        train_dataset=train,
        eval_dataset=during_training[0].dataset if during_training else None,
        data_collator=Seq2SeqCollator(tokenizer),
        processing_class=tokenizer,
        callbacks=[*callbacks, *([EarlyStoppingCallback(train_args.early_stopping_patience,
                                                        train_args.early_stopping_threshold)]
                                 if train_args.early_stopping_patience is not None else [])],
        tasks=tasks,
        eval_mode=train_args.eval_mode,
        eval_sets=during_training,
    )  # fmt: skip
    extra["trainable_parameters"], extra["total_parameters"] = parameter_efficient.parameter_counts(model)
    out = Path(train_args.output_dir)
    # Every validation split is scored below (with its predictions file), so train_evaluate_save does no final eval.
    results = train_evaluate_save(trainer, tokenizer, resume, extra_results=extra, final_eval=False)

    history = list(trainer.state.log_history)  # the evaluations during training, before the final one
    scored = describe_scored_model(trainer.state, train_args) if train_args.do_train else ""
    if train_args.do_train:
        results["scored_checkpoint"] = scored_checkpoint(trainer)
    per_task, labels = score_validation(trainer, all_sets, results, out) if all_sets else ([], {})
    predict_test_splits(trainer, {t: prepared[t][2] for t in tasks}, out)
    if trainer.is_world_process_zero():
        write_reports(trainer, results, per_task, labels, scored, history)
        if pe_args.merge_lora:  # last: merges the adapter into the model in place
            merged = parameter_efficient.save_merged(trainer.accelerator.unwrap_model(trainer.model), out, tokenizer)
            print(f"merged LoRA model: {merged.resolve()}")
        print(f"\nrun folder: {out.resolve()}")
    return results


if __name__ == "__main__":
    run_main(main)
