"""Evaluation metrics on postprocessed values, with scikit-learn and scipy only.

Every function takes ``(targets, predictions)`` (T5's argument order; sklearn
calls them ``y_true, y_pred``) and returns one float on a 0-100 scale, as the
T5 paper reports GLUE scores (t5/evaluation/metrics.py multiplies by 100).

Targets are always valid values. A prediction may be ``INVALID`` (-1): the
model generated text that is no label word (see ``constants.postprocess``).
Invalid predictions are scored as wrong, never dropped:

- ``accuracy``: INVALID never equals a target, so it counts as wrong.
- ``f1`` and ``mcc`` on binary labels: INVALID is replaced by the label
  opposite to the gold one (T5 ``f1_score_with_invalid``).
- ``mcc`` on more than two classes: INVALID stays a class of its own (wrong).
- ``macro_f1``: INVALID is no class of its own; it is a false negative for
  the gold class.
- ``pearson`` and ``spearman`` see floats only: the caller replaces invalid
  scores first with ``replace_invalid_scores`` (it needs the score range).
"""

from __future__ import annotations

import math
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
        raise ValueError(
            f"got {len(targets)} targets but {len(predictions)} predictions")


def _replace_invalid_binary(targets: Sequence[int],
                            predictions: Sequence[int]) -> np.ndarray:
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
    return PERCENT * float(sklearn.metrics.f1_score(
        targets, predictions, pos_label=1, average="binary", zero_division=0.0))


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
    labels = sorted({int(t) for t in targets}
                    | {int(p) for p in predictions if p != INVALID})
    return PERCENT * float(sklearn.metrics.f1_score(
        targets, predictions, labels=labels, average="macro", zero_division=0.0))


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


def replace_invalid_scores(targets: Sequence[float], predictions: Sequence[float],
                           low: float, high: float) -> list[float]:
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


METRICS: dict[str, Callable[[Sequence, Sequence], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": mcc,
    "macro_f1": macro_f1,
    "pearson": pearson,
    "spearman": spearman,
}

# Metrics defined on two classes (0/1) only, and metrics on real-valued scores.
BINARY_METRICS = frozenset({"f1"})
SCORE_METRICS = frozenset({"pearson", "spearman"})
