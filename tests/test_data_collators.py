"""Tests for data_collators: T5 span-corruption lengths, masks, corruption and determinism."""

import math

import numpy as np
import torch
from absl.testing import absltest, parameterized
from transformers import ByT5Tokenizer

import data_collators as dc

# ByT5 byte tokens are ids 3..258 (0 pad, 1 eos, 2 unk; sentinels from 259): raw test data stays in there.
BYTE_LOW, BYTE_HIGH = 3, 259
TOKENIZER = ByT5Tokenizer()

# (input_length, noise_density, mean_noise_span_length) covering short/long spans and densities.
SETTINGS = (
    ("t5_default", 512, 0.15, 3.0),
    ("short_dense", 64, 0.2, 1.0),
    ("half_noise", 96, 0.5, 2.0),
    ("long_spans", 128, 0.3, 8.0),
    ("tiny", 16, 0.15, 3.0),
)


def make_collator(input_length=64, noise_density=0.15, mean_noise_span_length=3.0, seed=0, tokenizer=TOKENIZER):
    _, target_length = dc.compute_input_and_target_lengths(input_length, noise_density, mean_noise_span_length)
    return dc.T5DataCollator(
        tokenizer=tokenizer,
        noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length,
        input_length=input_length,
        target_length=target_length,
        seed=seed,
    )


def random_examples(collator, n, rng_seed=0, with_idx=True, first_idx=0):
    rng = np.random.default_rng(rng_seed)
    ids = rng.integers(BYTE_LOW, BYTE_HIGH, size=(n, collator.raw_length))
    examples = [{"input_ids": row.tolist()} for row in ids]
    if with_idx:
        for i, ex in enumerate(examples):
            ex["idx"] = first_idx + i
    return ids, examples


def sentinel_ids(n):
    return TOKENIZER.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(n)])


def strip(row, pad):
    """Drop padding, check and drop the final EOS."""
    row = [t for t in row.tolist() if t != pad]
    assert row[-1] == TOKENIZER.eos_token_id, row
    return row[:-1]


def reconstruct(input_row, label_row):
    """Independent inverse: put each target span back at its sentinel in the input."""
    sentinels = set(sentinel_ids(125))
    inputs = strip(input_row, TOKENIZER.pad_token_id)
    labels = strip(label_row, dc.LABEL_PAD_ID)
    spans, current = {}, None
    for t in labels:
        if t in sentinels:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    out = []
    for t in inputs:
        out.extend(spans.pop(t) if t in sentinels else [t])
    assert not spans, f"target spans without a sentinel in the input: {list(spans)}"
    return out


def reference_span_corruption(ids, mask, sentinels, eos):
    """Straightforward per-example port of T5's noise_span_to_unique_sentinel (inputs) and
    nonnoise_span_to_unique_sentinel (targets) for one 1-D example."""
    inputs, targets = [], []
    span = -1
    for i, (token, noise) in enumerate(zip(ids.tolist(), mask.tolist())):
        starts_span = noise and (i == 0 or not mask[i - 1])
        if starts_span:
            span += 1
            inputs.append(sentinels[span])
            targets.append(sentinels[span])
        if noise:
            targets.append(token)
        elif not starts_span:
            inputs.append(token)
    return inputs + [eos], targets + [eos]


def runs(mask_row):
    """Lengths of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask_row, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[1::2] - edges[0::2]


def span_length_pmf(num_items, num_segments):
    """Exact pmf of one segment's length for a uniform composition of num_items into num_segments parts:
    P(len = k) = C(num_items - k - 1, num_segments - 2) / C(num_items - 1, num_segments - 1)."""
    ks = np.arange(1, num_items - num_segments + 2)
    total = math.comb(num_items - 1, num_segments - 1)
    return ks, np.array([math.comb(num_items - k - 1, num_segments - 2) / total for k in ks])


class LengthsTest(parameterized.TestCase):
    # Golden values from random_spans_helper in google-research/text-to-text-transfer-transformer,
    # t5/data/preprocessors.py (extra_tokens_per_span_inputs = extra_tokens_per_span_targets = 1).
    @parameterized.parameters(
        (512, 0.15, 3.0, 568, 114),
        (64, 0.2, 2.0, 70, 22),
        (64, 0.2, 1.0, 63, 27),
        (1024, 0.15, 3.0, 1137, 229),
    )
    def test_golden_lengths(self, inputs_length, density, span, raw, target):
        self.assertEqual(dc.compute_input_and_target_lengths(inputs_length, density, span), (raw, target))

    @parameterized.named_parameters(
        ("density_zero", dict(inputs_length=64, noise_density=0.0, mean_noise_span_length=3.0), "noise_density"),
        ("density_one", dict(inputs_length=64, noise_density=1.0, mean_noise_span_length=3.0), "noise_density"),
        ("span_short", dict(inputs_length=64, noise_density=0.15, mean_noise_span_length=0.5), "mean_noise_span"),
        ("inputs_short", dict(inputs_length=1, noise_density=0.15, mean_noise_span_length=3.0), "inputs_length"),
    )
    def test_bad_arguments(self, kwargs, name):
        with self.assertRaisesRegex(ValueError, name):
            dc.compute_input_and_target_lengths(**kwargs)

    def test_collator_exposes_raw_length(self):
        self.assertEqual(make_collator(512, 0.15, 3.0).raw_length, 568)


class NoiseMaskTest(parameterized.TestCase):
    def test_tiny_case_counts(self):
        # length 10, density 0.3 -> 3 noise tokens; 3 / 1.5 -> 2 spans; non-noise first, noise last.
        mask = dc.random_spans_noise_mask(10, 0.3, 1.5, dc.example_keys(0, 0, range(50)))
        self.assertEqual(mask.shape, (50, 10))
        self.assertEqual(mask.dtype, np.bool_)
        for row in mask:
            self.assertFalse(row[0])
            self.assertTrue(row[-1])
            self.assertEqual(row.sum(), 3)
            self.assertLen(runs(row), 2)

    @parameterized.named_parameters(
        # One noise span and one non-noise span: the only layout is non-noise then noise.
        ("one_span", 4, 0.5, 2.0, [0, 0, 1, 1]),
        ("length_two", 2, 0.5, 3.0, [0, 1]),
        # 3 noise tokens in 3 spans, 3 non-noise in 3 spans: strictly alternating.
        ("alternating", 6, 0.5, 1.0, [0, 1, 0, 1, 0, 1]),
        # round(10 * 0.01) = 0 is clipped to 1 noise token.
        ("clip_to_one", 10, 0.01, 3.0, [0] * 9 + [1]),
    )
    def test_forced_masks(self, length, density, span, expected):
        mask = dc.random_spans_noise_mask(length, density, span, dc.example_keys(3, 1, range(5)))
        np.testing.assert_array_equal(mask, np.array([expected] * 5, dtype=bool))

    def test_golden_masks_for_fixed_seed(self):
        # Regression golden, recorded from this implementation (seed 0, epoch 0, idx 0..2): pins the RNG
        # scheme so that a change to it, which would change every pre-training run's data, is noticed.
        expected = [
            [0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
        ]
        mask = dc.random_spans_noise_mask(20, 0.25, 2.0, dc.example_keys(0, 0, [0, 1, 2]))
        np.testing.assert_array_equal(mask, np.array(expected, dtype=bool))

    def test_small_batch_keys_match_numpy_keys(self):
        # Batches of up to _PYTHON_KEYS_MAX_BATCH examples hash their keys with Python ints (speed); both paths
        # must give the same bits, for negative, huge and ordinary seeds, epochs and indices.
        rng = np.random.default_rng(0)
        for seed in (0, 1, -3, 2**63 + 5):
            epochs = [int(e) for e in rng.integers(-5, 2**40, 12)] + [0, -1, 2**64 - 1, 7]
            indices = [int(i) for i in rng.integers(-(2**62), 2**62, 12)] + [0, 2**64 - 1, -1, 3]
            np.testing.assert_array_equal(
                dc._example_keys_small(seed, epochs, indices), dc.example_keys(seed, epochs, indices)
            )

    def test_row_depends_only_on_its_key(self):
        keys = dc.example_keys(7, 2, range(16))
        full = dc.random_spans_noise_mask(100, 0.15, 3.0, keys)
        for i in (0, 5, 15):
            np.testing.assert_array_equal(dc.random_spans_noise_mask(100, 0.15, 3.0, keys[[i]])[0], full[i])

    def test_bad_length(self):
        with self.assertRaisesRegex(ValueError, "length"):
            dc.random_spans_noise_mask(1, 0.15, 3.0, dc.example_keys(0, 0, [0]))


class CorruptionTest(parameterized.TestCase):
    @parameterized.named_parameters(*SETTINGS)
    def test_reconstructs_raw_sequence(self, input_length, density, span):
        collator = make_collator(input_length, density, span)
        ids, examples = random_examples(collator, 32)
        batch = collator(examples)
        for i in range(len(examples)):
            self.assertEqual(reconstruct(batch["input_ids"][i], batch["labels"][i]), ids[i].tolist())

    @parameterized.named_parameters(*SETTINGS)
    def test_shapes_dtypes_and_padding(self, input_length, density, span):
        collator = make_collator(input_length, density, span)
        _, examples = random_examples(collator, 4)
        batch = collator(examples)
        self.assertEqual(set(batch), {"input_ids", "attention_mask", "labels"})
        self.assertEqual(tuple(batch["input_ids"].shape), (4, collator.input_length))
        self.assertEqual(tuple(batch["attention_mask"].shape), (4, collator.input_length))
        self.assertEqual(tuple(batch["labels"].shape), (4, collator.target_length))
        for value in batch.values():
            self.assertEqual(value.dtype, torch.int64)
        real = batch["input_ids"] != TOKENIZER.pad_token_id
        torch.testing.assert_close(batch["attention_mask"], real.long())

    @parameterized.named_parameters(*SETTINGS)
    def test_exact_noise_and_span_counts(self, input_length, density, span):
        collator = make_collator(input_length, density, span)
        raw = collator.raw_length
        num_noise = min(max(round(raw * density), 1), raw - 1)
        num_spans = max(round(num_noise / span), 1)
        sentinels = set(sentinel_ids(125))
        _, examples = random_examples(collator, 16)
        batch = collator(examples)
        for inputs, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
            labels = [t for t in labels if t != dc.LABEL_PAD_ID]
            inputs = [t for t in inputs if t != TOKENIZER.pad_token_id]
            self.assertEqual(sum(t in sentinels for t in inputs), num_spans)
            self.assertEqual(sum(t in sentinels for t in labels), num_spans)
            self.assertLen(labels, num_noise + num_spans + 1)
            self.assertLen(inputs, raw - num_noise + num_spans + 1)

    @parameterized.named_parameters(*SETTINGS)
    def test_sentinels_in_order(self, input_length, density, span):
        collator = make_collator(input_length, density, span)
        _, examples = random_examples(collator, 8)
        batch = collator(examples)
        order = sentinel_ids(125)
        for key in ("input_ids", "labels"):
            for row in batch[key].tolist():
                found = [t for t in row if t in order]
                self.assertEqual(found, order[: len(found)])
                self.assertNotEmpty(found)
        # Targets start with <extra_id_0>; a span's sentinel is never the inputs' first token.
        self.assertTrue(bool((batch["labels"][:, 0] == order[0]).all()))
        self.assertTrue(bool((batch["input_ids"][:, 0] != order[0]).all()))

    @parameterized.named_parameters(*SETTINGS)
    def test_matches_reference_implementation(self, input_length, density, span):
        collator = make_collator(input_length, density, span)
        ids, examples = random_examples(collator, 16)
        mask = collator.noise_mask(examples)
        batch = collator.corrupt(ids, mask)
        for i in range(len(examples)):
            ref_inputs, ref_targets = reference_span_corruption(
                ids[i], mask[i], collator.sentinel_ids.tolist(), TOKENIZER.eos_token_id
            )
            self.assertEqual(strip(batch["input_ids"][i], TOKENIZER.pad_token_id) + [1], ref_inputs)
            self.assertEqual(strip(batch["labels"][i], dc.LABEL_PAD_ID) + [1], ref_targets)
        # __call__ uses that same mask.
        torch.testing.assert_close(collator(examples), batch)

    def test_hand_checked_example(self):
        # Raw length 17: round(17 * 0.15) = 3 noise tokens in max(1, round(3 / 3)) = 1 span, which must be
        # the last 3 tokens (a mask starts with non-noise and ends with noise).
        collator = make_collator(16, 0.15, 3.0)
        self.assertEqual((collator.raw_length, collator.target_length), (17, 5))
        batch = collator([{"input_ids": list(range(10, 27))}])
        self.assertEqual(batch["input_ids"].tolist(), [list(range(10, 24)) + [259, 1]])  # ... <extra_id_0> </s>
        self.assertEqual(batch["labels"].tolist(), [[259, 24, 25, 26, 1]])  # <extra_id_0> 24 25 26 </s>

    def test_accepts_numpy_and_tensor_inputs(self):
        collator = make_collator()
        ids, examples = random_examples(collator, 3)
        expected = collator(examples)
        as_numpy = [{"input_ids": ids[i], "idx": i} for i in range(3)]
        as_tensor = [{"input_ids": torch.tensor(ids[i]), "idx": torch.tensor(i)} for i in range(3)]
        torch.testing.assert_close(collator(as_numpy), expected)
        torch.testing.assert_close(collator(as_tensor), expected)

    def test_sentinels_looked_up_by_name(self):
        class ReversedSentinels:
            """Sentencepiece-T5 layout: <extra_id_0> is the last id and sentinels count down."""

            eos_token_id, pad_token_id, unk_token_id = 1, 0, 2

            def convert_tokens_to_ids(self, tokens):
                return [999 - int(t[len("<extra_id_") : -1]) for t in tokens]

        collator = make_collator(64, 0.15, 3.0, tokenizer=ReversedSentinels())
        _, examples = random_examples(collator, 2)
        labels = collator(examples)["labels"]
        self.assertEqual(labels[0, 0].item(), 999)
        self.assertIn(998, labels[0].tolist())


class StatisticsTest(absltest.TestCase):
    def test_density_exact_and_span_lengths_statistical(self):
        n = 2000
        collator = make_collator(512, 0.15, 3.0)  # raw 568: 85 noise tokens in 28 spans, 483 non-noise.
        mask = dc.random_spans_noise_mask(568, 0.15, 3.0, dc.example_keys(0, 0, range(n)))
        np.testing.assert_array_equal(mask.sum(axis=1), 85)  # density exactly round(568 * 0.15) / 568
        span_lengths = [runs(row) for row in mask]
        np.testing.assert_array_equal([len(s) for s in span_lengths], 28)
        # Mean noise span length is 85 / 28 = 3.04 in every example, as close to 3.0 as whole spans allow.
        self.assertAlmostEqual(np.mean(np.concatenate(span_lengths)), 85 / 28)
        self.assertLess(abs(85 / 28 - 3.0), 0.5 / 28 * 3.0)
        self.assertEqual(collator.raw_length, 568)

        # What is random is how the lengths are spread. Compare the first and last noise span and the first
        # non-noise span with the exact law of a uniform composition: mean within 5 standard errors
        # (a false alarm has probability ~6e-7; the seeds are fixed so the test is deterministic anyway),
        # variance within 15% (the sampling s.d. of a variance of 2000 such draws is ~5%).
        nonnoise_first = np.array([np.flatnonzero(row)[0] for row in mask])  # non-noise tokens before span 0
        for name, sample, (items, segments) in (
            ("first noise span", np.array([s[0] for s in span_lengths]), (85, 28)),
            ("last noise span", np.array([s[-1] for s in span_lengths]), (85, 28)),
            ("first non-noise span", nonnoise_first, (483, 28)),
        ):
            ks, pmf = span_length_pmf(items, segments)
            mean = float((ks * pmf).sum())
            var = float(((ks - mean) ** 2 * pmf).sum())
            self.assertAlmostEqual(mean, items / segments, msg=name)
            self.assertLess(abs(sample.mean() - mean), 5 * math.sqrt(var / n), msg=name)
            self.assertLess(abs(sample.var() / var - 1), 0.15, msg=name)


class DeterminismTest(parameterized.TestCase):
    def test_same_seed_epoch_idx_same_output(self):
        a, b = make_collator(seed=3), make_collator(seed=3)
        _, examples = random_examples(a, 8)
        torch.testing.assert_close(a(examples), b(examples))
        torch.testing.assert_close(a(examples), a(examples))  # explicit idx: no dependence on call count

    @parameterized.parameters((0, 7), (3, 7), (7, 7), (0, 40), (20, 40))
    def test_idx_independent_of_batch_composition(self, position, num_others):
        # 8 examples take the small-batch key path, 41 the numpy one: both give the lone example's row.
        collator = make_collator()
        ids, examples = random_examples(collator, 1, first_idx=5)
        alone = collator(examples)
        _, others = random_examples(collator, num_others, rng_seed=position + 1, first_idx=100 + 10 * position)
        batch = collator(others[:position] + examples + others[position:])
        for key in alone:
            torch.testing.assert_close(batch[key][position], alone[key][0])

    def test_running_counter_without_idx(self):
        a, b = make_collator(), make_collator()
        _, examples = random_examples(a, 4, with_idx=False)
        split = [a(examples[:2]), a(examples[2:])]
        whole = b(examples)
        for key in whole:
            torch.testing.assert_close(torch.cat([split[0][key], split[1][key]]), whole[key])
        # Without idx the k-th example seen counts as idx k.
        _, indexed = random_examples(a, 4, with_idx=True)
        torch.testing.assert_close(make_collator()(indexed), whole)

    def _masks(self, seed=0, epoch=0, idx=range(50)):
        return dc.random_spans_noise_mask(568, 0.15, 3.0, dc.example_keys(seed, epoch, idx))

    def test_different_idx_different_masks(self):
        masks = self._masks()
        self.assertLen({row.tobytes() for row in masks}, len(masks))

    def test_different_epochs_different_masks(self):
        self.assertTrue((self._masks(epoch=0) != self._masks(epoch=1)).any(axis=1).all())

    def test_different_seeds_different_masks(self):
        self.assertTrue((self._masks(seed=0) != self._masks(seed=1)).any(axis=1).all())

    def test_epoch_key_and_set_epoch(self):
        collator = make_collator()
        _, examples = random_examples(collator, 4)
        epoch0 = collator(examples)
        with_key = collator([dict(ex, epoch=1) for ex in examples])
        collator.set_epoch(1)
        via_set = collator(examples)
        torch.testing.assert_close(with_key, via_set)
        self.assertFalse(torch.equal(epoch0["input_ids"], via_set["input_ids"]))


class ValidationTest(parameterized.TestCase):
    @parameterized.parameters(-1, 1)
    def test_wrong_length_example(self, delta):
        collator = make_collator()
        bad = [{"input_ids": list(range(BYTE_LOW, BYTE_LOW + collator.raw_length + delta))}]
        with self.assertRaisesRegex(ValueError, rf"raw_length={collator.raw_length}.*packing"):
            collator(bad)

    def test_tokenizer_without_sentinels(self):
        with self.assertRaisesRegex(ValueError, "sentinel"):
            make_collator(tokenizer=ByT5Tokenizer(extra_ids=0))

    def test_tokenizer_with_too_few_sentinels(self):
        # 512 inputs need 28 sentinels; this tokenizer has 10.
        with self.assertRaisesRegex(ValueError, "need 28"):
            make_collator(512, 0.15, 3.0, tokenizer=ByT5Tokenizer(extra_ids=10))

    def test_target_length_too_small(self):
        with self.assertRaisesRegex(ValueError, "target_length.*>= 114"):
            dc.T5DataCollator(tokenizer=TOKENIZER, input_length=512, target_length=113)

    def test_input_length_too_small_for_one_span(self):
        # T5's length helper gives raw length 8 with round(1 / 3) = 0 spans, but a mask always has >= 1 span,
        # so the corrupted input (7 + 1 sentinel + EOS = 9) would not fit in 8.
        with self.assertRaisesRegex(ValueError, "input_length=8"):
            dc.T5DataCollator(tokenizer=TOKENIZER, input_length=8, target_length=8)

    def test_defaults_are_consistent(self):
        collator = dc.T5DataCollator(tokenizer=TOKENIZER)
        self.assertEqual((collator.raw_length, collator.input_length, collator.target_length), (568, 512, 114))
        self.assertEqual(dc.check_span_corruption_settings(), (568, 114))

    @parameterized.parameters(*[(name, *setting) for name, *setting in SETTINGS])
    def test_target_length_defaults_to_what_the_settings_need(self, name, input_length, density, span):
        collator = dc.T5DataCollator(tokenizer=TOKENIZER, input_length=input_length, noise_density=density,
                                     mean_noise_span_length=span)  # fmt: skip
        lengths = dc.check_span_corruption_settings(input_length, density, span)
        self.assertEqual((collator.raw_length, collator.target_length), lengths, name)
        self.assertEqual(lengths, dc.compute_input_and_target_lengths(input_length, density, span))


class SettingsCheckTest(parameterized.TestCase):
    """check_span_corruption_settings: the one check of the span-corruption flags (pre_train_t5 runs it with
    prefix "--" before reading any data)."""

    @parameterized.named_parameters(
        ("density_zero", (64, 0.0, 3.0), r"^--noise_density must be in \(0, 1\), got 0\.0$"),
        ("density_one", (64, 1.0, 3.0), r"^--noise_density must be in \(0, 1\), got 1\.0$"),
        ("span_short", (64, 0.15, 0.5), r"^--mean_noise_span_length must be >= 1, got 0\.5$"),
        (
            "input_too_short",
            (3, 0.15, 3.0),
            r"^--input_length 3 is too short for span corruption with --noise_density "
            r"0\.15 and --mean_noise_span_length 3\.0; the shortest that works is 10$",
        ),
        ("input_one", (1, 0.15, 3.0), r"^--input_length 1 is too short .*; the shortest that works is 10$"),
        ("one_span_does_not_fit", (8, 0.15, 3.0), r"^--input_length 8 is too short"),
    )
    def test_refused_with_the_flag_named(self, settings, message):
        with self.assertRaisesRegex(ValueError, message):
            dc.check_span_corruption_settings(*settings, prefix="--")

    def test_without_prefix_names_the_parameters(self):
        with self.assertRaisesRegex(ValueError, r"^noise_density must be in"):
            dc.check_span_corruption_settings(64, 1.5)

    def test_shortest_suggested_works(self):
        self.assertEqual(dc.check_span_corruption_settings(10), dc.compute_input_and_target_lengths(10, 0.15, 3.0))


if __name__ == "__main__":
    absltest.main()
