"""t5kit.readers, and the two readers of user files built on it: the pre-training corpus (t5kit.corpus) and the
fine-tuning task files (t5kit.task_files). The same bad input must be handled, and reported, the same way by both."""

from __future__ import annotations

import json
import os
import re

from absl.testing import absltest, parameterized

from t5kit import readers
from t5kit.corpus import CorpusReport, PretrainDataArguments, drop_empty_documents, load_documents
from t5kit.readers import InputFileError
from t5kit.task_files import load_custom_split

# One message format for every file problem: "FILE:LINE: message (column 'X', --flag)".
MESSAGE = re.compile(r"^(?P<path>[^:]+)(?::(?P<line>\d+))?: (?P<detail>.+) \((?:column '(?P<column>[^']+)', )?"
                     r"(?P<flag>--\w+)\)$")  # fmt: skip


class BothReaders(parameterized.TestCase):
    """Writes one file and reads it as a corpus (column `source`) and as a custom task file (source/target)."""

    def write(self, name: str, content: str | bytes) -> str:
        path = os.path.join(self.create_tempdir().full_path, name)
        with open(path, "wb") as handle:
            handle.write(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def corpus(self, path: str, streaming: bool) -> tuple[list[str], CorpusReport]:
        args = PretrainDataArguments(train_files=[path], text_column="source", streaming=streaming)
        docs = load_documents(args)
        report = CorpusReport()
        if streaming:
            return [row["text"] for row in docs if row["text"]], report  # a stream's blank lines are not counted
        texts = drop_empty_documents(docs, report)["text"]
        return texts, report

    def corpus_error(self, path: str, streaming: bool) -> InputFileError:
        with self.assertRaises(InputFileError) as caught:
            self.corpus(path, streaming)
        return caught.exception

    def task_error(self, path: str) -> InputFileError:
        with self.assertRaises(InputFileError) as caught:
            load_custom_split(path, "source", "target", flag="--train_file")
        return caught.exception

    def assert_same_error(self, path: str, line: int, detail: str, column: str | None, corpus_flag: str):
        """The corpus (read whole and streamed) and the task reader refuse the file with the same message, up to
        the flag that names the file or column."""
        task = self.task_error(path)
        for streaming in (False, True):
            corpus = self.corpus_error(path, streaming)
            self.assertEqual((corpus.path, corpus.line, corpus.detail, corpus.column),
                             (task.path, task.line, task.detail, task.column))  # fmt: skip
            self.assertEqual(str(corpus).replace(corpus_flag, "--train_file"), str(task))
        self.assertEqual((task.line, task.column), (line, column))
        self.assertRegex(task.detail, detail)
        match = MESSAGE.match(str(task))
        self.assertIsNotNone(match, str(task))
        self.assertEqual(match["path"], path)
        self.assertEqual(match["line"], str(line))
        self.assertEqual(match["column"], column)
        self.assertEqual(match["flag"], "--train_file")

    @parameterized.named_parameters(
        ("jsonl", "data.jsonl",
         '\ufeff{"source": "a", "target": "b"}\n\n   \n{"source": "c", "target": "d"}\n\n'),
        ("csv", "data.csv", '\ufeffsource,target\na,b\n\n   \n"c",d\n\n'),
        ("tsv", "data.tsv", "\ufeffsource\ttarget\na\tb\n\n   \nc\td\n\n"),
    )  # fmt: skip
    def test_bom_dropped_and_blank_lines_skipped_and_counted(self, name, content):
        path = self.write(name, content)
        dataset, load_report = load_custom_split(path, "source", "target")
        self.assertEqual(dataset["source"], ["a", "c"])
        self.assertEqual(load_report.blank_lines, 3)
        texts, corpus_report = self.corpus(path, streaming=False)
        self.assertEqual(texts, ["a", "c"])
        self.assertEqual(corpus_report.empty_documents_skipped, load_report.blank_lines)
        self.assertEqual(self.corpus(path, streaming=True)[0], ["a", "c"])

    @parameterized.named_parameters(
        ("jsonl", "data.jsonl", b'{"source": "a", "target": "b"}\n{"source": "caf\xe9", "target": "d"}\n', 2),
        ("csv", "data.csv", b"source,target\na,b\ncaf\xe9,d\n", 3),
        ("tsv", "data.tsv", b"source\ttarget\na\tb\ncaf\xe9\td\n", 3),
    )
    def test_bad_utf8(self, name, content, line):
        path = self.write(name, content)
        self.assert_same_error(path, line, r"^not valid UTF-8 \(byte 0xe9 at offset \d+ of the line\)", None,
                               "--train_files")  # fmt: skip

    @parameterized.named_parameters(
        ("number", 5, "a number"),
        ("list", ["a", "b"], "a list"),
        ("object", {"a": 1}, "an object"),
        ("boolean", True, "a boolean"),
    )
    def test_non_string_text_value(self, value, kind):
        lines = [{"source": "fine", "target": "x"}, {"source": value, "target": "y"}]
        path = self.write("data.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
        self.assert_same_error(path, 2, f"^holds {kind}, expected text$", "source", "--text_column")

    def test_missing_column(self):
        path = self.write("data.jsonl", '{"text": "a", "target": "b"}\n')
        self.assert_same_error(path, 1, r"^no column 'source'; found: text, target$", None, "--text_column")
        path = self.write("data.tsv", "text\ttarget\na\tb\n")
        self.assert_same_error(path, 1, r"^no column 'source'; found: text, target$", None, "--text_column")

    def test_malformed_json_and_wrong_field_count(self):
        path = self.write("data.jsonl", '{"source": "a", "target": "b"}\n{"source": "c",\n')
        self.assert_same_error(path, 2, r"^invalid JSON: ", None, "--train_files")
        path = self.write("data.tsv", "source\ttarget\na\tb\nc\n")
        self.assert_same_error(path, 3, r"^found 1 tab-separated fields, expected 2: source, target$", None,
                               "--train_files")  # fmt: skip

    def test_tsv_has_no_quoting(self):
        """A TSV field starting with a quote is text, as in GLUE's files: it swallows no tab or following row."""
        path = self.write("data.tsv", 'source\ttarget\n"a\tb\nc "d"\te\n')
        dataset, _ = load_custom_split(path, "source", "target")
        self.assertEqual(dataset["source"], ['"a', 'c "d"'])
        self.assertEqual(self.corpus(path, streaming=False)[0], ['"a', 'c "d"'])
        self.assertEqual(self.corpus(path, streaming=True)[0], ['"a', 'c "d"'])

    def test_csv_has_standard_quoting(self):
        path = self.write("data.csv", 'source,target\n"a, ""b""\nc",x\nd,y\n')
        dataset, _ = load_custom_split(path, "source", "target")
        self.assertEqual(dataset["source"], ['a, "b"\nc', "d"])
        self.assertEqual(self.corpus(path, streaming=False)[0], ['a, "b"\nc', "d"])

    def test_empty_and_missing_files(self):
        path = self.write("data.jsonl", "")
        self.assertEqual(str(self.task_error(path)), f"{path}: file is empty (--train_file)")
        self.assertEqual(str(self.corpus_error(path, False)), f"{path}: file is empty (--train_files)")
        missing = os.path.join(self.create_tempdir().full_path, "nope.jsonl")
        self.assertEqual(str(self.task_error(missing)), f"{missing}: file not found (--train_file)")
        self.assertEqual(str(self.corpus_error(missing, False)), f"{missing}: file not found (--train_files)")


class ReaderTest(parameterized.TestCase):
    def write(self, name: str, content: str | bytes) -> str:
        path = os.path.join(self.create_tempdir().full_path, name)
        with open(path, "wb") as handle:
            handle.write(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def test_lines_end_at_newline_only(self):
        path = self.write("a.txt", "\ufeffone\r\na\x1cb\u2028c\n\nlast\r")
        self.assertEqual(
            list(readers.read_lines(path, "--f")), [(1, "one"), (2, "a\x1cb\u2028c"), (3, ""), (4, "last")]
        )

    def test_json_array_records_carry_their_lines(self):
        path = self.write("a.json", '\n[{"source": "a"},\n\n {"source":\n  "b"}, {"source": "c"}]\n')
        counts = readers.ReadCounts()
        rows = list(readers.read_records(path, "--f", counts))
        self.assertEqual([(row.line, row.values["source"]) for row in rows], [(2, "a"), (4, "b"), (5, "c")])
        self.assertEqual(counts.blank_lines, 1)  # the one before the array; inside it, a blank line is JSON
        for content, line in (('[{"a": 1},\n {"a": 2}\n {"a": 3}]', 3), ('[{"a": 1},\n 2]', 2), ("[1,]", 1),
                              ('[{"a": 1}]\n{"b": 2}', 2)):  # fmt: skip
            with self.subTest(content):
                with self.assertRaises(InputFileError) as caught:
                    list(readers.read_records(self.write("b.json", content), "--f"))
                self.assertEqual(caught.exception.line, line, str(caught.exception))

    def test_json_lines_in_a_json_file(self):
        path = self.write("a.json", '{"source": "a"}\n{"source": "b"}\n')
        self.assertEqual([row.line for row in readers.read_records(path, "--f")], [1, 2])

    def test_csv_rows_start_where_their_first_line_is(self):
        path = self.write("a.csv", 'source\n"multi\nline"\nnext\n"unclosed\n')
        rows = readers.read_records(path, "--f")
        self.assertEqual([(row.line, row.values["source"]) for row in rows], [(2, "multi\nline"), (4, "next"),
                                                                              (5, "unclosed\n")])  # fmt: skip

    def test_headerless_table(self):
        path = self.write("a.tsv", "x\t1\ny\t0\n")
        rows = readers.read_records(path, "--f", header=["sentence", "label"])
        self.assertEqual(
            [row.values for row in rows], [{"sentence": "x", "label": "1"}, {"sentence": "y", "label": "0"}]
        )

    def test_unsupported_suffix(self):
        with self.assertRaisesRegex(InputFileError, r"a\.txt: unsupported file type '\.txt'; use one of .* \(--f\)$"):
            list(readers.read_records(self.write("a.txt", "x\n"), "--f"))

    def test_error_message_format(self):
        self.assertEqual(str(InputFileError("d/a.jsonl", 3, "holds a list, expected text", "--f", column="text")),
                         "d/a.jsonl:3: holds a list, expected text (column 'text', --f)")  # fmt: skip
        self.assertEqual(str(InputFileError("a.jsonl", None, "file is empty", "--f")), "a.jsonl: file is empty (--f)")

    def test_check_file(self):
        with self.assertRaisesRegex(InputFileError, r"file is empty"):
            readers.check_file(self.write("bom.txt", b"\xef\xbb\xbf"), "--f")
        readers.check_file(self.write("ok.txt", "\n"), "--f")
        folder = self.create_tempdir().full_path
        readers.check_file(folder, "--f", folders=True)
        with self.assertRaisesRegex(InputFileError, r"a folder, expected a file"):
            readers.check_file(folder, "--f")


if __name__ == "__main__":
    absltest.main()
