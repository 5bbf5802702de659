"""The fine-tuning evaluation engine: every validation split scored on decoded text with its own task's metrics.

Two ways to turn the model's output into a label (--eval_mode):
- generate: decode (greedy or --num_beams) and post-process the text to a label; text that is no label word counts
  as wrong and its share is logged as invalid_rate.
- rank: score every candidate target of the task (its label words) by its log-likelihood and pick the highest;
  never invalid. The encoder runs once per batch and the candidates share its states.

Both modes also log token_accuracy: the percent of target tokens (label positions) whose most likely token under
teacher forcing is the label, the one signal early in training, before generation yields label words. It costs no
extra model pass: generate mode reads the logits of the teacher-forced pass that computes the eval loss, rank mode
those of the gold candidate (or of the loss pass, where a target is no candidate).

A mixture is scored task by task (eval_glue_sst2_accuracy, ...) and logged as one evaluation with eval_average, the
mean of the task scores, which best-model selection and early stopping can watch, and eval_token_accuracy over all of
its target tokens.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import SequentialSampler

from data_collators import LABEL_PAD_ID
from t5kit import attention, parameter_efficient
from t5kit.args import UsageError
from t5kit.outputs import (
    describe_labels,
    label_report,
    plot_eval_metric,
    refresh_model_card,
    save_results,
    write_predictions,
    write_results_table,
)
from t5kit.task_files import write_submission
from t5kit.tasks import (
    TaskSpec,
    compute_task_metrics,
    postprocess,
    reported_metrics,
    target_candidates,
    task_score,
)
from t5kit.training import T5Trainer

logger = logging.getLogger("t5kit")

GENERATE, RANK = "generate", "rank"  # --eval_mode
TASK_METRIC = "task"  # --metric_for_best_model default: the task record's metric to optimise
RANK_CANDIDATE_CHUNK = 8  # rank eval scores this many candidates per decoder call (bounds logits memory)


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
TOKEN_ACCURACY = "token_accuracy"  # eval_token_accuracy: teacher-forced argmax accuracy on target tokens (%)


def mixture_summary(
    sets: list[EvalSet], per_set: list[dict[str, float]], token_counts: list[tuple[int, int] | None] | None = None
) -> dict[str, float]:
    """For a mixture: eval_average = the mean over tasks of the task score (a task with several validation splits,
    MNLI, scores the mean over its splits), eval_loss = the example-weighted mean of the tasks' losses, and
    eval_token_accuracy over the target tokens of every set (`token_counts`: per set, (correct, total) or None)."""
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
    counts = [c for c in token_counts or () if c is not None]
    total = sum(t for _, t in counts)
    if total:
        summary[f"eval_{TOKEN_ACCURACY}"] = 100.0 * sum(c for c, _ in counts) / total
    return summary


def token_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(rows, 2) per row: [target tokens whose argmax under teacher forcing is the label, target tokens]; positions
    holding LABEL_PAD_ID count in neither. logits: (rows, width, vocab); labels: (rows, width)."""
    present = labels != LABEL_PAD_ID
    correct = ((logits.argmax(dim=-1) == labels) & present).sum(dim=-1)
    return torch.stack([correct, present.sum(dim=-1)], dim=1)


def gold_candidates(labels: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor | None:
    """(batch,) the index of the candidate each row of `labels` is, or None when some row is not exactly one
    candidate's ids. labels: (batch, width), candidate_ids: (k, width'), both padded with LABEL_PAD_ID."""
    candidates = candidate_ids.to(labels.device)
    width = max(labels.shape[1], candidates.shape[1])
    labels_p = torch.nn.functional.pad(labels, (0, width - labels.shape[1]), value=LABEL_PAD_ID)
    candidates_p = torch.nn.functional.pad(candidates, (0, width - candidates.shape[1]), value=LABEL_PAD_ID)
    matches = (labels_p[:, None, :] == candidates_p[None, :, :]).all(dim=-1)  # (batch, k)
    if not bool((matches.sum(dim=1) == 1).all()):
        return None
    return matches.float().argmax(dim=1)


def loss_from_candidate_scores(
    scores: torch.Tensor, labels: torch.Tensor, candidate_ids: torch.Tensor
) -> torch.Tensor | None:
    """The token-mean cross-entropy T5 computes on `labels`, read off the candidates' summed log-likelihoods.

    scores: (batch, k); labels: (batch, width) and candidate_ids: (k, width'), both padded with LABEL_PAD_ID.
    None when some row of labels is not exactly one candidate's ids.
    Example: candidates [[5, 1], [6, 1]], labels [[6, 1]], scores [[-3.0, -0.5]] -> 0.5 / 2 tokens = 0.25.
    """
    gold = gold_candidates(labels, candidate_ids)
    if gold is None:
        return None
    return -scores.gather(1, gold[:, None]).sum() / (labels != LABEL_PAD_ID).sum()


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
    # token_accuracy of the evaluation loop under way: (2,) [correct, total] target tokens over every process's
    # batches so far; None before its first batch with labels.
    _token_counts: torch.Tensor | None = None
    last_token_counts: tuple[int, int] | None = None  # (correct, total) of the last evaluation with labels

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
        self.compute_metrics = self.compute_text_metrics

    def set_task(self, task: TaskSpec) -> None:
        """The task whose metrics, post-processing and rank candidates the next evaluation or prediction uses."""
        self.task = task
        self.candidates = rank_candidates_of(task) if self.eval_mode == RANK else None
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
        token_counts: list[tuple[int, int] | None] = []
        self._quiet = True  # the per-set evaluations neither log nor call on_evaluate: the merged metrics do
        try:
            for s in sets:
                self.set_task(s.task)
                metrics = self.evaluate(s.dataset, ignore_keys=ignore_keys, metric_key_prefix=s.prefix, **gen_kwargs)
                merged.update(metrics)
                per_set.append(({k[len(s.prefix) + 1 :]: v for k, v in metrics.items()}, self.last_predictions))
                token_counts.append(self.last_token_counts)
        finally:
            self._quiet = False
            self.set_task(self.tasks[0])
        merged.update(mixture_summary(sets, [m for m, _ in per_set], token_counts))
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

    def evaluation_loop(self, *args, **kwargs):
        """The Trainer's loop (evaluate and predict), with the token_accuracy counts started afresh."""
        self._token_counts = None
        self.last_token_counts = None
        return super().evaluation_loop(*args, **kwargs)

    def _count_tokens(self, hits: torch.Tensor) -> None:
        """Adds one batch's token_hits rows, gathered from every process as the Trainer gathers predictions
        (gather_for_metrics drops the examples repeated to even out the last batches)."""
        batch = self.gather_function(hits).sum(dim=0)
        self._token_counts = batch if self._token_counts is None else self._token_counts + batch

    def compute_text_metrics(self, eval_pred) -> dict[str, float]:
        # Under several processes the last batches are padded by wrapping around to the first examples; the gather
        # keeps dataset order, so the real predictions are the first len(targets).
        texts = self.decode_predictions(eval_pred.predictions)[: len(self.eval_targets)]
        self.last_predictions = texts
        metrics = compute_task_metrics(
            self.task, texts, self.eval_targets, references=self.eval_references, groups=self.eval_groups
        )
        if self._token_counts is not None:
            correct, total = (int(v) for v in self._token_counts.tolist())
            self.last_token_counts = (correct, total)
            if total:
                metrics[TOKEN_ACCURACY] = 100.0 * correct / total
        return metrics

    def decode_predictions(self, predictions: np.ndarray) -> list[str]:
        if self.eval_mode == RANK:
            return [self.candidates[int(i)] for i in np.asarray(predictions).reshape(-1)]
        ids = np.where(predictions != LABEL_PAD_ID, predictions, self.processing_class.pad_token_id)
        return self.processing_class.batch_decode(ids, skip_special_tokens=True)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        """Evaluation in the training precision throughout: accelerate's bf16 autocast wraps only the model's forward,
        which the encoder pass of generate() and of rank scoring never calls (it would run in fp32).

        Both modes count token_accuracy from logits they compute anyway: generate mode from the teacher-forced
        forward that Seq2SeqTrainer runs for the eval loss (read by a forward hook: the only call of the model with
        labels; generate() calls it without), rank mode from the candidate scoring (the gold candidate's rows)."""
        if self.eval_mode != RANK or prediction_loss_only:
            hits: list[torch.Tensor] = []

            def teacher_forced(module, args, kwargs, output):
                labels = kwargs.get("labels")
                logits = output.get("logits") if isinstance(output, Mapping) else None
                if labels is not None and logits is not None and logits.shape[:2] == labels.shape:
                    hits.append(token_hits(logits, labels))

            handle = model.register_forward_hook(teacher_forced, with_kwargs=True)
            try:
                with self.accelerator.autocast():
                    result = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys, **gen_kwargs)
            finally:
                handle.remove()
            for batch_hits in hits:
                self._count_tokens(batch_hits)
            return result
        inputs = self._prepare_inputs(inputs)
        unwrapped = self._unwrapped(model)
        with torch.no_grad(), self.accelerator.autocast():
            # The encoder runs once per batch: every candidate's score, and the eval loss, share its output.
            # (A soft prompt is prepended there and the mask extended; `seq2seq` is the T5 under a peft wrapper.)
            seq2seq, encoded, mask = parameter_efficient.encoder_states(
                unwrapped, inputs["input_ids"], inputs["attention_mask"]
            )
            scores, candidate_hits = self.candidate_scores(seq2seq, encoded, mask)
            labels = inputs.get("labels")
            loss = None
            if labels is not None:
                # Where every target is one of the candidates, the teacher-forced loss and token hits are already in
                # the scores; otherwise (a truncated target, several reference answers) one more decoder pass
                # computes them.
                gold = gold_candidates(labels, self._candidate_ids)
                if gold is not None:
                    loss = -scores.gather(1, gold[:, None]).sum() / (labels != LABEL_PAD_ID).sum()
                    correct = candidate_hits.gather(1, gold[:, None]).squeeze(1)
                    hits = torch.stack([correct, (labels != LABEL_PAD_ID).sum(dim=1)], dim=1)
                else:
                    output = seq2seq(encoder_outputs=(encoded,), attention_mask=mask, labels=labels)
                    loss, hits = output.loss, token_hits(output.logits, labels)
                self._count_tokens(hits)
        return (loss.detach() if loss is not None else None), scores.argmax(dim=1)[:, None], labels

    def _unwrapped(self, model):
        """accelerator.unwrap_model, once per wrapper: it re-reads package metadata on every call (~2.5 ms, a tenth
        of a small model's eval batch)."""
        if self._unwrap_cache is None or self._unwrap_cache[0] is not model:
            self._unwrap_cache = (model, self.accelerator.unwrap_model(model))
        return self._unwrap_cache[1]

    def candidate_scores(
        self, model, encoded: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, hits), both (batch, k): the log-likelihood of each candidate target (summed over its tokens, EOS
        included), per example, which rank eval picks the highest of; and how many of the candidate's tokens are the
        argmax over the vocabulary under teacher forcing (token_accuracy reads the gold candidate's). Candidates are
        scored a chunk at a time, a decoder row per (example, candidate).

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
            first_argmax = first.logits[:, 0].argmax(dim=-1)  # (batch,)
        scores, hits = [], []
        for start in range(0, len(candidates), RANK_CANDIDATE_CHUNK):
            chunk = candidates[start : start + RANK_CANDIDATE_CHUNK]
            k = chunk.shape[0]
            inputs = decoder_inputs[start : start + k].repeat(batch, 1)  # rows example-major
            if shared:
                logits = model(
                    encoder_outputs=(encoded,), attention_mask=attention_mask, decoder_input_ids=inputs, use_cache=False
                ).logits
                scores.append(_summed_log_likelihood(logits, chunk.repeat(batch, 1)).view(batch, k))
                hits.append(token_hits(logits, chunk.repeat(batch, 1))[:, 0].view(batch, k))
                continue
            chunk_scores = first_logp[:, chunk[:, 0]]  # a candidate has at least one token (EOS)
            chunk_hits = (first_argmax[:, None] == chunk[None, :, 0]).long()
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
                chunk_hits = chunk_hits + token_hits(logits, chunk[:, 1:].repeat(batch, 1))[:, 0].view(batch, k)
            scores.append(chunk_scores)
            hits.append(chunk_hits)
        return torch.cat(scores, dim=1), torch.cat(hits, dim=1)


class _QuietCallbacks:
    """The callback handler during one set of a multi-set evaluation: on_evaluate waits for the merged metrics."""

    def __init__(self, handler):
        self._handler = handler

    def on_evaluate(self, args, state, control, metrics):
        return control

    def __getattr__(self, name):
        return getattr(self._handler, name)


def resolve_best_metric(train_args, tasks: list[TaskSpec]) -> None:
    """--metric_for_best_model task: the task's metric to optimise (eval_accuracy), or eval_average for a mixture.
    Another name for a mixture must be a key its evaluations log (checked here, not after the first training steps)."""
    if train_args.metric_for_best_model != TASK_METRIC:
        if len(tasks) > 1 and train_args.metric_for_best_model is not None:
            known = [
                f"eval_{AVERAGE}",
                "eval_loss",
                *(f"eval_{t.benchmark}_{t.name}_{m}"
                  for t in tasks for m in (*reported_metrics(t), "loss", "invalid_rate", TOKEN_ACCURACY)),
                f"eval_{TOKEN_ACCURACY}",
            ]  # fmt: skip
            key = train_args.metric_for_best_model
            if (key if key.startswith("eval_") else f"eval_{key}") not in known:
                raise UsageError(f"--metric_for_best_model {key}: a mixture logs {', '.join(known)}")
        return
    missing = [t.full_name for t in tasks if t.metric_to_optimize is None]
    needs_best = (
        train_args.load_best_model_at_end
        or train_args.early_stopping_patience is not None
        or str(train_args.save_strategy) == "best"
    )
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
        raise UsageError(
            f"eval_{AVERAGE} averages scores where higher is better; {', '.join(lower)} is not scored "
            "so: pass --metric_for_best_model"
        )
    train_args.metric_for_best_model = f"eval_{AVERAGE}"
    train_args.greater_is_better = True


def first_splits(sets: list[EvalSet]) -> list[EvalSet]:
    """What evaluation during training scores: each task's first validation split (MNLI: matched)."""
    first: dict[str, EvalSet] = {}
    for s in sets:
        first.setdefault(s.task.full_name, s)
    return list(first.values())


def scored_checkpoint(trainer: T5Trainer) -> str:
    """The weights the final evaluation scores: the restored best checkpoint's name, or the final step."""
    best = trainer.state.best_model_checkpoint if trainer.args.load_best_model_at_end else None
    return Path(best).name if best else f"final (step {trainer.state.global_step})"


def score_validation(trainer: FineTuneTrainer, sets: list[EvalSet], results: dict, out: Path):
    """Scores every validation split with the weights the trainer holds, as one evaluation; adds the metrics and
    each classification split's label shares and majority baseline to `results`, writes predictions/*.jsonl.
    Returns (per task: (task, {split: metrics}), per task: {split: label report})."""
    metrics, per_set = trainer.evaluate_sets(sets)
    results.update(metrics)
    per_task: dict[str, tuple[TaskSpec, dict[str, dict[str, float]]]] = {}
    labels: dict[str, dict[str, dict]] = {}
    for s, (set_metrics, predictions) in zip(sets, per_set):
        per_task.setdefault(s.task.full_name, (s.task, {}))[1][s.split] = set_metrics
        report = label_report(s.task, list(s.dataset["target"]), predictions)
        if report is not None:
            labels.setdefault(s.task.full_name, {})[s.split] = report
            results[f"{s.prefix}_majority_baseline"] = report["majority_baseline"]
            results[f"{s.prefix}_predicted_labels"] = report["predicted_labels"]
            if len(report["predicted_labels"]) == 1:
                logger.warning("%s %s: %s", s.task.full_name, s.split, describe_labels(s.split, report))
        if trainer.is_world_process_zero():
            write_predictions(out, s.task, s.split, s.dataset, predictions)
    return list(per_task.values()), labels


def predict_test_splits(trainer: FineTuneTrainer, test_splits: dict[TaskSpec, dict[str, Any]], out: Path) -> None:
    """Predictions for unlabeled splits (predictions/*.jsonl), and the leaderboard file where the task names one."""
    for task, splits in test_splits.items():
        trainer.set_task(task)
        for name, ds in splits.items():
            output = trainer.predict(ds, metric_key_prefix="predict")
            texts = trainer.decode_predictions(output.predictions)[: len(ds)]
            if trainer.is_world_process_zero():
                write_predictions(out, task, name, ds, texts)
                if task.submission_files:
                    values = [postprocess(task, text) for text in texts]
                    path, replaced = write_submission(task, name, list(ds["idx"]), values, str(out / "submission"))
                    logger.info("leaderboard file %s (%d invalid predictions replaced by a default label)",
                                path, replaced)  # fmt: skip
    trainer.set_task(trainer.tasks[0])


def score_key(tasks: list[TaskSpec]) -> str | None:
    """The key that scores the run: eval_average for a mixture, the task's metric to optimise for one task."""
    if len(tasks) > 1:
        return f"eval_{AVERAGE}"
    return tasks[0].metric_to_optimize and f"eval_{tasks[0].metric_to_optimize}"


def write_reports(trainer: FineTuneTrainer, results: dict, per_task, labels, scored: str, history: list[dict]) -> None:
    """all_results.json, results.md (printed) and metrics.png: the score during training (`history`) and the final
    evaluation's, at the step of the weights it scored."""
    out = Path(trainer.args.output_dir)
    save_results(trainer, results)
    key = score_key(trainer.tasks)
    if per_task:
        average = None
        if len(trainer.tasks) > 1 and key in results:
            task_scores = {spec.full_name: float(np.mean([task_score(spec, m) for m in splits.values()]))
                           for spec, splits in per_task if spec.metrics and splits}  # fmt: skip
            average = (AVERAGE, results[key], task_scores)
        print(f"\n{write_results_table(out, per_task, average, labels, scored)}")
    if key:
        final = None
        if key in results:
            best = trainer.state.best_model_checkpoint if trainer.args.load_best_model_at_end else None
            step = trainer.state.best_global_step if best else trainer.state.global_step
            final = (step, results[key], f"final evaluation ({Path(best).name if best else 'final weights'})")
        plot_eval_metric(history, key, out / "metrics.png", final)
    refresh_model_card(out)  # now with the final evaluation's metrics
