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
and its share is reported as `eval_invalid_rate`. Every flag: `python fine_tune_t5.py --help`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback

from constants import (
    TaskSpec,
    compute_task_metrics,
    max_target_length,
    postprocess,
    target_candidates,
    task_score,
)
from data_collators import LABEL_PAD_ID, Seq2SeqCollator
from t5kit.args import ModelArguments, T5TrainingArguments, UsageError, is_main_process, parse_args
from t5kit.finetune_data import (
    DEFAULT_TEXT_TARGET_LENGTH,
    FineTuneDataArguments,
    TruncationReport,
    check_custom_files,
    load_splits,
    resolve_tasks,
    to_text,
    tokenize,
)
from t5kit.mixtures import build_mixture, format_rates_table, mixing_rates, mixture_counts
from t5kit import attention, parameter_efficient
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
        default=TASK_METRIC,
        metadata={"help": "Metric for best model / early stopping; 'task' = the task's own (a mixture: eval_average)."},
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


@dataclass
class EvalSet:
    """One validation split of one task, and the prefix of its metric keys."""

    task: TaskSpec
    split: str
    dataset: Any
    prefix: str


def metric_prefix(task: TaskSpec, split_index: int, split: str, mixture: bool) -> str:
    """One task: eval (its first validation split), eval_<split> (MNLI's mismatched); a mixture adds the task:
    eval_glue_sst2, eval_glue_mnli_validation_mismatched."""
    prefix = f"eval_{task.benchmark}_{task.name}" if mixture else "eval"
    return prefix if split_index == 0 else f"{prefix}_{split}"


def eval_sets_of(tasks: list[TaskSpec], validation: dict[str, dict[str, Any]]) -> list[EvalSet]:
    mixture = len(tasks) > 1
    return [EvalSet(task, split, ds, metric_prefix(task, i, split, mixture))
            for task in tasks for i, (split, ds) in enumerate(validation[task.full_name].items())]  # fmt: skip


AVERAGE = "average"  # eval_average: the mixture's score, the mean of the task scores


def mixture_summary(sets: list[EvalSet], per_set: list[dict[str, float]]) -> dict[str, float]:
    """For a mixture: eval_average = the mean over tasks of the task score (a task with several validation splits,
    MNLI, scores the mean over its splits), and eval_loss = the example-weighted mean of the tasks' losses."""
    tasks = list(dict.fromkeys(s.task.full_name for s in sets))
    if len(tasks) < 2:
        return {}
    scores = {name: [] for name in tasks}
    for s, metrics in zip(sets, per_set):
        if s.task.metrics:
            scores[s.task.full_name].append(task_score(s.task, metrics))
    summary = {}
    task_means = [float(np.mean(v)) for v in scores.values() if v]
    if task_means:
        summary[f"eval_{AVERAGE}"] = float(np.mean(task_means))
    if all("loss" in m for m in per_set):
        sizes = [len(s.dataset) for s in sets]
        summary["eval_loss"] = float(np.average([m["loss"] for m in per_set], weights=sizes))
    return summary


def loss_from_candidate_scores(
    scores: torch.Tensor, labels: torch.Tensor, candidate_ids: torch.Tensor
) -> torch.Tensor | None:
    """The token-mean cross-entropy T5 computes on `labels`, read off the candidates' summed log-likelihoods.

    scores: (batch, k); labels: (batch, width) and candidate_ids: (k, width'), both padded with LABEL_PAD_ID.
    None when some row of labels is not exactly one candidate's ids.
    Example: candidates [[5, 1], [6, 1]], labels [[6, 1]], scores [[-3.0, -0.5]] -> 0.5 / 2 tokens = 0.25.
    """
    candidates = candidate_ids.to(labels.device)
    width = max(labels.shape[1], candidates.shape[1])
    labels_p = torch.nn.functional.pad(labels, (0, width - labels.shape[1]), value=LABEL_PAD_ID)
    candidates_p = torch.nn.functional.pad(candidates, (0, width - candidates.shape[1]), value=LABEL_PAD_ID)
    matches = (labels_p[:, None, :] == candidates_p[None, :, :]).all(dim=-1)  # (batch, k)
    if not bool((matches.sum(dim=1) == 1).all()):
        return None
    gold = scores.gather(1, matches.float().argmax(dim=1, keepdim=True))
    return -gold.sum() / (labels != LABEL_PAD_ID).sum()


def _summed_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(rows,) sum of log p(label) over each row's positions; LABEL_PAD_ID positions count nothing."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    present = labels != LABEL_PAD_ID
    return (logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * present).sum(-1)


class FineTuneTrainer(T5Trainer):
    """Evaluates on decoded text: generation, or rank classification over the task's candidate targets.

    `eval_sets`: what evaluation during training scores (each task's first validation split). Each set is scored
    with its own task's metrics and candidates; the sets are then logged as one evaluation (one log row, one
    on_evaluate), with eval_average for a mixture, so best-model selection and early stopping can use the average.
    """

    _quiet = False  # inside evaluate_sets: the per-set evaluations neither log nor call on_evaluate

    def __init__(self, *args, tasks: list[TaskSpec], eval_mode: str, eval_sets: list[EvalSet] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = list(tasks)
        self.eval_mode = eval_mode
        self.eval_sets = list(eval_sets)
        self.eval_targets: list[str] = []
        self.eval_references: list[list[str]] | None = None
        self.eval_groups: list[str] | None = None
        self.last_predictions: list[str] = []
        self._sorted_eval: dict[str, tuple[Any, list[int]]] = {}
        self._unwrap_cache: tuple[torch.nn.Module, torch.nn.Module] | None = None
        self.set_task(self.tasks[0])

    def set_task(self, task: TaskSpec) -> None:
        """The task whose metrics, post-processing and rank candidates the next evaluation or prediction uses."""
        self.task = task
        self.candidates = rank_candidates_of(task) if self.eval_mode == "rank" else None
        self._candidate_ids = None

    def _get_eval_sampler(self, eval_dataset):
        """Dataset order for eval and predict: predictions are matched to targets, files and leaderboard rows by
        position. transformers 5 applies train_sampling_strategy="group_by_length" to eval too, which permutes them."""
        if eval_dataset is None or self.args.world_size > 1:
            return None  # distributed: accelerate shards in order and gather_for_metrics restores it
        return SequentialSampler(eval_dataset)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
        """Scores `eval_dataset` in order of input length (batches padded to similar lengths: less wasted compute);
        the metrics do not depend on the order, and last_predictions comes back in dataset order."""
        if eval_dataset is None and self.eval_sets:
            return self.evaluate_sets(self.eval_sets, ignore_keys=ignore_keys, **gen_kwargs)[0]
        dataset, order = self._by_length(eval_dataset if eval_dataset is not None else self.eval_dataset)
        self.eval_targets = list(dataset["target"])
        columns = dataset.column_names
        self.eval_references = list(dataset["references"]) if "references" in columns else None
        self.eval_groups = list(dataset["group"]) if "group" in columns else None
        metrics = super().evaluate(dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs)
        in_order = [""] * len(order)
        for position, text in zip(order, self.last_predictions):
            in_order[position] = text
        self.last_predictions = in_order
        return metrics

    def _by_length(self, dataset) -> tuple[Any, list[int]]:
        """(dataset sorted by input length, longest first, so a batch too big for memory shows at once; the
        original position of each row). Cached per dataset: evaluation during training reuses it."""
        key = dataset._fingerprint
        if key not in self._sorted_eval:
            lengths = np.fromiter((len(ids) for ids in dataset["input_ids"]), dtype=np.int64, count=len(dataset))
            order = np.argsort(-lengths, kind="stable").tolist()
            self._sorted_eval[key] = (dataset.select(order).flatten_indices(), order)
        return self._sorted_eval[key]

    def evaluate_sets(self, sets: list[EvalSet], ignore_keys=None, **gen_kwargs):
        """(all metrics, per set: (metrics without the prefix, decoded predictions)); logged as one evaluation."""
        merged: dict[str, float] = {}
        per_set: list[tuple[dict[str, float], list[str]]] = []
        self._quiet = True  # the per-set evaluations neither log nor call on_evaluate: the merged metrics do
        try:
            for s in sets:
                self.set_task(s.task)
                metrics = self.evaluate(s.dataset, ignore_keys=ignore_keys, metric_key_prefix=s.prefix, **gen_kwargs)
                merged.update(metrics)
                per_set.append(({k[len(s.prefix) + 1 :]: v for k, v in metrics.items()}, self.last_predictions))
        finally:
            self._quiet = False
            self.set_task(self.tasks[0])
        merged.update(mixture_summary(sets, [m for m, _ in per_set]))
        self.log(merged)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, merged)
        return merged, per_set

    def log(self, logs, start_time=None) -> None:
        if not self._quiet:
            super().log(logs, start_time)

    @property
    def callback_handler(self):
        return _QuietCallbacks(self._callback_handler) if self._quiet else self._callback_handler

    @callback_handler.setter
    def callback_handler(self, handler):
        self._callback_handler = handler

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
        """Evaluation in the training precision throughout: accelerate's bf16 autocast wraps only the model's forward,
        which the encoder pass of generate() and of rank scoring never calls (it would run in fp32)."""
        if self.eval_mode != "rank" or prediction_loss_only:
            with self.accelerator.autocast():
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys, **gen_kwargs)
        inputs = self._prepare_inputs(inputs)
        unwrapped = self._unwrapped(model)
        with torch.no_grad(), self.accelerator.autocast():
            # The encoder runs once per batch: every candidate's score, and the eval loss, share its output.
            # (A soft prompt is prepended there and the mask extended; `seq2seq` is the T5 under a peft wrapper.)
            seq2seq, encoded, mask = parameter_efficient.encoder_states(
                unwrapped, inputs["input_ids"], inputs["attention_mask"]
            )
            scores = self.candidate_scores(seq2seq, encoded, mask)
            labels = inputs.get("labels")
            loss = None
            if labels is not None:
                # Where every target is one of the candidates, the teacher-forced loss is already in the scores;
                # otherwise (e.g. several reference answers) one more decoder pass computes it.
                loss = loss_from_candidate_scores(scores, labels, self._candidate_ids)
                if loss is None:
                    loss = seq2seq(encoder_outputs=(encoded,), attention_mask=mask, labels=labels).loss
        return (loss.detach() if loss is not None else None), scores.argmax(dim=1)[:, None], labels

    def _unwrapped(self, model):
        """accelerator.unwrap_model, once per wrapper: it re-reads package metadata on every call (~2.5 ms, a tenth
        of a small model's eval batch)."""
        if self._unwrap_cache is None or self._unwrap_cache[0] is not model:
            self._unwrap_cache = (model, self.accelerator.unwrap_model(model))
        return self._unwrap_cache[1]

    def candidate_scores(self, model, encoded: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, k) log-likelihood of each candidate target (summed over its tokens, EOS included), per example;
        rank eval picks the highest. Candidates are scored a chunk at a time, a decoder row per (example, candidate).

        With the `blocked` attention (the default) one teacher-forced decoder pass scores a chunk: an example's rows
        share its encoder states, whose cross-attention keys and values are computed once and read in place
        (t5kit/attention.py folds the rows into query positions). Other attention implementations cannot share
        them, so the first decoder position and those keys and values are computed once per example and cached,
        and the cache is copied for each candidate's later positions.
        """
        if self._candidate_ids is None:
            ids = [self.processing_class(text)["input_ids"] for text in self.candidates]
            width = max(len(i) for i in ids)
            padded = [i + [LABEL_PAD_ID] * (width - len(i)) for i in ids]
            self._candidate_ids = torch.tensor(padded, dtype=torch.long)
        candidates = self._candidate_ids.to(encoded.device)
        decoder_inputs = model.prepare_decoder_input_ids_from_labels(labels=candidates)  # (k, width): start, c0, ...
        batch = encoded.shape[0]
        shared = model.config._attn_implementation == attention.NAME
        first = None
        if not shared:
            first = model(
                encoder_outputs=(encoded,),
                attention_mask=attention_mask,
                decoder_input_ids=decoder_inputs[:1, :1].expand(batch, 1),
                use_cache=True,
            )
            first_logp = torch.log_softmax(first.logits[:, 0].float(), dim=-1)  # (batch, vocab)
        scores = []
        for start in range(0, len(candidates), RANK_CANDIDATE_CHUNK):
            chunk = candidates[start : start + RANK_CANDIDATE_CHUNK]
            k = chunk.shape[0]
            inputs = decoder_inputs[start : start + k].repeat(batch, 1)  # rows example-major
            if shared:
                logits = model(
                    encoder_outputs=(encoded,), attention_mask=attention_mask, decoder_input_ids=inputs, use_cache=False
                ).logits
                scores.append(_summed_log_likelihood(logits, chunk.repeat(batch, 1)).view(batch, k))
                continue
            chunk_scores = first_logp[:, chunk[:, 0]]  # a candidate has at least one token (EOS)
            if chunk.shape[1] > 1:
                cache = first.past_key_values if start + k >= len(candidates) else copy.deepcopy(first.past_key_values)
                cache.batch_repeat_interleave(k)  # in place
                logits = model(
                    encoder_outputs=(encoded.repeat_interleave(k, dim=0),),  # shapes the mask; K/V are cached
                    attention_mask=attention_mask.repeat_interleave(k, dim=0),
                    decoder_input_ids=inputs[:, 1:],
                    past_key_values=cache,
                    use_cache=True,
                ).logits
                later = _summed_log_likelihood(logits, chunk[:, 1:].repeat(batch, 1))
                chunk_scores = chunk_scores + later.view(batch, k)
            scores.append(chunk_scores)
        return torch.cat(scores, dim=1)


class _QuietCallbacks:
    """The callback handler during one set of a multi-set evaluation: on_evaluate waits for the merged metrics."""

    def __init__(self, handler):
        self._handler = handler

    def on_evaluate(self, args, state, control, metrics):
        return control

    def __getattr__(self, name):
        return getattr(self._handler, name)


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


INVALID_LABEL = "(no label word)"


def label_report(spec: TaskSpec, targets: list[str], predictions: list[str]) -> dict[str, Any] | None:
    """For a classification split: the majority class and its accuracy (what predicting it always scores), and the
    share of each predicted label (%); None for other tasks. SST-2 targets positive, positive, negative predicted
    as positive, positive, "maybe": majority positive at 66.7, predicted {positive: 66.7, (no label word): 33.3}.
    """
    if spec.label_words is None or not targets:
        return None
    words = list(spec.label_words)
    gold = Counter(targets)
    predicted = Counter(p.strip() if p.strip() in words else INVALID_LABEL for p in predictions)
    majority, count = gold.most_common(1)[0]
    return {
        "majority_class": majority,
        "majority_baseline": 100.0 * count / len(targets),
        "predicted_labels": {w: 100.0 * predicted[w] / len(predictions) for w in [*words, INVALID_LABEL] if predicted[w]},
    }


def describe_labels(split: str, report: dict[str, Any]) -> str:
    shares = ", ".join(f"{word} {share:.1f}%" for word, share in report["predicted_labels"].items())
    line = (f"{split}: predicted labels {shares}; always predicting the majority class "
            f"({report['majority_class']}) scores accuracy {report['majority_baseline']:.1f}")  # fmt: skip
    if len(report["predicted_labels"]) == 1:
        only = next(iter(report["predicted_labels"]))
        line += f". **Warning: every prediction is {only!r}: the model ignores its input.**"
    return line


def results_table(spec: TaskSpec, per_split: dict[str, dict[str, float]],
                  labels: dict[str, dict[str, Any]] | None = None) -> str:
    """A markdown table of one task's evaluated splits and metrics (0-100), and for classification the predicted
    labels against the majority-class baseline."""
    names = list(spec.metrics) + ["invalid_rate"]
    lines = [f"| {spec.full_name} split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for split, metrics in per_split.items():
        lines.append(f"| {split} | " + " | ".join(f"{metrics.get(n, float('nan')):.2f}" for n in names) + " |")
    notes = [describe_labels(split, report) for split, report in (labels or {}).items()]
    return "\n".join(lines + ([""] + [f"- {note}" for note in notes] if notes else []))


def describe_scored_model(trainer: T5Trainer) -> str:
    """Which weights the final evaluation scored, and why."""
    state, args = trainer.state, trainer.args
    best = state.best_model_checkpoint
    if not (args.load_best_model_at_end and best):
        return f"Scored model: the final weights (step {state.global_step})."
    key = args.metric_for_best_model
    evaluations = sum(key in row for row in state.log_history)
    return (f"Scored model: {Path(best).name}, restored at the end of training (step {state.global_step}) as the "
            f"best of {evaluations} evaluations by {key} = {state.best_metric:.2f} (a tie goes to the lower eval "
            "loss).")  # fmt: skip


def write_results_table(out: Path, per_task: list[tuple[TaskSpec, dict[str, dict[str, float]]]],
                        average: float | None = None, labels: dict[str, dict[str, dict]] | None = None,
                        scored: str = "") -> str:
    """One table per task (and the mixture average), also written to results.md."""
    labels = labels or {}
    table = "\n\n".join(results_table(spec, per_split, labels.get(spec.full_name)) for spec, per_split in per_task)
    if scored:
        table = f"{scored}\n\n{table}"
    if average is not None:
        scores = ", ".join(f"{spec.full_name} {np.mean([task_score(spec, m) for m in splits.values()]):.2f}"
                           for spec, splits in per_task if spec.metrics and splits)  # fmt: skip
        table += f"\n\n{AVERAGE} (mean of the task scores; a task's score is the mean of its metrics): " \
                 f"**{average:.2f}** ({scores})"
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    return table


def plot_eval_metric(log_history: list[dict], key: str, path: Path, final: tuple[int, float, str] | None = None) -> None:
    """The metric at each evaluation during training (`log_history`), and apart from them the final evaluation
    (`final`: the step of the weights it scored, the value, a label), which may be of a restored checkpoint."""
    points = [(row["step"], row[key]) for row in log_history if key in row]
    if not points and final is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o", label="during training")
    if final is not None:
        ax.plot([final[0]], [final[1]], marker="*", markersize=14, linestyle="none", color="tab:red", label=final[2])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TRAIN_COLUMNS = ("source", "target", "input_ids", "labels", "length")  # what the mixture keeps of each task


def resolve_best_metric(train_args: FineTuneArguments, tasks: list[TaskSpec]) -> None:
    """--metric_for_best_model task: the task's metric to optimise (eval_accuracy), or eval_average for a mixture.
    Another name for a mixture must be a key its evaluations log (checked here, not after the first training steps)."""
    if train_args.metric_for_best_model != TASK_METRIC:
        if len(tasks) > 1 and train_args.metric_for_best_model is not None:
            known = [f"eval_{AVERAGE}", "eval_loss"] + [
                f"eval_{t.benchmark}_{t.name}_{m}" for t in tasks for m in (*t.metrics, "loss", "invalid_rate")
            ]
            key = train_args.metric_for_best_model
            if (key if key.startswith("eval_") else f"eval_{key}") not in known:
                raise UsageError(f"--metric_for_best_model {key}: a mixture logs {', '.join(known)}")
        return
    missing = [t.full_name for t in tasks if t.metric_to_optimize is None]
    needs_best = train_args.load_best_model_at_end or train_args.early_stopping_patience is not None or str(
        train_args.save_strategy) == "best"
    if missing and not needs_best:  # nothing picks a best checkpoint (a test-only task such as glue/ax)
        train_args.metric_for_best_model = None
        return
    if missing:
        raise UsageError(f"task {', '.join(missing)} has no metric to optimise; pass --metric_for_best_model")
    if len(tasks) == 1:
        train_args.metric_for_best_model = f"eval_{tasks[0].metric_to_optimize}"
        train_args.greater_is_better = tasks[0].greater_is_better
        return
    lower = [t.full_name for t in tasks if not t.greater_is_better]
    if lower:
        raise UsageError(f"eval_{AVERAGE} averages scores where higher is better; {', '.join(lower)} is not scored "
                         "so: pass --metric_for_best_model")
    train_args.metric_for_best_model = f"eval_{AVERAGE}"
    train_args.greater_is_better = True


def build_training_mixture(tasks, train_sets, data_args, train_args):
    """The one training set (t5kit.mixtures) and what to record of it."""
    names = [t.full_name for t in tasks]
    sizes = [len(ds) for ds in train_sets]
    try:
        rates = mixing_rates(sizes, data_args.mixing_rate_cap, data_args.mixing_temperature)
    except ValueError as err:
        raise UsageError(f"{err} (--max_train_samples?)") from None
    counts = mixture_counts(sizes, rates, data_args.max_mixture_samples)
    seed = train_args.data_seed if train_args.data_seed is not None else train_args.seed
    train = build_mixture(train_sets, names, counts, seed, TRAIN_COLUMNS)
    table = format_rates_table(names, sizes, rates, counts, data_args.mixing_rate_cap, data_args.mixing_temperature)
    record = {
        "mixing_rates": dict(zip(names, rates)),
        "mixing_train_examples": dict(zip(names, sizes)),
        "mixture_rows_per_epoch": dict(zip(names, counts)),
        "mixing_rate_cap": data_args.mixing_rate_cap,
        "mixing_temperature": data_args.mixing_temperature,
        "max_mixture_samples": data_args.max_mixture_samples,
    }
    return train, table, record


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, train_args, pe_args = parse_args(
        (ModelArguments, FineTuneDataArguments, FineTuneArguments, ParameterEfficientArguments), argv
    )
    parameter_efficient.validate(pe_args, model_args, train_args)
    tasks = resolve_tasks(data_args, train=train_args.do_train)
    check_custom_files(data_args, train_args.do_train, train_args.do_eval, train_args.do_predict)
    mixture = len(tasks) > 1
    if train_args.eval_mode == "rank":
        for task in tasks:
            rank_candidates_of(task)
    spec = tasks[0]
    run_name = f"{spec.benchmark}-{spec.name}" if not mixture else "mixture"
    resume = start_run(
        train_args,
        run_name=f"{run_name}-{Path(train_args.output_dir).name}",
        group=",".join(t.full_name for t in tasks),
        flag_groups=(model_args, data_args, pe_args),
    )
    resolve_best_metric(train_args, tasks)

    with train_args.main_process_first(desc="loading data"):
        splits = {
            t.full_name: load_splits(
                t, data_args, train=train_args.do_train, evaluate=train_args.do_eval, predict=train_args.do_predict
            )
            for t in tasks
        }

    def texts():
        for t in tasks:
            for ds in [splits[t.full_name].train, *splits[t.full_name].validation.values()]:
                if ds is not None:
                    text = to_text(t, ds, labeled=True)
                    yield from text["source"]
                    yield from text["target"]

    tokenizer = resolve_tokenizer(model_args, train_args, texts, needs_sentinels=False)
    model = parameter_efficient.build_model(model_args, tokenizer, pe_args, train_args)  # + freeze/prompt/LoRA
    truncation = TruncationReport()
    prepared, target_lens = {}, []
    with train_args.main_process_first(desc="tokenizing"):
        for t in tasks:
            train_t, validation_t, test_t, target_len_t, truncation_t = prepare_text_splits(
                t, splits[t.full_name], tokenizer, data_args
            )
            prepared[t.full_name] = (train_t, validation_t, test_t)
            target_lens.append(target_len_t)
            truncation.add(truncation_t)
    target_len = max(target_lens)
    logger.info(
        "truncated: %d inputs (> %d tokens), %d targets (> %d tokens)",
        truncation.sources_truncated, data_args.max_source_length, truncation.targets_truncated, target_len,
    )  # fmt: skip
    # Generation limits for this task's evaluation only: the saved model keeps its own generation_config, so that
    # it is not capped at this task's label length when used for another task.
    if train_args.generation_max_length is None:
        train_args.generation_max_length = target_len + 1  # decoder start token + the longest target (EOS included)
    train_args.generation_num_beams = train_args.num_beams
    if is_main_process():
        logger.info("model:\n%s", format_parameter_summary(model))
        print(f"{parameter_efficient.method_of(model, pe_args)}: {parameter_efficient.describe(model)}")

    extra = {
        "task": ",".join(t.full_name for t in tasks),
        "eval_mode": train_args.eval_mode,
        "sources_truncated": truncation.sources_truncated,
        "targets_truncated": truncation.targets_truncated,
        "parameter_efficient": parameter_efficient.method_of(model, pe_args),
        "generation_max_length": train_args.generation_max_length,  # used in evaluation, not saved with the model
    }
    train = None
    if train_args.do_train:  # a single task is a mixture of one: rate 1, every row once, in file order
        train, table, record = build_training_mixture(
            tasks, [prepared[t.full_name][0] for t in tasks], data_args, train_args
        )
        extra.update(record)
        if mixture and is_main_process():
            print(f"\ntraining mixture:\n{table}\n")
        else:
            logger.info("training set:\n%s", table)
    validation = {t.full_name: prepared[t.full_name][1] for t in tasks}
    all_sets = eval_sets_of(tasks, validation)
    # Evaluation during training scores each task's first validation split (MNLI: matched), as one task did before.
    first_split: dict[str, EvalSet] = {}
    for s in all_sets:
        first_split.setdefault(s.task.full_name, s)
    training_sets = list(first_split.values())
    callbacks = []
    if train_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(train_args.early_stopping_patience))
    evaluating = train_args.eval_strategy != "no" and training_sets
    trainer = FineTuneTrainer(
        model=model,
        args=train_args,
        train_dataset=train,
        eval_dataset=training_sets[0].dataset if evaluating else None,
        data_collator=Seq2SeqCollator(tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        tasks=tasks,
        eval_mode=train_args.eval_mode,
        eval_sets=training_sets if evaluating else [],
    )
    trainer.compute_metrics = trainer.compute_text_metrics
    extra["trainable_parameters"], extra["total_parameters"] = parameter_efficient.parameter_counts(model)
    out = Path(train_args.output_dir)
    # Each validation split is evaluated below (with its predictions file), so train_and_save does no final eval.
    results = train_and_save(trainer, tokenizer, resume, extra_results=extra, final_eval=False)

    per_task: dict[str, tuple[TaskSpec, dict[str, dict[str, float]]]] = {t.full_name: (t, {}) for t in tasks}
    labels: dict[str, dict[str, dict]] = {}
    history_during_training = list(trainer.state.log_history)
    scored = describe_scored_model(trainer)
    if train_args.do_train:
        best = trainer.state.best_model_checkpoint if train_args.load_best_model_at_end else None
        results["scored_checkpoint"] = Path(best).name if best else f"final (step {trainer.state.global_step})"
    if all_sets:
        metrics, per_set = trainer.evaluate_sets(all_sets)
        results.update(metrics)
        for s, (set_metrics, predictions) in zip(all_sets, per_set):
            per_task[s.task.full_name][1][s.split] = set_metrics
            report = label_report(s.task, list(s.dataset["target"]), predictions)
            if report is not None:
                labels.setdefault(s.task.full_name, {})[s.split] = report
                results[f"{s.prefix}_majority_baseline"] = report["majority_baseline"]
                results[f"{s.prefix}_predicted_labels"] = report["predicted_labels"]
                if len(report["predicted_labels"]) == 1:
                    logger.warning("%s %s: %s", s.task.full_name, s.split, describe_labels(s.split, report))
            if trainer.is_world_process_zero():
                write_predictions(out, s.task, s.split, s.dataset, predictions)
    for t in tasks:
        trainer.set_task(t)
        for name, ds in prepared[t.full_name][2].items():
            output = trainer.predict(ds, metric_key_prefix="predict")
            texts_out = trainer.decode_predictions(output.predictions)[: len(ds)]
            if trainer.is_world_process_zero():
                write_predictions(out, t, name, ds, texts_out)
                if t.submission_files:
                    values = [postprocess(t, text) for text in texts_out]
                    path, replaced = write_submission(t, name, list(ds["idx"]), values, str(out / "submission"))
                    logger.info("leaderboard file %s (%d invalid predictions replaced by a default label)",
                                path, replaced)
    trainer.set_task(tasks[0])

    if trainer.is_world_process_zero():
        save_results(trainer, results)
        evaluated = [(t, per_split) for t, per_split in per_task.values() if per_split]
        if evaluated:
            table = write_results_table(out, evaluated, results.get(f"eval_{AVERAGE}") if mixture else None, labels,
                                        scored if train_args.do_train else "")  # fmt: skip
            print(f"\n{table}")
        score_key = f"eval_{AVERAGE}" if mixture else (spec.metric_to_optimize and f"eval_{spec.metric_to_optimize}")
        if score_key:
            final = None
            if score_key in results:
                best = trainer.state.best_model_checkpoint if train_args.load_best_model_at_end else None
                step = trainer.state.best_global_step if best else trainer.state.global_step
                final = (step, results[score_key], f"final evaluation ({Path(best).name if best else 'final weights'})")
            plot_eval_metric(history_during_training, score_key, out / "metrics.png", final)
        if pe_args.merge_lora:  # last: merges the adapter into the model in place
            merged = parameter_efficient.save_merged(trainer.accelerator.unwrap_model(trainer.model), out, tokenizer)
            print(f"merged LoRA model: {merged.resolve()}")
        print(f"\nrun folder: {out.resolve()}")
    return results


if __name__ == "__main__":
    run_main(main)
