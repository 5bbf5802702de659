"""Pre-training objectives beyond span corruption (data_collators.DenoisingCollator, pre_train_t5.py --objective):
UL2's mixture of denoisers and the prefix LM, their lengths, statistics, determinism, tokens and end-to-end runs."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import types
from pathlib import Path

import numpy as np
import torch
import transformers
from absl.testing import absltest, parameterized
from transformers import AutoTokenizer, ByT5Tokenizer

import data_collators as dc
import fine_tune_t5
import pre_train_t5
from t5kit.args import UsageError
from t5kit.corpus import PretrainDataArguments
from t5kit.tokenizer import TOKENIZER_SUBDIR, add_special_tokens, resolve_tokenizer, train_tokenizer
from tests.helpers import ModuleScratch, corpus_slice, run_script_here

SCRATCH = ModuleScratch("test_objectives_")
setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down

# ByT5: pad 0, EOS 1, unk 2, bytes 3..258, sentinels from 259 (<extra_id_0> = 259, counting up); the mode tokens are
# added after its last id (384): [NLU] 384, [NLG] 385, [S2S] 386.
TOKENIZER = ByT5Tokenizer()
add_special_tokens(TOKENIZER, dc.objective_special_tokens(dc.UL2))
PAD, EOS = 0, 1
NLU, NLG, S2S = 384, 385, 386
MODE_OF_FAMILY = {"R": NLU, "X": NLG, "S": S2S}
SENTINELS = TOKENIZER.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(125)])
SENTINEL_SET = set(SENTINELS)
BYTE_LOW, BYTE_HIGH = 3, 259

_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """splitmix64 on Python ints, written out again here: the hand derivations below do not use the module's."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_number(seed: int, epoch: int, idx: int, stream: int) -> int:
    """An example's random number of a stream: its key (example_keys, pinned by test_data_collators' golden masks)
    hashed with counter 0 of the stream (stream << 32)."""
    key = int(dc.example_keys(seed, epoch, [idx])[0])
    return splitmix64(key ^ splitmix64(stream << 32))


def ul2(input_length=64, rates=dc.DEFAULT_UL2_RATES, s_target_fraction=0.25, seed=0) -> dc.DenoisingCollator:
    return dc.make_pretraining_collator("ul2", TOKENIZER, input_length=input_length, seed=seed, ul2_rates=rates,
                                        ul2_s_target_fraction=s_target_fraction)  # fmt: skip


def prefix_lm(input_length=64, seed=0) -> dc.DenoisingCollator:
    return dc.make_pretraining_collator("prefix_lm", TOKENIZER, input_length=input_length, seed=seed)


def single(denoiser: dc.Denoiser, input_length: int, mode_tokens=True) -> dc.DenoisingCollator:
    return dc.DenoisingCollator(TOKENIZER, denoisers=(denoiser,), input_length=input_length, mode_tokens=mode_tokens)


def random_examples(collator, n, rng_seed=0, first_idx=0, with_idx=True):
    ids = np.random.default_rng(rng_seed).integers(BYTE_LOW, BYTE_HIGH, size=(n, collator.raw_length))
    examples = [{"input_ids": row.tolist()} for row in ids]
    if with_idx:
        for i, example in enumerate(examples):
            example["idx"] = first_idx + i
    return ids, examples


def unpad(batch, row: int) -> tuple[list[int], list[int]]:
    """(input tokens, label tokens) of one row without padding, each ending with EOS (checked)."""
    inputs = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
    labels = [t for t in batch["labels"][row].tolist() if t != dc.LABEL_PAD_ID]
    assert inputs[-1] == EOS and labels[-1] == EOS, (inputs, labels)
    return inputs, labels


def rebuild(inputs: list[int], labels: list[int], mode: bool) -> list[int]:
    """Independent inverse of every denoiser: drop the mode token and EOS; a target with sentinels is put back span by
    span at its sentinel in the input, a target without any follows the input (the prefix LM)."""
    inputs, labels = inputs[int(mode) : -1], labels[:-1]
    if not SENTINEL_SET.intersection(labels):
        return inputs + labels
    spans, current = {}, None
    for token in labels:
        if token in SENTINEL_SET:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    out = [piece for token in inputs for piece in (spans.pop(token) if token in SENTINEL_SET else [token])]
    assert not spans, f"target spans without their sentinel in the input: {list(spans)}"
    return out


def target_spans(labels: list[int]) -> list[int]:
    """Lengths of the noise spans in a target (tokens between one sentinel and the next, or EOS)."""
    lengths = []
    for token in labels[:-1]:
        if token in SENTINEL_SET:
            lengths.append(0)
        else:
            lengths[-1] += 1
    return lengths


class GoldenExamplesTest(absltest.TestCase):
    """Small examples derived by hand (the arithmetic is in the comments), one per objective and UL2 family."""

    def test_prefix_lm(self):
        # input_length 8: the block holds 8 tokens (the longest input, 7 prefix tokens and EOS, fits 8) and the
        # target length (without EOS) is uniform on 1 .. T, T = round(2 * 0.5 * 8) - 1 = 7: t = 1 + r % 7, r the
        # example's number of the split stream (4). Worked out with the Python splitmix64 above for seed 0, epoch 0:
        # idx 0 -> t = 2, idx 1 -> t = 4, idx 2 -> t = 3.
        self.assertEqual([1 + stream_number(0, 0, i, 4) % 7 for i in range(3)], [2, 4, 3])
        collator = prefix_lm(input_length=8)
        self.assertEqual((collator.raw_length, collator.target_length), (8, 8))
        block = list(range(10, 18))
        batch = collator([{"input_ids": block, "idx": i, "epoch": 0} for i in range(3)])
        # Padded to the batch's own longest input (6 + EOS = 7) and target (4 + EOS = 5).
        self.assertEqual(batch["input_ids"].tolist(), [
            [10, 11, 12, 13, 14, 15, EOS],
            [10, 11, 12, 13, EOS, PAD, PAD],
            [10, 11, 12, 13, 14, EOS, PAD],
        ])  # fmt: skip
        self.assertEqual(batch["labels"].tolist(), [
            [16, 17, EOS, -100, -100],
            [14, 15, 16, 17, EOS],
            [15, 16, 17, EOS, -100],
        ])  # fmt: skip
        self.assertEqual(batch["attention_mask"].tolist(), [[1] * 7, [1] * 5 + [0] * 2, [1] * 6 + [0]])

    def test_prefix_lm_two_tokens(self):
        # Two tokens: the only split is after the first (T = round(2 * 0.5 * 2) - 1 = 1).
        batch = prefix_lm(input_length=2)([{"input_ids": [50, 60]}])
        self.assertEqual((batch["input_ids"].tolist(), batch["labels"].tolist()), ([[50, EOS]], [[60, EOS]]))

    def test_ul2_r_denoiser(self):
        # Only R (--ul2_rates 1 0 0) at input_length 10: a block of 8 has round(8 * 0.15) = 1 noise token in
        # max(1, round(1 / 3)) = max(1, round(1 / 8)) = 1 span for both R denoisers, and a mask starts with non-noise
        # and ends with noise, so the span is the last token. Input: [NLU], 7 tokens, <extra_id_0>, EOS = 10 tokens
        # (a block of 9 would still have 1 noise token and need 11).
        collator = ul2(input_length=10, rates=(1, 0, 0))
        self.assertEqual((collator.raw_length, collator.target_length), (8, 3))
        batch = collator([{"input_ids": list(range(10, 18)), "idx": i} for i in range(4)])
        self.assertEqual(batch["input_ids"].tolist(), [[NLU, *range(10, 17), SENTINELS[0], EOS]] * 4)
        self.assertEqual(batch["labels"].tolist(), [[SENTINELS[0], 17, EOS]] * 4)

    def test_x_denoiser(self):
        # X at rate 0.5, mean span 3, input_length 7: a block of 8 has 4 noise tokens in round(4 / 3) = 1 span,
        # the last 4 tokens. Input: [NLG] a b c d <extra_id_0> EOS (7); a block of 9 has round(4.5) = 4 noise tokens
        # (round half to even) and needs 8.
        collator = single(dc.Denoiser("X", 0.5, 3.0), input_length=7)
        self.assertEqual((collator.raw_length, collator.target_length), (8, 6))
        batch = collator([{"input_ids": [20, 21, 22, 23, 24, 25, 26, 27]}])
        self.assertEqual(batch["input_ids"].tolist(), [[NLG, 20, 21, 22, 23, SENTINELS[0], EOS]])
        self.assertEqual(batch["labels"].tolist(), [[SENTINELS[0], 24, 25, 26, 27, EOS]])

    def test_s_denoiser(self):
        # S with a mean target share of 0.25 at input_length 5: a block of 4 (the longest input is [S2S], 3 prefix
        # tokens, EOS) and T = round(2 * 0.25 * 4) - 1 = 1, so the target is the last token.
        collator = single(dc.Denoiser("S", 0.25), input_length=5)
        self.assertEqual((collator.raw_length, collator.target_length), (4, 2))
        batch = collator([{"input_ids": [30, 31, 32, 33]}, {"input_ids": [40, 41, 42, 43]}])
        self.assertEqual(batch["input_ids"].tolist(), [[S2S, 30, 31, 32, EOS], [S2S, 40, 41, 42, EOS]])
        self.assertEqual(batch["labels"].tolist(), [[33, EOS], [43, EOS]])

    def test_denoiser_choice_by_hand(self):
        # Each of the 7 denoisers has weight 1/7 by default: example i takes denoiser floor(7 * u), u the top 53 bits
        # of its number of the denoiser stream (3) over 2**53. Seed 0, epoch 0: u = 0.597, 0.426, 0.260, 0.800 for
        # idx 0..3 -> denoisers 4, 2, 1, 5 (X mean 64 at 0.15, X mean 3 at 0.5, R mean 8, X mean 64 at 0.5).
        hand = [math.floor(7 * (stream_number(0, 0, i, 3) >> 11) / 2**53) for i in range(4)]
        self.assertEqual(hand, [4, 2, 1, 5])
        collator = ul2()
        keys = dc.example_keys(0, 0, range(300))
        by_hand = [math.floor(7 * (stream_number(0, 0, i, 3) >> 11) / 2**53) for i in range(300)]
        self.assertEqual(collator.denoiser_indices(keys).tolist(), by_hand)
        batch = collator(random_examples(collator, 4)[1])
        self.assertEqual(batch["input_ids"][:, 0].tolist(), [NLG, NLG, NLU, NLG])


class LengthsTest(parameterized.TestCase):
    def test_ul2_at_512_inputs(self):
        # The S-denoiser's longest input ([S2S], 510 prefix tokens, EOS) sets the block: 511. The X-denoiser at
        # rate 0.5 and mean span 3 has the longest target: round(255.5) = 256 noise tokens in round(256 / 3) = 85
        # spans, + EOS = 342, and needs the most sentinels (85 of T5's 100).
        self.assertEqual(dc.denoising_lengths(dc.UL2_DENOISERS, 512, True), (511, 342, 85))
        self.assertEqual(dc.check_objective_settings("ul2", 512), (511, 342))
        collator = ul2(input_length=512)
        self.assertEqual((collator.raw_length, collator.target_length), (511, 342))

    def test_prefix_lm_at_512_inputs(self):
        self.assertEqual(dc.check_objective_settings("prefix_lm", 512), (512, 512))

    def test_span_corruption_unchanged(self):
        self.assertEqual(dc.check_objective_settings("span_corruption", 512), (568, 114))
        self.assertEqual(dc.check_objective_settings(), dc.check_span_corruption_settings())

    def test_only_the_active_denoisers_set_the_block(self):
        # Without S, R at rate 0.15 and mean span 3 has the longest inputs: 0.85 L + 0.05 L + EOS + mode token.
        raw, target = dc.check_objective_settings("ul2", 512, ul2_rates=(1, 1, 0))
        self.assertGreater(raw, 511)
        self.assertEqual(dc.UL2_DENOISERS[0].lengths(raw)[0] + 1, 512)

    @parameterized.named_parameters(
        ("rates_count", dict(ul2_rates=(1, 1)), r"^--ul2_rates needs 3 weights \(R X S\), got 2"),
        ("rates_negative", dict(ul2_rates=(1, -1, 1)), r"^--ul2_rates must be >= 0 with a positive sum"),
        ("rates_zero", dict(ul2_rates=(0, 0, 0)), r"^--ul2_rates must be >= 0 with a positive sum"),
        ("s_fraction_high", dict(ul2_s_target_fraction=0.6), r"^--ul2_s_target_fraction must be in \(0, 0\.5\]"),
        ("s_fraction_zero", dict(ul2_s_target_fraction=0.0), r"^--ul2_s_target_fraction must be in \(0, 0\.5\]"),
        ("too_short", dict(input_length=3), r"^--input_length 3 is too short for --objective ul2; .* is 4$"),
    )
    def test_refused_with_the_flag_named(self, settings, message):
        settings = {"input_length": 512, **settings}
        with self.assertRaisesRegex(ValueError, message):
            dc.check_objective_settings("ul2", prefix="--", **settings)

    def test_unknown_objective(self):
        with self.assertRaisesRegex(ValueError, r"^--objective must be one of span_corruption, ul2, prefix_lm, pmi"):
            dc.check_objective_settings("mlm", prefix="--")


class FlagsTest(parameterized.TestCase):
    """PretrainDataArguments checks the objective's flags before any data is read (the file is never opened)."""

    def test_defaults(self):
        args = PretrainDataArguments(train_files=["never-read.txt"])
        self.assertEqual(args.objective, "span_corruption")
        self.assertEqual((list(args.ul2_rates), args.ul2_s_target_fraction), ([2.0, 4.0, 1.0], 0.25))

    @parameterized.named_parameters(
        ("unknown", dict(objective="mlm"), r"^--objective must be one of span_corruption, ul2, prefix_lm, pmi, "
         r"got 'mlm'$"),
        ("pmi_without_vocabulary", dict(objective="pmi"), r"^--objective pmi needs --pmi_vocabulary FILE"),
        ("pmi_vocabulary_missing", dict(objective="pmi", pmi_vocabulary="no-such-vocab.txt"),
         r"no-such-vocab\.txt: file not found \(--pmi_vocabulary\)$"),
        ("vocabulary_under_ul2", dict(objective="ul2", pmi_vocabulary="v.txt"), r"^--pmi_vocabulary does not apply "
         r"to --objective ul2$"),
        ("density_under_ul2", dict(objective="ul2", noise_density=0.3), r"^--noise_density does not apply to "
         r"--objective ul2$"),
        ("span_under_prefix_lm", dict(objective="prefix_lm", mean_noise_span_length=8.0, noise_density=0.3),
         r"^--noise_density and --mean_noise_span_length do not apply to --objective prefix_lm$"),
        ("rates_under_span_corruption", dict(ul2_rates=[1.0, 1.0, 1.0]), r"^--ul2_rates does not apply to "
         r"--objective span_corruption$"),
        ("s_fraction_under_prefix_lm", dict(objective="prefix_lm", ul2_s_target_fraction=0.5),
         r"^--ul2_s_target_fraction does not apply"),
        ("bad_rates", dict(objective="ul2", ul2_rates=[1.0, 1.0]), r"^--ul2_rates needs 3 weights"),
        ("too_short", dict(objective="prefix_lm", input_length=1), r"^--input_length 1 is too short for --objective "
         r"prefix_lm; the shortest that works is 2$"),
    )  # fmt: skip
    def test_refused(self, flags, message):
        with self.assertRaisesRegex(UsageError, message):
            PretrainDataArguments(train_files=["never-read.txt"], **flags)

    def test_command_line(self):
        from t5kit.args import parse_args

        argv = ["--train_files", "x.txt", "--objective", "ul2", "--ul2_rates", "1", "2", "3",
                "--ul2_s_target_fraction", "0.5"]  # fmt: skip
        (args,) = parse_args((PretrainDataArguments,), argv)
        self.assertEqual((args.objective, list(args.ul2_rates), args.ul2_s_target_fraction), ("ul2", [1, 2, 3], 0.5))


# The seven UL2 denoisers by index, for parameterized tests.
UL2_INDICES = [(f"{i}_{d.family}_{d.noise_density:g}_{d.mean_noise_span_length or 'seq'}", i)
               for i, d in enumerate(dc.UL2_DENOISERS)]  # fmt: skip


class StatisticsTest(parameterized.TestCase):
    """Realised rates over 2,800 examples of the UL2 mixture at 512 inputs (blocks of 511), per denoiser."""

    N = 2800

    @classmethod
    def setUpClass(cls):
        cls.collator = ul2(input_length=512)
        cls.ids, examples = random_examples(cls.collator, cls.N)
        cls.batch = cls.collator(examples)
        cls.choice = cls.collator.denoiser_indices(dc.example_keys(0, 0, range(cls.N)))

    def test_denoiser_frequencies(self):
        # Each of the 7 denoisers has probability 1/7: its count within 5 binomial standard deviations.
        counts = np.bincount(self.choice, minlength=7)
        p = 1 / 7
        for index, count in enumerate(counts):
            self.assertLess(abs(count - self.N * p), 5 * math.sqrt(self.N * p * (1 - p)), f"denoiser {index}")

    @parameterized.named_parameters(*[case for case in UL2_INDICES if not dc.UL2_DENOISERS[case[1]].sequential])
    def test_span_denoiser_rate_and_mean_span(self, index):
        denoiser, raw = dc.UL2_DENOISERS[index], self.collator.raw_length
        rows = np.flatnonzero(self.choice == index)
        self.assertGreater(len(rows), 300)
        noise, spans, span_lengths = [], [], []
        for row in rows:
            inputs, labels = unpad(self.batch, row)
            self.assertEqual(inputs[0], MODE_OF_FAMILY[denoiser.family])
            lengths = target_spans(labels)
            noise.append(sum(lengths))
            spans.append(len(lengths))
            span_lengths += lengths
            self.assertEqual(sum(t in SENTINEL_SET for t in inputs), len(lengths))
        # T5's counts: round(raw * rate) noise tokens in max(1, round(noise / mean span)) spans, in every example.
        expected_noise = round(raw * denoiser.noise_density)
        expected_spans = max(1, round(expected_noise / denoiser.mean_noise_span_length))
        self.assertEqual(set(noise), {expected_noise})
        self.assertEqual(set(spans), {expected_spans})
        self.assertLess(abs(np.mean(noise) / raw - denoiser.noise_density), 0.5 / raw)  # rounding to whole tokens
        # The realised mean span length is noise / spans; rounding the span count allows |mean / mu - 1| <= 0.5 /
        # spans (mean span 64 at rate 0.15: 77 noise tokens in 1 span).
        mean_span = float(np.mean(span_lengths))
        self.assertAlmostEqual(mean_span, expected_noise / expected_spans)
        self.assertLessEqual(abs(mean_span / denoiser.mean_noise_span_length - 1), 0.5 / expected_spans + 1e-9)
        self.assertGreaterEqual(min(span_lengths), 1)

    def test_s_denoiser_target_share(self):
        index = next(i for i, d in enumerate(dc.UL2_DENOISERS) if d.sequential)
        raw, rows = self.collator.raw_length, np.flatnonzero(self.choice == index)
        targets = []
        for row in rows:
            inputs, labels = unpad(self.batch, row)
            self.assertEqual(inputs[0], S2S)
            self.assertFalse(SENTINEL_SET.intersection(inputs + labels))
            targets.append(len(labels) - 1)
            self.assertEqual(len(inputs) - 2 + targets[-1], raw)
        # Target lengths uniform on 1 .. T, T = round(2 * 0.25 * 511) - 1 = 255: mean 128 = 0.2505 of the block,
        # within 5 standard errors (the s.d. of a uniform on 1 .. 255 is 73.6).
        longest = round(2 * 0.25 * raw) - 1
        self.assertEqual(longest, 255)
        self.assertGreaterEqual(min(targets), 1)
        self.assertLessEqual(max(targets), longest)
        sd = math.sqrt((longest**2 - 1) / 12)
        self.assertLess(abs(np.mean(targets) - (longest + 1) / 2), 5 * sd / math.sqrt(len(targets)))
        self.assertLess(abs(np.mean(targets) / raw - 0.25), 0.03)

    def test_prefix_lm_split_is_uniform(self):
        collator = prefix_lm(input_length=64)
        _, examples = random_examples(collator, 3000)
        batch = collator(examples)
        targets = np.array([len(unpad(batch, row)[1]) - 1 for row in range(3000)])
        # Split point uniform on 1 .. 63: every target length 1 .. 63 occurs, mean 32 within 5 standard errors.
        self.assertEqual(set(targets.tolist()), set(range(1, 64)))
        sd = math.sqrt((63**2 - 1) / 12)
        self.assertLess(abs(targets.mean() - 32), 5 * sd / math.sqrt(3000))


class StructureTest(parameterized.TestCase):
    @parameterized.named_parameters(*UL2_INDICES)
    def test_reconstructs_every_denoiser(self, index):
        one_hot = [0.0] * 7
        one_hot[index] = 1.0
        for input_length in (64, 200):
            collator = dc.DenoisingCollator(TOKENIZER, rates=tuple(one_hot), input_length=input_length)
            ids, examples = random_examples(collator, 24)
            batch = collator(examples)
            for row in range(24):
                inputs, labels = unpad(batch, row)
                self.assertEqual(inputs[0], MODE_OF_FAMILY[dc.UL2_DENOISERS[index].family])
                self.assertEqual(rebuild(inputs, labels, mode=True), ids[row].tolist(), f"row {row}")

    def test_reconstructs_mixture_and_prefix_lm(self):
        for collator, mode in ((ul2(input_length=128), True), (prefix_lm(input_length=128), False)):
            ids, examples = random_examples(collator, 64)
            batch = collator(examples)
            for row in range(64):
                inputs, labels = unpad(batch, row)
                self.assertEqual(rebuild(inputs, labels, mode), ids[row].tolist())
                self.assertEqual(inputs[0] in (NLU, NLG, S2S), mode)

    @parameterized.named_parameters(*UL2_INDICES)
    def test_sentinels_in_order(self, index):
        one_hot = [0.0] * 7
        one_hot[index] = 1.0
        collator = dc.DenoisingCollator(TOKENIZER, rates=tuple(one_hot), input_length=128)
        batch = collator(random_examples(collator, 16)[1])
        for row in range(16):
            inputs, labels = unpad(batch, row)
            for tokens in (inputs, labels):
                found = [t for t in tokens if t in SENTINEL_SET]
                self.assertEqual(found, SENTINELS[: len(found)])
            if dc.UL2_DENOISERS[index].sequential:
                self.assertFalse(SENTINEL_SET.intersection(inputs + labels))
            else:
                self.assertEqual(labels[0], SENTINELS[0])  # targets start with <extra_id_0>
                self.assertNotEqual(inputs[1], SENTINELS[0])  # a block starts with non-noise
                self.assertEqual(inputs.count(inputs[0]), 1)  # one mode token, first

    def test_dynamic_padding(self):
        collator = ul2(input_length=256)
        _, examples = random_examples(collator, 40)
        for batch_examples in (examples[:1], examples[:5], examples):
            batch = collator(batch_examples)
            lengths = batch["attention_mask"].sum(1)
            label_lengths = (batch["labels"] != dc.LABEL_PAD_ID).sum(1)
            # Each batch is as wide as its own longest input and target, never the longest possible.
            self.assertEqual(batch["input_ids"].shape[1], int(lengths.max()))
            self.assertEqual(batch["labels"].shape[1], int(label_lengths.max()))
            self.assertLessEqual(batch["input_ids"].shape[1], 256)
            self.assertLessEqual(batch["labels"].shape[1], collator.target_length)
            torch.testing.assert_close(batch["attention_mask"], (batch["input_ids"] != PAD).long())
            for row in range(len(batch_examples)):  # labels are real up to EOS, -100 after
                real = int(label_lengths[row])
                self.assertEqual(batch["labels"][row, real - 1].item(), EOS)
                self.assertTrue(bool((batch["labels"][row, real:] == dc.LABEL_PAD_ID).all()))
            for value in batch.values():
                self.assertEqual(value.dtype, torch.int64)
        single_example = collator(examples[:1])
        self.assertEqual(single_example["attention_mask"].min().item(), 1)  # one example: no padding at all

    def test_pad_to_multiple_of(self):
        collator = dc.DenoisingCollator(TOKENIZER, input_length=100, pad_to_multiple_of=8)
        batch = collator(random_examples(collator, 6)[1])
        self.assertEqual(batch["input_ids"].shape[1] % 8, 0)
        self.assertEqual(batch["labels"].shape[1] % 8, 0)
        self.assertLess(batch["input_ids"].shape[1] - int(batch["attention_mask"].sum(1).max()), 8)

    def test_wrong_block_length(self):
        collator = ul2()
        with self.assertRaisesRegex(ValueError, rf"raw_length={collator.raw_length}.*packing"):
            collator([{"input_ids": list(range(3, 3 + collator.raw_length - 1))}])

    def test_tokenizer_without_mode_tokens(self):
        with self.assertRaisesRegex(ValueError, r"lacks the UL2 mode token \[NLU\]"):
            dc.make_pretraining_collator("ul2", ByT5Tokenizer(), input_length=64)
        prefix_lm_plain = dc.make_pretraining_collator("prefix_lm", ByT5Tokenizer(extra_ids=0), input_length=64)
        self.assertEqual(len(prefix_lm_plain.sentinel_ids), 0)  # the prefix LM needs neither

    def test_too_few_sentinels(self):
        # UL2 at 1024 inputs (blocks of 1023): the X-denoiser at rate 0.5, mean span 3 has round(511.5) = 512 noise
        # tokens in round(512 / 3) = 171 spans; ByT5 has 125 sentinels, T5 vocabularies 100.
        with self.assertRaisesRegex(ValueError, "need 171 distinct"):
            ul2(input_length=1024)


class DeterminismTest(parameterized.TestCase):
    @parameterized.parameters("ul2", "prefix_lm")
    def test_same_key_same_example_in_any_batch(self, objective):
        collator = ul2() if objective == "ul2" else prefix_lm()
        ids, alone_examples = random_examples(collator, 1, first_idx=7)
        alone = collator(alone_examples)
        inputs, labels = unpad(alone, 0)
        for position, others in ((0, 5), (3, 5), (10, 30)):  # small batches hash keys in Python, > 16 with numpy
            _, other_examples = random_examples(collator, others, rng_seed=position + 1, first_idx=100)
            batch = collator(other_examples[:position] + alone_examples + other_examples[position:])
            self.assertEqual(unpad(batch, position), (inputs, labels))

    @parameterized.parameters("ul2", "prefix_lm")
    def test_seed_epoch_idx(self, objective):
        make = ul2 if objective == "ul2" else prefix_lm
        a, b = make(seed=3), make(seed=3)
        _, examples = random_examples(a, 32)
        torch.testing.assert_close(a(examples), b(examples))
        torch.testing.assert_close(a(examples), a(examples))  # explicit idx: no dependence on the call count

        def rows(batch):
            return [unpad(batch, i) for i in range(32)]

        other_seed = rows(make(seed=4)(examples))
        other_epoch = rows(a([dict(ex, epoch=1) for ex in examples]))
        same = rows(a(examples))
        self.assertGreater(sum(x != y for x, y in zip(same, other_seed)), 24)
        self.assertGreater(sum(x != y for x, y in zip(same, other_epoch)), 24)
        a.set_epoch(1)
        self.assertEqual(rows(a(examples)), other_epoch)

    def test_running_counter_without_idx(self):
        a, b = ul2(), ul2()
        _, examples = random_examples(a, 6, with_idx=False)
        split = [a(examples[:2]), a(examples[2:])]
        whole = b(examples)
        rows = [unpad(split[0], i) for i in range(2)] + [unpad(split[1], i) for i in range(4)]
        self.assertEqual(rows, [unpad(whole, i) for i in range(6)])


PMI_NGRAMS = "first citizen\nmy lord\ni am\nof the\n"  # n-grams of the Tiny Shakespeare slice


class PMIObjectiveTest(absltest.TestCase):
    """--objective pmi builds t5kit.pmi's collator: T5DataCollator's settings and lengths, the vocabulary given."""

    def test_collator(self):
        from t5kit.pmi import PMISpanCorruptionCollator

        vocabulary = SCRATCH.path() / "pmi-vocab.txt"
        vocabulary.write_text(PMI_NGRAMS)
        made = dc.make_pretraining_collator("pmi", TOKENIZER, input_length=64, seed=4, noise_density=0.2,
                                            pmi_vocabulary=str(vocabulary))  # fmt: skip
        self.assertIsInstance(made, PMISpanCorruptionCollator)
        self.assertEqual(len(made.vocabulary), 4)
        span = dc.T5DataCollator(tokenizer=TOKENIZER, input_length=64, seed=4, noise_density=0.2)
        self.assertEqual((made.raw_length, made.target_length, made.seed), (span.raw_length, span.target_length, 4))
        self.assertEqual(dc.check_objective_settings("pmi", 64, 0.2), (span.raw_length, span.target_length))
        args = PretrainDataArguments(train_files=["never-read.txt"], objective="pmi", pmi_vocabulary=str(vocabulary),
                                     noise_density=0.2)  # fmt: skip
        self.assertEqual((args.objective, args.noise_density), ("pmi", 0.2))

    def test_tiny_run(self):
        vocabulary = SCRATCH.path() / "pmi-run-vocab.txt"
        vocabulary.write_text(PMI_NGRAMS)
        out = SCRATCH.path() / "pmi"
        argv = ["--train_files", str(corpus_slice(SCRATCH.path(), lines=1500)), "--vocab_size", "300", *TINY,
                "--objective", "pmi", "--pmi_vocabulary", str(vocabulary), "--max_steps", "2", "--save_strategy",
                "no", "--output_dir", str(out)]  # fmt: skip
        code, output = run_script_here(pre_train_t5.main, argv)
        self.assertEqual(code, 0, output[-3000:])
        results = json.loads((out / "all_results.json").read_text())
        self.assertEqual((results["objective"], results["raw_length"], results["target_length"]), ("pmi", 70, 14))
        self.assertIn(f"PMI-masked span corruption (Levine et al. 2021): spans follow the n-grams of `{vocabulary}`",
                      (out / "README.md").read_text())  # fmt: skip
        self.assertTrue(math.isfinite(results["eval_loss"]))


class DefaultObjectiveTest(parameterized.TestCase):
    """--objective span_corruption (the default) is T5DataCollator itself: bit-identical batches for the same seed."""

    @parameterized.parameters((512, 0.15, 3.0, 0), (64, 0.2, 1.0, 5), (128, 0.3, 8.0, 2))
    def test_identical_to_t5_data_collator(self, input_length, density, span, seed):
        made = dc.make_pretraining_collator("span_corruption", TOKENIZER, input_length=input_length, seed=seed,
                                            noise_density=density, mean_noise_span_length=span)  # fmt: skip
        self.assertIs(type(made), dc.T5DataCollator)
        reference = dc.T5DataCollator(tokenizer=TOKENIZER, noise_density=density, mean_noise_span_length=span,
                                      input_length=input_length, seed=seed)  # fmt: skip
        ids = np.random.default_rng(seed).integers(BYTE_LOW, BYTE_HIGH, size=(40, reference.raw_length))
        for examples in ([{"input_ids": row, "idx": i} for i, row in enumerate(ids)], [{"input_ids": ids[0]}]):
            got, want = made(examples), reference(examples)
            self.assertEqual(set(got), set(want))
            for key in want:
                self.assertTrue(torch.equal(got[key], want[key]), key)

    def test_hand_checked_span_corruption(self):
        # As test_data_collators' hand-checked example: raw 17 at 16 inputs, round(17 * 0.15) = 3 noise tokens in one
        # span, the last 3 tokens.
        collator = dc.make_pretraining_collator("span_corruption", TOKENIZER, input_length=16)
        batch = collator([{"input_ids": list(range(10, 27))}])
        self.assertEqual(batch["input_ids"].tolist(), [list(range(10, 24)) + [SENTINELS[0], EOS]])
        self.assertEqual(batch["labels"].tolist(), [[SENTINELS[0], 24, 25, 26, EOS]])

    def test_no_extra_tokens(self):
        self.assertEqual(dc.objective_special_tokens("span_corruption"), ())
        self.assertEqual(dc.objective_special_tokens("prefix_lm"), ())
        self.assertEqual(dc.objective_special_tokens("ul2"), ("[NLU]", "[NLG]", "[S2S]"))


def tokenizer_args(tmp: Path, vocab_size=None, name=None):
    model_args = types.SimpleNamespace(vocab_size=vocab_size, tokenizer_name_or_path=name, model_name_or_path=None)
    train_args = types.SimpleNamespace(output_dir=str(tmp),
                                       main_process_first=lambda desc="": contextlib.nullcontext())  # fmt: skip
    return model_args, train_args


class ModeTokensTest(absltest.TestCase):
    """--objective ul2: the mode tokens are added to a tokenizer trained here and to one loaded, after every T5 id."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = SCRATCH.path() / "tokenizers"
        corpus = corpus_slice(SCRATCH.path(), lines=1500)
        cls.texts = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
        train_tokenizer(cls.texts, vocab_size=300, output_dir=cls.tmp / "plain")

    def test_trained_here_then_reloaded(self):
        run = self.tmp / "run"
        tokens = dc.objective_special_tokens("ul2")
        tok = resolve_tokenizer(*tokenizer_args(run, vocab_size=300), lambda: iter(self.texts), True, tokens)
        self.assertEqual(tok.convert_tokens_to_ids(list(tokens)), [300, 301, 302])
        self.assertEqual(tok.convert_tokens_to_ids("<extra_id_0>"), 299)  # the sentinels keep their ids
        self.assertLen(AutoTokenizer.from_pretrained(run / TOKENIZER_SUBDIR), 300)  # the saved one: --vocab_size
        again = resolve_tokenizer(*tokenizer_args(run, vocab_size=300), lambda: iter(()), True, tokens)  # a resume
        self.assertEqual(again.convert_tokens_to_ids(list(tokens)), [300, 301, 302])
        ids = again("[S2S] the king").input_ids
        self.assertEqual(ids[0], 302)  # one token, never split
        self.assertNotIn("S2S", again.decode(ids, skip_special_tokens=True))

    def test_loaded(self):
        tokens = dc.objective_special_tokens("ul2")
        tok = resolve_tokenizer(*tokenizer_args(self.tmp, name=str(self.tmp / "plain")), None, True, tokens)
        self.assertEqual(tok.convert_tokens_to_ids(list(tokens)), [300, 301, 302])
        tok.save_pretrained(self.tmp / "with-modes")  # a UL2 run's tokenizer, loaded again: nothing added twice
        again = resolve_tokenizer(*tokenizer_args(self.tmp, name=str(self.tmp / "with-modes")), None, True, tokens)
        self.assertLen(again, 303)
        self.assertEqual(again.convert_tokens_to_ids(list(tokens)), [300, 301, 302])
        plain = resolve_tokenizer(*tokenizer_args(self.tmp, name=str(self.tmp / "plain")), None, True)
        self.assertLen(plain, 300)  # other objectives add nothing


TINY = ["--model_config", "tiny", "--input_length", "64", "--per_device_train_batch_size", "8", "--max_eval_samples",
        "8", "--logging_steps", "1", "--seed", "3", "--learning_rate", "3e-3", "--dropout_rate", "0.1",
        "--report_to", "none", "--disable_tqdm", "True"]  # fmt: skip


def loss_trace(run_dir: Path) -> dict[int, float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {row["step"]: row["loss"] for row in state["log_history"] if "loss" in row}


class EndToEndTest(absltest.TestCase):
    """Tiny pre-training runs with --objective ul2 (stopped at a checkpoint and resumed) and --objective prefix_lm."""

    @classmethod
    def setUpClass(cls):
        cls.corpus = corpus_slice(SCRATCH.path(), lines=1500)

    def run_pretrain(self, argv: list[str]) -> None:
        code, output = run_script_here(pre_train_t5.main, argv)
        self.assertEqual(code, 0, output[-3000:])

    def test_ul2_trains_evaluates_and_resumes_the_same_trace(self):
        out = SCRATCH.path() / "ul2"
        argv = ["--train_files", str(self.corpus), "--vocab_size", "300", *TINY, "--objective", "ul2",
                "--max_steps", "6", "--save_steps", "3"]  # fmt: skip
        self.run_pretrain([*argv, "--output_dir", str(out)])
        results = json.loads((out / "all_results.json").read_text())
        self.assertEqual((results["objective"], results["raw_length"], results["target_length"]), ("ul2", 63, 44))
        self.assertIn("UL2 mixture of denoisers", (out / "README.md").read_text())  # the model card says which
        self.assertTrue(math.isfinite(results["eval_loss"]))  # the eval loop pads labels with -100 across batches
        self.assertIn("eval_span_accuracy", results)
        tokenizer = AutoTokenizer.from_pretrained(out)
        self.assertEqual(tokenizer.convert_tokens_to_ids(["[NLU]", "[NLG]", "[S2S]"]), [300, 301, 302])
        self.assertEqual(json.loads((out / "config.json").read_text())["vocab_size"], 384)  # 303 padded to 128s
        reference = loss_trace(out)
        self.assertEqual(sorted(reference), list(range(1, 7)))

        resumed = SCRATCH.path() / "ul2-resumed"  # stopped after checkpoint-3: only it and the tokenizer remain
        shutil.copytree(out / "checkpoint-3", resumed / "checkpoint-3")
        shutil.copytree(out / TOKENIZER_SUBDIR, resumed / TOKENIZER_SUBDIR)
        self.run_pretrain([*argv, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])
        trace = loss_trace(resumed)
        self.assertEqual({step: trace[step] for step in (4, 5, 6)}, {step: reference[step] for step in (4, 5, 6)})

        # Fine-tuning the UL2 model with its mode token before every input (--mode_token).
        rows = [{"source": f"question {i}", "target": f"answer {i % 2}"} for i in range(16)]
        train = SCRATCH.path() / "mode-train.jsonl"
        train.write_text("".join(json.dumps(row) + "\n" for row in rows))
        seen = []

        class FirstRows(transformers.TrainerCallback):
            def on_trainer(self, trainer):
                seen.extend(trainer.train_dataset[i]["input_ids"] for i in range(len(trainer.train_dataset)))

        finetune = ["--model_name_or_path", str(out), "--benchmark", "custom", "--train_file", str(train), "--do_train",
                    "--eval_strategy", "no", "--max_steps", "1", "--per_device_train_batch_size", "4",
                    "--max_source_length", "8", "--report_to", "none", "--disable_tqdm", "True"]  # fmt: skip
        code, output = run_script_here(
            lambda argv: fine_tune_t5.main(argv, callbacks=[FirstRows()]),
            [*finetune, "--mode_token", "[NLU]", "--output_dir", str(SCRATCH.path() / "ul2-ft")],
        )
        self.assertEqual(code, 0, output[-3000:])
        self.assertLen(seen, 16)
        self.assertEqual({ids[0] for ids in seen}, {300})  # [NLU]
        self.assertLessEqual(max(len(ids) for ids in seen), 8)  # the token counts within --max_source_length
        plain = tokenizer(rows[0]["source"])["input_ids"]
        self.assertIn(seen[0][1:], (plain, plain[:6] + [tokenizer.eos_token_id]))
        code, output = run_script_here(
            fine_tune_t5.main, [*finetune, "--mode_token", "[XYZ]", "--output_dir", str(SCRATCH.path() / "ul2-ft2")]
        )
        self.assertEqual(code, 2, output[-3000:])
        self.assertIn("--mode_token [XYZ]: the tokenizer has no such token", output)

    def test_prefix_lm(self):
        out = SCRATCH.path() / "prefix_lm"
        argv = ["--train_files", str(self.corpus), "--vocab_size", "300", *TINY, "--objective", "prefix_lm",
                "--max_steps", "3", "--save_strategy", "no", "--output_dir", str(out)]  # fmt: skip
        self.run_pretrain(argv)
        results = json.loads((out / "all_results.json").read_text())
        self.assertEqual((results["objective"], results["raw_length"], results["target_length"]), ("prefix_lm", 64, 64))
        self.assertIn("Prefix language modelling", (out / "README.md").read_text())
        self.assertTrue(math.isfinite(results["eval_loss"]))
        self.assertLen(AutoTokenizer.from_pretrained(out), 300)  # no mode tokens
        self.assertEqual(sorted(loss_trace(out)), [1, 2, 3])


if __name__ == "__main__":
    absltest.main()
