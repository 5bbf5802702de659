"""End-to-end fine-tuning with a tiny model on real GLUE slices and on custom files.

Checks that metrics are computed on decoded text (recomputed here from the predictions file with scikit-learn),
both eval modes on one saved model, t2t-tuner jsonl data, GLUE leaderboard files, early stopping, resume, and that
user mistakes are UsageErrors naming the file, line or flag.
"""

from __future__ import annotations

import functools
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
from absl.testing import absltest, parameterized
from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_score, recall_score
from transformers import AutoTokenizer, EarlyStoppingCallback, T5ForConditionalGeneration, TrainerCallback

import fine_tune_t5
from t5kit import attention, evaluation
from t5kit.args import UsageError
from t5kit.tasks import get_task
from tests.helpers import REPO, SHARED_DATA, shared_file

GLUE_DIR = SHARED_DATA / "glue"
TINY = [
    "--model_config", "tiny", "--vocab_size", "500", "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "32", "--logging_steps", "5", "--learning_rate", "3e-3", "--seed", "0",
    "--report_to", "none", "--disable_tqdm", "True",
]  # fmt: skip
EVAL_SAMPLES = 32
INVALID = -1  # a prediction that is no label word (t5kit.tasks.postprocess)
# Logit / score gap under which a batched run and the one-by-one fp32 reference here may pick differently: float
# reordering in fp32; in bf16 (the default where the CPU has AVX-512 BF16), rounding to 8 mantissa bits (2^-8 relative
# on values of a few units).
NEAR_TIE = {"fp32": 1e-4, "bf16": 5e-2}

# Written out here (tfds GLUE label_classes, as T5 uses them), not read from constants, so the checks are independent.
LABEL_WORDS = {
    "sst2": ("negative", "positive"),
    "cola": ("unacceptable", "acceptable"),
    "rte": ("entailment", "not_entailment"),
}
METRIC = {"sst2": "accuracy", "cola": "mcc", "rte": "accuracy"}
GLUE_FOLDER = {"sst2": "SST-2", "cola": "CoLA", "rte": "RTE"}

# Per task: extra flags of its shared run. sst2 also evaluates and checkpoints during training (for resume).
GLUE_RUN_ARGS = {
    "sst2": ["--max_steps", "20", "--eval_strategy", "steps", "--eval_steps", "10"],
    "cola": ["--max_steps", "15", "--eval_strategy", "no"],
    "rte": ["--max_steps", "10", "--eval_strategy", "no", "--max_source_length", "256"],
}

_tmp: Path | None = None
_threads = 1


def setUpModule():
    global _threads
    # A d_model-64 model gains nothing from threads; two threads on two cores shared with another process run ~10x
    # slower (measured), so runs here use one.
    _threads = torch.get_num_threads()
    torch.set_num_threads(1)


def tearDownModule():
    torch.set_num_threads(_threads)
    if _tmp is not None:
        shutil.rmtree(_tmp, ignore_errors=True)


def module_tmp() -> Path:
    global _tmp
    if _tmp is None:
        _tmp = Path(tempfile.mkdtemp(prefix="test_finetune_"))
    return _tmp


def glue_argv(task: str, run_dir: Path) -> list[str]:
    return [
        "--benchmark", "glue", "--dataset_name", task, "--data_dir", str(GLUE_DIR), *TINY,
        "--do_train", "--do_eval", "--max_train_samples", "400", "--max_eval_samples", str(EVAL_SAMPLES),
        *GLUE_RUN_ARGS[task], "--output_dir", str(run_dir),
    ]  # fmt: skip


@functools.cache
def glue_run(task: str) -> Path:
    """One tiny training run per task, shared by every test that needs a trained model (run once per module)."""
    run_dir = module_tmp() / f"glue-{task}"
    fine_tune_t5.main(glue_argv(task, run_dir))
    return run_dir


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "all_results.json").read_text())


def read_predictions(run_dir: Path, name: str) -> list[dict]:
    lines = (run_dir / "predictions" / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def dev_examples(task: str, n: int) -> list[tuple[str, str]]:
    """(input text, target word) of the first n rows of the real dev file, formatted by hand as T5 does."""
    lines = shared_file(f"glue/{GLUE_FOLDER[task]}/dev.tsv").read_text(encoding="utf-8").split("\n")
    words = LABEL_WORDS[task]
    out = []
    if task == "sst2":  # header: sentence, label (0/1)
        for line in lines[1 : n + 1]:
            sentence, label = line.split("\t")
            out.append((f"sst2 sentence: {sentence}", words[int(label)]))
    elif task == "cola":  # no header: source, label (0/1), mark, sentence
        for line in lines[:n]:
            _, label, _, sentence = line.split("\t")
            out.append((f"cola sentence: {sentence}", words[int(label)]))
    else:  # rte header: index, sentence1, sentence2, label (a word)
        for line in lines[1 : n + 1]:
            _, first, second, label = line.split("\t")
            out.append((f"rte sentence1: {first} sentence2: {second}", label))
    return out


def recompute_metric(task: str, rows: list[dict]) -> float:
    """The task metric from the predictions file, per constants.compute_task_metrics' rules for invalid text:
    accuracy never matches it; binary mcc replaces it by the label opposite to the gold one."""
    words = LABEL_WORDS[task]
    gold = [words.index(row["target"]) for row in rows]
    predicted = [words.index(row["prediction"].strip()) if row["prediction"].strip() in words else INVALID
                 for row in rows]  # fmt: skip
    if METRIC[task] == "accuracy":
        return 100.0 * accuracy_score(gold, predicted)
    predicted = [p if p != INVALID else 1 - g for g, p in zip(gold, predicted)]
    return 100.0 * matthews_corrcoef(gold, predicted)


def greedy_decode(model, tokenizer, text: str, max_length: int) -> tuple[str, float]:
    """Greedy decoding of one input, written out step by step; also the smallest top-1 vs top-2 logit margin seen
    (a near tie may decode either way under batching)."""
    encoder_inputs = tokenizer(text, return_tensors="pt")
    decoded = [model.config.decoder_start_token_id]
    margin = float("inf")
    with torch.no_grad():
        for _ in range(max_length - 1):
            logits = model(**encoder_inputs, decoder_input_ids=torch.tensor([decoded])).logits[0, -1]
            top = torch.topk(logits, 2)
            margin = min(margin, (top.values[0] - top.values[1]).item())
            decoded.append(int(top.indices[0]))
            if decoded[-1] == tokenizer.eos_token_id:
                break
    return tokenizer.decode(decoded, skip_special_tokens=True), margin


def mismatched_greedy_outputs(model_dir: Path, rows: list[dict]) -> tuple[list[tuple[str, str, str]], int]:
    """(input, written prediction, greedy output) where they differ, and how many rows were compared (near ties are
    skipped). Catches predictions written or scored in another order than their inputs."""
    model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    near_tie = NEAR_TIE[read_results(model_dir)["precision"]]
    mismatched, compared = [], 0
    for row in rows:
        text, margin = greedy_decode(model, tokenizer, row["input"], read_results(model_dir)["generation_max_length"])
        if margin > near_tie:
            compared += 1
            if text != row["prediction"]:
                mismatched.append((row["input"], row["prediction"], text))
    return mismatched, compared


class GlueEndToEndTest(parameterized.TestCase):
    """Train a few steps on a real GLUE slice, evaluate by generation, and check every output file."""

    @parameterized.parameters("sst2", "cola", "rte")
    def test_results_hold_the_task_metric(self, task):
        results = read_results(glue_run(task))
        self.assertEqual(results["task"], f"glue/{task}")
        self.assertEqual(results["eval_mode"], "generate")
        low = -100.0 if METRIC[task] == "mcc" else 0.0
        self.assertBetween(results[f"eval_{METRIC[task]}"], low, 100.0)
        self.assertBetween(results["eval_invalid_rate"], 0.0, 100.0)
        for key in ("eval_loss", "train_loss", "sources_truncated", "targets_truncated"):
            self.assertIn(key, results)

    @parameterized.parameters("sst2", "cola", "rte")
    def test_predictions_are_the_dev_rows_in_t5_format(self, task):
        rows = read_predictions(glue_run(task), f"glue_{task}_validation.jsonl")
        self.assertLen(rows, EVAL_SAMPLES)
        for row in rows:
            self.assertCountEqual(row, ["input", "target", "prediction"])
            self.assertTrue(all(isinstance(value, str) for value in row.values()), row)
            self.assertIn(row["target"], LABEL_WORDS[task])
        self.assertEqual([(row["input"], row["target"]) for row in rows], dev_examples(task, EVAL_SAMPLES))

    @parameterized.parameters("sst2", "cola", "rte")
    def test_metric_equals_the_one_recomputed_from_decoded_text(self, task):
        run_dir = glue_run(task)
        rows = read_predictions(run_dir, f"glue_{task}_validation.jsonl")
        results = read_results(run_dir)
        self.assertAlmostEqual(results[f"eval_{METRIC[task]}"], recompute_metric(task, rows), places=9)
        invalid = sum(row["prediction"].strip() not in LABEL_WORDS[task] for row in rows)
        self.assertAlmostEqual(results["eval_invalid_rate"], 100.0 * invalid / len(rows), places=9)

    @parameterized.parameters("sst2", "cola", "rte")
    def test_each_prediction_is_the_model_output_for_its_input(self, task):
        run_dir = glue_run(task)
        rows = read_predictions(run_dir, f"glue_{task}_validation.jsonl")
        mismatched, compared = mismatched_greedy_outputs(run_dir, rows)
        self.assertEmpty(mismatched)
        self.assertGreater(compared, EVAL_SAMPLES // 2)

    @parameterized.parameters("sst2", "cola", "rte")
    def test_run_folder_contents(self, task):
        run_dir = glue_run(task)
        for name in ("model.safetensors", "config.json", "tokenizer.json", "trainer_state.json", "results.md",
                     "loss.png"):  # fmt: skip
            self.assertTrue((run_dir / name).is_file(), name)
        self.assertIn(f"| glue/{task} split | {METRIC[task]} | invalid_rate |", (run_dir / "results.md").read_text())

    def test_steps_eval_writes_checkpoints_and_metric_plot(self):
        run_dir = glue_run("sst2")
        for name in ("checkpoint-10", "checkpoint-20", "metrics.png"):
            self.assertTrue((run_dir / name).exists(), name)
        state = json.loads((run_dir / "trainer_state.json").read_text())
        self.assertEqual([row["step"] for row in state["log_history"] if "eval_accuracy" in row], [10, 20])
        # Every evaluation (generate mode) also logs teacher-forced token accuracy, and sst2 precision and recall.
        for key in ("eval_token_accuracy", "eval_precision", "eval_recall"):
            self.assertEqual([row["step"] for row in state["log_history"] if key in row], [10, 20], key)


class EvalModeTest(absltest.TestCase):
    """The saved sst2 model, evaluated (--do_eval only) once by generation and once by rank classification."""

    @classmethod
    def setUpClass(cls):
        cls.model_dir = glue_run("sst2")
        cls.runs = {}
        for mode in ("generate", "rank"):
            out = module_tmp() / f"eval-{mode}"
            fine_tune_t5.main([
                "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(GLUE_DIR),
                "--model_name_or_path", str(cls.model_dir), "--do_eval", "--max_eval_samples", str(EVAL_SAMPLES),
                "--per_device_eval_batch_size", "32", "--eval_mode", mode, "--report_to", "none",
                "--disable_tqdm", "True", "--output_dir", str(out),
            ])  # fmt: skip
            cls.runs[mode] = (read_results(out), read_predictions(out, "glue_sst2_validation.jsonl"))

    def test_rank_mode_is_never_invalid(self):
        results, rows = self.runs["rank"]
        self.assertEqual(results["eval_mode"], "rank")
        self.assertEqual(results["eval_invalid_rate"], 0.0)
        self.assertLen(rows, EVAL_SAMPLES)
        for row in rows:
            self.assertIn(row["prediction"], LABEL_WORDS["sst2"])
        self.assertAlmostEqual(results["eval_accuracy"], recompute_metric("sst2", rows), places=9)

    def test_generate_mode_metric_matches_its_predictions(self):
        results, rows = self.runs["generate"]
        self.assertEqual(results["eval_mode"], "generate")
        self.assertLen(rows, EVAL_SAMPLES)
        self.assertAlmostEqual(results["eval_accuracy"], recompute_metric("sst2", rows), places=9)
        # The reloaded model scores exactly as at the end of its training run.
        self.assertAlmostEqual(results["eval_accuracy"], read_results(self.model_dir)["eval_accuracy"], places=9)

    def test_generate_prediction_is_the_greedy_decoding_of_its_input(self):
        mismatched, compared = mismatched_greedy_outputs(self.model_dir, self.runs["generate"][1])
        self.assertEmpty(mismatched)
        self.assertGreater(compared, EVAL_SAMPLES // 2)

    def test_eval_loss_does_not_depend_on_the_mode(self):
        self.assertAlmostEqual(self.runs["rank"][0]["eval_loss"], self.runs["generate"][0]["eval_loss"], places=5)

    def test_token_accuracy_is_the_teacher_forced_argmax_accuracy(self):
        """eval_token_accuracy of both modes equals the percent of target tokens that a plain forward pass with the
        labels predicts (argmax), over the eval set; a near tie (under NEAR_TIE) may count either way."""
        model = T5ForConditionalGeneration.from_pretrained(self.model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        near_tie = NEAR_TIE[self.runs["rank"][0]["precision"]]
        correct = uncertain = total = 0
        for row in self.runs["generate"][1]:
            labels = tokenizer(row["target"], return_tensors="pt").input_ids
            with torch.no_grad():
                logits = model(**tokenizer(row["input"], return_tensors="pt"), labels=labels).logits[0]
            top = torch.topk(logits, 2)
            tie = (top.values[:, 0] - top.values[:, 1]) < near_tie
            hit = top.indices[:, 0] == labels[0]
            correct += int((hit & ~tie).sum())
            uncertain += int(tie.sum())
            total += labels.shape[1]
        self.assertGreater(total, EVAL_SAMPLES)
        self.assertLess(uncertain, total // 4)
        for mode in ("generate", "rank"):
            got = self.runs[mode][0]["eval_token_accuracy"]
            self.assertBetween(got, 100.0 * correct / total - 1e-9, 100.0 * (correct + uncertain) / total + 1e-9)
            if not uncertain:
                self.assertAlmostEqual(got, 100.0 * correct / total, places=9)
        self.assertAlmostEqual(
            self.runs["rank"][0]["eval_token_accuracy"], self.runs["generate"][0]["eval_token_accuracy"], places=9
        )

    def test_precision_and_recall_of_positive(self):
        for mode in ("generate", "rank"):
            results, rows = self.runs[mode]
            gold = [row["target"] == "positive" for row in rows]
            # An invalid prediction counts as the label opposite to the gold one.
            predicted = [row["prediction"].strip() == "positive" if row["prediction"].strip() in LABEL_WORDS["sst2"]
                         else not g for row, g in zip(rows, gold)]  # fmt: skip
            self.assertAlmostEqual(results["eval_precision"], 100.0 * precision_score(gold, predicted, zero_division=0))
            self.assertAlmostEqual(results["eval_recall"], 100.0 * recall_score(gold, predicted, zero_division=0))

    def test_token_hits_and_gold_candidates(self):
        logits = torch.zeros(2, 3, 10)
        logits[0, 0, 4] = logits[0, 1, 2] = logits[0, 2, 1] = 1.0  # argmax [4, 2, 1]
        logits[1, 0, 5] = logits[1, 1, 1] = logits[1, 2, 7] = 1.0  # argmax [5, 1, 7]
        labels = torch.tensor([[4, 3, 1], [5, 1, -100]])
        self.assertEqual(evaluation.token_hits(logits, labels).tolist(), [[2, 3], [2, 2]])
        candidates = torch.tensor([[5, 1, -100], [4, 3, 1]])
        self.assertEqual(evaluation.gold_candidates(labels, candidates).tolist(), [1, 0])
        self.assertIsNone(evaluation.gold_candidates(torch.tensor([[5, 2]]), candidates))

    def test_loss_from_candidate_scores(self):
        # Hand-checked: candidates "5 EOS" / "6 7 EOS"; rows pick candidates 1 and 0; 3 + 2 label tokens.
        candidates = torch.tensor([[5, 1, -100], [6, 7, 1]])
        scores = torch.tensor([[-1.0, -4.0], [-2.0, -0.5]])
        labels = torch.tensor([[6, 7, 1], [5, 1, -100]])
        loss = evaluation.loss_from_candidate_scores(scores, labels, candidates)
        self.assertAlmostEqual(loss.item(), (4.0 + 2.0) / 5, places=6)
        # Labels wider than the candidates (extra padding) still match.
        wide = torch.nn.functional.pad(labels, (0, 2), value=-100)
        self.assertAlmostEqual(evaluation.loss_from_candidate_scores(scores, wide, candidates).item(), 1.2, places=6)
        # A target that is no candidate (truncated, or a free-text reference): no shortcut, the caller runs the loss.
        self.assertIsNone(evaluation.loss_from_candidate_scores(scores, torch.tensor([[6, 1], [5, 1]]), candidates))

    def test_candidate_scores_are_teacher_forced_likelihoods(self):
        """candidate_scores (a row per example and candidate, candidates in chunks) equals each candidate scored
        alone by a plain forward pass: sst2's 2 label words, and stsb's 26 multi-token targets (more than one chunk
        of RANK_CANDIDATE_CHUNK). With `blocked` attention an example's rows share its encoder states; with `sdpa`
        they get copies: both paths are checked."""
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        sentences = [row["input"] for row in self.runs["rank"][1][:3]]
        inputs = tokenizer(sentences, return_tensors="pt", padding=True)
        self.assertGreater(int((inputs.attention_mask == 0).sum()), 0)  # padded rows are covered
        attention.register()
        for implementation, task in itertools.product(("blocked", "sdpa"), ("sst2", "stsb")):
            model = T5ForConditionalGeneration.from_pretrained(
                self.model_dir, attn_implementation=implementation
            ).eval()
            candidates = evaluation.rank_candidates_of(get_task("glue", task))
            scorer = types.SimpleNamespace(candidates=candidates, processing_class=tokenizer, _candidate_ids=None)
            with torch.no_grad():
                encoded = model.get_encoder()(**inputs).last_hidden_state
                got, hits = evaluation.FineTuneTrainer.candidate_scores(scorer, model, encoded, inputs.attention_mask)
                expected = torch.zeros(len(sentences), len(candidates))
                # Tokens of the candidate that are the argmax over the vocabulary; a near tie may go either way.
                expected_hits = torch.zeros(len(sentences), len(candidates), dtype=torch.long)
                near_tie = torch.zeros(len(sentences), len(candidates), dtype=torch.bool)
                for i, text in enumerate(sentences):
                    for j, ids in enumerate(tokenizer(c, return_tensors="pt").input_ids for c in candidates):
                        out = model(**tokenizer(text, return_tensors="pt"), labels=ids)
                        expected[i, j] = -out.loss.item() * ids.shape[1]
                        top = torch.topk(out.logits[0], 2)
                        expected_hits[i, j] = int((top.indices[:, 0] == ids[0]).sum())
                        near_tie[i, j] = bool(((top.values[:, 0] - top.values[:, 1]) < NEAR_TIE["fp32"]).any())
            where = f"{task}, {implementation}"
            self.assertEqual(tuple(got.shape), (len(sentences), len(candidates)))
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5, msg=where)
            self.assertEqual(hits.shape, got.shape)
            self.assertEqual(hits[~near_tie].tolist(), expected_hits[~near_tie].tolist(), where)
            self.assertLess(int(near_tie.sum()), near_tie.numel() // 4, where)
            if task == "sst2":
                self.assertGreater(int(expected_hits.sum()), 0)

    def test_rank_prediction_is_the_most_likely_label_word(self):
        """Each label word scored alone (summed log-likelihood of its tokens, EOS included) agrees with rank mode."""
        model = T5ForConditionalGeneration.from_pretrained(self.model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        words = LABEL_WORDS["sst2"]
        labels = [tokenizer(word, return_tensors="pt").input_ids for word in words]
        near_tie = NEAR_TIE[self.runs["rank"][0]["precision"]]
        checked = 0
        for row in self.runs["rank"][1]:
            inputs = tokenizer(row["input"], return_tensors="pt")
            with torch.no_grad():
                scores = [-model(**inputs, labels=ids).loss.item() * ids.shape[1] for ids in labels]
            if abs(scores[0] - scores[1]) < near_tie:
                continue  # a near tie may fall either way under batching
            self.assertEqual(row["prediction"], words[max(range(len(words)), key=scores.__getitem__)], row["input"])
            checked += 1
        self.assertGreater(checked, EVAL_SAMPLES // 2)


class CustomTaskTest(absltest.TestCase):
    """t2t-tuner jsonl lines {"translation": {"s": ..., "t": ...}}: copy the first three words of a sentence."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = module_tmp() / "custom"
        cls.tmp.mkdir()
        lines = shared_file("glue/SST-2/train.tsv").read_text(encoding="utf-8").split("\n")[1:501]
        sentences = [line.split("\t")[0] for line in lines]
        pairs = [(s.strip(), " ".join(s.split()[:3])) for s in sentences]

        def write(name, rows, with_target=True):
            with (cls.tmp / name).open("w", encoding="utf-8") as handle:
                for source, target in rows:
                    pair = {"s": source, "t": target} if with_target else {"s": source}
                    handle.write(json.dumps({"translation": pair}) + "\n")

        write("train.jsonl", pairs[:450])
        write("dev.jsonl", pairs[450:470])
        write("test.jsonl", pairs[470:480], with_target=False)
        cls.pairs = pairs
        cls.run_dir = cls.tmp / "run"
        fine_tune_t5.main([
            "--benchmark", "custom", "--train_file", str(cls.tmp / "train.jsonl"),
            "--validation_file", str(cls.tmp / "dev.jsonl"), "--test_file", str(cls.tmp / "test.jsonl"),
            "--prefix", "first words:", *TINY, "--do_train", "--do_eval", "--do_predict", "--max_steps", "20",
            "--eval_strategy", "no", "--max_target_length", "12", "--output_dir", str(cls.run_dir),
        ])  # fmt: skip

    def test_results(self):
        results = read_results(self.run_dir)
        self.assertEqual(results["task"], "custom/custom")
        self.assertBetween(results["eval_accuracy"], 0.0, 100.0)
        self.assertEqual(results["eval_invalid_rate"], 0.0)  # free text is never invalid
        for name in ("model.safetensors", "tokenizer.json", "results.md", "loss.png"):
            self.assertTrue((self.run_dir / name).is_file(), name)

    def test_validation_predictions_carry_the_prefix(self):
        rows = read_predictions(self.run_dir, "custom_custom_validation.jsonl")
        expected = [(f"first words: {source}", target) for source, target in self.pairs[450:470]]
        self.assertEqual([(row["input"], row["target"]) for row in rows], expected)
        exact = sum(row["prediction"] == row["target"] for row in rows)
        self.assertAlmostEqual(read_results(self.run_dir)["eval_accuracy"], 100.0 * exact / len(rows), places=9)

    def test_test_file_without_targets_is_predicted(self):
        rows = read_predictions(self.run_dir, "custom_custom_test.jsonl")
        self.assertLen(rows, 10)
        self.assertEqual([row["target"] for row in rows], [""] * 10)
        self.assertTrue(all(row["input"].startswith("first words: ") for row in rows))
        self.assertFalse((self.run_dir / "submission").exists())  # no leaderboard for custom data


class GlueSubmissionTest(absltest.TestCase):
    """--do_predict on a GLUE-layout test file -> the leaderboard TSV (predict only: nothing is evaluated)."""

    NUM_TEST = 20

    @classmethod
    def setUpClass(cls):
        data_dir = module_tmp() / "glue-predict"
        (data_dir / "SST-2").mkdir(parents=True)
        dev = shared_file("glue/SST-2/dev.tsv").read_text(encoding="utf-8").split("\n")
        for name in ("train.tsv", "dev.tsv"):
            (data_dir / "SST-2" / name).write_text("\n".join(dev[:21]) + "\n", encoding="utf-8")
        test = ["index\tsentence"] + [f"{i}\t{line.split(chr(9))[0]}" for i, line in enumerate(dev[21:41])]
        (data_dir / "SST-2" / "test.tsv").write_text("\n".join(test) + "\n", encoding="utf-8")
        cls.run_dir = module_tmp() / "predict"
        cls.results = fine_tune_t5.main([
            "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(data_dir),
            "--model_name_or_path", str(glue_run("sst2")), "--do_predict", "--report_to", "none",
            "--disable_tqdm", "True", "--output_dir", str(cls.run_dir),
        ])  # fmt: skip

    def test_submission_file(self):
        lines = (self.run_dir / "submission" / "SST-2.tsv").read_text(encoding="utf-8").splitlines()
        self.assertEqual(lines[0], "index\tprediction")
        self.assertLen(lines, self.NUM_TEST + 1)
        rows = read_predictions(self.run_dir, "glue_sst2_test.jsonl")
        self.assertLen(rows, self.NUM_TEST)
        for i, (line, row) in enumerate(zip(lines[1:], rows)):
            index, label = line.split("\t")
            self.assertEqual(index, str(i))
            self.assertIn(label, ("0", "1"))
            word = row["prediction"].strip()
            # A prediction that is no label word is written as the default label 0.
            self.assertEqual(int(label), LABEL_WORDS["sst2"].index(word) if word in LABEL_WORDS["sst2"] else 0)
            self.assertTrue(row["input"].startswith("sst2 sentence: "))
            self.assertEqual(row["target"], "")

    def test_predictions_follow_the_test_file_order(self):
        rows = read_predictions(self.run_dir, "glue_sst2_test.jsonl")
        mismatched, compared = mismatched_greedy_outputs(glue_run("sst2"), rows)
        self.assertEmpty(mismatched)
        self.assertGreater(compared, self.NUM_TEST // 2)

    def test_predict_only_evaluates_nothing(self):
        self.assertNotIn("eval_accuracy", self.results)
        self.assertFalse((self.run_dir / "predictions" / "glue_sst2_validation.jsonl").exists())


class EarlyStoppingTest(absltest.TestCase):
    def test_stops_when_the_task_metric_stops_improving(self):
        """With learning rate 0 the metric never improves: patience 1 stops at the second evaluation (of every 2 steps,
        by rank classification) instead of running 200 steps."""
        run_dir = module_tmp() / "early-stop"
        fine_tune_t5.main([
            "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(GLUE_DIR),
            "--model_name_or_path", str(glue_run("sst2")), "--do_train", "--do_eval", "--max_train_samples", "200",
            "--max_eval_samples", "16", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
            "--learning_rate", "0", "--max_steps", "200", "--eval_strategy", "steps", "--eval_steps", "2",
            "--early_stopping_patience", "1", "--eval_mode", "rank", "--report_to", "none", "--disable_tqdm", "True",
            "--output_dir", str(run_dir),
        ])  # fmt: skip
        state = json.loads((run_dir / "trainer_state.json").read_text())
        self.assertEqual(state["global_step"], 4)
        self.assertEqual([row["step"] for row in state["log_history"] if "eval_accuracy" in row], [2, 4])
        self.assertEqual(Path(state["best_model_checkpoint"]).name, "checkpoint-2")
        evals = [row for row in state["log_history"] if "eval_accuracy" in row]
        self.assertEqual(state["best_metric"], evals[0]["eval_accuracy"])
        self.assertEqual([row["eval_invalid_rate"] for row in evals], [0.0, 0.0])  # rank eval during training


class MixtureKeysTest(absltest.TestCase):
    def test_mixture_token_accuracy_pools_every_target_token(self):
        sets = [evaluation.EvalSet(get_task("glue", name), "validation", [0] * n, f"eval_glue_{name}")
                for name, n in (("sst2", 2), ("cola", 6))]  # fmt: skip
        per_set = [{"accuracy": 50.0, "precision": 10.0, "loss": 1.0}, {"mcc": 20.0, "recall": 90.0, "loss": 3.0}]
        summary = evaluation.mixture_summary(sets, per_set, [(3, 4), (1, 12)])
        # Precision and recall are no part of a task's score: the average is the mean of accuracy and mcc.
        self.assertEqual(summary, {"eval_average": 35.0, "eval_loss": 2.5, "eval_token_accuracy": 25.0})
        self.assertNotIn("eval_token_accuracy", evaluation.mixture_summary(sets, per_set))

    def test_best_metric_of_a_mixture_may_be_a_reported_metric(self):
        tasks = [get_task("glue", "sst2"), get_task("glue", "stsb")]
        for key in ("eval_glue_sst2_precision", "glue_sst2_recall", "eval_glue_stsb_token_accuracy", "token_accuracy"):
            args = types.SimpleNamespace(metric_for_best_model=key)
            evaluation.resolve_best_metric(args, tasks)
            self.assertEqual(args.metric_for_best_model, key)
        with self.assertRaisesRegex(UsageError, "--metric_for_best_model eval_glue_stsb_precision: a mixture logs"):
            evaluation.resolve_best_metric(
                types.SimpleNamespace(metric_for_best_model="eval_glue_stsb_precision"), tasks
            )


class RisingMetric(TrainerCallback):
    """Hands the built trainer to the test (on_trainer) and replaces the watched metric of each evaluation by
    50, 50.3, 50.6, ...: an improvement of 0.3 points every time, whatever the model does."""

    def __init__(self):
        self.trainer = None
        self.evaluations = 0

    def on_trainer(self, trainer):
        self.trainer = trainer

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics["eval_accuracy"] = 50.0 + 0.3 * self.evaluations
        self.evaluations += 1


class EarlyStoppingThresholdTest(parameterized.TestCase):
    @parameterized.parameters((0.5, 4), (0.2, 8))
    def test_gains_under_the_threshold_are_no_improvement(self, threshold, last_step):
        """Evaluations every 2 steps, patience 1, the metric rising by 0.3 each time: a threshold of 0.5 stops
        training at the second evaluation (step 4); 0.2 lets it run to --max_steps 8."""
        probe = RisingMetric()
        run_dir = module_tmp() / f"early-stop-threshold-{threshold}"
        fine_tune_t5.main([
            "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(GLUE_DIR),
            "--model_name_or_path", str(glue_run("sst2")), "--do_train", "--do_eval", "--max_train_samples", "64",
            "--max_eval_samples", "8", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
            "--learning_rate", "0", "--max_steps", "8", "--eval_strategy", "steps", "--eval_steps", "2",
            "--early_stopping_patience", "1", "--early_stopping_threshold", str(threshold), "--eval_mode", "rank",
            "--save_total_limit", "1", "--report_to", "none", "--disable_tqdm", "True", "--output_dir", str(run_dir),
        ], callbacks=[probe])  # fmt: skip
        stoppers = [c for c in probe.trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
        self.assertLen(stoppers, 1)
        self.assertEqual((stoppers[0].early_stopping_patience, stoppers[0].early_stopping_threshold), (1, threshold))
        state = json.loads((run_dir / "trainer_state.json").read_text())
        self.assertEqual(state["global_step"], last_step)
        self.assertEqual(probe.evaluations, last_step // 2 + 1)  # + the final evaluation of the best checkpoint


class ResumeTest(absltest.TestCase):
    def test_existing_checkpoints_need_the_resume_flag(self):
        with self.assertRaisesRegex(UsageError, "resume_from_checkpoint latest"):
            fine_tune_t5.main(glue_argv("sst2", glue_run("sst2")))

    def test_resume_continues_from_the_checkpoint_step(self):
        original = glue_run("sst2")
        resumed = module_tmp() / "resumed"
        shutil.copytree(original / "checkpoint-20", resumed / "checkpoint-20")
        shutil.copytree(original / "tokenizer", resumed / "tokenizer")
        argv = glue_argv("sst2", resumed)
        argv[argv.index("--max_steps") + 1] = "30"
        fine_tune_t5.main([*argv, "--resume_from_checkpoint", "latest"])

        def losses(run_dir):
            state = json.loads((run_dir / "trainer_state.json").read_text())
            return state["global_step"], {row["step"]: row["loss"] for row in state["log_history"] if "loss" in row}

        (step_before, before), (step_after, after) = losses(original), losses(resumed)
        self.assertEqual((step_before, step_after), (20, 30))
        # Steps 1-20 were not retrained: their log rows are the original run's, carried over by the checkpoint.
        self.assertEqual({s: after[s] for s in (5, 10, 15, 20)}, before)
        self.assertEqual(sorted(after), [5, 10, 15, 20, 25, 30])
        self.assertTrue((resumed / "checkpoint-30").is_dir())


class UsageErrorTest(parameterized.TestCase):
    def setUp(self):
        self.tmp = Path(self.create_tempdir().full_path)

    def run_main(self, *args: str):
        return fine_tune_t5.main([*args, "--model_config", "tiny", "--vocab_size", "300", "--report_to", "none",
                                  "--output_dir", str(self.tmp / "out")])  # fmt: skip

    def write(self, name: str, text: str) -> str:
        (self.tmp / name).write_text(text, encoding="utf-8")
        return str(self.tmp / name)

    def test_nothing_to_do(self):
        with self.assertRaisesRegex(UsageError, "nothing to do: pass --do_train, --do_eval and/or --do_predict"):
            self.run_main("--dataset_name", "sst2")

    def test_fp16_is_refused(self):
        with self.assertRaisesRegex(UsageError, "--fp16 is refused"):
            self.run_main("--dataset_name", "sst2", "--do_train", "--fp16")

    def test_rank_mode_needs_fixed_targets(self):
        path = self.write("dev.jsonl", '{"source": "x", "target": "y"}\n')
        with self.assertRaisesRegex(UsageError, r"--eval_mode rank needs a task with fixed targets; custom/custom"):
            self.run_main("--benchmark", "custom", "--validation_file", path, "--do_eval", "--eval_mode", "rank")
        self.assertFalse((self.tmp / "out").exists())  # refused before any data, tokenizer or run folder

    def test_early_stopping_threshold_needs_patience(self):
        with self.assertRaisesRegex(UsageError, "^--early_stopping_threshold needs --early_stopping_patience"):
            self.run_main("--dataset_name", "sst2", "--do_train", "--early_stopping_threshold", "0.5")
        with self.assertRaisesRegex(UsageError, "^--early_stopping_threshold must be >= 0, got -1.0$"):
            self.run_main("--dataset_name", "sst2", "--do_train", "--early_stopping_patience", "2",
                          "--early_stopping_threshold", "-1")  # fmt: skip
        self.assertFalse((self.tmp / "out").exists())

    def test_cli_exits_2_without_traceback(self):
        proc = subprocess.run(
            [sys.executable, str(REPO / "fine_tune_t5.py"), "--dataset_name", "nope", "--do_train",
             "--output_dir", str(self.tmp / "out")],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip
        self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
        self.assertIn("error: --dataset_name 'nope'", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)


if __name__ == "__main__":
    absltest.main()
