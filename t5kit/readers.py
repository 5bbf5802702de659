"""One line-numbered reader for the text files both scripts read: the pre-training corpus (`--train_files`) and the
fine-tuning task files (`--train_file`/`--validation_file`/`--test_file`, the GLUE/SuperGLUE files of `--data_dir`).

Every file is read the same way, whoever reads it:

- bytes are UTF-8; a byte that is not names its file and line. A UTF-8 byte-order mark at the start is dropped.
- lines end at "\\n" only (a "\\r" before it is dropped): str.splitlines would also split at \\x0b, \\x1c or
  \\u2028, which occur inside real text.
- a blank line (nothing but whitespace) holds no record: jsonl/csv/tsv readers skip it and count it
  (`ReadCounts.blank_lines`); `read_lines` hands it over, for the callers that give blank lines a meaning.
- .jsonl: one JSON object per line. .json: a JSON array of objects, or JSON lines. .csv: standard CSV quoting (a
  field may hold commas, quotes and newlines). .tsv: no quoting, as GLUE's files (a quote is text, a field ends at a
  tab). A table's first non-blank line is its header, unless the caller gives the column names.
- a text column holds text: any other JSON value (a number, a list, an object; null unless the caller allows it) is
  refused.

Every problem is one error type, `InputFileError` (a UsageError: the scripts print it and exit 2), with one format:

    FILE:LINE: message (column 'X', --flag)

where `:LINE` is left out for problems of the whole file and `column 'X', ` where no column is concerned:

    docs.jsonl:2: holds a list, expected text (column 'text', --text_column)
    SST-2/dev.tsv:3: not valid UTF-8 (byte 0xe9 at offset 3 of the line); convert the file to UTF-8 (--data_dir)
    train.jsonl: file is empty (--train_file)
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from t5kit.args import UsageError

UTF8_BOM = b"\xef\xbb\xbf"  # MRPC's train/dev files start with one (from msr_paraphrase_*.txt)
JSON_SUFFIXES = (".jsonl", ".json")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
RECORD_SUFFIXES = (*JSON_SUFFIXES, *TABLE_DELIMITERS)
_JSON_WHITESPACE = " \t\n\r"


class InputFileError(UsageError):
    """A problem in an input file: "FILE:LINE: message (column 'X', --flag)" (see the module docstring).

    The parts stay readable as attributes: path, line (None: the whole file), detail (the message), column, flag.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, detail: str, flag: str, column: str | None = None):
        self.path, self.line, self.detail, self.flag, self.column = str(path), line, detail, flag, column
        where = self.path if line is None else f"{self.path}:{line}"
        context = f"column {column!r}, {flag}" if column is not None else flag
        super().__init__(f"{where}: {detail} ({context})")

    def __reduce__(self):  # picklable with its arguments (datasets may carry it across processes)
        return type(self), (self.path, self.line, self.detail, self.flag, self.column)


@dataclass
class ReadCounts:
    """What a reader skipped: blank lines (no record, nothing but whitespace)."""

    blank_lines: int = 0


class Row(NamedTuple):
    """One record: its file, the line it starts on (1-based) and its values by column name."""

    path: str
    line: int
    values: dict[str, Any]


def check_file(path: str | os.PathLike, flag: str, folders: bool = False) -> None:
    """An InputFileError unless `path` is a file (or, with `folders`, a folder) with at least one byte besides a BOM."""
    if not os.path.exists(path):
        raise InputFileError(path, None, "file not found", flag)
    if os.path.isdir(path):
        if folders:
            return
        raise InputFileError(path, None, "a folder, expected a file", flag)
    with open(path, "rb") as handle:
        start = handle.read(len(UTF8_BOM) + 1)
    if start in (b"", UTF8_BOM):
        raise InputFileError(path, None, "file is empty", flag)


def read_lines(path: str | os.PathLike, flag: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its line end) for every line of a UTF-8 file, blank lines included.

    Streams the file (a corpus may be larger than memory). A missing file or a byte that is not UTF-8 raises an
    InputFileError naming the file (and the line).
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise InputFileError(path, None, "file not found", flag) from None
    with handle:
        for number, raw in enumerate(handle, start=1):  # binary files split at b"\n" only
            if number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputFileError(
                    path, number, f"not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start} of the line); "
                    "convert the file to UTF-8", flag,
                ) from None  # fmt: skip


def read_records(
    path: str | os.PathLike,
    flag: str,
    counts: ReadCounts | None = None,
    *,
    columns: Sequence[str] = (),
    columns_flag: str | None = None,
    header: Sequence[str] | None = None,
    suffix: str | None = None,
) -> Iterator[Row]:
    """The records of a .jsonl, .json, .csv or .tsv file (by `suffix`, default the file's), one Row each.

    counts: incremented for every blank line skipped (before, between or after records).
    columns: names a table's header must hold (refused at the header's line otherwise, naming `columns_flag`, by
      default `flag`); JSON records are checked by their reader (`text_value`), as their keys vary.
    header: the column names of a table without a header line (GLUE's CoLA train/dev files).
    A JSON value that is not an object, a table row with another number of fields than the header, malformed JSON
    or CSV: an InputFileError naming the line.
    """
    path = str(path)
    suffix = (suffix or os.path.splitext(path)[1]).lower()
    counts = counts if counts is not None else ReadCounts()
    if suffix in JSON_SUFFIXES:
        yield from _json_records(path, flag, counts, array_ok=suffix == ".json")
    elif suffix in TABLE_DELIMITERS:
        yield from _table_records(path, flag, counts, TABLE_DELIMITERS[suffix], columns, columns_flag or flag, header)
    else:
        raise InputFileError(path, None, f"unsupported file type {suffix!r}; use one of {', '.join(RECORD_SUFFIXES)}",
                             flag)  # fmt: skip


def _content_lines(path: str, flag: str, counts: ReadCounts) -> Iterator[tuple[int, str]]:
    for number, text in read_lines(path, flag):
        if text.strip():
            yield number, text
        else:
            counts.blank_lines += 1


def _json_object(path: str, number: int, value: Any, flag: str) -> dict:
    if not isinstance(value, dict):
        raise InputFileError(path, number, f"holds {json_kind(value)}, expected a JSON object", flag)
    return value


def _json_records(path: str, flag: str, counts: ReadCounts, array_ok: bool) -> Iterator[Row]:
    lines = _content_lines(path, flag, counts)
    first = next(lines, None)
    if first is None:
        return
    if array_ok and first[1].lstrip().startswith("["):
        yield from _json_array(path, flag, first, lines, counts)
        return
    for number, text in itertools.chain([first], lines):
        yield Row(path, number, _json_object(path, number, _parse_json_line(path, number, text, flag), flag))


def _parse_json_line(path: str, number: int, text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(path, number, f"invalid JSON: {err.msg} at character {err.colno}", flag) from None


def _json_array(path: str, flag: str, first: tuple[int, str], rest: Iterator[tuple[int, str]],
                counts: ReadCounts) -> Iterator[Row]:  # fmt: skip
    """The objects of one JSON array, each with the line it starts on (the text is joined back with its line
    numbers: blank lines inside the array are whitespace of the array, not skipped lines)."""
    numbered = [first, *rest]
    start_line = numbered[0][0]
    counts.blank_lines -= numbered[-1][0] - start_line + 1 - len(numbered)  # blank lines inside the array: JSON
    text_lines = [""] * (numbered[-1][0] - start_line + 1)
    for number, text in numbered:
        text_lines[number - start_line] = text
    text = "\n".join(text_lines)
    decoder = json.JSONDecoder()

    def fail(position: int, message: str):
        line = start_line + text.count("\n", 0, position)
        return InputFileError(path, line, f"invalid JSON: {message}", flag)

    def skip(position: int) -> int:
        while position < len(text) and text[position] in _JSON_WHITESPACE:
            position += 1
        return position

    position = skip(text.index("[") + 1)
    if position < len(text) and text[position] == "]":
        position = skip(position + 1)
        if position != len(text):
            raise fail(position, "extra data after the array")
        return
    while True:
        line = start_line + text.count("\n", 0, position)
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as err:
            raise fail(err.pos, err.msg) from None
        yield Row(path, line, _json_object(path, line, item, flag))
        position = skip(position)
        if position < len(text) and text[position] == ",":
            position = skip(position + 1)
            continue
        if position < len(text) and text[position] == "]":
            position = skip(position + 1)
            if position != len(text):
                raise fail(position, "extra data after the array")
            return
        raise fail(position, "expected ',' or ']' in the array")


def _table_records(path: str, flag: str, counts: ReadCounts, delimiter: str, columns: Sequence[str],
                   columns_flag: str, header: Sequence[str] | None) -> Iterator[Row]:  # fmt: skip
    kind = "tab-separated" if delimiter == "\t" else "comma-separated"
    if delimiter == "\t":
        rows = ((number, text.split("\t")) for number, text in _content_lines(path, flag, counts))
    else:
        rows = _csv_rows(path, flag, counts)
    if header is None:
        header_line, header = next(rows, (None, None))
        if header is None:
            return
    else:
        header, header_line = list(header), None
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputFileError(path, header_line, f"no column {missing[0]!r}; found: {', '.join(header)}", columns_flag)
    for number, fields in rows:
        if len(fields) != len(header):
            raise InputFileError(path, number, f"found {len(fields)} {kind} fields, expected {len(header)}: "
                                 f"{', '.join(header)}", flag)  # fmt: skip
        yield Row(path, number, dict(zip(header, fields)))


def _csv_rows(path: str, flag: str, counts: ReadCounts) -> Iterator[tuple[int, list[str]]]:
    """(line a row starts on, fields) of a CSV file; a row of nothing but whitespace is a blank line."""
    reader = csv.reader(text + "\n" for _, text in read_lines(path, flag))
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputFileError(path, reader.line_num, f"invalid CSV: {err}", flag) from None
        line, start = start, reader.line_num + 1
        if fields == [] or (len(fields) == 1 and not fields[0].strip()):
            counts.blank_lines += 1
            continue
        yield line, fields


def json_kind(value: Any) -> str:
    """A value as JSON names it: 'a list', 'an object', 'a number', 'a boolean', 'null', 'text'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def no_column(row: Row, column: str, flag: str, owner: str = "") -> InputFileError:
    """The error for a record without `column`, listing the columns it has (owner: what lacks it, e.g. "'translation'
    object"; default: the record)."""
    found = ", ".join(map(str, row.values)) or "nothing"
    detail = f"{owner} has no column {column!r}" if owner else f"no column {column!r}"
    return InputFileError(row.path, row.line, f"{detail}; found: {found}", flag)


def check_text(row: Row, column: str, value: Any, flag: str, null_ok: bool = False) -> str:
    """`value` (of `column` in `row`) if it is text; "" for null where `null_ok`; else an InputFileError."""
    if isinstance(value, str):
        return value
    if value is None and null_ok:
        return ""
    raise InputFileError(row.path, row.line, f"holds {json_kind(value)}, expected text", flag, column=column)


def text_value(row: Row, column: str, flag: str, null_ok: bool = False) -> str:
    """The text in `column` of `row`: a missing column or a value that is no text (null: "" where `null_ok`) is an
    InputFileError at the row's line."""
    if column not in row.values:
        raise no_column(row, column, flag)
    return check_text(row, column, row.values[column], flag, null_ok=null_ok)
