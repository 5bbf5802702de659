"""The plain recipe's T5 span-corruption collator: one example at a time, as usually ported from the Flax T5 example.

Shared by bench/pretrain_throughput.py (the plain Seq2SeqTrainer recipe is fed by it) and bench/collator.py (the
baseline the vectorised `data_collators.T5DataCollator` is timed against). `check_span_corruption` checks either
collator's output against the raw blocks.
"""

from __future__ import annotations

import numpy as np
import torch

LABEL_PAD_ID = -100


class PerExampleSpanCorruptionCollator:
    """T5 span corruption the way it is usually ported from the Flax example: one example at a time.

    For each example: draw a noise mask with `random_spans_noise_mask` (numpy, a shuffle per segmentation), replace
    each noise span by a sentinel for the input and each non-noise span by a sentinel for the target, append EOS.
    Sentinels count down from the last vocabulary id (`<extra_id_0>` is the highest id in T5 vocabularies).
    """

    def __init__(self, tokenizer, noise_density, mean_noise_span_length, input_length, target_length, seed=0):
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length
        self.input_length = input_length
        self.target_length = target_length
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self.first_sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
        if self.first_sentinel != len(tokenizer) - 1:
            raise ValueError("expected <extra_id_0> at the last id of the tokenizer")
        self.rng = np.random.default_rng(seed)

    def random_spans_noise_mask(self, length: int) -> np.ndarray:
        num_noise_tokens = int(np.round(length * self.noise_density))
        num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
        num_noise_spans = max(int(np.round(num_noise_tokens / self.mean_noise_span_length)), 1)
        num_nonnoise_tokens = length - num_noise_tokens

        def random_segmentation(num_items: int, num_segments: int) -> np.ndarray:
            boundaries = np.arange(num_items - 1) < (num_segments - 1)
            self.rng.shuffle(boundaries)
            segment_id = np.cumsum(np.concatenate([[0], boundaries]))
            return np.bincount(segment_id, minlength=num_segments)

        noise_lengths = random_segmentation(num_noise_tokens, num_noise_spans)
        nonnoise_lengths = random_segmentation(num_nonnoise_tokens, num_noise_spans)
        interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
        span_starts = np.cumsum(interleaved)[:-1]
        indicator = np.zeros(length, dtype=np.int64)
        indicator[span_starts] = 1
        return np.cumsum(indicator) % 2 == 1

    def _spans_to_sentinels(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        previous = np.concatenate([[False], mask[:-1]])
        starts = mask & ~previous
        sentinels = self.first_sentinel + 1 - np.cumsum(starts)
        kept = np.where(starts, sentinels, ids)[~(mask & previous)]
        return np.concatenate([kept, [self.eos_id]])

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = len(examples)
        input_ids = np.full((batch, self.input_length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((batch, self.input_length), dtype=np.int64)
        labels = np.full((batch, self.target_length), LABEL_PAD_ID, dtype=np.int64)
        for row, example in enumerate(examples):
            ids = np.asarray(example["input_ids"], dtype=np.int64)
            mask = self.random_spans_noise_mask(len(ids))
            inputs = self._spans_to_sentinels(ids, mask)
            targets = self._spans_to_sentinels(ids, ~mask)
            input_ids[row, : len(inputs)] = inputs
            attention_mask[row, : len(inputs)] = 1
            labels[row, : len(targets)] = targets
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(labels),
        }


def check_span_corruption(batch: dict, raw_blocks: list[np.ndarray], tokenizer, input_length: int) -> None:
    """Asserts a collated batch is full-length and that inputs + labels rebuild the raw blocks exactly."""
    first = tokenizer.convert_tokens_to_ids("<extra_id_0>")
    is_sentinel = lambda t: first - 99 <= t <= first  # noqa: E731
    if tuple(batch["input_ids"].shape) != (len(raw_blocks), input_length) or not bool(batch["attention_mask"].all()):
        raise AssertionError(f"inputs are not full {input_length}-token rows: {tuple(batch['input_ids'].shape)}")
    for inputs, labels, raw in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), raw_blocks):
        labels = [t for t in labels if t != LABEL_PAD_ID]
        if inputs[-1] != tokenizer.eos_token_id or labels[-1] != tokenizer.eos_token_id:
            raise AssertionError("inputs and labels must end with EOS")
        spans, current = {}, None
        for token in labels[:-1]:
            if is_sentinel(token):
                current = spans.setdefault(token, [])
            else:
                current.append(token)
        rebuilt = []
        for token in inputs[:-1]:
            rebuilt.extend(spans[token] if is_sentinel(token) else [token])
        if rebuilt != [int(t) for t in raw]:
            raise AssertionError("span corruption does not rebuild the raw block")
