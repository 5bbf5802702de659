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

Every task runs through the same code, driven by its record's fields only: ReCoRD/SQuAD score each prediction
against all gold answers (`references`), MultiRC groups answer options by question (`group`), and `--do_predict`
writes the leaderboard file the record names (GLUE TSV, SuperGLUE jsonl) under submission/.

Metrics are computed on decoded, post-processed text (never token ids); text that is no label word counts as wrong
and its share is reported as `eval_invalid_rate`. Every flag: `python fine_tune_t5.py --help`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback

from constants import TaskSpec, compute_task_metrics, max_target_length, postprocess, target_candidates
from data_collators import LABEL_PAD_ID, Seq2SeqCollator
from t5kit.args import ModelArguments, T5TrainingArguments, UsageError, is_main_process, parse_args
from t5kit.finetune_data import (
    DEFAULT_TEXT_TARGET_LENGTH,
    FineTuneDataArguments,
    TruncationReport,
    load_splits,
    resolve_task,
    to_text,
    tokenize,
)
from t5kit import parameter_efficient
from t5kit.modeling import format_parameter_summary
from t5kit.parameter_efficient import ParameterEfficientArguments
from t5kit.tokenizer import resolve_tokenizer
from t5kit.training import (
    T5Trainer,
    run_main,
    save_results,
    start_run,
    train_and_save,
)
from task_data import write_submission

logger = logging.getLogger("fine_tune_t5")

TASK_METRIC = "task"  # --metric_for_best_model default: the task record's metric to optimise
RANK_CANDIDATE_CHUNK = 8  # rank eval scores this many candidates per decoder call (bounds logits memory)


@dataclass
class FineTuneArguments(T5TrainingArguments):
    """Training and evaluation flags with fine-tuning defaults."""

    learning_rate: float = field(default=3e-4, metadata={"help": "Peak learning rate (AdamW; Adafactor: 1e-3)."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps, epoch."})
    save_strategy: str | None = field(
        default=None,
        metadata={"help": "When to checkpoint: no, steps, epoch. Default: with every evaluation (as best-model needs)."},
    )
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Restore the best checkpoint at the end."})
    metric_for_best_model: str | None = field(
        default=TASK_METRIC, metadata={"help": "Metric for best model / early stopping; 'task' = the task's own."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "random, sequential, or group_by_length (less padding)."}
    )
    predict_with_generate: bool = field(default=True, metadata={"help": "Evaluate on generated/ranked text."})
    include_num_input_tokens_seen: str = field(default="non_padding", metadata={"help": "Count tokens for tokens/s."})
    eval_mode: str = field(
        default="generate",
        metadata={"help": "generate (decode, post-process to a label) or rank (score each label word; never invalid)."},
    )
    num_beams: int = field(default=1, metadata={"help": "Beam size for generate eval (1 = greedy)."})
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without improvement of the task metric."}
    )

    def __post_init__(self):
        if self.eval_mode not in ("generate", "rank"):
            raise UsageError(f"--eval_mode must be generate or rank, got {self.eval_mode!r}")
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


def rank_candidates_of(task: TaskSpec) -> list[str]:
    """The texts rank eval chooses from; a UsageError for free-text tasks (checked before any data is loaded)."""
    candidates = target_candidates(task)
    if candidates is None:
        raise UsageError(f"--eval_mode rank needs a task with fixed targets; {task.full_name} has free text")
    return candidates


class FineTuneTrainer(T5Trainer):
    """Evaluates on decoded text: generation, or rank classification over the task's candidate targets."""

    def __init__(self, *args, task: TaskSpec, eval_mode: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task
        self.eval_mode = eval_mode
        self.eval_targets: list[str] = []
        self.eval_references: list[list[str]] | None = None
        self.eval_groups: list[str] | None = None
        self.last_predictions: list[str] = []
        self.candidates = rank_candidates_of(task) if eval_mode == "rank" else None

    def _get_eval_sampler(self, eval_dataset):
        """Dataset order for eval and predict: predictions are matched to targets, files and leaderboard rows by
        position. transformers 5 applies train_sampling_strategy="group_by_length" to eval too, which permutes them."""
        if eval_dataset is None or self.args.world_size > 1:
            return None  # distributed: accelerate shards in order and gather_for_metrics restores it
        return SequentialSampler(eval_dataset)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        self.eval_targets = list(dataset["target"])
        columns = dataset.column_names
        self.eval_references = list(dataset["references"]) if "references" in columns else None
        self.eval_groups = list(dataset["group"]) if "group" in columns else None
        return super().evaluate(dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs)

    def compute_text_metrics(self, eval_pred) -> dict[str, float]:
        # Under several processes the last batches are padded by wrapping around to the first examples; the gather
        # keeps dataset order, so the real predictions are the first len(targets).
        texts = self.decode_predictions(eval_pred.predictions)[: len(self.eval_targets)]
        self.last_predictions = texts
        return compute_task_metrics(
            self.task, texts, self.eval_targets, references=self.eval_references, groups=self.eval_groups
        )

    def decode_predictions(self, predictions: np.ndarray) -> list[str]:
        if self.eval_mode == "rank":
            return [self.candidates[int(i)] for i in np.asarray(predictions).reshape(-1)]
        ids = np.where(predictions != LABEL_PAD_ID, predictions, self.processing_class.pad_token_id)
        return self.processing_class.batch_decode(ids, skip_special_tokens=True)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        if self.eval_mode != "rank" or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)
        inputs = self._prepare_inputs(inputs)
        unwrapped = self.accelerator.unwrap_model(model)
        with torch.no_grad(), self.compute_loss_context_manager():
            # The encoder runs once per batch: the eval loss and every candidate's score share its output.
            # (A soft prompt is prepended there and the mask extended; `seq2seq` is the T5 under a peft wrapper.)
            seq2seq, encoded, mask = parameter_efficient.encoder_states(
                unwrapped, inputs["input_ids"], inputs["attention_mask"]
            )
            loss = None
            if "labels" in inputs:
                loss = seq2seq(encoder_outputs=(encoded,), attention_mask=mask, labels=inputs["labels"]).loss
            choice = self.rank_candidates(seq2seq, encoded, mask)
        return (loss.detach() if loss is not None else None), choice[:, None], inputs.get("labels")

    def rank_candidates(self, model, encoded: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Index of the candidate target with the highest log-likelihood (summed over its tokens), per example.

        Each chunk of candidates reuses the encoder states (repeated per candidate) in one decoder call.
        """
        if not hasattr(self, "_candidate_ids"):
            ids = [self.processing_class(text)["input_ids"] for text in self.candidates]
            width = max(len(i) for i in ids)
            padded = [i + [LABEL_PAD_ID] * (width - len(i)) for i in ids]
            self._candidate_ids = torch.tensor(padded, dtype=torch.long)
        candidates = self._candidate_ids.to(encoded.device)
        batch = encoded.shape[0]
        scores = []
        for start in range(0, len(candidates), RANK_CANDIDATE_CHUNK):
            chunk = candidates[start : start + RANK_CANDIDATE_CHUNK]
            k = chunk.shape[0]
            labels = chunk.repeat(batch, 1)  # (batch * k, width): example-major
            logits = model(
                encoder_outputs=(encoded.repeat_interleave(k, dim=0),),
                attention_mask=attention_mask.repeat_interleave(k, dim=0),
                decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=labels),
            ).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            present = labels != LABEL_PAD_ID
            token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * present
            scores.append(token_logp.sum(-1).view(batch, k))
        return torch.cat(scores, dim=1).argmax(dim=1)


def prepare_text_splits(spec, splits, tokenizer, data_args):
    """Text and token ids for every split in `splits`, with truncation counted over all of them."""
    candidates = target_candidates(spec)
    target_len = data_args.max_target_length or (
        max_target_length(spec, tokenizer) if candidates is not None else DEFAULT_TEXT_TARGET_LENGTH
    )
    report = TruncationReport()

    def prepare(ds, labeled, each_answer=False):
        ds = to_text(spec, ds, labeled, each_answer=each_answer)
        ds, truncation = tokenize(
            ds, tokenizer, data_args.max_source_length, target_len, labeled, data_args.preprocessing_num_workers
        )
        report.add(truncation)
        return ds

    train = prepare(splits.train, True, each_answer=True) if splits.train is not None else None
    validation = {name: prepare(ds, True) for name, ds in splits.validation.items()}
    test = {name: prepare(ds, False) for name, ds in splits.test.items()}
    return train, validation, test, target_len, report


def write_predictions(out: Path, spec: TaskSpec, split: str, dataset, predictions: list[str]) -> Path:
    folder = out / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.benchmark}_{spec.name}_{split}.jsonl"
    references = dataset["references"] if "references" in dataset.column_names else None
    with path.open("w", encoding="utf-8") as handle:
        for i, (source, target, prediction) in enumerate(zip(dataset["source"], dataset["target"], predictions)):
            row = {"input": source, "target": target, "prediction": prediction}
            if references is not None:
                row["references"] = references[i]  # every gold answer (ReCoRD, SQuAD)
            handle.write(json.dumps(row) + "\n")
    return path


def write_results_table(out: Path, spec: TaskSpec, per_split: dict[str, dict[str, float]]) -> str:
    """A markdown table of every evaluated split's metrics (0-100), also written to results.md."""
    names = list(spec.metrics) + ["invalid_rate"]
    lines = [f"| {spec.full_name} split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for split, metrics in per_split.items():
        lines.append(f"| {split} | " + " | ".join(f"{metrics.get(n, float('nan')):.2f}" for n in names) + " |")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    return table


def plot_eval_metric(log_history: list[dict], key: str, path: Path) -> None:
    points = [(row["step"], row[key]) for row in log_history if key in row]
    if not points:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps, values = zip(*points)
    ax.plot(steps, values, marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, train_args, pe_args = parse_args(
        (ModelArguments, FineTuneDataArguments, FineTuneArguments, ParameterEfficientArguments), argv
    )
    parameter_efficient.validate(pe_args, model_args, train_args)
    spec = resolve_task(data_args)
    if train_args.eval_mode == "rank":
        rank_candidates_of(spec)
    resume = start_run(
        train_args,
        run_name=f"{spec.benchmark}-{spec.name}-{Path(train_args.output_dir).name}",
        group=spec.full_name,
        flag_groups=(model_args, data_args, pe_args),
    )
    if train_args.metric_for_best_model == TASK_METRIC:
        if spec.metric_to_optimize is None:
            raise UsageError(f"task {spec.full_name} has no metric to optimise; pass --metric_for_best_model")
        train_args.metric_for_best_model = f"eval_{spec.metric_to_optimize}"
        train_args.greater_is_better = spec.greater_is_better

    with train_args.main_process_first(desc="loading data"):
        splits = load_splits(
            spec, data_args, train=train_args.do_train, evaluate=train_args.do_eval, predict=train_args.do_predict
        )
    def texts():
        for ds in [splits.train, *splits.validation.values()]:
            if ds is not None:
                text = to_text(spec, ds, labeled=True)
                yield from text["source"]
                yield from text["target"]

    tokenizer = resolve_tokenizer(model_args, train_args, texts, needs_sentinels=False)
    model = parameter_efficient.build_model(model_args, tokenizer, pe_args, train_args)  # + freeze/prompt/LoRA
    with train_args.main_process_first(desc="tokenizing"):
        train, validation, test, target_len, truncation = prepare_text_splits(spec, splits, tokenizer, data_args)
    logger.info(
        "truncated: %d inputs (> %d tokens), %d targets (> %d tokens)",
        truncation.sources_truncated, data_args.max_source_length, truncation.targets_truncated, target_len,
    )  # fmt: skip
    model.generation_config.max_length = target_len + 1  # decoder start token + the longest target (EOS included)
    model.generation_config.num_beams = train_args.num_beams
    if is_main_process():
        logger.info("model:\n%s", format_parameter_summary(model))
        print(f"{parameter_efficient.method_of(model, pe_args)}: {parameter_efficient.describe(model)}")

    primary = next(iter(validation.values()), None)
    callbacks = []
    if train_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(train_args.early_stopping_patience))
    trainer = FineTuneTrainer(
        model=model,
        args=train_args,
        train_dataset=train,
        eval_dataset=primary if train_args.eval_strategy != "no" else None,
        data_collator=Seq2SeqCollator(tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        task=spec,
        eval_mode=train_args.eval_mode,
    )
    trainer.compute_metrics = trainer.compute_text_metrics
    extra = {
        "task": spec.full_name,
        "eval_mode": train_args.eval_mode,
        "sources_truncated": truncation.sources_truncated,
        "targets_truncated": truncation.targets_truncated,
        "parameter_efficient": parameter_efficient.method_of(model, pe_args),
    }
    extra["trainable_parameters"], extra["total_parameters"] = parameter_efficient.parameter_counts(model)
    out = Path(train_args.output_dir)
    # Each validation split is evaluated below (with its predictions file), so train_and_save does no final eval.
    results = train_and_save(trainer, tokenizer, resume, extra_results=extra, final_eval=False)

    per_split: dict[str, dict[str, float]] = {}
    for i, (name, ds) in enumerate(validation.items()):
        prefix = "eval" if i == 0 else f"eval_{name}"
        metrics = trainer.evaluate(ds, metric_key_prefix=prefix)
        results.update(metrics)
        per_split[name] = {key[len(prefix) + 1 :]: value for key, value in metrics.items()}
        if trainer.is_world_process_zero():
            write_predictions(out, spec, name, ds, trainer.last_predictions)
    for name, ds in test.items():
        output = trainer.predict(ds, metric_key_prefix="predict")
        texts_out = trainer.decode_predictions(output.predictions)[: len(ds)]
        if trainer.is_world_process_zero():
            write_predictions(out, spec, name, ds, texts_out)
            if spec.submission_files:
                values = [postprocess(spec, text) for text in texts_out]
                path, replaced = write_submission(spec, name, list(ds["idx"]), values, str(out / "submission"))
                logger.info("leaderboard file %s (%d invalid predictions replaced by a default label)", path, replaced)

    if trainer.is_world_process_zero():
        save_results(trainer, results)
        if per_split:
            table = write_results_table(out, spec, per_split)
            print(f"\n{table}")
        if spec.metric_to_optimize:
            plot_eval_metric(trainer.state.log_history, f"eval_{spec.metric_to_optimize}", out / "metrics.png")
        if pe_args.merge_lora:  # last: merges the adapter into the model in place
            merged = parameter_efficient.save_merged(trainer.accelerator.unwrap_model(trainer.model), out, tokenizer)
            print(f"merged LoRA model: {merged.resolve()}")
        print(f"\nrun folder: {out.resolve()}")
    return results


if __name__ == "__main__":
    run_main(main)
