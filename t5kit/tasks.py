"""Task records and the functions generated from them: the ``TaskSpec`` schema and its checks, the registry functions
(``register``, ``get_task``, ``custom_task``), text formats, postprocessing and metrics. The records themselves, the
``DATASET_VALS`` table, are data in constants.py.

Formats follow the T5 code base (t5/data/glue_utils.py, t5/data/preprocessors.py
``glue`` and ``stsb``, t5/data/postprocessors.py; T5 paper appendix D):

    inputs  = "<prefix> <field1>: <value1> <field2>: <value2>"
    targets = the label word of the integer label, e.g. "positive"

Column names in a record may be dotted paths into nested columns:
``translation.en`` reads ``example["translation"]["en"]`` (wmt16), and
``answers.text`` the list of gold answers of SQuAD.

    >>> spec = get_task("glue", "sst2")
    >>> format_source(spec, {"sentence": "a charming journey", "label": 1})
    'sst2 sentence: a charming journey'
    >>> format_target(spec, {"sentence": "a charming journey", "label": 1})
    'positive'
    >>> postprocess(spec, " positive\\n")
    1

Imports run one way: constants.py imports ``TaskSpec`` and ``Regression`` from here to write its records, and the
functions here that look a task up (``get_task``, ``register`` without a registry, ``custom_task``) import constants
when they are called, never at import time, so neither module needs the other half-built.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from metrics import (
    BINARY_EXTRA_METRICS,
    BINARY_METRICS,
    GROUP_METRICS,
    INVALID,
    METRICS,
    PERCENT,
    SCORE_METRICS,
    TEXT_METRICS,
    replace_invalid_scores,
)

__all__ = [
    "INVALID",
    "UNLABELED",
    "Regression",
    "TaskSpec",
    "register",
    "task_table",
    "tasks_from_dict",
    "get_task",
    "custom_task",
    "format_source",
    "format_target",
    "postprocess",
    "compute_task_metrics",
    "reported_metrics",
    "task_score",
    "label_candidates",
    "target_candidates",
    "max_target_length",
    "TRANSFORMS",
    "LOCAL_FLATTENERS",
    "SUBMISSION_FORMATS",
    "references_of",
    "group_of",
    "read_path",
    "wsc_mark_spans",
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
    decimals: int  # 1: "3.8"

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"Regression range [{self.low}, {self.high}] is empty")
        if self.steps_per_unit < 1 or self.decimals < 0:
            raise ValueError("Regression needs steps_per_unit >= 1 and decimals >= 0")
        if self.contains(INVALID):
            # postprocess marks unusable text with INVALID; it must not be a score.
            raise ValueError(f"Regression range [{self.low}, {self.high}] contains INVALID ({INVALID})")

    def format(self, value: float) -> str:
        """3.79 -> "3.8"; 2.5 -> "2.4" (half to even, as tf.round). Computed in float32, as T5 computes on the
        float32 label: 0.1 and 3.1 give "0.0" and "3.2" whether `value` is the float32 of the hub's features
        (0.10000000149...) or the float64 of a file's text, where float64 arithmetic would give "0.2" and "3.0"."""
        steps = np.float32(self.steps_per_unit)
        rounded = np.round(np.float32(value) * steps) / steps  # numpy rounds half to even, as tf.round
        return f"{float(rounded):.{self.decimals}f}"

    def contains(self, value: float) -> bool:
        """False for values outside [low, high] and for NaN."""
        return self.low <= value <= self.high

    def candidates(self) -> list[str]:
        """Every possible target text: "0.0", "0.2", ..., "5.0" for STS-B."""
        first = math.ceil(self.low * self.steps_per_unit)
        last = math.floor(self.high * self.steps_per_unit)
        return [self.format(k / self.steps_per_unit) for k in range(first, last + 1)]


def _mark_span(text: str, span: str, index: int, mark: str) -> str:
    """Put `mark` around `span` where it starts the word number `index` (0-based,
    words separated by single whitespace characters), as T5 preprocessors.wsc
    ``_mark_span`` does with the regex ^((?:\\S+\\s){N})(W); the span text is
    matched literally here. Text where the span is not found stays unchanged."""
    pattern = re.compile(r"^((?:\S+\s){%d})(%s)" % (index, re.escape(span)))
    return pattern.sub(lambda m: f"{m.group(1)}{mark} {m.group(2)} {mark}", text, count=1)


def wsc_mark_spans(example: Mapping[str, Any]) -> dict[str, Any]:
    """T5 preprocessors.wsc: " * " around the noun (span1), " # " around the pronoun (span2).

    {"text": "This is a test sentence .", "span1_text": "test", "span1_index": 3,
     "span2_text": "This", "span2_index": 0} -> text "# This # is a * test * sentence ."
    """
    text = _mark_span(example["text"], example["span1_text"], int(example["span1_index"]), "*")
    # Marking span1 added two words before span2 when span1 comes first.
    span2_index = int(example["span2_index"]) + 2 * (int(example["span1_index"]) < int(example["span2_index"]))
    out = dict(example)
    out["text"] = _mark_span(text, example["span2_text"], span2_index, "#")
    return out


# Example transforms a record may name (``example_transform``): row -> row, before formatting.
TRANSFORMS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "wsc_mark_spans": wsc_mark_spans,
}
# Nested local files a record may name (``local_flatten``); t5kit.task_files implements each.
LOCAL_FLATTENERS = frozenset({"superglue_multirc", "superglue_record"})
# Leaderboard file formats: GLUE TSV, SuperGLUE jsonl {"idx", "label"}, MultiRC's nested jsonl.
SUBMISSION_FORMATS = frozenset({"glue_tsv", "superglue_jsonl", "superglue_multirc_jsonl"})
# T5 preprocessors.record joins the entity list with ", ".
LIST_SEPARATOR = ", "


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
    local_files: tuple[tuple[str, str], ...] = ()  # (split, file stem)
    local_columns: tuple[tuple[str, str], ...] = ()  # (dataset column, file header name)
    # Files without a header line (CoLA train/dev) and the names of their fields.
    local_headerless_splits: tuple[str, ...] = ()
    local_headerless_columns: tuple[str, ...] = ()
    # File label value per class index, as text, for jsonl files whose labels differ from
    # label_words (BoolQ "false"/"true" for False/True; JSON booleans read as "false"/"true").
    local_label_values: tuple[str, ...] | None = None
    # Nested local files turned into hub rows by t5kit.task_files (one of LOCAL_FLATTENERS).
    local_flatten: str | None = None
    # Leaderboard file per test split ("MNLI-m.tsv", "BoolQ.jsonl").
    submission_files: tuple[tuple[str, str], ...] = ()
    # The leaderboard wants label words (MNLI, AX, QNLI, RTE), not indices.
    submission_label_words: bool = False
    submission_format: str = "glue_tsv"
    # superglue_jsonl: the leaderboard's label value per class index ("true"; 1 for COPA).
    submission_labels: tuple[Any, ...] | None = None
    # Which idx field the leaderboard line carries when idx is a struct (ReCoRD: "query").
    submission_idx: str | None = None

    # Structure of the data.
    # Input columns holding a list of texts, joined with ", " (ReCoRD entities).
    list_input_columns: tuple[str, ...] = ()
    # Regex substitutions (pattern, replacement) applied in order to the formatted input
    # (MultiRC drops HTML markup; ReCoRD turns "@highlight" lines into sentences).
    input_substitutions: tuple[tuple[str, str], ...] = ()
    # A TRANSFORMS entry applied to each row before formatting (WSC marks its spans).
    example_transform: str | None = None
    # The label column holds a list of gold answers (free text): the first is the target
    # text, all of them count for the metrics (ReCoRD, SQuAD).
    multiple_answers: bool = False
    # Training rows: one per gold answer (T5 preprocessors.record) instead of the first one.
    train_on_each_answer: bool = False
    # Keys of a struct idx column (MultiRC: paragraph, question, answer); () = int idx.
    idx_fields: tuple[str, ...] = ()
    # The idx field that groups examples for group metrics (MultiRC: "question").
    group_by: str | None = None

    # Size facts that tuning reads (t5kit.sweep_configs).
    # A small training set, from a few hundred to under 10,000 examples (RTE, CB, COPA):
    # sweeps train more epochs and let hyperband stop trials later.
    small_train_set: bool = False
    # Inputs are passages (BoolQ, MultiRC, ReCoRD): sweeps try smaller batches.
    long_inputs: bool = False

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
            if not all(pair[1].split(".")):
                fail(f"column path {pair[1]!r} has an empty part")
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
            free_text = self.label_words is None and self.regression is None
            if m in TEXT_METRICS and not free_text:
                fail(f"metric {m!r} needs a free-text task (no label_words or regression)")
            if m in GROUP_METRICS and self.group_by is None:
                fail(f"metric {m!r} needs group_by")
        if self.metrics and self.metric_to_optimize not in self.metrics:
            fail(f"metric_to_optimize {self.metric_to_optimize!r} is not one of {self.metrics}")
        if not self.metrics and self.metric_to_optimize is not None:
            fail("metric_to_optimize must be None when metrics is empty")

        splits = self.splits
        if len(set(splits)) != len(splits):
            fail(f"split names repeat: {splits}")
        for table, label in ((self.local_files, "local_files"), (self.submission_files, "submission_files")):
            for split, _ in table:
                if split not in splits:
                    fail(f"{label} names split {split!r}, not one of {splits}")
        for split in self.local_headerless_splits:
            if split not in dict(self.local_files):
                fail(f"local_headerless_splits names {split!r}, which has no local file")
        if self.submission_label_words and self.label_words is None:
            fail("submission_label_words needs label_words")
        if self.submission_format not in SUBMISSION_FORMATS:
            fail(f"submission_format {self.submission_format!r} is not one of {sorted(SUBMISSION_FORMATS)}")
        if self.submission_format == "superglue_jsonl" and self.submission_files:
            if self.label_words is not None:
                if self.submission_labels is None or len(self.submission_labels) != len(self.label_words):
                    fail("submission_labels needs one leaderboard value per label word")
            elif self.regression is not None:
                fail("superglue_jsonl has no format for regression")
        elif self.submission_labels is not None:
            fail("submission_labels applies to superglue_jsonl leaderboard files only")
        if self.submission_format == "superglue_multirc_jsonl" and (
            self.label_words is None or len(self.label_words) != 2 or len(self.idx_fields) != 3
        ):
            fail("superglue_multirc_jsonl needs two label words and idx_fields (paragraph, question, answer)")
        if self.submission_idx is not None and self.submission_idx not in self.idx_fields:
            fail(f"submission_idx {self.submission_idx!r} is not one of idx_fields {self.idx_fields}")
        if (
            self.idx_fields
            and self.submission_files
            and self.submission_format == "superglue_jsonl"
            and self.submission_idx is None
        ):
            fail("a struct idx needs submission_idx for its leaderboard file")
        if self.local_label_values is not None:
            if self.label_words is None or len(self.local_label_values) != len(self.label_words):
                fail("local_label_values needs one file value per label word")
        if self.local_flatten is not None and self.local_flatten not in LOCAL_FLATTENERS:
            fail(f"local_flatten {self.local_flatten!r} is not one of {sorted(LOCAL_FLATTENERS)}")
        for column in self.list_input_columns:
            if column not in columns:
                fail(f"list_input_columns names {column!r}, which is no input column")
        for pattern, _ in self.input_substitutions:
            try:
                re.compile(pattern)
            except re.error as err:
                fail(f"input_substitutions pattern {pattern!r} does not compile: {err}")
        if self.example_transform is not None and self.example_transform not in TRANSFORMS:
            fail(f"example_transform {self.example_transform!r} is not one of {sorted(TRANSFORMS)}")
        if self.multiple_answers and (self.label_words is not None or self.regression is not None):
            fail("multiple_answers needs a free-text task")
        if self.train_on_each_answer and not self.multiple_answers:
            fail("train_on_each_answer needs multiple_answers")
        if self.small_train_set and self.train_split is None:
            fail("small_train_set needs a train_split")
        if len(set(self.idx_fields)) != len(self.idx_fields):
            fail(f"idx_fields repeat a key: {self.idx_fields}")
        if self.group_by is not None and self.group_by not in self.idx_fields:
            fail(f"group_by {self.group_by!r} is not one of idx_fields {self.idx_fields}")
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
                f"task {self.full_name} has no local file for split {split!r}; splits with local files: {sorted(files)}"
            )
        return f"{self.local_dir}/{files[split]}{self.local_suffix}"

    def submission_file(self, split: str) -> str:
        """Official GLUE leaderboard file name: ("mnli", "test_matched") -> "MNLI-m.tsv"."""
        files = dict(self.submission_files)
        if split not in files:
            raise ValueError(
                f"task {self.full_name} has no leaderboard file for split {split!r}; choose one of: {sorted(files)}"
            )
        return files[split]


# --------------------------------------------------------------------------
# Registry. The table itself, DATASET_VALS, is data in constants.py.


def _dataset_vals() -> dict[str, dict[str, TaskSpec]]:
    # Imported at call time: constants imports this module (TaskSpec) at its top.
    from constants import DATASET_VALS

    return DATASET_VALS


def task_table(specs: Iterable[TaskSpec]) -> dict[str, dict[str, TaskSpec]]:
    """{benchmark: {name: spec}} in the order given (how constants.py builds DATASET_VALS); a repeat is a ValueError."""
    table: dict[str, dict[str, TaskSpec]] = {}
    for spec in specs:
        register(spec, table)
    return table


# The dict shape `register` takes: key -> TaskSpec field it sets.
DICT_KEYS = {
    "prefix": "prefix",
    "text_column_name": "input_fields",
    "label_column_name": "label_column",
    "metric_to_optimize": "metric_to_optimize",
    "metric_names": "metrics",
    "labels": "label_words",
    "hub_path": "hub_path",
    "hub_config": "hub_config",
}
_REQUIRED_DICT_KEYS = ("prefix", "text_column_name", "label_column_name", "metric_to_optimize", "metric_names")


def tasks_from_dict(table: Mapping[str, Any]) -> list[TaskSpec]:
    """The TaskSpecs of a dict in the shape `register` documents, in the dict's order; a ValueError names the task
    and the key of anything it cannot use."""
    shape = "{benchmark: {task name: {key: value, ...}}}"
    if not isinstance(table, Mapping):
        raise ValueError(f"register: a task dict has the shape {shape}, got {table!r}")
    specs = []
    for benchmark, tasks in table.items():
        if not isinstance(benchmark, str) or not isinstance(tasks, Mapping) or not tasks:
            raise ValueError(f"register: a task dict has the shape {shape}; {benchmark!r} maps to {tasks!r}")
        for name, fields in tasks.items():
            if not isinstance(name, str) or not isinstance(fields, Mapping):
                raise ValueError(
                    f"register: a task dict has the shape {shape}; {benchmark!r}/{name!r} maps to "
                    f"{type(fields).__name__}, not a dict of keys"
                )
            specs.append(_spec_from_dict(benchmark, name, fields))
    return specs


def _spec_from_dict(benchmark: str, name: str, fields: Mapping[str, Any]) -> TaskSpec:
    where = f"register: task {benchmark}/{name}"
    unknown = [key for key in fields if key not in DICT_KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {', '.join(DICT_KEYS)}")
    missing = [key for key in _REQUIRED_DICT_KEYS if key not in fields]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")

    def wrong(key: str, expected: str) -> ValueError:
        value = fields[key]
        return ValueError(f"{where}: key {key!r} must be {expected}, got {value!r} ({type(value).__name__})")

    def text(key: str, default: str | None = None, none_ok: bool = False) -> str | None:
        if key not in fields:
            return default
        value = fields[key]
        if isinstance(value, str) or (none_ok and value is None):
            return value
        raise wrong(key, "text or None" if none_ok else "text")

    def texts(key: str, one_ok: bool = False) -> tuple[str, ...]:
        value = fields[key]
        if one_ok and isinstance(value, str):
            return (value,)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise wrong(key, ("a column name or " if one_ok else "") + "a list of texts")

    columns = texts("text_column_name", one_ok=True)
    if not columns:
        raise wrong("text_column_name", "a column name or a non-empty list of column names")
    labels = fields.get("labels")
    if labels is None:
        label_words = None
    elif isinstance(labels, Mapping):
        keys = list(labels)
        if any(isinstance(k, bool) or not isinstance(k, int) for k in keys) or sorted(keys) != list(range(len(keys))):
            raise wrong("labels", "a dict from the integer labels 0, 1, ... to label words")
        label_words = tuple(labels[index] for index in range(len(keys)))
    elif isinstance(labels, (list, tuple)):
        label_words = tuple(labels)
    else:
        raise wrong("labels", "a dict {0: word, 1: word, ...}, a list of words, or None")
    if label_words is not None and not all(isinstance(word, str) for word in label_words):
        raise wrong("labels", "label words that are text")
    values = dict(
        prefix=text("prefix"),
        # Each column is shown under its own name: "<prefix> review: <text>", as the GLUE records write theirs.
        input_fields=tuple((column, column) for column in columns),
        label_column=text("label_column_name"),
        label_words=label_words,
        metrics=texts("metric_names"),
        metric_to_optimize=text("metric_to_optimize", none_ok=True),
        hub_path=text("hub_path", default=benchmark, none_ok=True),
        hub_config=text("hub_config", default=name, none_ok=True),
    )
    try:
        return TaskSpec(benchmark=benchmark, name=name, **values)
    except ValueError as err:  # the record's own checks speak of TaskSpec fields; say which key set each
        keys = ", ".join(f"{key} -> {field}" for key, field in DICT_KEYS.items() if key != field)
        raise ValueError(f"{err} (dict keys set TaskSpec fields: {keys})") from None


def register(
    task: TaskSpec | Mapping[str, Any], registry: dict[str, dict[str, TaskSpec]] | None = None
) -> TaskSpec | list[TaskSpec]:
    """Add a task under registry[benchmark][name] (default registry: constants.DATASET_VALS, where get_task looks);
    a task already there is a ValueError. Returns the TaskSpec.

    ``task`` may also be a dict in the DATASET_VALS layout that the original T5 scripts document, holding one or
    more tasks; register returns their TaskSpecs, in order, and registers none of them if any is invalid or taken::

        register({"reviews": {                         # benchmark (--benchmark reviews)
            "polarity": {                              # task name (--dataset_name polarity)
                "prefix": "polarity",                  # prefix: the input's first word(s)
                "text_column_name": "review",          # input_fields: "polarity review: <review>"; a list of
                                                       #   column names gives "polarity a: <a> b: <b>"
                "label_column_name": "stars",          # label_column
                "metric_to_optimize": "accuracy",      # metric_to_optimize: one of metric_names
                "metric_names": ["accuracy", "f1"],    # metrics: names in metrics.METRICS
                "labels": {0: "negative", 1: "positive"},  # label_words, by integer label (a list works too);
                                                       #   left out or None: the target column is free text
                "hub_path": "user/reviews",            # optional; default: the benchmark ("reviews")
                "hub_config": None,                    # optional; default: the task name ("polarity")
            }}})

    Without hub_path/hub_config the data is ``datasets.load_dataset(benchmark, task name)``. Every other TaskSpec
    field keeps its default (splits train / validation / test). Unknown keys, missing required keys (all but
    labels, hub_path and hub_config) and values of the wrong type are a ValueError naming the task and the key.
    """
    registry = _dataset_vals() if registry is None else registry
    if isinstance(task, TaskSpec):
        specs = [task]
    elif isinstance(task, Mapping):
        specs = tasks_from_dict(task)
        if not specs:
            raise ValueError(
                "register: the task dict is empty; it has the shape {benchmark: {task name: {key: value}}}"
            )
    else:
        raise TypeError(f"register takes a TaskSpec or a task dict, got {type(task).__name__}")
    for spec in specs:
        if spec.name in registry.get(spec.benchmark, {}):
            raise ValueError(f"task {spec.full_name} is already registered")
    for spec in specs:
        registry.setdefault(spec.benchmark, {})[spec.name] = spec
    return specs[0] if isinstance(task, TaskSpec) else specs


def get_task(benchmark: str, name: str) -> TaskSpec:
    """DATASET_VALS[benchmark][name], or a ValueError naming the flag and choices."""
    table = _dataset_vals()
    if benchmark not in table:
        raise ValueError(f"--benchmark {benchmark!r} is unknown; choose one of: {', '.join(sorted(table))}")
    tasks = table[benchmark]
    if name not in tasks:
        raise ValueError(
            f"--dataset_name {name!r} is not a {benchmark} task; choose one of: {', '.join(sorted(tasks))}"
        )
    return tasks[name]


def custom_task(prefix: str = "", name: str | None = None) -> TaskSpec:
    """A free-text task for --benchmark custom: columns "source" -> "target"
    (t5kit.task_files.load_custom_split), with the metric set of the custom record
    ``name`` (default constants.CUSTOM: exact match; summarization; translation;
    qa) and ``prefix`` put before every input.

    format_source(custom_task("summarize:"), {"source": "a b"}) -> "summarize: a b"
    """
    from constants import CUSTOM

    return dataclasses.replace(get_task(CUSTOM, CUSTOM if name is None else name), prefix=prefix)


# --------------------------------------------------------------------------
# Functions generated from a record


def read_path(example: Mapping[str, Any], path: str) -> Any:
    """example["translation"]["en"] for "translation.en"; a KeyError names the missing part."""
    value: Any = example
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            have = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise KeyError(f"no column {path!r}; it has {have}")
        value = value[part]
    return value


def _column(spec: TaskSpec, example: Mapping[str, Any], column: str) -> Any:
    try:
        return read_path(example, column)
    except KeyError as err:
        raise ValueError(f"task {spec.full_name}: example has {err.args[0]}") from None


def format_source(spec: TaskSpec, example: Mapping[str, Any]) -> str:
    """The model input text (T5 preprocessors.glue: parts joined by one space).

    mnli: {"premise": "A man eats.", "hypothesis": "Someone eats.", "label": 0}
      -> "mnli hypothesis: Someone eats. premise: A man eats."
    Values are written verbatim (no stripping), as T5 does. A list column
    (spec.list_input_columns) is joined with ", "; spec.example_transform runs
    before and spec.input_substitutions after the joining.
    """
    if spec.example_transform is not None:
        example = TRANSFORMS[spec.example_transform](example)
    parts = [spec.prefix] if spec.prefix else []
    for shown, column in spec.input_fields:
        value = _column(spec, example, column)
        if (
            column in spec.list_input_columns
            and isinstance(value, (list, tuple))
            and all(isinstance(v, str) for v in value)
        ):
            value = LIST_SEPARATOR.join(value)
        if not isinstance(value, str):
            raise ValueError(f"task {spec.full_name}: column {column!r} holds {type(value).__name__}, expected text")
        if shown:
            parts.append(f"{shown}:")
        parts.append(value)
    text = " ".join(parts)
    for pattern, replacement in spec.input_substitutions:
        text = re.sub(pattern, replacement, text)
    return text


def format_target(spec: TaskSpec, example: Mapping[str, Any]) -> str:
    """The target text.

    sst2 {"label": 1} -> "positive"; stsb {"label": 3.79} -> "3.8";
    a label outside the label set (including UNLABELED, -1) -> ValueError.
    multiple_answers (record, squad): the first gold answer.
    """
    value = _column(spec, example, spec.label_column)
    if spec.multiple_answers:
        answers = _answers(spec, value)
        if not answers:
            raise ValueError(f"task {spec.full_name}: example has no gold answer (an unlabeled test example?)")
        return answers[0]
    if spec.label_words is not None:
        # bool is an int subclass; reject it along with floats and strings.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < len(spec.label_words):
            hint = " (an unlabeled test example?)" if value == UNLABELED else ""
            raise ValueError(
                f"task {spec.full_name}: label {value!r} is outside the label set "
                f"0..{len(spec.label_words) - 1} {list(spec.label_words)}{hint}"
            )
        return spec.label_words[int(value)]
    if spec.regression is not None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not spec.regression.contains(float(value)):
            raise ValueError(
                f"task {spec.full_name}: score {value!r} is outside [{spec.regression.low}, {spec.regression.high}]"
            )
        return spec.regression.format(float(value))
    if not isinstance(value, str):
        raise ValueError(f"task {spec.full_name}: target {value!r} is not text")
    return value


def _answers(spec: TaskSpec, value: Any) -> list[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"task {spec.full_name}: {spec.label_column!r} must be a list of texts, got {value!r}")
    return list(value)


def references_of(spec: TaskSpec, example: Mapping[str, Any]) -> list[str]:
    """Every gold target text of a labeled example: the answer list of a
    multiple_answers task (ReCoRD, SQuAD), else [format_target(...)]."""
    if spec.multiple_answers:
        return _answers(spec, _column(spec, example, spec.label_column))
    return [format_target(spec, example)]


def group_of(spec: TaskSpec, example: Mapping[str, Any]) -> str:
    """The metric group of an example: its idx[group_by] (MultiRC: the question), as text."""
    if spec.group_by is None:
        raise ValueError(f"task {spec.full_name} has no group_by")
    return str(_column(spec, example, f"idx.{spec.group_by}"))


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


def compute_task_metrics(
    spec: TaskSpec,
    predicted_texts: Sequence[str],
    target_texts: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
    groups: Sequence[str] | None = None,
) -> dict[str, float]:
    """Score decoded predictions against target texts, both postprocessed.

    Returns each metric of ``reported_metrics(spec)`` on a 0-100 scale (the
    task's own, and for binary classification precision and recall of label
    1), plus ``invalid_rate``: the percent (0-100, like the metrics) of
    predictions that are no valid label. Invalid predictions are scored as
    wrong, never dropped: accuracy never matches them; binary f1, precision,
    recall and mcc replace them by the label opposite to the gold one; a
    regression replaces them by the end of the score range farthest from the
    gold score (0.0 for gold 4.2 on STS-B).

    sst2: predictions ["positive", "maybe"], targets ["positive", "positive"]
      -> {"accuracy": 50.0, "precision": 100.0, "recall": 50.0, "invalid_rate": 50.0}

    Text metrics (ROUGE, BLEU, SQuAD) compare each prediction with its
    ``references`` (all gold texts; default [target]); group metrics (MultiRC
    EM) need ``groups``, one group id per example (references_of, group_of).
    """
    if len(predicted_texts) != len(target_texts):
        raise ValueError(f"got {len(predicted_texts)} predictions but {len(target_texts)} targets")
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
                raise ValueError(f"task {spec.full_name}: target {i} {target_texts[i]!r} is not a valid target")
        if spec.regression is not None:
            predictions = replace_invalid_scores(targets, predictions, spec.regression.low, spec.regression.high)
        if references is None:
            references = [[text] for text in target_texts]
        if len(references) != len(predictions):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
        for name in reported_metrics(spec):
            if name in TEXT_METRICS:
                results[name] = METRICS[name](references, predictions)
            elif name in GROUP_METRICS:
                if groups is None:
                    raise ValueError(f"task {spec.full_name}: metric {name!r} needs groups")
                results[name] = METRICS[name](targets, predictions, groups)
            else:
                results[name] = METRICS[name](targets, predictions)
    results["invalid_rate"] = PERCENT * invalid / len(predictions)
    return results


def reported_metrics(spec: TaskSpec) -> tuple[str, ...]:
    """The metrics compute_task_metrics reports: the task's own (``spec.metrics``, which alone make its score and
    results table), then for binary classification (two label words, scored by accuracy, f1, f1a or mcc) precision
    and recall of label 1, the second label word.

    >>> reported_metrics(get_task("glue", "mrpc"))
    ('f1', 'accuracy', 'precision', 'recall')
    >>> reported_metrics(get_task("glue", "mnli"))
    ('accuracy',)
    """
    binary = (
        spec.label_words is not None
        and len(spec.label_words) == 2
        and any(name in ("accuracy", "f1", "f1a", "mcc") for name in spec.metrics)
    )
    extra = tuple(name for name in BINARY_EXTRA_METRICS if name not in spec.metrics) if binary else ()
    return (*spec.metrics, *extra)


def task_score(spec: TaskSpec, metrics: Mapping[str, float]) -> float:
    """A task's score in a benchmark average: the mean of its metrics (MRPC: F1 and accuracy; STS-B: Pearson and
    Spearman), as the GLUE/SuperGLUE leaderboards and the T5 paper's benchmark averages count a task with two metrics.

    >>> task_score(get_task("superglue", "cb"), {"macro_f1": 50.0, "accuracy": 70.0, "loss": 0.9})
    60.0
    """
    return float(sum(metrics[name] for name in spec.metrics) / len(spec.metrics))


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
