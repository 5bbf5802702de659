"""Benchmark task files and custom task files in, leaderboard submission files out.

Loads task data into ``datasets.Dataset`` objects with the hub's schema.

GLUE rows get the column names and integer labels of ``nyu-mll/glue`` on the
hub (sentence; sentence1/sentence2; question1/question2; question/sentence;
premise/hypothesis; label; idx), whether they come from the hub or from a
local copy of the official GLUE download (``--data_dir``). User data for
``--benchmark custom`` becomes columns source, target, idx.

Every loader returns ``(dataset, LoadReport)``. Files are read by t5kit.readers,
as the pre-training corpus is: bad input is an ``InputFileError`` (a ValueError)
"FILE:LINE: message (column 'X', --flag)"; empty text fields and blank lines are
only counted.

Local GLUE files are tab-separated with no quoting: a quote character is text
("QUOTE_NONE" in the GLUE and HF loaders), so lines are split on "\\t".

Local SuperGLUE files (``--data_dir``, the SuperGLUE download: ``BoolQ/val.jsonl``)
are JSON lines; they become the rows of ``aps/super_glue`` on the hub: the
record's ``local_columns`` (dotted paths allowed: WSC's ``target.span1_text``),
the label as a class index (file values ``local_label_values``, e.g. "false"/
"true" or JSON booleans for BoolQ; missing in test files: -1) and ``idx``.
MultiRC and ReCoRD nest several examples in one line and are flattened as the
hub does (``FLATTENERS``):

- MultiRC: one row per answer option: paragraph, question, answer, label,
  idx {paragraph, question, answer}.
- ReCoRD: one row per query: passage, query, entities (the sorted distinct
  entity texts, ``text[start:end + 1]``), answers (sorted distinct answer
  texts; [] in test files), idx {passage, query}.

SuperGLUE leaderboard files (``write_superglue_submission``): one
``{"idx": ..., "label": ...}`` line per test example, and for MultiRC one line per
paragraph: {"idx": p, "passage": {"questions": [{"idx": q, "answers":
[{"idx": a, "label": 0 or 1}]}]}}.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import datasets

from t5kit.hub import load_hub_dataset
from t5kit.readers import (
    RECORD_SUFFIXES,
    InputFileError,
    ReadCounts,
    Row,
    check_file,
    check_text,
    no_column,
    read_records,
)
from t5kit.tasks import INVALID, LOCAL_FLATTENERS, UNLABELED, TaskSpec, read_path

CUSTOM_FORMATS = RECORD_SUFFIXES  # .jsonl, .json, .csv, .tsv
# A dict entry of this name holds the pair in t2t-tuner's jsonl lines:
# {"translation": {"s": "source text", "t": "target text"}}.
T2T_TUNER_KEY = "translation"
SUBMISSION_HEADER = ("index", "prediction")


@dataclass(frozen=True)
class LoadReport:
    """What a loader read: where from, how many rows, how many were odd.

    empty_fields: column -> number of rows where that text is "" (kept, not fatal).
    blank_lines: lines of nothing but whitespace, skipped (t5kit.readers).
    """

    source: str
    rows: int
    empty_fields: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0

    @property
    def num_empty(self) -> int:
        return sum(self.empty_fields.values())

    def summary(self) -> str:
        """'SST-2/dev.tsv: 872 rows, 0 empty text fields, 0 blank lines'."""
        parts = [f"{self.source}: {self.rows} rows, {self.num_empty} empty text fields"]
        parts += [f"{column}={n}" for column, n in sorted(self.empty_fields.items()) if n]
        parts.append(f"{self.blank_lines} blank lines skipped")
        return ", ".join(parts)


# --------------------------------------------------------------------------
# GLUE and other hub-schema tasks


def hub_features(spec: TaskSpec) -> datasets.Features:
    """The hub schema of a task: text columns, label, idx (int32).

    sst2 -> {"sentence": string, "label": ClassLabel(negative, positive), "idx": int32}
    """
    text_columns = [column for _, column in spec.input_fields]
    order = [c for c, _ in spec.local_columns] or text_columns + [spec.label_column]
    order += [c for c in text_columns + [spec.label_column] if c not in order]
    if spec.label_words is not None:
        label = datasets.ClassLabel(names=list(spec.label_words))
    elif spec.regression is not None:
        label = datasets.Value("float32")
    else:
        label = datasets.Value("string")
    features = {c: label if c == spec.label_column else datasets.Value("string") for c in order}
    features["idx"] = datasets.Value("int32")
    return datasets.Features(features)


def _parse_label(spec: TaskSpec, raw: str, row: Row, flag: str, column: str):
    """A file's label text -> hub label value.

    Label words map to their index ("entailment" -> 0 for RTE); digits are the
    index itself ("1" for SST-2); a regression score must lie in its range.
    column: the file's label column, for the error.
    """
    if spec.label_words is not None:
        if raw in spec.label_words:
            return spec.label_words.index(raw)
        if raw.isdigit() and int(raw) < len(spec.label_words):
            return int(raw)
        raise InputFileError(
            row.path,
            row.line,
            f"label {raw!r} is not in the {spec.name} label set "
            f"{list(spec.label_words)} or 0..{len(spec.label_words) - 1}",
            flag,
            column=column,
        )
    if spec.regression is not None:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not spec.regression.contains(value):
            raise InputFileError(
                row.path,
                row.line,
                f"score {raw!r} is not a number in [{spec.regression.low}, {spec.regression.high}]",
                flag,
                column=column,
            )
        return value
    return raw


def _local_file(spec: TaskSpec, split: str, data_dir: str, flag: str, layout: str) -> str:
    """<data_dir>/<the record's relative path>, or an InputFileError naming the expected layout."""
    relative = spec.local_path(split)
    path = os.path.join(data_dir, relative)
    if not os.path.isfile(path):
        raise InputFileError(
            path, None, f"file not found; expected the {layout} download layout <data_dir>/{relative}", flag
        )
    check_file(path, flag)
    return path


def _read_local_split(spec: TaskSpec, split: str, data_dir: str, flag: str) -> tuple[datasets.Dataset, LoadReport]:
    path = _local_file(spec, split, data_dir, flag, "GLUE")
    header = list(spec.local_headerless_columns) if split in spec.local_headerless_splits else None
    file_columns = dict(spec.local_columns)
    label_file_column = file_columns[spec.label_column]
    unlabeled = split in spec.test_splits  # test files carry no labels
    needed = [f for c, f in spec.local_columns if not (c == spec.label_column and unlabeled)]
    text_columns = [c for c, _ in spec.local_columns if c != spec.label_column]
    rows: dict[str, list[Any]] = {c: [] for c in hub_features(spec)}
    empty = {c: 0 for c in text_columns}
    counts = ReadCounts()
    for row in read_records(path, flag, counts, columns=needed, header=header, suffix=".tsv"):
        for column in text_columns:
            value = row.values[file_columns[column]]
            empty[column] += value == ""
            rows[column].append(value)
        raw_label = row.values.get(label_file_column)
        rows[spec.label_column].append(
            UNLABELED if raw_label is None else _parse_label(spec, raw_label, row, flag, label_file_column)
        )
        # idx counts data rows from 0, as the hub's GLUE builder does.
        rows["idx"].append(len(rows["idx"]))
    if not rows["idx"]:
        raise InputFileError(path, None, "file has no data rows", flag)
    dataset = datasets.Dataset.from_dict(rows, features=hub_features(spec))
    return dataset, LoadReport(source=path, rows=len(dataset), empty_fields=empty, blank_lines=counts.blank_lines)


def _json_label_text(value: Any) -> str:
    """A file label as text: JSON booleans as "false"/"true", numbers as digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flatten_multirc(record: dict) -> list[dict]:
    """One MultiRC line (a paragraph with its questions and answer options) -> hub rows."""
    passage = record["passage"]
    rows = []
    for question in passage["questions"]:
        for answer in question["answers"]:
            rows.append(
                {
                    "paragraph": passage["text"],
                    "question": question["question"],
                    "answer": answer["text"],
                    "label": answer.get("label"),
                    "idx": {"paragraph": record["idx"], "question": question["idx"], "answer": answer["idx"]},
                }
            )
    return rows


def flatten_record(record: dict) -> list[dict]:
    """One ReCoRD line (a passage with its queries) -> one hub row per query."""
    text = record["passage"]["text"]
    entities = sorted({text[e["start"] : e["end"] + 1] for e in record["passage"]["entities"]})
    return [
        {
            "passage": text,
            "query": qa["query"],
            "entities": entities,
            "answers": sorted({a["text"] for a in qa.get("answers", [])}),
            "idx": {"passage": record["idx"], "query": qa["idx"]},
        }
        for qa in record["qas"]
    ]


FLATTENERS = {"superglue_multirc": flatten_multirc, "superglue_record": flatten_record}
assert set(FLATTENERS) == LOCAL_FLATTENERS, "t5kit.tasks.LOCAL_FLATTENERS and FLATTENERS disagree"


def _jsonl_features(spec: TaskSpec, row: dict) -> datasets.Features:
    """The hub schema of a jsonl task, from the record and one row (for the non-text columns)."""
    features: dict[str, Any] = {}
    for column, _ in spec.local_columns:
        if column == spec.label_column:
            if spec.label_words is not None:
                features[column] = datasets.ClassLabel(names=list(spec.label_words))
            else:
                features[column] = datasets.Sequence(datasets.Value("string"))
        elif column in spec.list_input_columns:
            features[column] = datasets.Sequence(datasets.Value("string"))
        elif isinstance(row.get(column), int) and not isinstance(row.get(column), bool):
            features[column] = datasets.Value("int32")
        else:
            features[column] = datasets.Value("string")
    if spec.idx_fields:
        features["idx"] = {key: datasets.Value("int32") for key in spec.idx_fields}
    else:
        features["idx"] = datasets.Value("int32")
    return datasets.Features(features)


def _read_local_jsonl(spec: TaskSpec, split: str, data_dir: str, flag: str) -> tuple[datasets.Dataset, LoadReport]:
    path = _local_file(spec, split, data_dir, flag, "SuperGLUE")
    file_labels = spec.local_label_values or spec.label_words
    file_columns = dict(spec.local_columns)  # hub column -> the file's (dotted) path, named in errors
    text_columns = [c for _, c in spec.input_fields if c not in spec.list_input_columns]
    empty = {c: 0 for c in text_columns}
    rows: list[dict] = []
    counts = ReadCounts()
    for record in read_records(path, flag, counts, suffix=".jsonl"):
        flattened = FLATTENERS[spec.local_flatten](record.values) if spec.local_flatten else [record.values]
        for raw in flattened:
            row: dict[str, Any] = {}
            for column, file_column in spec.local_columns:
                try:
                    value = read_path(raw, file_column)
                except (KeyError, TypeError) as err:
                    if column == spec.label_column:
                        value = None  # test files carry no labels
                    else:
                        raise InputFileError(path, record.line, err.args[0], flag) from None
                row[column] = value
            label = row.get(spec.label_column)
            if spec.label_words is not None:
                if label is None:
                    row[spec.label_column] = UNLABELED
                else:
                    text = _json_label_text(label)
                    if text not in file_labels:
                        raise InputFileError(
                            path,
                            record.line,
                            f"label {text!r} is not in the {spec.name} label set {list(file_labels)}",
                            flag,
                            column=file_columns[spec.label_column],
                        )
                    row[spec.label_column] = file_labels.index(text)
            elif label is None:
                row[spec.label_column] = []
            for column in text_columns:
                empty[column] += check_text(record, file_columns.get(column, column), row[column], flag) == ""
            idx = raw.get("idx")
            if spec.idx_fields:
                if not isinstance(idx, dict) or set(idx) != set(spec.idx_fields):
                    raise InputFileError(path, record.line, f"idx {idx!r} lacks {spec.idx_fields}", flag, column="idx")
            elif idx is None:
                idx = len(rows)  # files without idx: count data rows from 0
            row["idx"] = idx
            rows.append(row)
    if not rows:
        raise InputFileError(path, None, "file has no data rows", flag)
    dataset = datasets.Dataset.from_list(rows, features=_jsonl_features(spec, rows[0]))
    return dataset, LoadReport(source=path, rows=len(dataset), empty_fields=empty, blank_lines=counts.blank_lines)


def load_benchmark_split(
    spec: TaskSpec,
    split: str,
    data_dir: str | None = None,
) -> tuple[datasets.Dataset, LoadReport]:
    """One split of a benchmark task (GLUE, SuperGLUE, summarization, ...), with the hub schema.

    split: a hub split name of the task, e.g. "validation" or, for MNLI,
      "validation_matched" (read from <data_dir>/MNLI/dev_matched.tsv).
    data_dir: the GLUE/SuperGLUE download folder; None loads from the hub
      (``datasets.load_dataset(spec.hub_path, spec.hub_config, split=split)``).
    Test splits carry label -1 (UNLABELED).

    load_benchmark_split(get_task("glue", "sst2"), "validation", "glue_data")[0][0]
      -> {"sentence": "it 's a charming and often affecting journey . ",
          "label": 1, "idx": 0}
    """
    if split not in spec.splits:
        raise ValueError(f"task {spec.full_name} has no split {split!r}; choose one of: {', '.join(spec.splits)}")
    if data_dir is not None:
        if not spec.local_files:
            raise ValueError(
                f"task {spec.full_name} has no local file layout; leave out --data_dir "
                "(hub) or use --benchmark custom with --train_file/--validation_file"
            )
        if spec.local_suffix == ".jsonl":
            return _read_local_jsonl(spec, split, data_dir, flag="--data_dir")
        return _read_local_split(spec, split, data_dir, flag="--data_dir")
    if spec.hub_path is None:
        raise ValueError(f"task {spec.full_name} has no hub source; pass --data_dir")
    dataset = load_hub_dataset(
        spec.hub_path,
        spec.hub_config,
        split,
        local_hint=(
            f"pass --data_dir with the {spec.benchmark.upper()} files for {spec.full_name}, or --benchmark custom with "
            "--train_file/--validation_file"
        ),
    )
    empty = {
        c: sum(v == "" for v in dataset[c])
        for _, c in spec.input_fields
        if c in dataset.column_names and c not in spec.list_input_columns
    }
    return dataset, LoadReport(
        source=f"hub {spec.hub_path} {spec.hub_config} {split}", rows=len(dataset), empty_fields=empty
    )


# --------------------------------------------------------------------------
# User data for --benchmark custom


def load_custom_split(
    path: str,
    source_column: str = "source",
    target_column: str = "target",
    source_id: str = "s",
    target_id: str = "t",
    *,
    flag: str = "--train_file",
    require_target: bool = True,
    answer_list: bool = False,
) -> tuple[datasets.Dataset, LoadReport]:
    """User data (.jsonl, .json, .csv, .tsv) -> Dataset with source, target, idx.

    A record holds ``source_column`` and ``target_column``, or, in t2t-tuner's
    jsonl format, {"translation": {source_id: ..., target_id: ...}}:
      {"translation": {"s": "Hallo", "t": "Hello"}} -> source "Hallo", target "Hello".
    flag: the option that named the file, for error messages ("--test_file").
    require_target=False lets a file without targets load (target "").
    answer_list=True (custom qa): the target is a list of gold answers; a JSON
      list of texts in jsonl/json, or one text (-> [text]); missing -> [].
    """
    sources: list[str] = []
    targets: list[Any] = []
    empty = {"source": 0, "target": 0}
    counts = ReadCounts()
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in CUSTOM_FORMATS:
        raise InputFileError(path, None, f"unsupported file type {suffix!r}; use one of {', '.join(CUSTOM_FORMATS)}",
                             flag)  # fmt: skip
    check_file(path, flag)
    header_columns = [source_column, target_column] if require_target else [source_column]
    for row in read_records(path, flag, counts, columns=header_columns):
        record = row.values
        if source_column not in record and isinstance(record.get(T2T_TUNER_KEY), dict):
            row = Row(row.path, row.line, record[T2T_TUNER_KEY])
            columns, owner = (source_id, target_id), f"{T2T_TUNER_KEY!r} object"
        else:
            columns, owner = (source_column, target_column), ""
        values = []
        for name, column in zip(("source", "target"), columns):
            if column not in row.values:
                if name == "target" and not require_target:
                    values.append([] if answer_list else "")
                    continue
                raise no_column(row, column, flag, owner)
            value = row.values[column]
            if name == "target" and answer_list:
                value = [value] if isinstance(value, str) else value
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise InputFileError(path, row.line, f"holds {value!r}, expected a text or a list of texts",
                                         flag, column=column)  # fmt: skip
            else:
                value = check_text(row, column, value, flag)
            values.append(value)
        for name, value in zip(("source", "target"), values):
            empty[name] += value == "" or (isinstance(value, list) and not any(value))
        sources.append(values[0])
        targets.append(values[1])
    if not sources:
        raise InputFileError(path, None, "file has no records", flag)
    target = datasets.Sequence(datasets.Value("string")) if answer_list else datasets.Value("string")
    features = datasets.Features({"source": datasets.Value("string"), "target": target, "idx": datasets.Value("int32")})
    dataset = datasets.Dataset.from_dict(
        {"source": sources, "target": targets, "idx": list(range(len(sources)))}, features=features
    )
    return dataset, LoadReport(source=path, rows=len(dataset), empty_fields=empty, blank_lines=counts.blank_lines)


# --------------------------------------------------------------------------
# GLUE leaderboard files


def glue_submission_filename(spec: TaskSpec, split: str = "test") -> str:
    """The official file name: (sst2, "test") -> "SST-2.tsv";
    (mnli, "test_mismatched") -> "MNLI-mm.tsv"; (ax, "test") -> "AX.tsv"."""
    return spec.submission_file(split)


def write_glue_submission(
    spec: TaskSpec, predictions: Sequence[int | float], path: str, invalid_fallback: int | float = 0
) -> int:
    """Write the leaderboard TSV "index\\tprediction"; return how many
    predictions were invalid and replaced by ``invalid_fallback``.

    predictions[i] is the postprocessed prediction for the test row with idx i:
    a class index (INVALID allowed) or an STS-B score. Written as label words
    for MNLI/AX/QNLI/RTE (spec.submission_label_words), as integers for the
    other classification tasks, as scores with 3 decimals for STS-B:
      rte [0, 1, -1] -> "index\\tprediction\\n0\\tentailment\\n1\\tnot_entailment\\n2\\tentailment\\n"
    """
    if not predictions:
        raise ValueError(f"no predictions to write to {path}")

    def valid(value) -> bool:
        if spec.label_words is not None:
            return (
                not isinstance(value, bool)
                and isinstance(value, numbers.Integral)
                and 0 <= value < len(spec.label_words)
            )
        if spec.regression is not None:
            return (
                not isinstance(value, bool)
                and isinstance(value, numbers.Real)
                and spec.regression.contains(float(value))
            )
        return False

    if spec.label_words is None and spec.regression is None:
        raise ValueError(f"task {spec.full_name} has no GLUE leaderboard format")
    if not valid(invalid_fallback):
        raise ValueError(f"invalid_fallback {invalid_fallback!r} is no valid prediction for task {spec.full_name}")
    replaced = 0
    lines = ["\t".join(SUBMISSION_HEADER)]
    for index, value in enumerate(predictions):
        if not valid(value):  # INVALID (-1) or out of range
            value, replaced = invalid_fallback, replaced + 1
        if spec.regression is not None:
            text = f"{float(value):.3f}"
        elif spec.submission_label_words:
            text = spec.label_words[int(value)]
        else:
            text = str(int(value))
        lines.append(f"{index}\t{text}")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    return replaced


# --------------------------------------------------------------------------
# SuperGLUE leaderboard files


def write_superglue_submission(
    spec: TaskSpec, idxs: Sequence[Any], predictions: Sequence[Any], path: str, invalid_fallback: int = 0
) -> int:
    """Write a SuperGLUE leaderboard jsonl file; return how many predictions were
    invalid and replaced by the class ``invalid_fallback``.

    idxs[i]: the test example's idx (an int, or the struct of spec.idx_fields);
    predictions[i]: its postprocessed prediction (a class index, INVALID allowed,
    or the answer text for ReCoRD). Labels are spec.submission_labels[class]:
      boolq idxs [0, 1], predictions [1, -1] -> {"idx": 0, "label": "true"}
                                                {"idx": 1, "label": "false"}
      record idxs [{"passage": 0, "query": 7}], predictions ["Obama"]
        -> {"idx": 7, "label": "Obama"}
      multirc: one line per paragraph, questions and answers nested in file order.
    """
    if not predictions:
        raise ValueError(f"no predictions to write to {path}")
    if len(idxs) != len(predictions):
        raise ValueError(f"got {len(predictions)} predictions but {len(idxs)} idx values")
    classes = len(spec.label_words) if spec.label_words is not None else None
    if classes is not None and not 0 <= invalid_fallback < classes:
        raise ValueError(f"invalid_fallback {invalid_fallback!r} is no class of task {spec.full_name}")
    replaced = 0

    def label_of(value):
        nonlocal replaced
        if classes is None:
            return str(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < classes:
            value, replaced = invalid_fallback, replaced + 1
        return int(value)

    lines = []
    if spec.submission_format == "superglue_multirc_jsonl":
        paragraph_key, question_key, answer_key = spec.idx_fields
        paragraphs: dict[Any, dict[Any, list]] = {}
        for idx, value in zip(idxs, predictions):
            questions = paragraphs.setdefault(idx[paragraph_key], {})
            questions.setdefault(idx[question_key], []).append({"idx": idx[answer_key], "label": label_of(value)})
        for p, questions in paragraphs.items():
            lines.append(
                {
                    "idx": p,
                    "passage": {"questions": [{"idx": q, "answers": answers} for q, answers in questions.items()]},
                }
            )
    elif spec.submission_format == "superglue_jsonl":
        for idx, value in zip(idxs, predictions):
            key = idx[spec.submission_idx] if spec.submission_idx else idx
            label = label_of(value)
            lines.append({"idx": key, "label": spec.submission_labels[label] if classes else label})
    else:
        raise ValueError(f"task {spec.full_name} has no SuperGLUE leaderboard format")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return replaced


def write_submission(
    spec: TaskSpec, split: str, idxs: Sequence[Any], predictions: Sequence[Any], folder: str
) -> tuple[str, int]:
    """The leaderboard file of ``split`` in ``folder`` in the record's format;
    returns (path, number of invalid predictions replaced by a default label)."""
    path = os.path.join(folder, spec.submission_file(split))
    if spec.submission_format == "glue_tsv":
        return path, write_glue_submission(spec, predictions, path)
    return path, write_superglue_submission(spec, idxs, predictions, path)


__all__ = [
    "LoadReport",
    "hub_features",
    "load_benchmark_split",
    "load_custom_split",
    "glue_submission_filename",
    "write_glue_submission",
    "write_superglue_submission",
    "write_submission",
    "flatten_multirc",
    "flatten_record",
    "FLATTENERS",
    "INVALID",
    "UNLABELED",
]
