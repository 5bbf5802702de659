"""Tests for metrics.py and tasks.compute_task_metrics: hand-checkable
predictions, compared with scikit-learn / scipy called directly."""

import dataclasses
import math

import numpy as np
import sacrebleu
import scipy.stats
import sklearn.metrics
from absl.testing import absltest, parameterized
from rouge_score import rouge_scorer

import constants
import metrics
from metrics import INVALID
from t5kit import outputs, tasks


class MetricFunctionTest(parameterized.TestCase):
    def test_accuracy_counts_invalid_as_wrong(self):
        targets, predictions = [1, 0, 1, 1], [1, INVALID, 0, 1]
        self.assertAlmostEqual(metrics.accuracy(targets, predictions), 50.0)
        self.assertAlmostEqual(
            metrics.accuracy(targets, predictions), 100 * sklearn.metrics.accuracy_score(targets, predictions)
        )

    def test_f1_differs_from_accuracy(self):
        # TP=1, FP=1, FN=0: precision 1/2, recall 1 -> F1 2/3; accuracy 3/4.
        targets, predictions = [1, 0, 0, 0], [1, 1, 0, 0]
        self.assertAlmostEqual(metrics.f1(targets, predictions), 200 / 3)
        self.assertAlmostEqual(metrics.accuracy(targets, predictions), 75.0)
        self.assertAlmostEqual(metrics.f1(targets, predictions), 100 * sklearn.metrics.f1_score(targets, predictions))

    def test_f1_replaces_invalid_by_opposite_label(self):
        # T5 f1_score_with_invalid: INVALID -> 1 - target, so [1, 0, 1, 0, 0].
        targets, predictions = [1, 1, 0, 0, 1], [1, INVALID, INVALID, 0, 0]
        replaced = [1, 0, 1, 0, 0]
        # TP=1, FP=1, FN=2: precision 1/2, recall 1/3 -> F1 = 0.4.
        self.assertAlmostEqual(metrics.f1(targets, predictions), 40.0)
        self.assertAlmostEqual(metrics.f1(targets, predictions), 100 * sklearn.metrics.f1_score(targets, replaced))

    def test_f1_rejects_multiclass(self):
        with self.assertRaisesRegex(ValueError, "binary"):
            metrics.f1([0, 1, 2], [0, 1, 2])

    def test_precision_and_recall_replace_invalid_by_opposite_label(self):
        # As f1: INVALID -> 1 - target, so [1, 0, 1, 0, 0]. TP=1, FP=1, FN=2: precision 1/2, recall 1/3.
        targets, predictions = [1, 1, 0, 0, 1], [1, INVALID, INVALID, 0, 0]
        replaced = [1, 0, 1, 0, 0]
        self.assertAlmostEqual(metrics.precision(targets, predictions), 50.0)
        self.assertAlmostEqual(metrics.recall(targets, predictions), 100 / 3)
        self.assertAlmostEqual(
            metrics.precision(targets, predictions), 100 * sklearn.metrics.precision_score(targets, replaced)
        )
        self.assertAlmostEqual(
            metrics.recall(targets, predictions), 100 * sklearn.metrics.recall_score(targets, replaced)
        )
        # F1 is their harmonic mean, as f1 computes it.
        p, r = metrics.precision(targets, predictions), metrics.recall(targets, predictions)
        self.assertAlmostEqual(metrics.f1(targets, predictions), 2 * p * r / (p + r))

    def test_precision_and_recall_of_the_positive_class_only(self):
        # Always predicting 0: no positive prediction -> precision 0 (sklearn's 0/0, no NaN), recall 0.
        self.assertEqual(metrics.precision([1, 0, 1], [0, 0, 0]), 0.0)
        self.assertEqual(metrics.recall([1, 0, 1], [0, 0, 0]), 0.0)
        # Always predicting 1: precision = share of positives, recall 100.
        self.assertAlmostEqual(metrics.precision([1, 0, 1], [1, 1, 1]), 200 / 3)
        self.assertEqual(metrics.recall([1, 0, 1], [1, 1, 1]), 100.0)
        with self.assertRaisesRegex(ValueError, "precision needs binary targets"):
            metrics.precision([0, 1, 2], [0, 1, 2])
        with self.assertRaisesRegex(ValueError, "recall needs binary targets"):
            metrics.recall([0, 1, 2], [0, 1, 2])

    def test_mcc_replaces_invalid_by_opposite_label(self):
        targets, predictions = [1, 1, 0, 0, 1, 0], [1, INVALID, 0, INVALID, 1, 0]
        replaced = [1, 0, 0, 1, 1, 0]
        expected = 100 * sklearn.metrics.matthews_corrcoef(targets, replaced)
        self.assertAlmostEqual(metrics.mcc(targets, predictions), expected)
        # TP=2, TN=2, FP=1, FN=1: (4 - 1) / sqrt(3 * 3 * 3 * 3) = 1/3.
        self.assertAlmostEqual(expected, 100 / 3)

    def test_mcc_hand_value(self):
        # TP=1, TN=2, FP=0, FN=1: (2 - 0) / sqrt(1 * 2 * 3 * 2) = 0.5773...
        self.assertAlmostEqual(metrics.mcc([1, 0, 1, 0], [1, 0, 0, 0]), 100 * 2 / math.sqrt(12))

    def test_mcc_against_constant_predictions_is_zero(self):
        # A model that always says "acceptable" (CoLA's majority class): 0, not NaN.
        value = metrics.mcc([1, 0, 1, 1, 0], [1, 1, 1, 1, 1])
        self.assertEqual(value, 0.0)
        self.assertFalse(math.isnan(value))

    def test_mcc_all_invalid_is_minus_100(self):
        # Every invalid prediction becomes the opposite label: perfectly wrong.
        self.assertAlmostEqual(metrics.mcc([1, 0, 1, 0], [INVALID] * 4), -100.0)

    def test_macro_f1_counts_invalid_as_missed(self):
        targets, predictions = [0, 1, 2, 2], [0, 1, INVALID, 2]
        # Class 2: precision 1, recall 1/2 -> F1 2/3; classes 0 and 1: F1 1.
        self.assertAlmostEqual(metrics.macro_f1(targets, predictions), 100 * (1 + 1 + 2 / 3) / 3)
        self.assertAlmostEqual(
            metrics.macro_f1(targets, predictions),
            100 * sklearn.metrics.f1_score(targets, predictions, labels=[0, 1, 2], average="macro"),
        )

    def test_pearson_and_spearman_match_scipy(self):
        targets = [0.0, 1.2, 2.6, 3.8, 5.0]
        predictions = [0.4, 1.0, 3.0, 3.2, 4.6]
        self.assertAlmostEqual(
            metrics.pearson(targets, predictions), 100 * scipy.stats.pearsonr(targets, predictions)[0]
        )
        self.assertAlmostEqual(
            metrics.spearman(targets, predictions), 100 * scipy.stats.spearmanr(targets, predictions)[0]
        )
        self.assertAlmostEqual(metrics.pearson([0.0, 2.0, 4.0], [1.0, 2.0, 3.0]), 100.0)
        # Ranks [1, 2, 3] vs [1, 3, 2]: 1 - 6 * 2 / (3 * 8) = 0.5.
        self.assertAlmostEqual(metrics.spearman([0.0, 2.0, 4.0], [1.0, 5.0, 3.0]), 50.0)

    @parameterized.named_parameters(("pearson", "pearson"), ("spearman", "spearman"))
    def test_correlation_against_constant_vector_is_zero(self, name):
        fn = metrics.METRICS[name]
        # scipy returns NaN (with a warning) here; we define it as 0.0.
        self.assertEqual(fn([1.0, 2.0, 3.0], [2.4, 2.4, 2.4]), 0.0)
        self.assertEqual(fn([2.4, 2.4, 2.4], [1.0, 2.0, 3.0]), 0.0)
        self.assertEqual(fn([1.0], [2.0]), 0.0)

    @parameterized.named_parameters(*[(name, name) for name in metrics.METRICS])
    def test_empty_and_mismatched_input_raise(self, name):
        fn = metrics.METRICS[name]
        with self.assertRaisesRegex(ValueError, "zero examples"):
            fn([], [])
        with self.assertRaisesRegex(ValueError, "2 targets but 1 predictions"):
            fn([0, 1], [0])

    def test_replace_invalid_scores_picks_the_farthest_end(self):
        self.assertEqual(
            metrics.replace_invalid_scores([4.0, 1.0, 2.0, 3.0], [INVALID, INVALID, 3.2, math.nan], 0.0, 5.0),
            [0.0, 5.0, 3.2, 0.0],
        )


class ComputeTaskMetricsTest(parameterized.TestCase):
    def test_sst2_invalid_is_wrong_and_counted(self):
        spec = tasks.get_task("glue", "sst2")
        results = tasks.compute_task_metrics(
            spec, ["positive", "maybe", " negative ", ""], ["positive", "positive", "negative", "negative"]
        )
        # Invalid -> the opposite of gold: predictions [1, 0, 0, 1]; TP 1, FP 1, FN 1.
        self.assertEqual(results, {"accuracy": 50.0, "precision": 50.0, "recall": 50.0, "invalid_rate": 50.0})

    def test_mrpc_f1_with_invalid(self):
        spec = tasks.get_task("glue", "mrpc")
        predicted = ["equivalent", "nonsense", "equivalent", "not_equivalent"]
        gold = ["equivalent", "equivalent", "not_equivalent", "not_equivalent"]
        # nonsense -> not_equivalent (opposite of gold): predictions [1, 0, 1, 0].
        results = tasks.compute_task_metrics(spec, predicted, gold)
        self.assertAlmostEqual(results["f1"], 100 * sklearn.metrics.f1_score([1, 1, 0, 0], [1, 0, 1, 0]))
        self.assertAlmostEqual(results["accuracy"], 50.0)
        self.assertAlmostEqual(results["invalid_rate"], 25.0)
        self.assertAlmostEqual(results["precision"], 100 * sklearn.metrics.precision_score([1, 1, 0, 0], [1, 0, 1, 0]))
        self.assertAlmostEqual(results["recall"], 100 * sklearn.metrics.recall_score([1, 1, 0, 0], [1, 0, 1, 0]))
        # Extra metrics: the task score stays the mean of F1 and accuracy.
        self.assertAlmostEqual(tasks.task_score(spec, results), (results["f1"] + results["accuracy"]) / 2)

    def test_cola_mcc_with_invalid(self):
        spec = tasks.get_task("glue", "cola")
        predicted = ["acceptable", "acceptable", "unacceptable", "huh"]
        gold = ["acceptable", "unacceptable", "unacceptable", "acceptable"]
        results = tasks.compute_task_metrics(spec, predicted, gold)
        self.assertAlmostEqual(results["mcc"], 100 * sklearn.metrics.matthews_corrcoef([1, 0, 0, 1], [1, 1, 0, 0]))
        self.assertAlmostEqual(results["invalid_rate"], 25.0)

    def test_stsb_invalid_becomes_farthest_score(self):
        spec = tasks.get_task("glue", "stsb")
        predicted = ["3.8", "nonsense", "1.0", "7.0"]
        gold = ["4.0", "4.2", "0.8", "1.2"]
        # nonsense (gold 4.2) -> 0.0; 7.0 is out of range (gold 1.2) -> 5.0.
        replaced = [3.8, 0.0, 1.0, 5.0]
        gold_values = [4.0, 4.2, 0.8, 1.2]
        results = tasks.compute_task_metrics(spec, predicted, gold)
        self.assertAlmostEqual(results["pearson"], 100 * scipy.stats.pearsonr(gold_values, replaced)[0])
        self.assertAlmostEqual(results["spearman"], 100 * scipy.stats.spearmanr(gold_values, replaced)[0])
        self.assertAlmostEqual(results["invalid_rate"], 50.0)

    def test_stsb_constant_predictions_score_zero(self):
        spec = tasks.get_task("glue", "stsb")
        results = tasks.compute_task_metrics(spec, ["2.4"] * 3, ["1.0", "2.0", "3.0"])
        self.assertEqual(results["pearson"], 0.0)
        self.assertEqual(results["spearman"], 0.0)

    def test_mnli_three_classes(self):
        spec = tasks.get_task("glue", "mnli")
        results = tasks.compute_task_metrics(
            spec, ["entailment", "neutral", "entailment"], ["entailment", "contradiction", "entailment"]
        )
        self.assertAlmostEqual(results["accuracy"], 200 / 3)
        self.assertEqual(results["invalid_rate"], 0.0)

    def test_ax_has_no_metrics_but_reports_invalid_rate(self):
        spec = tasks.get_task("glue", "ax")
        results = tasks.compute_task_metrics(spec, ["neutral", "x"], ["", ""])
        self.assertEqual(results, {"invalid_rate": 50.0})

    def test_invalid_target_raises(self):
        spec = tasks.get_task("glue", "sst2")
        with self.assertRaisesRegex(ValueError, "target 1 'meh'"):
            tasks.compute_task_metrics(spec, ["positive", "positive"], ["positive", "meh"])

    def test_length_mismatch_and_empty_raise(self):
        spec = tasks.get_task("glue", "sst2")
        with self.assertRaises(ValueError):
            tasks.compute_task_metrics(spec, ["positive"], [])
        with self.assertRaises(ValueError):
            tasks.compute_task_metrics(spec, [], [])

    def test_custom_task_exact_match(self):
        spec = tasks.custom_task()
        results = tasks.compute_task_metrics(spec, ["Hello", "Hi "], ["Hello", "Hi"])
        self.assertEqual(results, {"accuracy": 50.0, "invalid_rate": 0.0})

    @parameterized.named_parameters(*[(name, name) for name in sorted(constants.DATASET_VALS["glue"])])
    def test_perfect_predictions_score_100(self, name):
        spec = tasks.get_task("glue", name)
        if not spec.metrics:
            self.skipTest(f"{name} has no metrics")
        texts = tasks.target_candidates(spec)
        results = tasks.compute_task_metrics(spec, texts, texts)
        for metric in spec.metrics:
            self.assertAlmostEqual(results[metric], 100.0, msg=metric)
        self.assertEqual(results["invalid_rate"], 0.0)
        self.assertTrue(all(np.isfinite(v) for v in results.values()))

    def test_binary_tasks_report_precision_and_recall(self):
        binary = {"glue": {"cola", "sst2", "mrpc", "qqp", "qnli", "rte", "wnli"},
                  "superglue": {"boolq", "copa", "multirc", "rte", "wic", "wsc"}}  # fmt: skip
        for benchmark, table in constants.DATASET_VALS.items():
            for name, spec in table.items():
                expected = (*spec.metrics, "precision", "recall") if name in binary.get(benchmark, ()) else spec.metrics
                self.assertEqual(tasks.reported_metrics(spec), expected, spec.full_name)
                # They are reported only: no record lists them, so scores, sweeps and result tables keep theirs.
                self.assertNotIn("precision", spec.metrics)
                self.assertNotIn("recall", spec.metrics)

    @parameterized.named_parameters(("cola", "glue", "cola"), ("qnli", "glue", "qnli"), ("boolq", "superglue", "boolq"))
    def test_precision_and_recall_are_of_label_1(self, benchmark, name):
        spec = tasks.get_task(benchmark, name)
        negative, positive = spec.label_words
        # targets [1, 1, 0, 0]; predictions [1, invalid -> 0, 1, 1]: TP 1, FP 2, FN 1.
        results = tasks.compute_task_metrics(
            spec, [positive, "??", positive, positive], [positive, positive, negative, negative]
        )
        self.assertAlmostEqual(results["precision"], 100 / 3)
        self.assertAlmostEqual(results["recall"], 50.0)
        self.assertEqual(set(results), {*spec.metrics, "precision", "recall", "invalid_rate"})
        self.assertAlmostEqual(
            tasks.task_score(spec, results), sum(results[m] for m in spec.metrics) / len(spec.metrics)
        )

    def test_multiclass_regression_and_free_text_tasks_report_no_precision(self):
        for benchmark, name, predicted, gold in [
            ("glue", "mnli", ["neutral"], ["neutral"]),
            ("superglue", "cb", ["neutral"], ["neutral"]),
            ("glue", "stsb", ["1.0", "2.0"], ["1.0", "2.2"]),
            ("qa", "squad", ["Paris"], ["Paris"]),
        ]:
            results = tasks.compute_task_metrics(tasks.get_task(benchmark, name), predicted, gold)
            self.assertNotIn("precision", results, name)
            self.assertNotIn("recall", results, name)

    def test_results_table_keeps_the_task_metrics(self):
        spec = tasks.get_task("glue", "mrpc")
        results = tasks.compute_task_metrics(spec, ["equivalent", "nonsense"], ["equivalent", "not_equivalent"])
        table = outputs.results_table(spec, {"validation": results})
        self.assertIn("| glue/mrpc split | f1 | accuracy | invalid_rate |", table)
        self.assertNotIn("precision", table)

    def test_a_record_may_name_precision_and_recall_as_its_metrics(self):
        spec = dataclasses.replace(
            tasks.get_task("glue", "sst2"), metrics=("recall", "accuracy"), metric_to_optimize="recall"
        )
        self.assertEqual(tasks.reported_metrics(spec), ("recall", "accuracy", "precision"))
        results = tasks.compute_task_metrics(spec, ["positive", "negative"], ["positive", "positive"])
        self.assertEqual(results, {"recall": 50.0, "accuracy": 50.0, "precision": 100.0, "invalid_rate": 0.0})
        self.assertEqual(tasks.task_score(spec, results), 50.0)
        with self.assertRaisesRegex(ValueError, "metric 'precision' needs exactly two label words"):
            dataclasses.replace(tasks.get_task("glue", "mnli"), metrics=("precision",), metric_to_optimize="precision")


class TextMetricTest(parameterized.TestCase):
    """ROUGE against rouge-score, BLEU/chrF against sacrebleu, SQuAD EM/F1 on hand-checkable strings."""

    def test_squad_normalisation(self):
        self.assertEqual(metrics.normalize_answer("The  Eiffel-Tower!"), "eiffeltower")
        self.assertEqual(metrics.normalize_answer("An apple, a pear and THE plum."), "apple pear and plum")

    def test_squad_em_takes_the_best_gold_answer(self):
        # "Dog." normalises to "dog", which equals the second gold answer "a dog".
        self.assertEqual(metrics.squad_em([["the cat", "a dog"]], ["Dog."]), 100.0)
        self.assertEqual(metrics.squad_em([["the cat", "a dog"], ["Paris"]], ["dog", "in Paris"]), 50.0)

    def test_squad_f1_hand_values(self):
        # "the red car" -> [red, car]; gold [big, red, car]: precision 2/2, recall 2/3 -> F1 0.8.
        self.assertAlmostEqual(metrics.squad_f1([["big red car"]], ["the red car"]), 80.0)
        # Max over golds: vs "red car" F1 1.0.
        self.assertAlmostEqual(metrics.squad_f1([["big red car", "red car"]], ["the red car"]), 100.0)
        # Repeated tokens count once per occurrence: pred [a, a, b] vs gold [a, b]: overlap 2,
        # precision 2/3, recall 1 -> 0.8 (articles are removed only as words "a"/"an"/"the").
        self.assertAlmostEqual(metrics.squad_f1([["x y"]], ["x x y"]), 80.0)
        self.assertEqual(metrics.squad_f1([["yes"]], ["no"]), 0.0)
        # Answers that normalise to nothing: F1 1 between two of them (never below EM), else 0.
        self.assertEqual(metrics.squad_em([["The"]], ["the ."]), 100.0)
        self.assertEqual(metrics.squad_f1([["The"]], ["the ."]), 100.0)
        self.assertEqual(metrics.squad_f1([["The"]], ["cat"]), 0.0)

    def test_rouge_matches_rouge_score_with_stemming(self):
        references = [["the cats are running home"], ["a storm hit the coast", "storm hits coast"]]
        predictions = ["a cat runs home", "storm hit coast"]
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        for kind in ("rouge1", "rouge2", "rougeL"):
            expected = np.mean(
                [scorer.score_multi(golds, pred)[kind].fmeasure for golds, pred in zip(references, predictions)]
            )
            self.assertAlmostEqual(metrics.METRICS[kind](references, predictions), 100 * expected, msg=kind)
        # Hand check of rouge1 on the first pair: stemmed [the, cat, are, run, home] vs
        # [a, cat, run, home]: overlap 3, precision 3/4, recall 3/5 -> F 2/3 (1/4.5 unstemmed).
        self.assertAlmostEqual(metrics.METRICS["rouge1"]([references[0]], predictions[:1]), 200 / 3)

    def test_rouge_lsum_scores_sentence_by_sentence(self):
        gold, prediction = "It rained. We left early.", "We left early. It rained."
        # Whole-text LCS misses the swapped sentences; per-sentence union LCS does not.
        self.assertLess(metrics.METRICS["rougeL"]([[gold]], [prediction]), 100.0)
        self.assertAlmostEqual(metrics.METRICS["rougeLsum"]([[gold]], [prediction]), 100.0)
        scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
        expected = scorer.score(metrics.split_sentences(gold), metrics.split_sentences(prediction))
        self.assertAlmostEqual(
            metrics.METRICS["rougeLsum"]([[gold]], [prediction]), 100 * expected["rougeLsum"].fmeasure
        )

    def test_split_sentences(self):
        self.assertEqual(metrics.split_sentences("Storm hits.\nNo one hurt.\n"), "Storm hits.\nNo one hurt.")
        if not metrics.punkt_available():  # the documented fallback
            self.assertEqual(metrics.split_sentences("It rained. We left!  Why? ok"), "It rained.\nWe left!\nWhy?\nok")

    def test_bleu_and_chrf_match_sacrebleu(self):
        predictions = ["the cat sat on the mat", "there is a dog in the garden"]
        references = [["the cat sat on a mat"], ["a dog is in the garden"]]
        streams = [[golds[0] for golds in references]]
        self.assertAlmostEqual(metrics.bleu(references, predictions), sacrebleu.corpus_bleu(predictions, streams).score)
        self.assertAlmostEqual(metrics.chrf(references, predictions), sacrebleu.corpus_chrf(predictions, streams).score)
        self.assertAlmostEqual(metrics.bleu([["a b c d"]], ["a b c d"]), 100.0)

    def test_ragged_references_repeat_their_first_text(self):
        predictions = ["the cat sat on the mat", "a dog"]
        references = [["the cat sat on a mat", "a cat sat on the mat"], ["a dog"]]
        streams = [["the cat sat on a mat", "a dog"], ["a cat sat on the mat", "a dog"]]
        self.assertAlmostEqual(metrics.bleu(references, predictions), sacrebleu.corpus_bleu(predictions, streams).score)

    @parameterized.named_parameters(*[(name, name) for name in sorted(metrics.TEXT_METRICS)])
    def test_text_metric_needs_reference_lists(self, name):
        with self.assertRaisesRegex(ValueError, "non-empty list"):
            metrics.METRICS[name](["a string, not a list"], ["a"])
        with self.assertRaisesRegex(ValueError, "non-empty list"):
            metrics.METRICS[name]([[]], ["a"])


class SuperGlueMetricTest(absltest.TestCase):
    def test_multirc_f1a_and_question_em(self):
        spec = tasks.get_task("superglue", "multirc")
        # Question q1 has three options, q2 two; q1 is all right, q2 has one wrong (invalid) answer.
        gold = ["True", "False", "True", "True", "False"]
        predicted = ["True", "False", "True", "maybe", "False"]
        groups = ["1", "1", "1", "2", "2"]
        results = tasks.compute_task_metrics(spec, predicted, gold, groups=groups)
        # F1a over all answer options: invalid -> opposite of gold (False): TP 2, FN 1, FP 0 -> 0.8.
        self.assertAlmostEqual(results["f1a"], 80.0)
        self.assertAlmostEqual(results["f1a"], 100 * sklearn.metrics.f1_score([1, 0, 1, 1, 0], [1, 0, 1, 0, 0]))
        self.assertAlmostEqual(results["group_em"], 50.0)
        self.assertAlmostEqual(results["invalid_rate"], 20.0)

    def test_group_em_needs_groups(self):
        spec = tasks.get_task("superglue", "multirc")
        with self.assertRaisesRegex(ValueError, "needs groups"):
            tasks.compute_task_metrics(spec, ["True"], ["True"])
        self.assertAlmostEqual(metrics.group_em([1, 0, 1, 1], [1, 0, 0, 1], ["a", "a", "b", "b"]), 50.0)

    def test_record_takes_the_best_of_several_answers(self):
        spec = tasks.get_task("superglue", "record")
        references = [["Barack Obama", "Obama"], ["Paris"], ["New York City"]]
        predicted = ["obama", "London", "New York"]
        results = tasks.compute_task_metrics(spec, predicted, [r[0] for r in references], references=references)
        # EM: 1 + 0 + 0; F1: 1 + 0 + (P 1, R 2/3 -> 0.8).
        self.assertAlmostEqual(results["squad_em"], 100 / 3)
        self.assertAlmostEqual(results["squad_f1"], 100 * 1.8 / 3)
        self.assertEqual(results["invalid_rate"], 0.0)

    def test_cb_macro_f1_and_accuracy(self):
        spec = tasks.get_task("superglue", "cb")
        gold = ["entailment", "contradiction", "neutral", "neutral"]
        predicted = ["entailment", "contradiction", "entailment", "neutral"]
        results = tasks.compute_task_metrics(spec, predicted, gold)
        self.assertAlmostEqual(results["accuracy"], 75.0)
        self.assertAlmostEqual(
            results["macro_f1"], 100 * sklearn.metrics.f1_score([0, 1, 2, 2], [0, 1, 0, 2], average="macro")
        )

    def test_summarization_and_translation_records(self):
        summary = tasks.get_task("summarization", "xsum")
        results = tasks.compute_task_metrics(summary, ["a cat runs home"], ["the cats are running home"])
        self.assertEqual(set(results), {"rouge1", "rouge2", "rougeL", "rougeLsum", "invalid_rate"})
        self.assertAlmostEqual(results["rouge1"], 200 / 3)
        translation = tasks.get_task("translation", "wmt16_en_ro")
        results = tasks.compute_task_metrics(translation, ["Este foarte bine azi ."], ["Este foarte bine azi ."])
        self.assertEqual(set(results), {"bleu", "chrf", "invalid_rate"})
        self.assertAlmostEqual(results["bleu"], 100.0)
        self.assertAlmostEqual(results["chrf"], 100.0)

    def test_perfect_superglue_predictions_score_100(self):
        for name, spec in constants.DATASET_VALS["superglue"].items():
            if not spec.metrics:
                continue
            texts = tasks.target_candidates(spec) or ["penguin", "pigeon"]
            groups = [str(i) for i in range(len(texts))]
            results = tasks.compute_task_metrics(spec, texts, texts, groups=groups)
            for metric in spec.metrics:
                self.assertAlmostEqual(results[metric], 100.0, msg=f"{name} {metric}")


if __name__ == "__main__":
    absltest.main()
