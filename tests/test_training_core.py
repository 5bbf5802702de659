"""Shortcuts in the shared training core (t5kit.training, t5kit.loss) give exactly what the Trainer computes the slow
way, and gradient accumulation is equivalent to a larger batch."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import datasets
import torch
from absl.testing import absltest, parameterized
from transformers import Seq2SeqTrainer, T5Config, T5ForConditionalGeneration

import pre_train_t5
from t5kit import fault_tolerance
from t5kit import loss as loss_module
from t5kit.corpus import column_sum
from t5kit.loss import token_cross_entropy
from t5kit.training import T5Trainer, column_lengths
from tests.helpers import REPO, corpus_slice


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

    @parameterized.named_parameters(
        ("plain", lambda ds: ds),
        ("shuffled_and_selected", lambda ds: ds.shuffle(seed=3).select(range(5, 45))),
        ("filtered", lambda ds: ds.filter(lambda row: len(row["input_ids"]) % 2 == 0)),
        ("empty", lambda ds: ds.select([])),
    )
    def test_column_sum_matches_row_by_row(self, view):
        flags = ragged_dataset().map(lambda row: {"n": len(row["input_ids"]), "cut": len(row["input_ids"]) > 9})
        dataset = view(flags)
        self.assertEqual(column_sum(dataset, "n"), sum(row["n"] for row in dataset))
        self.assertEqual(column_sum(dataset, "cut"), sum(row["cut"] for row in dataset))

    def test_other_datasets(self):
        self.assertIsNone(column_lengths([{"input_ids": [1, 2]}]))
        self.assertIsNone(column_lengths(datasets.Dataset.from_dict({"text": ["a"]})))

    def test_same_batches_as_the_trainers_lengths(self):
        dataset = ragged_dataset().shuffle(seed=1)
        fast = fault_tolerance.EpochSeededLengthGroupedSampler(8, column_lengths(dataset), seed=5)
        slow = fault_tolerance.EpochSeededLengthGroupedSampler(8, [len(row["input_ids"]) for row in dataset], seed=5)
        for epoch in (0, 1):
            fast.set_epoch(epoch)
            slow.set_epoch(epoch)
            self.assertEqual(list(fast), list(slow))


class FloatingPointOpsTest(absltest.TestCase):
    def test_equals_the_trainers_count_and_counts_once(self):
        config = T5Config(
            vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2, decoder_start_token_id=0
        )
        model = T5ForConditionalGeneration(config)
        inputs = {"input_ids": torch.ones(3, 11, dtype=torch.long), "labels": torch.ones(3, 4, dtype=torch.long)}
        trainer = types.SimpleNamespace(model=model, _flop_parameters=None)
        expected = Seq2SeqTrainer.floating_point_ops(trainer, inputs)
        self.assertEqual(expected, 6 * 33 * model.num_parameters(exclude_embeddings=True))
        with mock.patch.object(model, "num_parameters", wraps=model.num_parameters) as count:
            self.assertEqual(T5Trainer.floating_point_ops(trainer, inputs), expected)
            self.assertEqual(T5Trainer.floating_point_ops(trainer, inputs), expected)
        self.assertEqual(count.call_count, 1)  # cached: the model is walked once, not at every step


class TokenCrossEntropyTest(parameterized.TestCase):
    def logits_and_labels(self, dtype):
        gen = torch.Generator().manual_seed(0)
        logits = (3 * torch.randn(2, 13, 50, generator=gen)).to(dtype).requires_grad_()
        labels = torch.randint(0, 50, (2, 13), generator=gen)
        labels[0, 9:] = -100  # padding of a shorter target
        labels[1, 0] = -100
        return logits, labels

    @parameterized.product(
        dtype=[torch.float32, torch.bfloat16],
        chunk=[7 * 50, 1 << 20],  # 4 chunks, or 1
        scale=[1.0, 2.5],  # loss.backward() itself (the stored gradient is returned), or a scaled loss
    )
    def test_equals_torch_cross_entropy(self, dtype, chunk, scale):
        logits, labels = self.logits_and_labels(dtype)
        with mock.patch.dict(loss_module.CHUNK_ELEMENTS, {"cpu": chunk}):
            loss = token_cross_entropy(logits, labels)
            (grad,) = torch.autograd.grad(scale * loss, logits)
        reference = logits.detach().float().requires_grad_()
        want = torch.nn.functional.cross_entropy(reference.reshape(-1, 50), labels.reshape(-1))
        (want_grad,) = torch.autograd.grad(scale * want, reference)
        self.assertAlmostEqual(loss.item(), want.item(), delta=1e-5)
        self.assertEqual(grad.dtype, dtype)
        self.assertEqual(grad[0, 9:].abs().max().item(), 0.0)  # ignored positions get no gradient
        # fp32: rounding only. bf16: up to two roundings to bf16 (storing the gradient; scaling it when the upstream
        # gradient is 2.5, not 1), each up to 2^-8 relative.
        tolerance = dict(atol=1e-7, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-6, rtol=2 * 2**-8)
        torch.testing.assert_close(grad.float(), want_grad, **tolerance)

    def test_divides_by_the_given_token_count(self):
        logits, labels = self.logits_and_labels(torch.float32)
        total = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), labels.reshape(-1), reduction="sum")
        self.assertAlmostEqual(token_cross_entropy(logits, labels, 40).item(), total.item() / 40, places=5)
        as_tensor = token_cross_entropy(logits, labels, torch.tensor(40))
        self.assertAlmostEqual(as_tensor.item(), total.item() / 40, places=5)

    def test_no_gradient_kept_in_eval(self):
        logits, labels = self.logits_and_labels(torch.float32)
        with torch.no_grad():
            loss = token_cross_entropy(logits, labels)
        self.assertIsNone(loss.grad_fn)


class ComputeLossTest(parameterized.TestCase):
    @parameterized.parameters(False, True)
    def test_sum_over_the_accumulated_token_count(self, compiled):
        """Both paths of T5Trainer.compute_loss (ours in eager mode; the model's own loss, rescaled, under
        --torch_compile) give sum of token losses / num_items_in_batch, and the plain mean without it."""
        torch.manual_seed(0)
        config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2, dropout_rate=0.0,
                          decoder_start_token_id=0)  # fmt: skip
        model = T5ForConditionalGeneration(config)
        labels = torch.randint(2, 64, (3, 5))
        labels[0, 3:] = -100
        inputs = {"input_ids": torch.randint(2, 64, (3, 7)), "labels": labels}
        logits = model(**inputs).logits
        total = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), labels.reshape(-1), reduction="sum")
        trainer = types.SimpleNamespace(
            model=model, label_smoother=None, compute_loss_func=None,
            args=types.SimpleNamespace(torch_compile=compiled, average_tokens_across_devices=False),
        )  # fmt: skip
        accumulated = T5Trainer.compute_loss(trainer, model, dict(inputs), num_items_in_batch=torch.tensor(26))
        self.assertAlmostEqual(accumulated.item(), total.item() / 26, places=5)
        loss, outputs = T5Trainer.compute_loss(trainer, model, dict(inputs), return_outputs=True)
        self.assertAlmostEqual(loss.item(), total.item() / 13, places=5)
        self.assertIs(outputs["loss"], loss)
        loss.backward()
        self.assertGreater(model.shared.weight.grad.abs().sum().item(), 0)


class GradientAccumulationTest(absltest.TestCase):
    def test_accumulated_micro_batches_equal_one_batch(self):
        """2 micro-batches of 4 give the per-step losses and gradient norms of 1 batch of 8 (same examples, same
        span masks). T5's own per-micro-batch mean loss would double both."""
        tmp = Path(self.create_tempdir().full_path)
        corpus = corpus_slice(tmp, lines=2000)
        argv = [
            "--train_files", str(corpus), "--vocab_size", "600", "--model_config", "tiny", "--input_length", "64",
            "--report_to", "none", "--max_steps", "3", "--logging_steps", "1", "--seed", "1", "--bf16", "False",
            "--learning_rate", "1e-3", "--save_strategy", "no", "--validation_split_percentage", "0",
        ]  # fmt: skip
        pre_train_t5.main([*argv, "--per_device_train_batch_size", "8", "--output_dir", str(tmp / "one")])
        pre_train_t5.main([*argv, "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
                           "--output_dir", str(tmp / "two")])  # fmt: skip

        def trace(run):
            state = json.loads((tmp / run / "trainer_state.json").read_text())
            return [(row["loss"], row["grad_norm"]) for row in state["log_history"] if "loss" in row]

        one, two = trace("one"), trace("two")
        self.assertLen(one, 3)
        self.assertLen(two, 3)
        for (loss, norm), (loss2, norm2) in zip(one, two):
            self.assertAlmostEqual(loss2, loss, delta=1e-4)
            self.assertAlmostEqual(norm2, norm, delta=1e-3 * norm)


if __name__ == "__main__":
    absltest.main()


# A process of a distributed run (a 1-process gloo group here) through run_main: the main() given as argv[1].
EXIT_SCRIPT = """
import atexit, sys, tempfile
import torch.distributed as dist
from t5kit.args import UsageError
from t5kit.training import run_main

dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
atexit.register(lambda: print("teardown ran", flush=True))

def clean(argv):
    print("trained", end="")  # unflushed: exit_distributed must flush it

def mistake(argv):
    raise UsageError("--flag: bad value")

run_main({"clean": clean, "mistake": mistake}[sys.argv[1]])
print("after run_main")
"""


class ExitDistributedTest(parameterized.TestCase):
    """A distributed process ends with its run's status and output, without the interpreter teardown that sometimes
    aborted a finished 2-process gloo run (t5kit.training.exit_distributed)."""

    @parameterized.named_parameters(("clean", "clean", 0, "trained"), ("usage_error", "mistake", 2, "error: --flag"))
    def test_status_and_output_without_teardown(self, which, code, expected):
        proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, which], cwd=REPO, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        self.assertEqual(proc.returncode, code, proc.stderr[-2000:])
        self.assertIn(expected, proc.stdout + proc.stderr)
        self.assertNotIn("teardown ran", proc.stdout)  # os._exit: no atexit handler, no destructor
        self.assertNotIn("after run_main", proc.stdout)
