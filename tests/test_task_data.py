"""Tests for task_data.py: real GLUE files from ../shared/data, malformed
files written to a temp dir, custom user data, leaderboard files."""

import collections
import os
import pathlib
import tempfile

import datasets
from absl.testing import absltest, parameterized

import constants
import task_data

# Real data lives next to the repo, never in it (see ../shared/data/SOURCES.md).
GLUE_DIR = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "glue"

# (task, split, rows, label counts, first text column, first text), from SOURCES.md.
REAL_SLICES = (
    ("sst2_dev", "sst2", "validation", 872, {1: 444, 0: 428},
     "sentence", "it 's a charming and often affecting journey . "),
    ("cola_train", "cola", "train", 8551, {1: 6023, 0: 2528},
     "sentence", "Our friends won't buy this analysis, let alone the next one we propose."),
    ("cola_dev", "cola", "validation", 1043, {1: 721, 0: 322},
     "sentence", "The sailors rode the breeze clear of the rocks."),
    ("rte_train", "rte", "train", 2490, {0: 1249, 1: 1241},
     "sentence1", "No Weapons of Mass Destruction Found in Iraq Yet."),
    ("rte_dev", "rte", "validation", 277, {0: 146, 1: 131},
     "sentence1", "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung "
                  "cancer at age 44, according to the Christopher Reeve Foundation."),
    ("wnli_train", "wnli", "train", 635, {0: 323, 1: 312},
     "sentence1", "I stuck a pin through a carrot. When I pulled the pin out, it had a hole."),
    ("wnli_dev", "wnli", "validation", 71, {0: 40, 1: 31},
     "sentence1", "The drain is clogged with hair. It has to be cleaned."),
    ("qnli_dev", "qnli", "validation", 5463, {0: 2702, 1: 2761},
     "question", "What came into force after the new constitution was herald?"),
)

STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
MNLI_DEV_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
                   "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
                   "sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")


def task(name):
    return constants.get_task("glue", name)


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
        dataset, report = task_data.load_glue_split(spec, split, str(GLUE_DIR))
        self.assertLen(dataset, rows)
        self.assertEqual(report.rows, rows)
        self.assertEqual(dict(collections.Counter(dataset["label"])), label_counts)
        self.assertEqual(dataset[0][column], first_text)
        self.assertEqual(dataset["idx"][:3], [0, 1, 2])
        self.assertEqual(dataset.features, task_data.hub_features(spec))
        self.assertEqual(report.num_empty, 0)

    def test_sst2_schema_matches_hub(self):
        dataset, _ = task_data.load_glue_split(task("sst2"), "validation", str(GLUE_DIR))
        # nyu-mll/glue sst2 features.
        self.assertEqual(dataset.features, datasets.Features({
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
            "idx": datasets.Value("int32")}))

    def test_quotes_are_text(self):
        # WNLI dev.tsv line 22 ends with a quoted phrase; RTE dev.tsv line 5 has one inside.
        wnli, _ = task_data.load_glue_split(task("wnli"), "validation", str(GLUE_DIR))
        self.assertTrue(wnli[20]["sentence1"].endswith('saying simply: "There\'s plenty."'))
        rte, _ = task_data.load_glue_split(task("rte"), "validation", str(GLUE_DIR))
        self.assertIn('"If someone snaps and wants to do something stupid', rte[3]["sentence1"])

    def test_missing_split_file_names_data_dir(self):
        with self.assertRaisesRegex(ValueError, r"QNLI/train\.tsv: file not found.*--data_dir"):
            task_data.load_glue_split(task("qnli"), "train", str(GLUE_DIR))


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
        ("wrong_field_count", "sst2", "validation", "SST-2/dev.tsv",
         "sentence\tlabel\nfine\t1\nno label here\n", r"dev\.tsv line 3: expected 2"),
        ("too_many_fields", "cola", "train", "CoLA/train.tsv",
         "gj04\t1\t\tOk.\ngj04\t1\t\tTab\tinside.\n", r"train\.tsv line 2: expected 4"),
        ("unknown_label", "rte", "validation", "RTE/dev.tsv",
         "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n",
         r"dev\.tsv line 3: label 'maybe'"),
        ("label_index_out_of_range", "sst2", "validation", "SST-2/dev.tsv",
         "sentence\tlabel\ngood\t2\n", r"dev\.tsv line 2: label '2'"),
        ("stsb_score_too_high", "stsb", "validation", "STS-B/dev.tsv",
         STSB_HEADER + "\n0\tmain\tf\t2012\t1\tnone\tnone\tA.\tB.\t3.5\n"
                       "1\tmain\tf\t2012\t2\tnone\tnone\tC.\tD.\t7.0\n",
         r"dev\.tsv line 3: score '7\.0'"),
        ("empty_file", "sst2", "validation", "SST-2/dev.tsv", "", r"dev\.tsv: file is empty"),
        ("header_only", "sst2", "validation", "SST-2/dev.tsv", "sentence\tlabel\n",
         r"dev\.tsv: file has no data rows"),
        ("non_utf8", "sst2", "validation", "SST-2/dev.tsv",
         b"sentence\tlabel\nok\t1\ncaf\xe9\t0\n", r"dev\.tsv line 3: not UTF-8 \(byte 0xe9"),
        ("missing_label_column", "qnli", "validation", "QNLI/dev.tsv",
         "index\tquestion\tsentence\n0\tq\ts\n", r"dev\.tsv line 1: header has no column 'label'"),
    )
    def test_error(self, name, split, relative, content, message):
        data_dir = self.write(relative, content)
        with self.assertRaisesRegex(ValueError, message) as caught:
            task_data.load_glue_split(task(name), split, data_dir)
        self.assertIn("--data_dir", str(caught.exception))
        self.assertIn(relative, str(caught.exception))

    def test_missing_file(self):
        data_dir = make_tempdir(self)
        with self.assertRaisesRegex(ValueError, r"SST-2/dev\.tsv: file not found.*--data_dir"):
            task_data.load_glue_split(task("sst2"), "validation", data_dir)

    def test_unknown_split(self):
        with self.assertRaisesRegex(ValueError, "no split 'dev'.*validation_matched"):
            task_data.load_glue_split(task("mnli"), "dev", "unused")

    def test_mrpc_bom_header_and_quotes(self):
        data_dir = self.write("MRPC/dev.tsv", MRPC_HEADER + '\n1\t11\t12\tHe said "yes" .\tHe agreed .\n'
                              "0\t13\t14\tA .\tB .\n")
        dataset, _ = task_data.load_glue_split(task("mrpc"), "validation", data_dir)
        self.assertEqual(dataset[0], {"sentence1": 'He said "yes" .', "sentence2": "He agreed .",
                                      "label": 1, "idx": 0})
        self.assertEqual(dataset["label"], [1, 0])

    def test_mnli_gold_label_is_last_column(self):
        row = "0\t1\t1e\tfiction\t(a)\t(b)\t(A)\t(B)\tA man eats.\tSomeone eats.\t" \
              "neutral\tentailment\tentailment\tentailment\tentailment\tentailment"
        data_dir = self.write("MNLI/dev_matched.tsv", MNLI_DEV_HEADER + "\n" + row + "\n")
        dataset, _ = task_data.load_glue_split(task("mnli"), "validation_matched", data_dir)
        self.assertEqual(dataset[0], {"premise": "A man eats.", "hypothesis": "Someone eats.",
                                      "label": 0, "idx": 0})

    def test_test_splits_are_unlabeled(self):
        data_dir = self.write("CoLA/test.tsv", "index\tsentence\n0\tHello there.\n1\tBye.\n")
        dataset, _ = task_data.load_glue_split(task("cola"), "test", data_dir)
        self.assertEqual(dataset["label"], [constants.UNLABELED] * 2)
        self.assertEqual(dataset[0]["sentence"], "Hello there.")
        ax_dir = self.write("diagnostic/diagnostic.tsv",
                            "index\tsentence1\tsentence2\n0\tThe cat sat.\tA cat sat.\n")
        ax, _ = task_data.load_glue_split(task("ax"), "test", ax_dir)
        self.assertEqual(ax[0], {"premise": "The cat sat.", "hypothesis": "A cat sat.",
                                 "label": -1, "idx": 0})

    def test_stsb_scores_are_floats(self):
        data_dir = self.write("STS-B/dev.tsv", STSB_HEADER + "\n0\tmain\tf\t2012\t1\tnone\tnone"
                              "\tA.\tB.\t3.800\n1\tmain\tf\t2012\t2\tnone\tnone\tC.\tD.\t0\n")
        dataset, _ = task_data.load_glue_split(task("stsb"), "validation", data_dir)
        self.assertEqual(dataset.features["label"], datasets.Value("float32"))
        self.assertAlmostEqual(dataset[0]["label"], 3.8, places=5)
        self.assertEqual(constants.format_target(task("stsb"), dataset[0]), "3.8")

    def test_empty_text_is_counted_and_crlf_blank_lines_skipped(self):
        data_dir = self.write("SST-2/dev.tsv", "sentence\tlabel\r\n\t1\r\n\r\nfine\t0\r\n")
        dataset, report = task_data.load_glue_split(task("sst2"), "validation", data_dir)
        self.assertEqual(dataset["sentence"], ["", "fine"])
        self.assertEqual(dataset["idx"], [0, 1])
        self.assertEqual(report.empty_fields, {"sentence": 1})
        self.assertEqual(report.blank_lines, 1)
        self.assertIn("1 empty text fields", report.summary())

    def test_only_newline_splits_lines(self):
        # \x1c and \u2028 are line breaks to str.splitlines, but text in a TSV row.
        data_dir = self.write("SST-2/dev.tsv", "sentence\tlabel\na\x1cb\u2028c\t1\n")
        dataset, _ = task_data.load_glue_split(task("sst2"), "validation", data_dir)
        self.assertEqual(dataset["sentence"], ["a\x1cb\u2028c"])


class CustomDataTest(parameterized.TestCase):

    def write(self, name, content):
        path = os.path.join(make_tempdir(self), name)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def test_jsonl(self):
        path = self.write("train.jsonl", '{"source": "a", "target": "b"}\n'
                                         '{"source": "c \\"q\\"", "target": "", "extra": 1}\n')
        dataset, report = task_data.load_custom_split(path)
        self.assertEqual(dataset.to_dict(), {"source": ["a", 'c "q"'], "target": ["b", ""],
                                             "idx": [0, 1]})
        self.assertEqual(report.empty_fields, {"source": 0, "target": 1})

    def test_t2t_tuner_format(self):
        path = self.write("train.jsonl", '{"translation": {"s": "Hallo", "t": "Hello"}}\n'
                                         '{"translation": {"s": "Welt", "t": "World"}}\n')
        dataset, _ = task_data.load_custom_split(path)
        self.assertEqual(dataset["source"], ["Hallo", "Welt"])
        self.assertEqual(dataset["target"], ["Hello", "World"])
        path = self.write("train.jsonl", '{"translation": {"de": "Hallo", "en": "Hello"}}\n')
        dataset, _ = task_data.load_custom_split(path, source_id="de", target_id="en")
        self.assertEqual(dataset[0]["target"], "Hello")

    def test_csv_with_quoting(self):
        path = self.write("valid.csv", 'text,summary\n"one, two","a ""quoted"" word"\nx,y\n')
        dataset, _ = task_data.load_custom_split(path, "text", "summary")
        self.assertEqual(dataset["source"], ["one, two", "x"])
        self.assertEqual(dataset["target"], ['a "quoted" word', "y"])

    def test_tsv_and_json_array(self):
        path = self.write("test.tsv", 'source\ttarget\nsay "hi"\thi\n')
        dataset, _ = task_data.load_custom_split(path)
        self.assertEqual(dataset[0], {"source": 'say "hi"', "target": "hi", "idx": 0})
        path = self.write("test.json", '[{"source": "a", "target": "b"},\n {"source": "c", "target": "d"}]')
        dataset, _ = task_data.load_custom_split(path)
        self.assertEqual(dataset["target"], ["b", "d"])

    def test_missing_column_lists_present(self):
        path = self.write("valid.jsonl", '{"source": "a", "target": "b"}\n{"source": "a", "label": "b"}\n')
        with self.assertRaisesRegex(
                ValueError, r"valid\.jsonl line 2: .*no column 'target'; it has \['label', "
                            r"'source'\] \(check --validation_file\)"):
            task_data.load_custom_split(path, flag="--validation_file")
        path = self.write("valid.csv", "text,label\na,b\n")
        with self.assertRaisesRegex(ValueError, r"valid\.csv line 2: .*no column 'source'"):
            task_data.load_custom_split(path)

    def test_missing_target_allowed_for_test_files(self):
        path = self.write("test.jsonl", '{"source": "a"}\n')
        dataset, _ = task_data.load_custom_split(path, flag="--test_file", require_target=False)
        self.assertEqual(dataset[0], {"source": "a", "target": "", "idx": 0})

    @parameterized.named_parameters(
        ("malformed_jsonl", "train.jsonl", '{"source": "a", "target": "b"}\n{"source": "a",\n',
         r"train\.jsonl line 2: invalid JSON"),
        ("not_an_object", "train.jsonl", '["a", "b"]\n', r"train\.jsonl line 1: line holds list"),
        ("number_target", "train.jsonl", '{"source": "a", "target": 3}\n',
         r"line 1: .*column 'target' holds int"),
        ("non_utf8", "train.jsonl", b'{"source": "a", "target": "b"}\n{"source": "\xff"}\n',
         r"train\.jsonl line 2: not UTF-8"),
        ("tsv_field_count", "train.tsv", "source\ttarget\na\tb\tc\n", r"train\.tsv line 2: expected 2"),
        ("empty", "train.jsonl", "", r"train\.jsonl: file is empty"),
        ("unsupported", "train.txt", "a\n", r"unsupported file type '\.txt'"),
    )
    def test_error(self, name, content, message):
        path = self.write(name, content)
        with self.assertRaisesRegex(ValueError, message) as caught:
            task_data.load_custom_split(path, flag="--train_file")
        self.assertIn("--train_file", str(caught.exception))

    def test_missing_file(self):
        with self.assertRaisesRegex(ValueError, r"nope\.jsonl: file not found \(check --test_file\)"):
            task_data.load_custom_split("/nonexistent/nope.jsonl", flag="--test_file")


class SubmissionTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("cola", "cola", "test", "CoLA.tsv"), ("sst2", "sst2", "test", "SST-2.tsv"),
        ("mrpc", "mrpc", "test", "MRPC.tsv"), ("stsb", "stsb", "test", "STS-B.tsv"),
        ("qqp", "qqp", "test", "QQP.tsv"), ("mnli_m", "mnli", "test_matched", "MNLI-m.tsv"),
        ("mnli_mm", "mnli", "test_mismatched", "MNLI-mm.tsv"), ("qnli", "qnli", "test", "QNLI.tsv"),
        ("rte", "rte", "test", "RTE.tsv"), ("wnli", "wnli", "test", "WNLI.tsv"),
        ("ax", "ax", "test", "AX.tsv"))
    def test_filename(self, name, split, expected):
        self.assertEqual(task_data.glue_submission_filename(task(name), split), expected)

    def read(self, path):
        with open(path, encoding="utf-8") as f:
            return f.read()

    def test_label_words_ints_and_scores(self):
        out = make_tempdir(self)
        rte = os.path.join(out, "RTE.tsv")
        self.assertEqual(task_data.write_glue_submission(task("rte"), [0, 1, -1], rte), 1)
        self.assertEqual(self.read(rte), "index\tprediction\n0\tentailment\n1\tnot_entailment\n"
                                         "2\tentailment\n")
        sst2 = os.path.join(out, "SST-2.tsv")
        self.assertEqual(task_data.write_glue_submission(task("sst2"), [1, 0], sst2), 0)
        self.assertEqual(self.read(sst2), "index\tprediction\n0\t1\n1\t0\n")
        stsb = os.path.join(out, "STS-B.tsv")
        replaced = task_data.write_glue_submission(task("stsb"), [3.8, -1, 7.0], stsb,
                                                   invalid_fallback=2.5)
        self.assertEqual(replaced, 2)
        self.assertEqual(self.read(stsb), "index\tprediction\n0\t3.800\n1\t2.500\n2\t2.500\n")
        ax = os.path.join(out, "sub", "AX.tsv")
        task_data.write_glue_submission(task("ax"), [2, 1], ax)
        self.assertEqual(self.read(ax), "index\tprediction\n0\tcontradiction\n1\tneutral\n")

    def test_bad_fallback_raises(self):
        with self.assertRaisesRegex(ValueError, "invalid_fallback 3"):
            task_data.write_glue_submission(task("sst2"), [1], "unused.tsv", invalid_fallback=3)


if __name__ == "__main__":
    absltest.main()
