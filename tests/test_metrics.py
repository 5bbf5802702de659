"""Tests for metrics.py and constants.compute_task_metrics: hand-checkable
predictions, compared with scikit-learn / scipy called directly."""

import math

import numpy as np
import scipy.stats
import sklearn.metrics
from absl.testing import absltest, parameterized

import constants
import metrics
from metrics import INVALID


class MetricFunctionTest(parameterized.TestCase):

    def test_accuracy_counts_invalid_as_wrong(self):
        targets, predictions = [1, 0, 1, 1], [1, INVALID, 0, 1]
        self.assertAlmostEqual(metrics.accuracy(targets, predictions), 50.0)
        self.assertAlmostEqual(metrics.accuracy(targets, predictions),
                               100 * sklearn.metrics.accuracy_score(targets, predictions))

    def test_f1_differs_from_accuracy(self):
        # TP=1, FP=1, FN=0: precision 1/2, recall 1 -> F1 2/3; accuracy 3/4.
        targets, predictions = [1, 0, 0, 0], [1, 1, 0, 0]
        self.assertAlmostEqual(metrics.f1(targets, predictions), 200 / 3)
        self.assertAlmostEqual(metrics.accuracy(targets, predictions), 75.0)
        self.assertAlmostEqual(metrics.f1(targets, predictions),
                               100 * sklearn.metrics.f1_score(targets, predictions))

    def test_f1_replaces_invalid_by_opposite_label(self):
        # T5 f1_score_with_invalid: INVALID -> 1 - target, so [1, 0, 1, 0, 0].
        targets, predictions = [1, 1, 0, 0, 1], [1, INVALID, INVALID, 0, 0]
        replaced = [1, 0, 1, 0, 0]
        # TP=1, FP=1, FN=2: precision 1/2, recall 1/3 -> F1 = 0.4.
        self.assertAlmostEqual(metrics.f1(targets, predictions), 40.0)
        self.assertAlmostEqual(metrics.f1(targets, predictions),
                               100 * sklearn.metrics.f1_score(targets, replaced))

    def test_f1_rejects_multiclass(self):
        with self.assertRaisesRegex(ValueError, "binary"):
            metrics.f1([0, 1, 2], [0, 1, 2])

    def test_mcc_replaces_invalid_by_opposite_label(self):
        targets, predictions = [1, 1, 0, 0, 1, 0], [1, INVALID, 0, INVALID, 1, 0]
        replaced = [1, 0, 0, 1, 1, 0]
        expected = 100 * sklearn.metrics.matthews_corrcoef(targets, replaced)
        self.assertAlmostEqual(metrics.mcc(targets, predictions), expected)
        # TP=2, TN=2, FP=1, FN=1: (4 - 1) / sqrt(3 * 3 * 3 * 3) = 1/3.
        self.assertAlmostEqual(expected, 100 / 3)

    def test_mcc_hand_value(self):
        # TP=1, TN=2, FP=0, FN=1: (2 - 0) / sqrt(1 * 2 * 3 * 2) = 0.5773...
        self.assertAlmostEqual(metrics.mcc([1, 0, 1, 0], [1, 0, 0, 0]),
                               100 * 2 / math.sqrt(12))

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
            100 * sklearn.metrics.f1_score(targets, predictions, labels=[0, 1, 2],
                                           average="macro"))

    def test_pearson_and_spearman_match_scipy(self):
        targets = [0.0, 1.2, 2.6, 3.8, 5.0]
        predictions = [0.4, 1.0, 3.0, 3.2, 4.6]
        self.assertAlmostEqual(metrics.pearson(targets, predictions),
                               100 * scipy.stats.pearsonr(targets, predictions)[0])
        self.assertAlmostEqual(metrics.spearman(targets, predictions),
                               100 * scipy.stats.spearmanr(targets, predictions)[0])
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
            metrics.replace_invalid_scores([4.0, 1.0, 2.0, 3.0], [INVALID, INVALID, 3.2, math.nan],
                                           0.0, 5.0),
            [0.0, 5.0, 3.2, 0.0])


class ComputeTaskMetricsTest(parameterized.TestCase):

    def test_sst2_invalid_is_wrong_and_counted(self):
        spec = constants.get_task("glue", "sst2")
        results = constants.compute_task_metrics(
            spec, ["positive", "maybe", " negative ", ""],
            ["positive", "positive", "negative", "negative"])
        self.assertEqual(results, {"accuracy": 50.0, "invalid_rate": 50.0})

    def test_mrpc_f1_with_invalid(self):
        spec = constants.get_task("glue", "mrpc")
        predicted = ["equivalent", "nonsense", "equivalent", "not_equivalent"]
        gold = ["equivalent", "equivalent", "not_equivalent", "not_equivalent"]
        # nonsense -> not_equivalent (opposite of gold): predictions [1, 0, 1, 0].
        results = constants.compute_task_metrics(spec, predicted, gold)
        self.assertAlmostEqual(results["f1"],
                               100 * sklearn.metrics.f1_score([1, 1, 0, 0], [1, 0, 1, 0]))
        self.assertAlmostEqual(results["accuracy"], 50.0)
        self.assertAlmostEqual(results["invalid_rate"], 25.0)

    def test_cola_mcc_with_invalid(self):
        spec = constants.get_task("glue", "cola")
        predicted = ["acceptable", "acceptable", "unacceptable", "huh"]
        gold = ["acceptable", "unacceptable", "unacceptable", "acceptable"]
        results = constants.compute_task_metrics(spec, predicted, gold)
        self.assertAlmostEqual(results["mcc"],
                               100 * sklearn.metrics.matthews_corrcoef([1, 0, 0, 1], [1, 1, 0, 0]))
        self.assertAlmostEqual(results["invalid_rate"], 25.0)

    def test_stsb_invalid_becomes_farthest_score(self):
        spec = constants.get_task("glue", "stsb")
        predicted = ["3.8", "nonsense", "1.0", "7.0"]
        gold = ["4.0", "4.2", "0.8", "1.2"]
        # nonsense (gold 4.2) -> 0.0; 7.0 is out of range (gold 1.2) -> 5.0.
        replaced = [3.8, 0.0, 1.0, 5.0]
        gold_values = [4.0, 4.2, 0.8, 1.2]
        results = constants.compute_task_metrics(spec, predicted, gold)
        self.assertAlmostEqual(results["pearson"],
                               100 * scipy.stats.pearsonr(gold_values, replaced)[0])
        self.assertAlmostEqual(results["spearman"],
                               100 * scipy.stats.spearmanr(gold_values, replaced)[0])
        self.assertAlmostEqual(results["invalid_rate"], 50.0)

    def test_stsb_constant_predictions_score_zero(self):
        spec = constants.get_task("glue", "stsb")
        results = constants.compute_task_metrics(spec, ["2.4"] * 3, ["1.0", "2.0", "3.0"])
        self.assertEqual(results["pearson"], 0.0)
        self.assertEqual(results["spearman"], 0.0)

    def test_mnli_three_classes(self):
        spec = constants.get_task("glue", "mnli")
        results = constants.compute_task_metrics(
            spec, ["entailment", "neutral", "entailment"],
            ["entailment", "contradiction", "entailment"])
        self.assertAlmostEqual(results["accuracy"], 200 / 3)
        self.assertEqual(results["invalid_rate"], 0.0)

    def test_ax_has_no_metrics_but_reports_invalid_rate(self):
        spec = constants.get_task("glue", "ax")
        results = constants.compute_task_metrics(spec, ["neutral", "x"], ["", ""])
        self.assertEqual(results, {"invalid_rate": 50.0})

    def test_invalid_target_raises(self):
        spec = constants.get_task("glue", "sst2")
        with self.assertRaisesRegex(ValueError, "target 1 'meh'"):
            constants.compute_task_metrics(spec, ["positive", "positive"], ["positive", "meh"])

    def test_length_mismatch_and_empty_raise(self):
        spec = constants.get_task("glue", "sst2")
        with self.assertRaises(ValueError):
            constants.compute_task_metrics(spec, ["positive"], [])
        with self.assertRaises(ValueError):
            constants.compute_task_metrics(spec, [], [])

    def test_custom_task_exact_match(self):
        spec = constants.custom_task()
        results = constants.compute_task_metrics(spec, ["Hello", "Hi "], ["Hello", "Hi"])
        self.assertEqual(results, {"accuracy": 50.0, "invalid_rate": 0.0})

    @parameterized.named_parameters(
        *[(name, name) for name in sorted(constants.DATASET_VALS["glue"])])
    def test_perfect_predictions_score_100(self, name):
        spec = constants.get_task("glue", name)
        if not spec.metrics:
            self.skipTest(f"{name} has no metrics")
        texts = constants.target_candidates(spec)
        results = constants.compute_task_metrics(spec, texts, texts)
        for metric in spec.metrics:
            self.assertAlmostEqual(results[metric], 100.0, msg=metric)
        self.assertEqual(results["invalid_rate"], 0.0)
        self.assertTrue(all(np.isfinite(v) for v in results.values()))


if __name__ == "__main__":
    absltest.main()
