"""The task table: one frozen ``TaskSpec`` record per task, and the pure
functions generated from a record (text formats, postprocessing, metrics).

Formats follow the T5 code base (t5/data/glue_utils.py, t5/data/preprocessors.py
``glue`` and ``stsb``, t5/data/postprocessors.py; T5 paper appendix D):

    inputs  = "<prefix> <field1>: <value1> <field2>: <value2>"
    targets = the label word of the integer label, e.g. "positive"

Adding a task (SuperGLUE, summarization, translation, QA) is one ``register``
call with one record; nothing else in this module names a task.

    >>> spec = get_task("glue", "sst2")
    >>> format_source(spec, {"sentence": "a charming journey", "label": 1})
    'sst2 sentence: a charming journey'
    >>> format_target(spec, {"sentence": "a charming journey", "label": 1})
    'positive'
    >>> postprocess(spec, " positive\\n")
    1
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from metrics import (BINARY_METRICS, INVALID, METRICS, PERCENT, SCORE_METRICS,
                     replace_invalid_scores)

__all__ = [
    "INVALID", "UNLABELED", "Regression", "TaskSpec", "DATASET_VALS", "register",
    "get_task", "custom_task", "format_source", "format_target", "postprocess",
    "compute_task_metrics", "label_candidates", "target_candidates",
    "max_target_length",
]

# Label of an example without a gold label (GLUE test splits), as on the hub
# (nyu-mll/glue test rows have label -1) and in T5 preprocessors.glue.
UNLABELED = -1


@dataclass(frozen=True)
class Regression:
    """A real-valued target written as text (STS-B).

    T5 preprocessors.stsb: ``tf.as_string(tf.round(label * 5) / 5, precision=1)``,
    i.e. the score rounded to the nearest 0.2 with one decimal. ``tf.round``
    rounds half to even (banker's rounding), like Python's ``round``:
    2.5 * 5 = 12.5 -> 12 -> "2.4"; 3.79 * 5 = 18.95 -> 19 -> "3.8".
    """

    low: float
    high: float
    steps_per_unit: int  # 5: targets are multiples of 1/5 = 0.2
    decimals: int        # 1: "3.8"

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"Regression range [{self.low}, {self.high}] is empty")
        if self.steps_per_unit < 1 or self.decimals < 0:
            raise ValueError("Regression needs steps_per_unit >= 1 and decimals >= 0")
        if self.contains(INVALID):
            # postprocess marks unusable text with INVALID; it must not be a score.
            raise ValueError(f"Regression range [{self.low}, {self.high}] contains "
                             f"INVALID ({INVALID})")

    def format(self, value: float) -> str:
        """3.79 -> "3.8"; 2.5 -> "2.4" (half to even, as tf.round)."""
        rounded = round(value * self.steps_per_unit) / self.steps_per_unit
        return f"{rounded:.{self.decimals}f}"

    def contains(self, value: float) -> bool:
        """False for values outside [low, high] and for NaN."""
        return self.low <= value <= self.high

    def candidates(self) -> list[str]:
        """Every possible target text: "0.0", "0.2", ..., "5.0" for STS-B."""
        first = math.ceil(self.low * self.steps_per_unit)
        last = math.floor(self.high * self.steps_per_unit)
        return [self.format(k / self.steps_per_unit) for k in range(first, last + 1)]


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task: where its data lives, how it becomes text, how it is scored.

    Pairs are tuples (not dicts) so that the record stays frozen and hashable.
    Split names are the hub's (``validation_matched``); local files map them
    to the GLUE download's file stems (``dev_matched``).
    """

    benchmark: str
    name: str
    # T5 task prefix, the first word of the input text ("sst2"; ax uses "mnli").
    prefix: str
    # (name shown in the text, dataset column), in text order. T5 sorts the
    # feature names (preprocessors.glue): "mnli hypothesis: ... premise: ...".
    # An empty shown name writes the value alone ("summarize: <article>").
    input_fields: tuple[tuple[str, str], ...]
    label_column: str = "label"
    # Index = the hub dataset's integer label. None: regression or free text.
    label_words: tuple[str, ...] | None = None
    regression: Regression | None = None
    metrics: tuple[str, ...]
    # None only for tasks without metrics (ax: its test set has no labels).
    metric_to_optimize: str | None
    greater_is_better: bool = True

    # Hub source: datasets.load_dataset(hub_path, hub_config, split=...).
    hub_path: str | None
    hub_config: str | None = None
    train_split: str | None = "train"
    validation_splits: tuple[str, ...] = ("validation",)
    test_splits: tuple[str, ...] = ("test",)

    # Local files: <data_dir>/<local_dir>/<stem><local_suffix>, GLUE download layout.
    local_dir: str | None = None
    local_suffix: str = ".tsv"
    local_files: tuple[tuple[str, str], ...] = ()        # (split, file stem)
    local_columns: tuple[tuple[str, str], ...] = ()      # (dataset column, file header name)
    # Files without a header line (CoLA train/dev) and the names of their fields.
    local_headerless_splits: tuple[str, ...] = ()
    local_headerless_columns: tuple[str, ...] = ()
    # GLUE leaderboard file per test split ("MNLI-m.tsv").
    submission_files: tuple[tuple[str, str], ...] = ()
    # The leaderboard wants label words (MNLI, AX, QNLI, RTE), not indices.
    submission_label_words: bool = False

    def __post_init__(self):
        where = f"task {self.benchmark}/{self.name}"

        def fail(message: str):
            raise ValueError(f"{where}: {message}")

        if not self.benchmark or not self.name:
            fail("benchmark and name must be non-empty")
        if self.prefix != self.prefix.strip():
            fail(f"prefix {self.prefix!r} has surrounding whitespace")
        if not self.input_fields:
            fail("input_fields is empty")
        for pair in self.input_fields:
            if len(pair) != 2 or not all(isinstance(x, str) for x in pair) or not pair[1]:
                fail(f"input_fields entry {pair!r} is not a (shown name, column) pair")
        columns = [column for _, column in self.input_fields]
        if len(set(columns)) != len(columns):
            fail(f"input_fields repeat a column: {columns}")
        if self.label_column in columns:
            fail(f"label_column {self.label_column!r} is also an input field")

        if self.label_words is not None and self.regression is not None:
            fail("set label_words or regression, not both")
        if self.label_words is not None:
            if len(self.label_words) < 2:
                fail("label_words needs at least two words")
            if len(set(self.label_words)) != len(self.label_words):
                fail(f"label_words repeat a word: {self.label_words}")
            for word in self.label_words:
                # postprocess strips the generated text, so a word must be stripped too.
                if not word or word != word.strip():
                    fail(f"label word {word!r} is empty or has surrounding whitespace")

        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            fail(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
        for m in self.metrics:
            if m in SCORE_METRICS and self.regression is None:
                fail(f"metric {m!r} needs a regression task")
            if m not in SCORE_METRICS and self.regression is not None:
                fail(f"metric {m!r} does not apply to a regression task")
            if m in BINARY_METRICS and (self.label_words is None or len(self.label_words) != 2):
                fail(f"metric {m!r} needs exactly two label words")
            if m in ("mcc", "macro_f1") and self.label_words is None:
                fail(f"metric {m!r} needs label_words")
        if self.metrics and self.metric_to_optimize not in self.metrics:
            fail(f"metric_to_optimize {self.metric_to_optimize!r} is not one of {self.metrics}")
        if not self.metrics and self.metric_to_optimize is not None:
            fail("metric_to_optimize must be None when metrics is empty")

        splits = self.splits
        if len(set(splits)) != len(splits):
            fail(f"split names repeat: {splits}")
        for table, label in ((self.local_files, "local_files"),
                             (self.submission_files, "submission_files")):
            for split, _ in table:
                if split not in splits:
                    fail(f"{label} names split {split!r}, not one of {splits}")
        for split in self.local_headerless_splits:
            if split not in dict(self.local_files):
                fail(f"local_headerless_splits names {split!r}, which has no local file")
        if self.submission_label_words and self.label_words is None:
            fail("submission_label_words needs label_words")
        if self.local_files:
            if not self.local_dir:
                fail("local_files needs local_dir")
            mapped = dict(self.local_columns)
            missing = [c for c in columns + [self.label_column] if c not in mapped]
            if missing:
                fail(f"local_columns does not map dataset columns {missing}")
            if self.local_headerless_splits:
                absent = [v for v in mapped.values() if v not in self.local_headerless_columns]
                if absent:
                    fail(f"local_headerless_columns lacks {absent}")

    @property
    def splits(self) -> tuple[str, ...]:
        """All split names, train first: ("train", "validation", "test")."""
        train = (self.train_split,) if self.train_split else ()
        return train + self.validation_splits + self.test_splits

    @property
    def full_name(self) -> str:
        return f"{self.benchmark}/{self.name}"

    def local_path(self, split: str) -> str:
        """Path below --data_dir: get_task("glue", "mnli").local_path(
        "validation_matched") -> "MNLI/dev_matched.tsv"."""
        files = dict(self.local_files)
        if split not in files:
            raise ValueError(
                f"task {self.full_name} has no local file for split {split!r}; "
                f"splits with local files: {sorted(files)}")
        return f"{self.local_dir}/{files[split]}{self.local_suffix}"

    def submission_file(self, split: str) -> str:
        """Official GLUE leaderboard file name: ("mnli", "test_matched") -> "MNLI-m.tsv"."""
        files = dict(self.submission_files)
        if split not in files:
            raise ValueError(
                f"task {self.full_name} has no leaderboard file for split {split!r}; "
                f"choose one of: {sorted(files)}")
        return files[split]


# --------------------------------------------------------------------------
# Registry

DATASET_VALS: dict[str, dict[str, TaskSpec]] = {}


def register(spec: TaskSpec,
             registry: dict[str, dict[str, TaskSpec]] | None = None) -> TaskSpec:
    """Add ``spec`` under registry[benchmark][name]; a duplicate is a ValueError."""
    registry = DATASET_VALS if registry is None else registry
    tasks = registry.setdefault(spec.benchmark, {})
    if spec.name in tasks:
        raise ValueError(f"task {spec.full_name} is already registered")
    tasks[spec.name] = spec
    return spec


def get_task(benchmark: str, name: str) -> TaskSpec:
    """DATASET_VALS[benchmark][name], or a ValueError naming the flag and choices."""
    if benchmark not in DATASET_VALS:
        raise ValueError(f"--benchmark {benchmark!r} is unknown; choose one of: "
                         f"{', '.join(sorted(DATASET_VALS))}")
    tasks = DATASET_VALS[benchmark]
    if name not in tasks:
        raise ValueError(f"--dataset_name {name!r} is not a {benchmark} task; "
                         f"choose one of: {', '.join(sorted(tasks))}")
    return tasks[name]


def custom_task(prefix: str = "") -> TaskSpec:
    """A free-text task for --benchmark custom: columns "source" -> "target"
    (task_data.load_custom_split), scored by exact match ("accuracy").

    format_source(custom_task("summarize:"), {"source": "a b"}) -> "summarize: a b"
    """
    return TaskSpec(
        benchmark="custom", name="custom", prefix=prefix,
        input_fields=(("", "source"),), label_column="target",
        metrics=("accuracy",), metric_to_optimize="accuracy",
        hub_path=None, validation_splits=("validation",), test_splits=("test",))


# --------------------------------------------------------------------------
# GLUE (hub: nyu-mll/glue; files: the official GLUE download, download_glue_data.py)

GLUE_HUB_PATH = "nyu-mll/glue"
# The common GLUE split -> file layout; MNLI and ax differ.
_GLUE_FILES = (("train", "train"), ("validation", "dev"), ("test", "test"))

# Label words are tfds GLUE label_classes, which T5 uses as targets.
register(TaskSpec(
    benchmark="glue", name="cola", prefix="cola",
    input_fields=(("sentence", "sentence"),),
    label_words=("unacceptable", "acceptable"),
    metrics=("mcc",), metric_to_optimize="mcc",
    hub_path=GLUE_HUB_PATH, hub_config="cola",
    local_dir="CoLA", local_files=_GLUE_FILES,
    local_columns=(("sentence", "sentence"), ("label", "label")),
    # train/dev: no header; fields: source code, label, original mark, sentence.
    local_headerless_splits=("train", "validation"),
    local_headerless_columns=("source", "label", "mark", "sentence"),
    submission_files=(("test", "CoLA.tsv"),),
))
register(TaskSpec(
    benchmark="glue", name="sst2", prefix="sst2",
    input_fields=(("sentence", "sentence"),),
    label_words=("negative", "positive"),
    metrics=("accuracy",), metric_to_optimize="accuracy",
    hub_path=GLUE_HUB_PATH, hub_config="sst2",
    local_dir="SST-2", local_files=_GLUE_FILES,
    local_columns=(("sentence", "sentence"), ("label", "label")),
    submission_files=(("test", "SST-2.tsv"),),
))
register(TaskSpec(
    benchmark="glue", name="mrpc", prefix="mrpc",
    input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
    label_words=("not_equivalent", "equivalent"),
    # T5 glue_utils: f1_score_with_invalid, accuracy.
    metrics=("f1", "accuracy"), metric_to_optimize="f1",
    hub_path=GLUE_HUB_PATH, hub_config="mrpc",
    local_dir="MRPC", local_files=_GLUE_FILES,
    local_columns=(("sentence1", "#1 String"), ("sentence2", "#2 String"),
                   ("label", "Quality")),
    submission_files=(("test", "MRPC.tsv"),),
))
register(TaskSpec(
    benchmark="glue", name="qqp", prefix="qqp",
    input_fields=(("question1", "question1"), ("question2", "question2")),
    label_words=("not_duplicate", "duplicate"),
    metrics=("f1", "accuracy"), metric_to_optimize="f1",
    hub_path=GLUE_HUB_PATH, hub_config="qqp",
    local_dir="QQP", local_files=_GLUE_FILES,
    local_columns=(("question1", "question1"), ("question2", "question2"),
                   ("label", "is_duplicate")),
    submission_files=(("test", "QQP.tsv"),),
))
register(TaskSpec(
    benchmark="glue", name="stsb", prefix="stsb",
    input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
    regression=Regression(low=0.0, high=5.0, steps_per_unit=5, decimals=1),
    metrics=("pearson", "spearman"), metric_to_optimize="pearson",
    hub_path=GLUE_HUB_PATH, hub_config="stsb",
    local_dir="STS-B", local_files=_GLUE_FILES,
    local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"),
                   ("label", "score")),
    submission_files=(("test", "STS-B.tsv"),),
))
register(TaskSpec(
    benchmark="glue", name="mnli", prefix="mnli",
    input_fields=(("hypothesis", "hypothesis"), ("premise", "premise")),
    label_words=("entailment", "neutral", "contradiction"),
    metrics=("accuracy",), metric_to_optimize="accuracy",
    hub_path=GLUE_HUB_PATH, hub_config="mnli",
    validation_splits=("validation_matched", "validation_mismatched"),
    test_splits=("test_matched", "test_mismatched"),
    local_dir="MNLI",
    local_files=(("train", "train"),
                 ("validation_matched", "dev_matched"),
                 ("validation_mismatched", "dev_mismatched"),
                 ("test_matched", "test_matched"),
                 ("test_mismatched", "test_mismatched")),
    # The label is the last column, gold_label (label1..label5 are annotators).
    local_columns=(("premise", "sentence1"), ("hypothesis", "sentence2"),
                   ("label", "gold_label")),
    submission_files=(("test_matched", "MNLI-m.tsv"), ("test_mismatched", "MNLI-mm.tsv")),
    submission_label_words=True,
))
register(TaskSpec(
    benchmark="glue", name="qnli", prefix="qnli",
    input_fields=(("question", "question"), ("sentence", "sentence")),
    label_words=("entailment", "not_entailment"),
    metrics=("accuracy",), metric_to_optimize="accuracy",
    hub_path=GLUE_HUB_PATH, hub_config="qnli",
    local_dir="QNLI", local_files=_GLUE_FILES,
    local_columns=(("question", "question"), ("sentence", "sentence"), ("label", "label")),
    submission_files=(("test", "QNLI.tsv"),),
    submission_label_words=True,
))
register(TaskSpec(
    benchmark="glue", name="rte", prefix="rte",
    input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
    label_words=("entailment", "not_entailment"),
    metrics=("accuracy",), metric_to_optimize="accuracy",
    hub_path=GLUE_HUB_PATH, hub_config="rte",
    local_dir="RTE", local_files=_GLUE_FILES,
    local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("label", "label")),
    submission_files=(("test", "RTE.tsv"),),
    submission_label_words=True,
))
register(TaskSpec(
    benchmark="glue", name="wnli", prefix="wnli",
    input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
    label_words=("not_entailment", "entailment"),
    metrics=("accuracy",), metric_to_optimize="accuracy",
    hub_path=GLUE_HUB_PATH, hub_config="wnli",
    local_dir="WNLI", local_files=_GLUE_FILES,
    local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("label", "label")),
    submission_files=(("test", "WNLI.tsv"),),
))
register(TaskSpec(
    # The diagnostic set is scored with an MNLI model, so it reads like MNLI
    # (T5 glue_utils.get_glue_text_preprocessor casts ax as "mnli"). Its test
    # set has no labels, so there is nothing to score locally (T5: no metrics).
    benchmark="glue", name="ax", prefix="mnli",
    input_fields=(("hypothesis", "hypothesis"), ("premise", "premise")),
    label_words=("entailment", "neutral", "contradiction"),
    metrics=(), metric_to_optimize=None,
    hub_path=GLUE_HUB_PATH, hub_config="ax",
    train_split=None, validation_splits=(), test_splits=("test",),
    local_dir="diagnostic", local_files=(("test", "diagnostic"),),
    local_columns=(("premise", "sentence1"), ("hypothesis", "sentence2"), ("label", "label")),
    submission_files=(("test", "AX.tsv"),),
    submission_label_words=True,
))


# --------------------------------------------------------------------------
# Functions generated from a record

def _column(spec: TaskSpec, example: Mapping[str, Any], column: str) -> Any:
    if column not in example:
        raise ValueError(f"task {spec.full_name}: example has no column {column!r}; "
                         f"it has {sorted(example)}")
    return example[column]


def format_source(spec: TaskSpec, example: Mapping[str, Any]) -> str:
    """The model input text (T5 preprocessors.glue: parts joined by one space).

    mnli: {"premise": "A man eats.", "hypothesis": "Someone eats.", "label": 0}
      -> "mnli hypothesis: Someone eats. premise: A man eats."
    Values are written verbatim (no stripping), as T5 does.
    """
    parts = [spec.prefix] if spec.prefix else []
    for shown, column in spec.input_fields:
        value = _column(spec, example, column)
        if not isinstance(value, str):
            raise ValueError(f"task {spec.full_name}: column {column!r} holds "
                             f"{type(value).__name__}, expected text")
        if shown:
            parts.append(f"{shown}:")
        parts.append(value)
    return " ".join(parts)


def format_target(spec: TaskSpec, example: Mapping[str, Any]) -> str:
    """The target text.

    sst2 {"label": 1} -> "positive"; stsb {"label": 3.79} -> "3.8";
    a label outside the label set (including UNLABELED, -1) -> ValueError.
    """
    value = _column(spec, example, spec.label_column)
    if spec.label_words is not None:
        # bool is an int subclass; reject it along with floats and strings.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or not 0 <= value < len(spec.label_words):
            hint = " (an unlabeled test example?)" if value == UNLABELED else ""
            raise ValueError(
                f"task {spec.full_name}: label {value!r} is outside the label set "
                f"0..{len(spec.label_words) - 1} {list(spec.label_words)}{hint}")
        return spec.label_words[int(value)]
    if spec.regression is not None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not spec.regression.contains(float(value)):
            raise ValueError(
                f"task {spec.full_name}: score {value!r} is outside "
                f"[{spec.regression.low}, {spec.regression.high}]")
        return spec.regression.format(float(value))
    if not isinstance(value, str):
        raise ValueError(f"task {spec.full_name}: target {value!r} is not text")
    return value


def postprocess(spec: TaskSpec, text: str) -> int | float | str:
    """Decoded model text -> label value (T5 postprocessors).

    Classification: the index of the label word after stripping whitespace;
      sst2 " positive" -> 1, "maybe" -> INVALID, "positive positive" -> INVALID.
    Regression: the float, "3.8" -> 3.8; text that is no number, or a number
      outside the score range ("7.0", "nan"), -> INVALID.
    Free text: the text unchanged.
    """
    if spec.label_words is not None:
        word = text.strip()
        return spec.label_words.index(word) if word in spec.label_words else INVALID
    if spec.regression is not None:
        try:
            value = float(text.strip())
        except ValueError:
            return INVALID
        return value if spec.regression.contains(value) else INVALID
    return text


def compute_task_metrics(spec: TaskSpec, predicted_texts: Sequence[str],
                         target_texts: Sequence[str]) -> dict[str, float]:
    """Score decoded predictions against target texts, both postprocessed.

    Returns each metric in spec.metrics on a 0-100 scale, plus
    ``invalid_rate``: the percent (0-100, like the metrics) of predictions
    that are no valid label. Invalid predictions are scored as wrong, never
    dropped: accuracy never matches them; binary f1/mcc replace them by the
    label opposite to the gold one; a regression replaces them by the end of
    the score range farthest from the gold score (0.0 for gold 4.2 on STS-B).

    sst2: predictions ["positive", "maybe"], targets ["positive", "positive"]
      -> {"accuracy": 50.0, "invalid_rate": 50.0}
    """
    if len(predicted_texts) != len(target_texts):
        raise ValueError(f"got {len(predicted_texts)} predictions but "
                         f"{len(target_texts)} targets")
    if not predicted_texts:
        raise ValueError("cannot compute metrics on zero examples")
    predictions = [postprocess(spec, text) for text in predicted_texts]
    free_text = spec.label_words is None and spec.regression is None
    invalid = 0 if free_text else sum(p == INVALID for p in predictions)
    results = {}
    if spec.metrics:
        targets = [postprocess(spec, text) for text in target_texts]
        for i, target in enumerate(targets):
            if not free_text and target == INVALID:
                raise ValueError(f"task {spec.full_name}: target {i} "
                                 f"{target_texts[i]!r} is not a valid target")
        if spec.regression is not None:
            predictions = replace_invalid_scores(
                targets, predictions, spec.regression.low, spec.regression.high)
        for name in spec.metrics:
            results[name] = METRICS[name](targets, predictions)
    results["invalid_rate"] = PERCENT * invalid / len(predictions)
    return results


def label_candidates(spec: TaskSpec) -> list[str] | None:
    """The label words for rank classification; None for regression/free text.

    mnli -> ["entailment", "neutral", "contradiction"]
    """
    return list(spec.label_words) if spec.label_words is not None else None


def target_candidates(spec: TaskSpec) -> list[str] | None:
    """Every possible target text: the label words, or the 26 STS-B scores
    "0.0" ... "5.0"; None for free text."""
    if spec.label_words is not None:
        return list(spec.label_words)
    if spec.regression is not None:
        return spec.regression.candidates()
    return None


def max_target_length(spec: TaskSpec, tokenizer) -> int | None:
    """Longest target in tokens (EOS included) under ``tokenizer``; None for
    free text, where the caller must choose a length.

    With ByT5Tokenizer(): sst2 -> len("positive" / "negative") + EOS = 9.
    """
    candidates = target_candidates(spec)
    if candidates is None:
        return None
    return max(len(tokenizer(text)["input_ids"]) for text in candidates)
