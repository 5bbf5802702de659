"""End-to-end tiny-model fine_tune_t5.py runs on the SuperGLUE and text-to-text records.

SuperGLUE CB and RTE train on slices of the real files (../shared/data/superglue), evaluate on real val rows and
predict on a test file built here from val rows without labels (val-as-test), which must give the leaderboard jsonl.
Summarization and QA run on custom files built here (--benchmark custom --dataset_name summarization|qa), and MultiRC
and ReCoRD on small hand-written nested files, so that grouping, several gold answers and the nested leaderboard
format run through the same generic code. Metrics are recomputed from the predictions files with the reference
libraries (scikit-learn, rouge-score) or by hand.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
from absl.testing import absltest, parameterized
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, f1_score

import fine_tune_t5
from t5kit import task_files
from t5kit.finetune_data import to_text
from t5kit.tasks import get_task
from tests.helpers import ModuleScratch, shared_file

TINY_MODEL = [
    "--model_config", "tiny", "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "32", "--logging_steps", "5", "--learning_rate", "3e-3", "--seed", "0",
    "--report_to", "none", "--disable_tqdm", "True", "--eval_strategy", "no",
]  # fmt: skip
TINY = [*TINY_MODEL, "--vocab_size", "400"]  # trains a 400-token tokenizer on the run's texts
NUM_EVAL = 16
NUM_TEST = 12
# Written out here (tfds super_glue label_classes and the leaderboard's values), not read from constants.
LABEL_WORDS = {"cb": ("entailment", "contradiction", "neutral"), "rte": ("entailment", "not_entailment")}
FOLDER = {"cb": "CB", "rte": "RTE"}

SCRATCH = ModuleScratch("test_finetune_tasks_")
setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down
module_tmp = SCRATCH.path


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "all_results.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def superglue_dir(task: str) -> Path:
    """train.jsonl and val.jsonl: the real files; test.jsonl: val rows NUM_EVAL.. without their label."""
    folder = module_tmp() / "superglue" / FOLDER[task]
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.jsonl", "val.jsonl"):
        shutil.copyfile(shared_file(f"superglue/{FOLDER[task]}/{name}"), folder / name)
    rows = read_jsonl(folder / "val.jsonl")[NUM_EVAL : NUM_EVAL + NUM_TEST]
    with (folder / "test.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            row.pop("label")
            handle.write(json.dumps(row) + "\n")
    return folder.parent


@functools.cache
def superglue_run(task: str) -> Path:
    """A few steps on 64 real training rows, --do_eval on real val rows, --do_predict on the val-as-test file.
    RTE evaluates by rank classification, CB by generation."""
    run_dir = module_tmp() / f"superglue-{task}"
    mode = "rank" if task == "rte" else "generate"
    fine_tune_t5.main([
        "--benchmark", "superglue", "--dataset_name", task, "--data_dir", str(superglue_dir(task)), *TINY,
        "--do_train", "--do_eval", "--do_predict", "--max_train_samples", "64", "--max_steps", "8",
        "--max_eval_samples", str(NUM_EVAL), "--max_source_length", "192", "--eval_mode", mode,
        "--output_dir", str(run_dir),
    ])  # fmt: skip
    return run_dir


class SuperGlueEndToEndTest(parameterized.TestCase):
    @parameterized.parameters("cb", "rte")
    def test_metrics_are_recomputed_from_the_predictions(self, task):
        run_dir = superglue_run(task)
        results = read_results(run_dir)
        self.assertEqual(results["task"], f"superglue/{task}")
        rows = read_jsonl(run_dir / "predictions" / f"superglue_{task}_validation.jsonl")
        self.assertLen(rows, NUM_EVAL)
        words = LABEL_WORDS[task]
        val = read_jsonl(shared_file(f"superglue/{FOLDER[task]}/val.jsonl"))[:NUM_EVAL]
        # T5 preprocessors.glue: "<task> hypothesis: ... premise: ..." (sorted keys), target = the label word.
        self.assertEqual(
            [(r["input"], r["target"]) for r in rows],
            [(f"{task} hypothesis: {v['hypothesis']} premise: {v['premise']}", v["label"]) for v in val],
        )
        gold = [words.index(r["target"]) for r in rows]
        predicted = [words.index(r["prediction"].strip()) if r["prediction"].strip() in words else -1 for r in rows]
        self.assertAlmostEqual(results["eval_accuracy"], 100 * accuracy_score(gold, predicted), places=9)
        if task == "cb":
            labels = sorted(set(gold) | {p for p in predicted if p != -1})
            expected = 100 * f1_score(gold, predicted, labels=labels, average="macro", zero_division=0.0)
            self.assertAlmostEqual(results["eval_macro_f1"], expected, places=9)
        else:
            self.assertEqual(results["eval_mode"], "rank")
            self.assertEqual(results["eval_invalid_rate"], 0.0)  # rank eval always picks a label word

    @parameterized.parameters("cb", "rte")
    def test_leaderboard_file(self, task):
        run_dir = superglue_run(task)
        lines = read_jsonl(run_dir / "submission" / f"{FOLDER[task]}.jsonl")
        test = read_jsonl(module_tmp() / "superglue" / FOLDER[task] / "test.jsonl")
        self.assertEqual([line["idx"] for line in lines], [row["idx"] for row in test])
        predictions = read_jsonl(run_dir / "predictions" / f"superglue_{task}_test.jsonl")
        self.assertLen(predictions, NUM_TEST)
        words = LABEL_WORDS[task]
        for line, row in zip(lines, predictions):
            self.assertEqual(set(line), {"idx", "label"})
            word = row["prediction"].strip()
            # CB and RTE take label words; text that is no label word becomes the first one.
            self.assertEqual(line["label"], word if word in words else words[0])
            self.assertEqual(row["target"], "")


class TextToTextEndToEndTest(absltest.TestCase):
    """Custom files with a metric set: summarization (ROUGE) and QA (SQuAD EM/F1)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = module_tmp() / "text"
        cls.tmp.mkdir(parents=True, exist_ok=True)
        lines = shared_file("corpus/wikitext2_tokenized/part-000.txt").read_text(encoding="utf-8").split("\n")
        sentences = [
            " ".join(line.split()[:30]) for line in lines if len(line.split()) > 12 and not line.startswith(" =")
        ][:260]

        def write(name, rows):
            with (cls.tmp / name).open("w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row) + "\n")

        # Summaries: the first six words; QA: a word of more than three letters, either of the first two (a list
        # of gold answers) or, every third row, the first one (a single text).
        summaries = [{"text": s, "summary": " ".join(s.split()[:6])} for s in sentences]
        qa = []
        for i, s in enumerate(sentences):
            long_words = [w for w in s.split() if w.isalpha() and len(w) > 3][:2] or s.split()[:1]
            qa.append(
                {
                    "source": f"question: What is a long word? context: {s}",
                    "target": long_words[0] if i % 3 == 0 else long_words,
                }
            )
        for name, rows in (("sum", summaries), ("qa", qa)):
            write(f"{name}_train.jsonl", rows[:240])
            write(f"{name}_dev.jsonl", rows[240:])
        cls.runs = {}
        for name, extra in (
            ("summarization", ["--source_column", "text", "--target_column", "summary", "--prefix", "summarize:"]),
            ("qa", []),
        ):
            stem = "sum" if name == "summarization" else "qa"
            run_dir = cls.tmp / f"run-{name}"
            fine_tune_t5.main([
                "--benchmark", "custom", "--dataset_name", name, "--train_file", str(cls.tmp / f"{stem}_train.jsonl"),
                "--validation_file", str(cls.tmp / f"{stem}_dev.jsonl"), *extra, *TINY, "--do_train", "--do_eval",
                "--max_steps", "10", "--max_target_length", "24", "--output_dir", str(run_dir),
            ])  # fmt: skip
            cls.runs[name] = run_dir

    def test_summarization_rouge_keys_and_values(self):
        run_dir = self.runs["summarization"]
        results = read_results(run_dir)
        self.assertEqual(results["task"], "custom/summarization")
        rows = read_jsonl(run_dir / "predictions" / "custom_summarization_validation.jsonl")
        self.assertLen(rows, 20)
        self.assertTrue(all(r["input"].startswith("summarize: ") for r in rows))
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        for kind in ("rouge1", "rouge2", "rougeL"):
            expected = 100 * np.mean([scorer.score(r["target"], r["prediction"])[kind].fmeasure for r in rows])
            self.assertAlmostEqual(results[f"eval_{kind}"], expected, places=6, msg=kind)
        self.assertBetween(results["eval_rougeLsum"], 0.0, 100.0)
        self.assertIn("rougeLsum", (run_dir / "results.md").read_text())

    def test_qa_exact_match_and_f1(self):
        run_dir = self.runs["qa"]
        results = read_results(run_dir)
        self.assertEqual(results["task"], "custom/qa")
        rows = read_jsonl(run_dir / "predictions" / "custom_qa_validation.jsonl")

        def normalise(text):  # SQuAD v1.1: lower case, no punctuation or articles, single spaces
            text = "".join(c for c in text.lower() if c.isalnum() or c.isspace())
            return " ".join(w for w in text.split() if w not in ("a", "an", "the"))

        sentences = [json.loads(line) for line in (self.tmp / "qa_dev.jsonl").read_text().splitlines()]
        golds = [[t] if isinstance(t, str) else t for t in (row["target"] for row in sentences)]
        self.assertEqual([r["references"] for r in rows], golds)  # every gold answer reaches the metric
        self.assertEqual([r["target"] for r in rows], [g[0] for g in golds])
        exact = [any(normalise(r["prediction"]) == normalise(g) for g in r["references"]) for r in rows]
        self.assertAlmostEqual(results["eval_squad_em"], 100 * np.mean(exact), places=9)
        self.assertBetween(results["eval_squad_f1"], results["eval_squad_em"], 100.0)
        self.assertEqual(results["eval_invalid_rate"], 0.0)


class NestedSuperGlueEndToEndTest(absltest.TestCase):
    """MultiRC and ReCoRD from hand-written nested files: grouping, every gold answer, nested leaderboard file."""

    @classmethod
    def setUpClass(cls):
        cls.data = module_tmp() / "nested"
        multirc = []
        for p in range(6):
            questions = []
            for q in range(2):
                answers = [
                    {"text": f"answer {p} {q} {a}", "idx": 100 * p + 10 * q + a, "label": int(a == 0)} for a in range(2)
                ]
                questions.append(
                    {"question": f"Question {q} about paragraph {p}?", "idx": 10 * p + q, "answers": answers}
                )
            multirc.append(
                {"idx": p, "passage": {"text": f"<b>Sent 1: </b>Paragraph {p}.<br>", "questions": questions}}
            )
        record = []
        for p in range(6):
            text = f"Alice met Bob in Paris on day {p}.\n@highlight\nThey talked"
            record.append(
                {
                    "idx": p,
                    "passage": {
                        "text": text,
                        "entities": [{"start": 0, "end": 4}, {"start": 10, "end": 12}, {"start": 17, "end": 21}],
                    },
                    "qas": [
                        {
                            "query": "@placeholder met Bob.",
                            "idx": 2 * p,
                            "answers": [{"start": 0, "end": 4, "text": "Alice"}],
                        },
                        {
                            "query": "They met in @placeholder.",
                            "idx": 2 * p + 1,
                            "answers": [
                                {"start": 17, "end": 21, "text": "Paris"},
                                {"start": 17, "end": 21, "text": "Paris, France"},
                            ],
                        },
                    ],
                }
            )
        for folder, rows in (("MultiRC", multirc), ("ReCoRD", record)):
            (cls.data / folder).mkdir(parents=True)
            for split, part in (("train", rows), ("val", rows[:3]), ("test", rows[3:])):
                with (cls.data / folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
                    for row in part:
                        handle.write(json.dumps(row) + "\n")
        cls.runs = {}
        # These files are too small to train a tokenizer on: reuse the one of the RTE run.
        tokenizer = superglue_run("rte") / "tokenizer"
        for task in ("multirc", "record"):
            run_dir = module_tmp() / f"nested-{task}"
            fine_tune_t5.main(
                [
                    "--benchmark",
                    "superglue",
                    "--dataset_name",
                    task,
                    "--data_dir",
                    str(cls.data),
                    *TINY_MODEL,
                    "--tokenizer_name_or_path",
                    str(tokenizer),
                    "--do_train",
                    "--do_eval",
                    "--do_predict",
                    "--max_steps",
                    "4",
                    "--max_target_length",
                    "16",
                    "--output_dir",
                    str(run_dir),
                ]
            )
            cls.runs[task] = run_dir

    def test_multirc_groups_and_nested_leaderboard(self):
        results = read_results(self.runs["multirc"])
        rows = read_jsonl(self.runs["multirc"] / "predictions" / "superglue_multirc_validation.jsonl")
        self.assertLen(rows, 12)  # 3 paragraphs x 2 questions x 2 answer options
        self.assertEqual(
            rows[0]["input"],
            "multirc question: Question 0 about paragraph 0? answer: answer 0 0 0 paragraph: Sent 1: Paragraph 0. ",
        )
        ok = [r["prediction"].strip() == r["target"] for r in rows]
        by_question = [all(ok[i : i + 2]) for i in range(0, 12, 2)]
        self.assertAlmostEqual(results["eval_group_em"], 100 * np.mean(by_question), places=9)
        self.assertIn("eval_f1a", results)
        lines = read_jsonl(self.runs["multirc"] / "submission" / "MultiRC.jsonl")
        self.assertEqual([line["idx"] for line in lines], [3, 4, 5])
        for line in lines:
            p = line["idx"]
            self.assertEqual([q["idx"] for q in line["passage"]["questions"]], [10 * p, 10 * p + 1])
            for q in line["passage"]["questions"]:
                self.assertEqual([a["idx"] for a in q["answers"]], [10 * q["idx"], 10 * q["idx"] + 1])
                self.assertTrue(all(a["label"] in (0, 1) for a in q["answers"]))

    def test_record_scores_against_every_answer(self):
        results = read_results(self.runs["record"])
        rows = read_jsonl(self.runs["record"] / "predictions" / "superglue_record_validation.jsonl")
        self.assertLen(rows, 6)  # one row per query
        self.assertEqual(rows[1]["references"], ["Paris", "Paris, France"])
        self.assertEqual(
            rows[1]["input"],
            "record query: They met in @placeholder. entities: Alice, Bob, Paris "
            "passage: Alice met Bob in Paris on day 0. They talked",
        )
        exact = [r["prediction"].strip().lower() in [a.lower() for a in r["references"]] for r in rows]
        self.assertAlmostEqual(results["eval_squad_em"], 100 * np.mean(exact), places=9)
        # Training sees one row per gold answer (T5 preprocessors.record): 6 passages x (1 + 2) answers.
        spec = get_task("superglue", "record")
        train, _ = task_files.load_benchmark_split(spec, "train", str(self.data))
        rows = to_text(spec, train, labeled=True, each_answer=True)
        self.assertLen(rows, 18)
        self.assertEqual(rows["target"][1:3], ["Paris", "Paris, France"])
        self.assertLen(to_text(spec, train, labeled=True), 12)  # eval rows: one per query
        lines = read_jsonl(self.runs["record"] / "submission" / "ReCoRD.jsonl")
        self.assertEqual([line["idx"] for line in lines], list(range(6, 12)))
        self.assertTrue(all(isinstance(line["label"], str) for line in lines))


if __name__ == "__main__":
    absltest.main()
