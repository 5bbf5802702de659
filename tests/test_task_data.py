"""Tests for t5kit/task_files.py: real GLUE files from ../shared/data, malformed
files written to a temp dir, custom user data, leaderboard files."""

import collections
import json
import os
import tempfile

import datasets
from absl.testing import absltest, parameterized

from t5kit import task_files, tasks
from tests.helpers import SHARED_DATA

# Real data lives next to the repo, never in it (see ../shared/data/SOURCES.md).
GLUE_DIR = SHARED_DATA / "glue"

# (task, split, rows, label counts, first text column, first text), from SOURCES.md.
REAL_SLICES = (
    (
        "sst2_dev",
        "sst2",
        "validation",
        872,
        {1: 444, 0: 428},
        "sentence",
        "it 's a charming and often affecting journey . ",
    ),
    (
        "cola_train",
        "cola",
        "train",
        8551,
        {1: 6023, 0: 2528},
        "sentence",
        "Our friends won't buy this analysis, let alone the next one we propose.",
    ),
    (
        "cola_dev",
        "cola",
        "validation",
        1043,
        {1: 721, 0: 322},
        "sentence",
        "The sailors rode the breeze clear of the rocks.",
    ),
    (
        "rte_train",
        "rte",
        "train",
        2490,
        {0: 1249, 1: 1241},
        "sentence1",
        "No Weapons of Mass Destruction Found in Iraq Yet.",
    ),
    (
        "rte_dev",
        "rte",
        "validation",
        277,
        {0: 146, 1: 131},
        "sentence1",
        "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung "
        "cancer at age 44, according to the Christopher Reeve Foundation.",
    ),
    (
        "wnli_train",
        "wnli",
        "train",
        635,
        {0: 323, 1: 312},
        "sentence1",
        "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
    ),
    (
        "wnli_dev",
        "wnli",
        "validation",
        71,
        {0: 40, 1: 31},
        "sentence1",
        "The drain is clogged with hair. It has to be cleaned.",
    ),
    (
        "qnli_dev",
        "qnli",
        "validation",
        5463,
        {0: 2702, 1: 2761},
        "question",
        "What came into force after the new constitution was herald?",
    ),
)

STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
MNLI_DEV_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
    "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
    "sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
)


def task(name):
    return tasks.get_task("glue", name)


def make_tempdir(test):
    """A fresh directory removed after the test (absl's create_tempdir needs
    parsed flags, which pytest does not provide)."""
    tmp = tempfile.TemporaryDirectory()
    test.addCleanup(tmp.cleanup)
    return tmp.name


class RealGlueTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        if not GLUE_DIR.is_dir():
            self.skipTest(f"no shared data at {GLUE_DIR}")

    @parameterized.named_parameters(*REAL_SLICES)
    def test_real_split(self, name, split, rows, label_counts, column, first_text):
        spec = task(name)
        dataset, report = task_files.load_benchmark_split(spec, split, str(GLUE_DIR))
        self.assertLen(dataset, rows)
        self.assertEqual(report.rows, rows)
        self.assertEqual(dict(collections.Counter(dataset["label"])), label_counts)
        self.assertEqual(dataset[0][column], first_text)
        self.assertEqual(dataset["idx"][:3], [0, 1, 2])
        self.assertEqual(dataset.features, task_files.hub_features(spec))
        self.assertEqual(report.num_empty, 0)

    def test_sst2_schema_matches_hub(self):
        dataset, _ = task_files.load_benchmark_split(task("sst2"), "validation", str(GLUE_DIR))
        # nyu-mll/glue sst2 features.
        self.assertEqual(
            dataset.features,
            datasets.Features(
                {
                    "sentence": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=["negative", "positive"]),
                    "idx": datasets.Value("int32"),
                }
            ),
        )

    def test_quotes_are_text(self):
        # WNLI dev.tsv line 22 ends with a quoted phrase; RTE dev.tsv line 5 has one inside.
        wnli, _ = task_files.load_benchmark_split(task("wnli"), "validation", str(GLUE_DIR))
        self.assertTrue(wnli[20]["sentence1"].endswith('saying simply: "There\'s plenty."'))
        rte, _ = task_files.load_benchmark_split(task("rte"), "validation", str(GLUE_DIR))
        self.assertIn('"If someone snaps and wants to do something stupid', rte[3]["sentence1"])

    def test_missing_split_file_names_data_dir(self):
        with self.assertRaisesRegex(ValueError, r"QNLI/train\.tsv: file not found.*--data_dir"):
            task_files.load_benchmark_split(task("qnli"), "train", str(GLUE_DIR))


class MalformedGlueTest(parameterized.TestCase):
    def write(self, relative, content):
        """Write content (str or bytes) to <tmp>/<relative>; return the data dir."""
        root = make_tempdir(self)
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode("utf-8"))
        return root

    @parameterized.named_parameters(
        (
            "wrong_field_count",
            "sst2",
            "validation",
            "SST-2/dev.tsv",
            "sentence\tlabel\nfine\t1\nno label here\n",
            r"dev\.tsv:3: found 1 tab-separated fields, expected 2: sentence, label \(--data_dir\)$",
        ),
        (
            "too_many_fields",
            "cola",
            "train",
            "CoLA/train.tsv",
            "gj04\t1\t\tOk.\ngj04\t1\t\tTab\tinside.\n",
            r"train\.tsv:2: found 5 tab-separated fields, expected 4",
        ),
        (
            "unknown_label",
            "rte",
            "validation",
            "RTE/dev.tsv",
            "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n",
            r"dev\.tsv:3: label 'maybe' .* \(column 'label', --data_dir\)$",
        ),
        (
            "label_index_out_of_range",
            "sst2",
            "validation",
            "SST-2/dev.tsv",
            "sentence\tlabel\ngood\t2\n",
            r"dev\.tsv:2: label '2'",
        ),
        (
            "stsb_score_too_high",
            "stsb",
            "validation",
            "STS-B/dev.tsv",
            STSB_HEADER + "\n0\tmain\tf\t2012\t1\tnone\tnone\tA.\tB.\t3.5\n"
            "1\tmain\tf\t2012\t2\tnone\tnone\tC.\tD.\t7.0\n",
            r"dev\.tsv:3: score '7\.0'",
        ),
        ("empty_file", "sst2", "validation", "SST-2/dev.tsv", "", r"dev\.tsv: file is empty"),
        ("header_only", "sst2", "validation", "SST-2/dev.tsv", "sentence\tlabel\n", r"dev\.tsv: file has no data rows"),
        (
            "non_utf8",
            "sst2",
            "validation",
            "SST-2/dev.tsv",
            b"sentence\tlabel\nok\t1\ncaf\xe9\t0\n",
            r"dev\.tsv:3: not valid UTF-8 \(byte 0xe9",
        ),
        (
            "missing_label_column",
            "qnli",
            "validation",
            "QNLI/dev.tsv",
            "index\tquestion\tsentence\n0\tq\ts\n",
            r"dev\.tsv:1: no column 'label'; found: index, question, sentence \(--data_dir\)$",
        ),
    )
    def test_error(self, name, split, relative, content, message):
        data_dir = self.write(relative, content)
        with self.assertRaisesRegex(ValueError, message) as caught:
            task_files.load_benchmark_split(task(name), split, data_dir)
        self.assertIn("--data_dir", str(caught.exception))
        self.assertIn(relative, str(caught.exception))

    def test_missing_file(self):
        data_dir = make_tempdir(self)
        with self.assertRaisesRegex(ValueError, r"SST-2/dev\.tsv: file not found.*--data_dir"):
            task_files.load_benchmark_split(task("sst2"), "validation", data_dir)

    def test_unknown_split(self):
        with self.assertRaisesRegex(ValueError, "no split 'dev'.*validation_matched"):
            task_files.load_benchmark_split(task("mnli"), "dev", "unused")

    def test_mrpc_bom_header_and_quotes(self):
        data_dir = self.write(
            "MRPC/dev.tsv", MRPC_HEADER + '\n1\t11\t12\tHe said "yes" .\tHe agreed .\n0\t13\t14\tA .\tB .\n'
        )
        dataset, _ = task_files.load_benchmark_split(task("mrpc"), "validation", data_dir)
        self.assertEqual(dataset[0], {"sentence1": 'He said "yes" .', "sentence2": "He agreed .", "label": 1, "idx": 0})
        self.assertEqual(dataset["label"], [1, 0])

    def test_mnli_gold_label_is_last_column(self):
        row = (
            "0\t1\t1e\tfiction\t(a)\t(b)\t(A)\t(B)\tA man eats.\tSomeone eats.\t"
            "neutral\tentailment\tentailment\tentailment\tentailment\tentailment"
        )
        data_dir = self.write("MNLI/dev_matched.tsv", MNLI_DEV_HEADER + "\n" + row + "\n")
        dataset, _ = task_files.load_benchmark_split(task("mnli"), "validation_matched", data_dir)
        self.assertEqual(dataset[0], {"premise": "A man eats.", "hypothesis": "Someone eats.", "label": 0, "idx": 0})

    def test_test_splits_are_unlabeled(self):
        data_dir = self.write("CoLA/test.tsv", "index\tsentence\n0\tHello there.\n1\tBye.\n")
        dataset, _ = task_files.load_benchmark_split(task("cola"), "test", data_dir)
        self.assertEqual(dataset["label"], [tasks.UNLABELED] * 2)
        self.assertEqual(dataset[0]["sentence"], "Hello there.")
        ax_dir = self.write("diagnostic/diagnostic.tsv", "index\tsentence1\tsentence2\n0\tThe cat sat.\tA cat sat.\n")
        ax, _ = task_files.load_benchmark_split(task("ax"), "test", ax_dir)
        self.assertEqual(ax[0], {"premise": "The cat sat.", "hypothesis": "A cat sat.", "label": -1, "idx": 0})

    def test_stsb_scores_are_floats(self):
        data_dir = self.write(
            "STS-B/dev.tsv",
            STSB_HEADER + "\n0\tmain\tf\t2012\t1\tnone\tnone"
            "\tA.\tB.\t3.800\n1\tmain\tf\t2012\t2\tnone\tnone\tC.\tD.\t0\n",
        )
        dataset, _ = task_files.load_benchmark_split(task("stsb"), "validation", data_dir)
        self.assertEqual(dataset.features["label"], datasets.Value("float32"))
        self.assertAlmostEqual(dataset[0]["label"], 3.8, places=5)
        self.assertEqual(tasks.format_target(task("stsb"), dataset[0]), "3.8")

    def test_empty_text_is_counted_and_crlf_blank_lines_skipped(self):
        data_dir = self.write("SST-2/dev.tsv", "sentence\tlabel\r\n\t1\r\n\r\nfine\t0\r\n")
        dataset, report = task_files.load_benchmark_split(task("sst2"), "validation", data_dir)
        self.assertEqual(dataset["sentence"], ["", "fine"])
        self.assertEqual(dataset["idx"], [0, 1])
        self.assertEqual(report.empty_fields, {"sentence": 1})
        self.assertEqual(report.blank_lines, 1)
        self.assertIn("1 empty text fields", report.summary())

    def test_blank_lines_of_custom_files_are_counted(self):
        for name, content in (("train.tsv", "source\ttarget\na\tb\n\nc\td\n\n"),
                              ("train.jsonl", '{"source": "a", "target": "b"}\n\n  \n{"source": "c", "target": "d"}\n'),
                              ("train.csv", "source,target\na,b\n\nc,d\n")):  # fmt: skip
            with self.subTest(name):
                path = os.path.join(self.create_tempdir().full_path, name)
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(content)
                dataset, report = task_files.load_custom_split(path)
                self.assertEqual(dataset["source"], ["a", "c"])
                self.assertEqual(report.blank_lines, 2 if name != "train.csv" else 1)
                self.assertIn(f"{report.blank_lines} blank lines skipped", report.summary())

    def test_only_newline_splits_lines(self):
        # \x1c and \u2028 are line breaks to str.splitlines, but text in a TSV row.
        data_dir = self.write("SST-2/dev.tsv", "sentence\tlabel\na\x1cb\u2028c\t1\n")
        dataset, _ = task_files.load_benchmark_split(task("sst2"), "validation", data_dir)
        self.assertEqual(dataset["sentence"], ["a\x1cb\u2028c"])


class CustomDataTest(parameterized.TestCase):
    def write(self, name, content):
        path = os.path.join(make_tempdir(self), name)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def test_jsonl(self):
        path = self.write(
            "train.jsonl", '{"source": "a", "target": "b"}\n{"source": "c \\"q\\"", "target": "", "extra": 1}\n'
        )
        dataset, report = task_files.load_custom_split(path)
        self.assertEqual(dataset.to_dict(), {"source": ["a", 'c "q"'], "target": ["b", ""], "idx": [0, 1]})
        self.assertEqual(report.empty_fields, {"source": 0, "target": 1})

    def test_t2t_tuner_format(self):
        path = self.write(
            "train.jsonl",
            '{"translation": {"s": "Hallo", "t": "Hello"}}\n{"translation": {"s": "Welt", "t": "World"}}\n',
        )
        dataset, _ = task_files.load_custom_split(path)
        self.assertEqual(dataset["source"], ["Hallo", "Welt"])
        self.assertEqual(dataset["target"], ["Hello", "World"])
        path = self.write("train.jsonl", '{"translation": {"de": "Hallo", "en": "Hello"}}\n')
        dataset, _ = task_files.load_custom_split(path, source_id="de", target_id="en")
        self.assertEqual(dataset[0]["target"], "Hello")

    def test_csv_with_quoting(self):
        path = self.write("valid.csv", 'text,summary\n"one, two","a ""quoted"" word"\nx,y\n')
        dataset, _ = task_files.load_custom_split(path, "text", "summary")
        self.assertEqual(dataset["source"], ["one, two", "x"])
        self.assertEqual(dataset["target"], ['a "quoted" word', "y"])

    def test_tsv_and_json_array(self):
        path = self.write("test.tsv", 'source\ttarget\nsay "hi"\thi\n')
        dataset, _ = task_files.load_custom_split(path)
        self.assertEqual(dataset[0], {"source": 'say "hi"', "target": "hi", "idx": 0})
        path = self.write("test.json", '[{"source": "a", "target": "b"},\n {"source": "c", "target": "d"}]')
        dataset, _ = task_files.load_custom_split(path)
        self.assertEqual(dataset["target"], ["b", "d"])

    def test_missing_column_lists_present(self):
        path = self.write("valid.jsonl", '{"source": "a", "target": "b"}\n{"source": "a", "label": "b"}\n')
        with self.assertRaisesRegex(
            ValueError, r"valid\.jsonl:2: no column 'target'; found: source, label \(--validation_file\)$"
        ):
            task_files.load_custom_split(path, flag="--validation_file")
        path = self.write("valid.csv", "text,label\na,b\n")
        with self.assertRaisesRegex(
            ValueError, r"valid\.csv:1: no column 'source'; found: text, label \(--train_file\)$"
        ):
            task_files.load_custom_split(path)

    def test_answer_lists_for_custom_qa(self):
        path = self.write("dev.jsonl", '{"source": "q1", "target": ["a", "b"]}\n{"source": "q2", "target": "c"}\n')
        dataset, _ = task_files.load_custom_split(path, answer_list=True)
        self.assertEqual(dataset["target"], [["a", "b"], ["c"]])
        path = self.write("test.jsonl", '{"source": "q"}\n')
        dataset, _ = task_files.load_custom_split(path, answer_list=True, require_target=False)
        self.assertEqual(dataset["target"], [[]])
        path = self.write("bad.jsonl", '{"source": "q", "target": ["a", 1]}\n')
        with self.assertRaisesRegex(
            ValueError, r"bad\.jsonl:1: .*expected a text or a list of texts \(column 'target', --train_file\)$"
        ):
            task_files.load_custom_split(path, answer_list=True)

    def test_missing_target_allowed_for_test_files(self):
        path = self.write("test.jsonl", '{"source": "a"}\n')
        dataset, _ = task_files.load_custom_split(path, flag="--test_file", require_target=False)
        self.assertEqual(dataset[0], {"source": "a", "target": "", "idx": 0})

    @parameterized.named_parameters(
        (
            "malformed_jsonl",
            "train.jsonl",
            '{"source": "a", "target": "b"}\n{"source": "a",\n',
            r"train\.jsonl:2: invalid JSON",
        ),
        ("not_an_object", "train.jsonl", '["a", "b"]\n', r"train\.jsonl:1: holds a list, expected a JSON object"),
        (
            "number_target",
            "train.jsonl",
            '{"source": "a", "target": 3}\n',
            r"train\.jsonl:1: holds a number, expected text \(column 'target', --train_file\)$",
        ),
        (
            "non_utf8",
            "train.jsonl",
            b'{"source": "a", "target": "b"}\n{"source": "\xff"}\n',
            r"train\.jsonl:2: not valid UTF-8",
        ),
        (
            "tsv_field_count",
            "train.tsv",
            "source\ttarget\na\tb\tc\n",
            r"train\.tsv:2: found 3 tab-separated fields, expected 2",
        ),
        ("empty", "train.jsonl", "", r"train\.jsonl: file is empty"),
        ("unsupported", "train.txt", "a\n", r"unsupported file type '\.txt'"),
    )
    def test_error(self, name, content, message):
        path = self.write(name, content)
        with self.assertRaisesRegex(ValueError, message) as caught:
            task_files.load_custom_split(path, flag="--train_file")
        self.assertIn("--train_file", str(caught.exception))

    def test_missing_file(self):
        with self.assertRaisesRegex(ValueError, r"nope\.jsonl: file not found \(--test_file\)$"):
            task_files.load_custom_split("/nonexistent/nope.jsonl", flag="--test_file")


class SubmissionTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("cola", "cola", "test", "CoLA.tsv"),
        ("sst2", "sst2", "test", "SST-2.tsv"),
        ("mrpc", "mrpc", "test", "MRPC.tsv"),
        ("stsb", "stsb", "test", "STS-B.tsv"),
        ("qqp", "qqp", "test", "QQP.tsv"),
        ("mnli_m", "mnli", "test_matched", "MNLI-m.tsv"),
        ("mnli_mm", "mnli", "test_mismatched", "MNLI-mm.tsv"),
        ("qnli", "qnli", "test", "QNLI.tsv"),
        ("rte", "rte", "test", "RTE.tsv"),
        ("wnli", "wnli", "test", "WNLI.tsv"),
        ("ax", "ax", "test", "AX.tsv"),
    )
    def test_filename(self, name, split, expected):
        self.assertEqual(task_files.glue_submission_filename(task(name), split), expected)

    def read(self, path):
        with open(path, encoding="utf-8") as f:
            return f.read()

    def test_label_words_ints_and_scores(self):
        out = make_tempdir(self)
        rte = os.path.join(out, "RTE.tsv")
        self.assertEqual(task_files.write_glue_submission(task("rte"), [0, 1, -1], rte), 1)
        self.assertEqual(self.read(rte), "index\tprediction\n0\tentailment\n1\tnot_entailment\n2\tentailment\n")
        sst2 = os.path.join(out, "SST-2.tsv")
        self.assertEqual(task_files.write_glue_submission(task("sst2"), [1, 0], sst2), 0)
        self.assertEqual(self.read(sst2), "index\tprediction\n0\t1\n1\t0\n")
        stsb = os.path.join(out, "STS-B.tsv")
        replaced = task_files.write_glue_submission(task("stsb"), [3.8, -1, 7.0], stsb, invalid_fallback=2.5)
        self.assertEqual(replaced, 2)
        self.assertEqual(self.read(stsb), "index\tprediction\n0\t3.800\n1\t2.500\n2\t2.500\n")
        ax = os.path.join(out, "sub", "AX.tsv")
        task_files.write_glue_submission(task("ax"), [2, 1], ax)
        self.assertEqual(self.read(ax), "index\tprediction\n0\tcontradiction\n1\tneutral\n")

    def test_bad_fallback_raises(self):
        with self.assertRaisesRegex(ValueError, "invalid_fallback 3"):
            task_files.write_glue_submission(task("sst2"), [1], "unused.tsv", invalid_fallback=3)


# --------------------------------------------------------------------------
# SuperGLUE

SUPERGLUE_DIR = GLUE_DIR.parent / "superglue"

# (task, split, rows, label counts by class index, first text column, first text), from SOURCES.md.
REAL_SUPERGLUE = (
    (
        "rte_train",
        "rte",
        "train",
        2490,
        {0: 1249, 1: 1241},
        "premise",
        "No Weapons of Mass Destruction Found in Iraq Yet.",
    ),
    ("rte_val", "rte", "validation", 277, {0: 146, 1: 131}, "hypothesis", "Christopher Reeve had an accident."),
    ("cb_train", "cb", "train", 250, {1: 119, 0: 115, 2: 16}, "hypothesis", "the language was peeled down"),
    ("cb_val", "cb", "validation", 56, {1: 28, 0: 23, 2: 5}, "hypothesis", "Valence was helping"),
    (
        "boolq_val",
        "boolq",
        "validation",
        3270,
        {1: 2033, 0: 1237},
        "question",
        "does ethanol take more energy make that produces",
    ),
    ("copa_val", "copa", "validation", 100, {0: 55, 1: 45}, "premise", "The man turned on the faucet."),
    ("wic_val", "wic", "validation", 638, {0: 319, 1: 319}, "word", "class"),
)


def superglue(name):
    return tasks.get_task("superglue", name)


def write_jsonl(root, relative, records):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return root


class RealSuperGlueTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        if not SUPERGLUE_DIR.is_dir():
            self.skipTest(f"no shared data at {SUPERGLUE_DIR}")

    @parameterized.named_parameters(*REAL_SUPERGLUE)
    def test_real_split(self, name, split, rows, label_counts, column, first_text):
        dataset, report = task_files.load_benchmark_split(superglue(name), split, str(SUPERGLUE_DIR))
        self.assertLen(dataset, rows)
        self.assertEqual(report.rows, rows)
        self.assertEqual(dict(collections.Counter(dataset["label"])), label_counts)
        self.assertEqual(dataset[0][column], first_text)
        self.assertEqual(dataset["idx"][:3], [0, 1, 2])
        self.assertEqual(report.num_empty, 0)
        # Every row formats, and its target is a label word.
        spec = superglue(name)
        for row in dataset.select(range(5)):
            self.assertTrue(tasks.format_source(spec, row).startswith(f"{spec.prefix} "))
            self.assertIn(tasks.format_target(spec, row), spec.label_words)

    def test_boolq_schema_matches_hub(self):
        dataset, _ = task_files.load_benchmark_split(superglue("boolq"), "validation", str(SUPERGLUE_DIR))
        # aps/super_glue boolq: question, passage, idx, label ClassLabel(False, True).
        self.assertEqual(dataset.features["label"], datasets.ClassLabel(names=["False", "True"]))
        self.assertEqual(dataset.features["idx"], datasets.Value("int32"))
        self.assertEqual(set(dataset.column_names), {"question", "passage", "idx", "label"})

    def test_missing_train_file_names_the_layout(self):
        with self.assertRaisesRegex(
            ValueError,
            r"COPA/train\.jsonl: file not found; expected the SuperGLUE "
            r"download layout.*--data_dir",
        ):
            task_files.load_benchmark_split(superglue("copa"), "train", str(SUPERGLUE_DIR))


# Hand-written MultiRC and ReCoRD lines in the SuperGLUE download's nesting.
MULTIRC_LINES = [
    {
        "idx": 0,
        "version": 1.1,
        "passage": {
            "text": "<b>Sent 1: </b>Tom ran home.<br><b>Sent 2: </b>He ate soup.<br>",
            "questions": [
                {
                    "question": "Who ate?",
                    "idx": 0,
                    "answers": [{"text": "Tom", "idx": 0, "label": 1}, {"text": "Ann", "idx": 1, "label": 0}],
                },
                {"question": "What did he eat?", "idx": 1, "answers": [{"text": "soup", "idx": 2, "label": 1}]},
            ],
        },
    },
    {
        "idx": 1,
        "version": 1.1,
        "passage": {
            "text": "Ann sang.",
            "questions": [
                {
                    "question": "Who sang?",
                    "idx": 2,
                    "answers": [{"text": "Ann", "idx": 3, "label": 1}, {"text": "Tom", "idx": 4, "label": 0}],
                }
            ],
        },
    },
]

RECORD_TEXT = "Obama met Merkel in Berlin.\n@highlight\nThe talks went well"
RECORD_LINES = [
    {
        "idx": 0,
        "source": "cnn",
        "passage": {
            "text": RECORD_TEXT,
            # text[start:end + 1]: "Obama", "Merkel", "Berlin", "Obama" again (deduplicated).
            "entities": [
                {"start": 0, "end": 4},
                {"start": 10, "end": 15},
                {"start": 20, "end": 25},
                {"start": 0, "end": 4},
            ],
        },
        "qas": [
            {
                "query": "@placeholder hosted the talks.",
                "idx": 7,
                "answers": [{"start": 10, "end": 15, "text": "Merkel"}, {"start": 10, "end": 15, "text": "Merkel"}],
            },
            {
                "query": "The talks were in @placeholder.",
                "idx": 8,
                "answers": [{"start": 20, "end": 25, "text": "Berlin"}],
            },
        ],
    },
]


class SuperGlueFlatteningTest(parameterized.TestCase):
    def test_multirc_is_one_row_per_answer_option(self):
        data_dir = write_jsonl(make_tempdir(self), "MultiRC/val.jsonl", MULTIRC_LINES)
        dataset, report = task_files.load_benchmark_split(superglue("multirc"), "validation", data_dir)
        self.assertEqual(report.rows, 5)
        self.assertEqual(dataset["answer"], ["Tom", "Ann", "soup", "Ann", "Tom"])
        self.assertEqual(dataset["label"], [1, 0, 1, 1, 0])
        self.assertEqual(dataset["question"][:3], ["Who ate?", "Who ate?", "What did he eat?"])
        self.assertEqual(dataset[2]["idx"], {"paragraph": 0, "question": 1, "answer": 2})
        self.assertEqual(dataset[4]["idx"], {"paragraph": 1, "question": 2, "answer": 4})
        spec = superglue("multirc")
        self.assertEqual([tasks.group_of(spec, row) for row in dataset], ["0", "0", "1", "2", "2"])
        self.assertEqual(
            tasks.format_source(spec, dataset[0]),
            "multirc question: Who ate? answer: Tom paragraph: Sent 1: Tom ran home. Sent 2: He ate soup. ",
        )
        self.assertEqual(tasks.format_target(spec, dataset[1]), "False")

    def test_multirc_test_file_is_unlabeled(self):
        lines = json.loads(json.dumps(MULTIRC_LINES))
        for paragraph in lines:
            for question in paragraph["passage"]["questions"]:
                for answer in question["answers"]:
                    del answer["label"]
        data_dir = write_jsonl(make_tempdir(self), "MultiRC/test.jsonl", lines)
        dataset, _ = task_files.load_benchmark_split(superglue("multirc"), "test", data_dir)
        self.assertEqual(dataset["label"], [tasks.UNLABELED] * 5)

    def test_record_is_one_row_per_query_with_every_answer(self):
        data_dir = write_jsonl(make_tempdir(self), "ReCoRD/val.jsonl", RECORD_LINES)
        dataset, _ = task_files.load_benchmark_split(superglue("record"), "validation", data_dir)
        self.assertLen(dataset, 2)
        self.assertEqual(dataset[0]["entities"], ["Berlin", "Merkel", "Obama"])  # distinct, sorted
        self.assertEqual(dataset["answers"], [["Merkel"], ["Berlin"]])
        self.assertEqual(dataset["idx"], [{"passage": 0, "query": 7}, {"passage": 0, "query": 8}])
        spec = superglue("record")
        self.assertEqual(
            tasks.format_source(spec, dataset[1]),
            "record query: The talks were in @placeholder. entities: Berlin, Merkel, Obama "
            "passage: Obama met Merkel in Berlin. The talks went well",
        )
        self.assertEqual(tasks.references_of(spec, dataset[0]), ["Merkel"])

    def test_record_test_file_has_no_answers(self):
        lines = json.loads(json.dumps(RECORD_LINES))
        for qa in lines[0]["qas"]:
            del qa["answers"]
        data_dir = write_jsonl(make_tempdir(self), "ReCoRD/test.jsonl", lines)
        dataset, _ = task_files.load_benchmark_split(superglue("record"), "test", data_dir)
        self.assertEqual(dataset["answers"], [[], []])

    def test_wsc_spans_nested_under_target(self):
        line = {
            "text": "Mark told Pete he was late .",
            "idx": 0,
            "label": True,
            "target": {"span1_index": 2, "span1_text": "Pete", "span2_index": 3, "span2_text": "he"},
        }
        data_dir = write_jsonl(make_tempdir(self), "WSC/val.jsonl", [line])
        dataset, _ = task_files.load_benchmark_split(superglue("wsc"), "validation", data_dir)
        self.assertEqual(dataset[0]["label"], 1)  # JSON true -> "True"
        self.assertEqual(
            tasks.format_source(superglue("wsc"), dataset[0]), "wsc text: Mark told * Pete * # he # was late ."
        )

    def test_axb_reads_sentence1_as_premise(self):
        line = {
            "sentence1": "The cat sat.",
            "sentence2": "The cat did not sit.",
            "idx": 0,
            "label": "not_entailment",
            "logic": "Negation",
        }
        data_dir = write_jsonl(make_tempdir(self), "AX-b/AX-b.jsonl", [line])
        dataset, _ = task_files.load_benchmark_split(superglue("axb"), "test", data_dir)
        self.assertEqual(
            tasks.format_source(superglue("axb"), dataset[0]),
            "rte hypothesis: The cat did not sit. premise: The cat sat.",
        )

    @parameterized.named_parameters(
        (
            "bad_label",
            "CB/val.jsonl",
            "cb",
            '{"premise": "a", "hypothesis": "b", "label": "maybe", "idx": 0}',
            r"CB/val\.jsonl:1: label 'maybe' is not in the cb label set",
        ),
        ("bad_json", "CB/val.jsonl", "cb", '{"premise": "a",', r"CB/val\.jsonl:1: invalid JSON"),
        (
            "missing_field",
            "RTE/val.jsonl",
            "rte",
            '{"premise": "a", "label": "entailment", "idx": 0}',
            r"RTE/val\.jsonl:1: no column 'hypothesis'",
        ),
        (
            "number_text",
            "RTE/val.jsonl",
            "rte",
            '{"premise": "a", "hypothesis": 3, "label": "entailment", "idx": 0}',
            r"val\.jsonl:1: holds a number, expected text \(column 'hypothesis', --data_dir\)$",
        ),
    )
    def test_error(self, relative, name, line, message):
        data_dir = write_jsonl(make_tempdir(self), relative, [line])
        with self.assertRaisesRegex(ValueError, message) as caught:
            task_files.load_benchmark_split(superglue(name), "validation", data_dir)
        self.assertIn("--data_dir", str(caught.exception))

    def test_text_tasks_have_no_local_layout(self):
        with self.assertRaisesRegex(ValueError, "no local file layout"):
            task_files.load_benchmark_split(tasks.get_task("summarization", "xsum"), "validation", "unused")

    def test_flatteners_match_the_table(self):
        self.assertEqual(set(task_files.FLATTENERS), tasks.LOCAL_FLATTENERS)


class SuperGlueSubmissionTest(parameterized.TestCase):
    def read(self, path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    @parameterized.named_parameters(
        # Leaderboard label values (SuperGLUE submission format, as jiant v1 jiant/evaluate.py writes it).
        ("boolq", "boolq", [1, 0, -1], ["true", "false", "false"], 1),
        ("cb", "cb", [0, 1, 2], ["entailment", "contradiction", "neutral"], 0),
        ("copa", "copa", [1, 0, 7], [1, 0, 0], 1),
        ("rte", "rte", [1, 0, 0], ["not_entailment", "entailment", "entailment"], 0),
        ("wic", "wic", [0, 1, 1], ["false", "true", "true"], 0),
        ("wsc", "wsc", [1, 1, 0], ["True", "True", "False"], 0),  # jiant _write_winograd_preds
        ("axb", "axb", [0, -1, 1], ["entailment", "entailment", "not_entailment"], 1),
        ("axg", "axg", [1, 1, 1], ["not_entailment"] * 3, 0),
    )
    def test_flat_files(self, name, predictions, labels, replaced):
        spec = superglue(name)
        folder = make_tempdir(self)
        path, n = task_files.write_submission(spec, "test", [10, 11, 12], predictions, folder)
        self.assertEqual(
            os.path.basename(path),
            {
                "boolq": "BoolQ",
                "cb": "CB",
                "copa": "COPA",
                "rte": "RTE",
                "wic": "WiC",
                "wsc": "WSC",
                "axb": "AX-b",
                "axg": "AX-g",
            }[name]
            + ".jsonl",
        )
        self.assertEqual(n, replaced)
        self.assertEqual(self.read(path), [{"idx": i, "label": label} for i, label in zip([10, 11, 12], labels)])

    def test_record_writes_the_query_idx_and_text(self):
        folder = make_tempdir(self)
        idxs = [{"passage": 0, "query": 7}, {"passage": 0, "query": 8}]
        path, n = task_files.write_submission(superglue("record"), "test", idxs, ["Merkel", " Berlin"], folder)
        self.assertEqual((os.path.basename(path), n), ("ReCoRD.jsonl", 0))
        self.assertEqual(self.read(path), [{"idx": 7, "label": "Merkel"}, {"idx": 8, "label": " Berlin"}])

    def test_multirc_nests_questions_and_answers(self):
        folder = make_tempdir(self)
        idxs = [
            {"paragraph": 0, "question": 0, "answer": 0},
            {"paragraph": 0, "question": 0, "answer": 1},
            {"paragraph": 0, "question": 1, "answer": 2},
            {"paragraph": 1, "question": 2, "answer": 3},
        ]
        path, n = task_files.write_submission(superglue("multirc"), "test", idxs, [1, 0, -1, 1], folder)
        self.assertEqual((os.path.basename(path), n), ("MultiRC.jsonl", 1))
        self.assertEqual(
            self.read(path),
            [
                {
                    "idx": 0,
                    "passage": {
                        "questions": [
                            {"idx": 0, "answers": [{"idx": 0, "label": 1}, {"idx": 1, "label": 0}]},
                            {"idx": 1, "answers": [{"idx": 2, "label": 0}]},
                        ]
                    },
                },
                {"idx": 1, "passage": {"questions": [{"idx": 2, "answers": [{"idx": 3, "label": 1}]}]}},
            ],
        )

    def test_glue_tasks_still_write_tsv(self):
        folder = make_tempdir(self)
        path, n = task_files.write_submission(task("rte"), "test", [0, 1], [1, 0], folder)
        self.assertTrue(path.endswith("RTE.tsv"))
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), "index\tprediction\n0\tnot_entailment\n1\tentailment\n")

    def test_length_mismatch_raises(self):
        with self.assertRaisesRegex(ValueError, "2 predictions but 1 idx"):
            task_files.write_superglue_submission(superglue("cb"), [0], [0, 1], "unused.jsonl")


if __name__ == "__main__":
    absltest.main()
