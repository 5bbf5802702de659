"""Evaluation metrics on postprocessed values, with scikit-learn and scipy only.

Every function takes ``(targets, predictions)`` (T5's argument order; sklearn
calls them ``y_true, y_pred``) and returns one float on a 0-100 scale, as the
T5 paper reports GLUE scores (t5/evaluation/metrics.py multiplies by 100).

Targets are always valid values. A prediction may be ``INVALID`` (-1): the
model generated text that is no label word (see ``t5kit.tasks.postprocess``).
Invalid predictions are scored as wrong, never dropped:

- ``accuracy``: INVALID never equals a target, so it counts as wrong.
- ``f1``, ``precision``, ``recall`` and ``mcc`` on binary labels: INVALID is
  replaced by the label opposite to the gold one (T5 ``f1_score_with_invalid``).
- ``mcc`` on more than two classes: INVALID stays a class of its own (wrong).
- ``macro_f1``: INVALID is no class of its own; it is a false negative for
  the gold class.
- ``pearson`` and ``spearman`` see floats only: the caller replaces invalid
  scores first with ``replace_invalid_scores`` (it needs the score range).
- ``group_em`` (MultiRC exact match over questions) takes a third argument,
  the group id of each example: a group scores 1 only if all of its
  predictions equal their targets (T5 ``mean_group_metric(all_match)``).
  ``f1a`` is ``f1`` over every answer option (T5 ``multirc_f1_over_all_answers``).

Text metrics (``TEXT_METRICS``) take ``(references, predictions)``: for each
example a list of gold texts and one predicted text (free text is never
INVALID). With several gold texts the best-scoring one counts:

- ``squad_em`` / ``squad_f1``: SQuAD v1.1 evaluation (answers normalised by
  lower-casing, dropping punctuation and the articles a/an/the, collapsing
  whitespace; EM and token F1 take the maximum over the gold answers). Token
  F1 of an answer that normalises to nothing is 1 against another such answer
  and 0 otherwise (the SQuAD v2.0 rule), so F1 is never below EM.
- ``rouge1`` / ``rouge2`` / ``rougeL`` / ``rougeLsum``: rouge-score F-measure
  with Porter stemming, best gold text per example (``score_multi``), mean
  over examples (no bootstrap). rougeLsum scores sentence by sentence:
  sentences are the text's lines; a text without newlines is split with
  nltk's punkt when its data is installed, else after ``.``, ``!`` or ``?``
  followed by whitespace (``split_sentences``).
- ``bleu`` / ``chrf``: sacrebleu ``corpus_bleu`` / ``corpus_chrf`` with their
  defaults (13a tokenisation); examples with fewer gold texts than others
  repeat their first one, which changes neither score.
"""

from __future__ import annotations

import collections
import functools
import math
import re
import string
from typing import Callable, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics

# T5's postprocessors return -1 for text that is no label word
# (t5/data/postprocessors.py string_label_to_class_id, default=-1).
INVALID = -1

# Scores are reported as percentages, as in the T5 paper (Table 14, appendix E).
PERCENT = 100.0


def _check_lengths(targets: Sequence, predictions: Sequence) -> None:
    if len(targets) == 0:
        raise ValueError("cannot compute a metric on zero examples")
    if len(targets) != len(predictions):
        raise ValueError(f"got {len(targets)} targets but {len(predictions)} predictions")


def _replace_invalid_binary(targets: Sequence[int], predictions: Sequence[int]) -> np.ndarray:
    """Binary labels: a prediction outside {0, 1} becomes ``1 - target``.

    Example: targets [1, 0, 1], predictions [1, -1, -1] -> [1, 1, 0].
    """
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.array(predictions, dtype=np.int64)
    invalid = (predictions != 0) & (predictions != 1)
    predictions[invalid] = 1 - targets[invalid]
    return predictions


def _is_binary(targets: Sequence[int]) -> bool:
    return set(np.asarray(targets).tolist()) <= {0, 1}


def accuracy(targets: Sequence, predictions: Sequence) -> float:
    """Percent of exact matches. accuracy([1, 0, 1], [1, -1, 0]) -> 33.33..."""
    _check_lengths(targets, predictions)
    return PERCENT * float(sklearn.metrics.accuracy_score(targets, predictions))


def f1(targets: Sequence[int], predictions: Sequence[int]) -> float:
    """Binary F1 of the positive class 1; INVALID counts as the wrong label.

    f1([1, 1, 0, 0], [1, -1, 0, 1]) -> predictions [1, 0, 0, 1]: precision 1/2,
    recall 1/2 -> 50.0.
    """
    _check_lengths(targets, predictions)
    if not _is_binary(targets):
        raise ValueError("f1 needs binary targets (0/1); use macro_f1")
    predictions = _replace_invalid_binary(targets, predictions)
    # No positive prediction and no positive target: sklearn warns and says 0.
    return PERCENT * float(
        sklearn.metrics.f1_score(targets, predictions, pos_label=1, average="binary", zero_division=0.0)
    )


def _binary_score(fn, targets: Sequence[int], predictions: Sequence[int], name: str) -> float:
    _check_lengths(targets, predictions)
    if not _is_binary(targets):
        raise ValueError(f"{name} needs binary targets (0/1)")
    predictions = _replace_invalid_binary(targets, predictions)
    # No positive prediction (precision) or no positive target (recall): sklearn warns and says 0.
    return PERCENT * float(fn(targets, predictions, pos_label=1, average="binary", zero_division=0.0))


def precision(targets: Sequence[int], predictions: Sequence[int]) -> float:
    """Binary precision of the positive class 1: TP / (TP + FP); INVALID counts as the wrong label, as in ``f1``.

    precision([1, 1, 0, 0], [1, -1, -1, 1]) -> predictions [1, 0, 1, 1]: TP 1, FP 2 -> 33.33...
    """
    return _binary_score(sklearn.metrics.precision_score, targets, predictions, "precision")


def recall(targets: Sequence[int], predictions: Sequence[int]) -> float:
    """Binary recall of the positive class 1: TP / (TP + FN); INVALID counts as the wrong label, as in ``f1``.

    recall([1, 1, 0, 0], [1, -1, -1, 1]) -> predictions [1, 0, 1, 1]: TP 1, FN 1 -> 50.0
    """
    return _binary_score(sklearn.metrics.recall_score, targets, predictions, "recall")


def mcc(targets: Sequence[int], predictions: Sequence[int]) -> float:
    """Matthews correlation (CoLA), -100..100.

    Binary targets: INVALID counts as the wrong label. Constant predictions
    give 0.0 (sklearn defines the 0/0 case as 0; no NaN).
    mcc([1, 0, 1, 0], [1, 0, 0, 0]) -> 57.73...
    """
    _check_lengths(targets, predictions)
    if _is_binary(targets):
        predictions = _replace_invalid_binary(targets, predictions)
    return PERCENT * float(sklearn.metrics.matthews_corrcoef(targets, predictions))


def macro_f1(targets: Sequence[int], predictions: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 (T5 ``mean_multiclass_f1``, for CB).

    The classes are those seen in targets or valid predictions; INVALID is
    no class, so it only costs recall of the gold class.
    macro_f1([0, 1, 2], [0, 1, -1]) -> mean(1, 1, 0) = 66.66...
    """
    _check_lengths(targets, predictions)
    labels = sorted({int(t) for t in targets} | {int(p) for p in predictions if p != INVALID})
    return PERCENT * float(
        sklearn.metrics.f1_score(targets, predictions, labels=labels, average="macro", zero_division=0.0)
    )


def _correlation(fn, targets: Sequence[float], predictions: Sequence[float]) -> float:
    _check_lengths(targets, predictions)
    x = np.asarray(targets, dtype=np.float64)
    y = np.asarray(predictions, dtype=np.float64)
    # A correlation is undefined (scipy gives NaN or raises) for fewer than two
    # points or a constant vector. A model that always says "2.4" has learned
    # nothing about the ordering, so it scores 0.0, not NaN: NaN would poison
    # averages and best-checkpoint selection.
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    value = float(fn(x, y)[0])
    return 0.0 if math.isnan(value) else PERCENT * value


def pearson(targets: Sequence[float], predictions: Sequence[float]) -> float:
    """Pearson correlation, -100..100; 0.0 when either side is constant.

    pearson([0.0, 2.0, 4.0], [1.0, 2.0, 3.0]) -> 100.0
    """
    return _correlation(scipy.stats.pearsonr, targets, predictions)


def spearman(targets: Sequence[float], predictions: Sequence[float]) -> float:
    """Spearman rank correlation, -100..100; 0.0 when either side is constant.

    spearman([0.0, 2.0, 4.0], [1.0, 5.0, 3.0]) -> 50.0
    """
    return _correlation(scipy.stats.spearmanr, targets, predictions)


def replace_invalid_scores(
    targets: Sequence[float], predictions: Sequence[float], low: float, high: float
) -> list[float]:
    """Replace each prediction outside [low, high] (INVALID, NaN, 7.0) by the
    end of the range farthest from its gold score: the worst valid guess.

    replace_invalid_scores([4.0, 1.0, 2.0], [-1, -1, 3.2], 0, 5) -> [0, 5, 3.2]
    """
    _check_lengths(targets, predictions)
    out = []
    for target, prediction in zip(targets, predictions):
        if not low <= prediction <= high:  # False for NaN as well
            prediction = low if target - low >= high - target else high
        out.append(prediction)
    return out


def group_em(targets: Sequence, predictions: Sequence, groups: Sequence | None = None) -> float:
    """Percent of groups whose predictions are all right (MultiRC "EM": a question
    counts only if every one of its answer options is labelled right).

    group_em([1, 0, 1, 1], [1, 0, 0, 1], groups=["q1", "q1", "q2", "q2"]) -> 50.0
    """
    _check_lengths(targets, predictions)
    if groups is None or len(groups) != len(targets):
        raise ValueError("group_em needs one group id per example")
    right: dict = collections.OrderedDict()
    for target, prediction, group in zip(targets, predictions, groups):
        right[group] = right.get(group, True) and prediction == target
    return PERCENT * sum(right.values()) / len(right)


# --------------------------------------------------------------------------
# Text metrics: (references, predictions), references[i] = list of gold texts.


def _check_references(references: Sequence[Sequence[str]], predictions: Sequence[str]) -> None:
    _check_lengths(references, predictions)
    for i, golds in enumerate(references):
        if isinstance(golds, str) or not len(golds):
            raise ValueError(f"example {i}: references must be a non-empty list of texts, got {golds!r}")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces.

    normalize_answer("The  Eiffel-Tower!") -> "eiffeltower"
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def _token_f1(gold: str, prediction: str) -> float:
    gold_tokens = normalize_answer(gold).split()
    predicted_tokens = normalize_answer(prediction).split()
    if not gold_tokens or not predicted_tokens:
        # An answer that normalises to nothing ("The"): 1 if both are empty, as the SQuAD v2.0
        # script does (v1.1 says 0 here, which would put F1 below EM).
        return float(gold_tokens == predicted_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_em(references: Sequence[Sequence[str]], predictions: Sequence[str]) -> float:
    """Percent of predictions equal to some gold answer after normalize_answer.

    squad_em([["the cat", "a dog"]], ["Dog."]) -> 100.0
    """
    _check_references(references, predictions)
    hits = [max(normalize_answer(g) == normalize_answer(p) for g in golds) for golds, p in zip(references, predictions)]
    return PERCENT * sum(hits) / len(hits)


def squad_f1(references: Sequence[Sequence[str]], predictions: Sequence[str]) -> float:
    """Mean over examples of the best token F1 against any gold answer.

    squad_f1([["big red car"]], ["the red car"]) -> precision 2/2, recall 2/3 -> 80.0
    """
    _check_references(references, predictions)
    scores = [max(_token_f1(g, p) for g in golds) for golds, p in zip(references, predictions)]
    return PERCENT * sum(scores) / len(scores)


@functools.cache
def punkt_available() -> bool:
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except (ImportError, LookupError):
        return False


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line, for rougeLsum.

    Text that already has newlines keeps its lines (CNN/DailyMail highlights);
    otherwise nltk punkt splits it when its data is installed (never
    downloaded), else a simple rule splits after . ! ? followed by whitespace:
    split_sentences("It rained. We left!") -> "It rained.\nWe left!"
    """
    if "\n" in text:
        return "\n".join(line.strip() for line in text.split("\n") if line.strip())
    if punkt_available():
        import nltk

        return "\n".join(nltk.sent_tokenize(text))
    return "\n".join(part for part in _SENTENCE_END.split(text.strip()) if part)


@functools.cache
def _rouge_scorer(kind: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def _rouge(kind: str, references: Sequence[Sequence[str]], predictions: Sequence[str]) -> float:
    _check_references(references, predictions)
    scorer = _rouge_scorer(kind)
    prepare = split_sentences if kind == "rougeLsum" else (lambda text: text)
    total = 0.0
    for golds, prediction in zip(references, predictions):
        scores = scorer.score_multi([prepare(g) for g in golds], prepare(prediction))
        total += scores[kind].fmeasure
    return PERCENT * total / len(predictions)


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str]]:
    """sacrebleu wants one stream per reference position; short lists repeat their first text."""
    width = max(len(golds) for golds in references)
    return [[golds[k] if k < len(golds) else golds[0] for golds in references] for k in range(width)]


def bleu(references: Sequence[Sequence[str]], predictions: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0-100)."""
    import sacrebleu

    _check_references(references, predictions)
    return float(sacrebleu.corpus_bleu(list(predictions), _reference_streams(references)).score)


def chrf(references: Sequence[Sequence[str]], predictions: Sequence[str]) -> float:
    """sacrebleu corpus chrF (0-100)."""
    import sacrebleu

    _check_references(references, predictions)
    return float(sacrebleu.corpus_chrf(list(predictions), _reference_streams(references)).score)


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1,
    # MultiRC F1a: binary F1 over every answer option (T5 multirc_f1_over_all_answers).
    "f1a": f1,
    "precision": precision,
    "recall": recall,
    "mcc": mcc,
    "macro_f1": macro_f1,
    "pearson": pearson,
    "spearman": spearman,
    "group_em": group_em,
    "squad_em": squad_em,
    "squad_f1": squad_f1,
    "rouge1": functools.partial(_rouge, "rouge1"),
    "rouge2": functools.partial(_rouge, "rouge2"),
    "rougeL": functools.partial(_rouge, "rougeL"),
    "rougeLsum": functools.partial(_rouge, "rougeLsum"),
    "bleu": bleu,
    "chrf": chrf,
}

# Metrics defined on two classes (0/1) only, and metrics on real-valued scores.
BINARY_METRICS = frozenset({"f1", "f1a", "precision", "recall"})
# Reported besides a binary classification task's own metrics (t5kit.tasks.reported_metrics): they never enter its
# score, and no task record needs to name them.
BINARY_EXTRA_METRICS = ("precision", "recall")
SCORE_METRICS = frozenset({"pearson", "spearman"})
# Metrics that also take each example's group id.
GROUP_METRICS = frozenset({"group_em"})
# Metrics on free text: (references, predictions).
TEXT_METRICS = frozenset({"squad_em", "squad_f1", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf"})
