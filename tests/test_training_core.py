"""Shortcuts in the shared training core (t5kit.training) give exactly what the Trainer computes the slow way."""

from __future__ import annotations

import types
from unittest import mock

import datasets
import torch
from absl.testing import absltest, parameterized
from transformers import Seq2SeqTrainer, T5Config, T5ForConditionalGeneration

from t5kit import fault_tolerance as ft
from t5kit.training import T5Trainer, column_lengths


def ragged_dataset() -> datasets.Dataset:
    rows = [[7] * (1 + (i * 37) % 23) for i in range(60)]
    return datasets.Dataset.from_dict({"input_ids": rows, "labels": [[1]] * 60})


class ColumnLengthsTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("plain", lambda ds: ds),
        ("shuffled_and_selected", lambda ds: ds.shuffle(seed=3).select(range(5, 45))),
        ("filtered", lambda ds: ds.filter(lambda row: len(row["input_ids"]) % 2 == 0)),
    )
    def test_matches_row_by_row(self, view):
        dataset = view(ragged_dataset())
        expected = [len(row["input_ids"]) for row in dataset]  # what the Trainer's LengthGroupedSampler reads
        self.assertEqual(column_lengths(dataset), expected)
        self.assertGreater(len(set(expected)), 5)

    def test_length_column_wins(self):
        dataset = ragged_dataset().map(lambda row: {"length": 100 + len(row["input_ids"])})
        self.assertEqual(column_lengths(dataset), [100 + len(row["input_ids"]) for row in dataset])

    def test_other_datasets(self):
        self.assertIsNone(column_lengths([{"input_ids": [1, 2]}]))
        self.assertIsNone(column_lengths(datasets.Dataset.from_dict({"text": ["a"]})))

    def test_same_batches_as_the_trainers_lengths(self):
        dataset = ragged_dataset().shuffle(seed=1)
        fast = ft.EpochSeededLengthGroupedSampler(8, column_lengths(dataset), seed=5)
        slow = ft.EpochSeededLengthGroupedSampler(8, [len(row["input_ids"]) for row in dataset], seed=5)
        for epoch in (0, 1):
            fast.set_epoch(epoch)
            slow.set_epoch(epoch)
            self.assertEqual(list(fast), list(slow))


class FloatingPointOpsTest(absltest.TestCase):
    def test_equals_the_trainers_count_and_counts_once(self):
        config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2, decoder_start_token_id=0)
        model = T5ForConditionalGeneration(config)
        inputs = {"input_ids": torch.ones(3, 11, dtype=torch.long), "labels": torch.ones(3, 4, dtype=torch.long)}
        trainer = types.SimpleNamespace(model=model, _flop_parameters=None)
        expected = Seq2SeqTrainer.floating_point_ops(trainer, inputs)
        self.assertEqual(expected, 6 * 33 * model.num_parameters(exclude_embeddings=True))
        with mock.patch.object(model, "num_parameters", wraps=model.num_parameters) as count:
            self.assertEqual(T5Trainer.floating_point_ops(trainer, inputs), expected)
            self.assertEqual(T5Trainer.floating_point_ops(trainer, inputs), expected)
        self.assertEqual(count.call_count, 1)  # cached: the model is walked once, not at every step


if __name__ == "__main__":
    absltest.main()
