"""T5 span corruption ("denoising") for pre-training, exact and vectorised.

This reproduces the T5 objective of t5/data/preprocessors.py (`span_corruption`:
`random_spans_noise_mask` + `noise_span_to_unique_sentinel` for the inputs +
`nonnoise_span_to_unique_sentinel` for the targets) in numpy, for a whole batch
at once, with no Python loop over tokens.

Randomness is counter-based: an example's noise mask is a pure function of
(seed, epoch, example index), computed with a splitmix64 integer hash. The same
example therefore gets the same mask whatever the batch it lands in, the number
of dataloader workers or processes, and after a resume.

Example (raw block of 8 tokens, mask chosen by the seed, sentinels s0, s1):
    raw      a b c d e f g h
    mask     . . X X . . . X
    inputs   a b s0 e f g s1 EOS
    labels   s0 c d s1 h EOS

The other pre-training objectives (pre_train_t5.py --objective, `make_pretraining_collator`): `DenoisingCollator` runs
UL2's mixture of denoisers (Tay et al. 2022) and the prefix LM with the same per-example keys, and pads each batch to
its own longest input and target; pmi is t5kit.pmi's T5DataCollator subclass (it overrides `noise_mask`, `corrupt`
and `__call__`).
"""

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np
import torch

# Hugging Face losses ignore label positions equal to -100 (CrossEntropyLoss ignore_index default).
LABEL_PAD_ID = -100
# Token string of the n-th sentinel in every T5 / ByT5 vocabulary.
SENTINEL_TEMPLATE = "<extra_id_{}>"
# Defaults of the T5 paper's pre-training objective (Raffel et al. 2020, section 3.1.4); this module owns them, the
# pre-training flags (--noise_density, --mean_noise_span_length, --input_length) take their defaults from here.
DEFAULT_NOISE_DENSITY = 0.15
DEFAULT_MEAN_NOISE_SPAN_LENGTH = 3.0
DEFAULT_INPUT_LENGTH = 512  # encoder input length after corruption: raw blocks of 568 tokens, targets of 114
# Longest input length searched for the shortest one that works, when a too short one is refused.
_LONGEST_SUGGESTED_INPUT = 4096

# splitmix64 constants (Steele, Lea & Flood 2014; the seeding hash of xoshiro / java.util.SplittableRandom).
_MASK64 = (1 << 64) - 1
_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_SPLITMIX_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_SPLITMIX_MUL2 = np.uint64(0x94D049BB133111EB)
# Separate random streams for the two segmentations of one example.
_NOISE_STREAM = 1
_NONNOISE_STREAM = 2


def _check_noise_args(noise_density: float, mean_noise_span_length: float, prefix: str = "") -> None:
    """A ValueError naming the setting (`prefix` + its name: "--" names the command-line flag) that is out of range."""
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"{prefix}noise_density must be in (0, 1), got {noise_density}")
    if not mean_noise_span_length >= 1.0:
        raise ValueError(f"{prefix}mean_noise_span_length must be >= 1, got {mean_noise_span_length}")


def _noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(num_noise_tokens, num_noise_spans) of `random_spans_noise_mask` for one raw length."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, num_spans


def compute_input_and_target_lengths(
    inputs_length: int, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
    """Raw block length whose corrupted input fills `inputs_length`, and its target length.

    Port of `random_spans_helper` (t5/data/preprocessors.py) with one sentinel per
    span in inputs and targets and one EOS each. Unlike T5's helper, the
    noise_density == 0.5 tweak (shrink by one so targets <= inputs) is not applied:
    this returns the largest raw length that fits.

    Example: compute_input_and_target_lengths(512, 0.15, 3.0) -> (568, 114)
      (568 raw tokens: 85 noise in 28 spans; inputs 483 + 28 + 1 = 512, targets 85 + 28 + 1 = 114).
    """
    _check_noise_args(noise_density, mean_noise_span_length)
    if inputs_length < 2:
        raise ValueError(f"inputs_length must be >= 2, got {inputs_length}")

    def lengths(raw_length: int) -> tuple[int, int]:
        num_noise = int(round(raw_length * noise_density))
        num_nonnoise = raw_length - num_noise
        num_spans = int(round(num_noise / mean_noise_span_length))
        return num_nonnoise + num_spans + 1, num_noise + num_spans + 1

    raw_length = inputs_length - 1
    while lengths(raw_length + 1)[0] <= inputs_length:
        raw_length += 1
    return raw_length, lengths(raw_length)[1]


def check_span_corruption_lengths(
    input_length: int, target_length: int | None, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
    """(raw length, noise spans) of a block whose corrupted input fills `input_length`; a ValueError where the
    input is too short to corrupt (input_length < 10 at T5's 0.15 / 3.0) or `target_length` (None: the one
    compute_input_and_target_lengths gives, which the scripts use) cannot hold the targets."""
    raw_length, computed_target = compute_input_and_target_lengths(input_length, noise_density, mean_noise_span_length)
    target_length = computed_target if target_length is None else target_length
    num_noise, num_spans = _noise_counts(raw_length, noise_density, mean_noise_span_length)
    needed_inputs = raw_length - num_noise + num_spans + 1
    needed_targets = num_noise + num_spans + 1
    if needed_inputs > input_length:  # Only reachable for tiny input_length (num_spans clipped to 1).
        raise ValueError(
            f"input_length={input_length} is too small for span corruption: raw length {raw_length} corrupts to "
            f"{needed_inputs} tokens"
        )
    if target_length < needed_targets:
        raise ValueError(
            f"target_length={target_length} is too small: input_length={input_length} with "
            f"noise_density={noise_density}, mean_noise_span_length={mean_noise_span_length} "
            f"needs target_length >= {needed_targets} (raw length {raw_length})"
        )
    return raw_length, num_spans


def check_span_corruption_settings(
    input_length: int = DEFAULT_INPUT_LENGTH,
    noise_density: float = DEFAULT_NOISE_DENSITY,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
    prefix: str = "",
) -> tuple[int, int]:
    """(raw length, target length) of span corruption with these settings, as T5DataCollator computes them; a
    one-line ValueError naming the setting at fault otherwise (each name preceded by `prefix`: "--" for the
    command-line flags of pre_train_t5.py, which check their values here before any data is read).

    check_span_corruption_settings(3, prefix="--") -> ValueError: --input_length 3 is too short for span corruption
      with --noise_density 0.15 and --mean_noise_span_length 3.0; the shortest that works is 10
    """
    _check_noise_args(noise_density, mean_noise_span_length, prefix)

    def lengths(n: int) -> tuple[int, int] | None:
        try:
            raw_length, target_length = compute_input_and_target_lengths(n, noise_density, mean_noise_span_length)
            check_span_corruption_lengths(n, target_length, noise_density, mean_noise_span_length)
        except ValueError:
            return None
        return raw_length, target_length

    found = lengths(input_length)
    if found is None:
        shortest = next((n for n in range(max(input_length + 1, 2), _LONGEST_SUGGESTED_INPUT) if lengths(n)), None)
        raise ValueError(
            f"{prefix}input_length {input_length} is too short for span corruption with {prefix}noise_density "
            f"{noise_density} and {prefix}mean_noise_span_length {mean_noise_span_length}"
            + (f"; the shortest that works is {shortest}" if shortest else "")
        )
    return found


_SHIFT30, _SHIFT27, _SHIFT31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array of >= 1 dimension (arithmetic wraps mod 2**64; array arithmetic
    never warns on overflow, so no errstate is needed: it would cost more than the hash on a small batch)."""
    z = x + _SPLITMIX_GAMMA  # a new array: the in-place steps below never touch x
    z ^= z >> _SHIFT30
    z *= _SPLITMIX_MUL1
    z ^= z >> _SHIFT27
    z *= _SPLITMIX_MUL2
    z ^= z >> _SHIFT31
    return z


def splitmix64_int(x: int) -> int:
    """`_splitmix64` of one Python int in [0, 2**64): the same bits, without numpy's per-call cost (small batches)."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _as_uint64(values: Any) -> np.ndarray:
    """Python / numpy integers (negative ones too) -> uint64 array, two's complement."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":  # fits a numpy integer type: the cast wraps negatives to two's complement
        return array.astype(np.uint64)
    flat = np.asarray(values, dtype=object).ravel()
    return np.array([int(v) & _MASK64 for v in flat], dtype=np.uint64).reshape(np.shape(values))


def example_keys(seed: int, epochs: Any, indices: Any) -> np.ndarray:
    """Per-example 64-bit random keys, a hash of (seed, epoch, index).

    `epochs` and `indices` are integers or 1-D integer sequences (broadcast together).
    Example: example_keys(0, 0, [5, 6]) -> uint64 array of 2 keys; key 5 is the
    same in any batch.
    """
    epochs_u, indices_u = np.atleast_1d(_as_uint64(epochs)), np.atleast_1d(_as_uint64(indices))
    if epochs_u.shape != indices_u.shape:
        epochs_u, indices_u = np.broadcast_arrays(epochs_u, indices_u)
    return _splitmix64(_splitmix64(_seed_key(int(seed)) ^ epochs_u) ^ indices_u).reshape(-1)


# Up to this many examples, keys are hashed with Python ints: a handful of int operations per example beat numpy's
# fixed cost per array operation (bench/collator.py, batch 1).
_PYTHON_KEYS_MAX_BATCH = 16


def _example_keys_small(seed: int, epochs: Sequence[int], indices: Sequence[int]) -> np.ndarray:
    """`example_keys` for short Python int lists, bit for bit (tests/test_data_collators.py checks both paths agree)."""
    seed_key = int(_seed_key(int(seed))[0])
    return np.array(
        [splitmix64_int(splitmix64_int(seed_key ^ (e & _MASK64)) ^ (i & _MASK64)) for e, i in zip(epochs, indices)],
        dtype=np.uint64,
    )


def _keys_of(examples: Sequence[dict], seed: int, epoch: int, first: int) -> np.ndarray:
    """The examples' keys: each from its "idx" and "epoch" (else the running position first + i, and `epoch`)."""
    indices = [int(ex["idx"]) if ex.get("idx") is not None else first + i for i, ex in enumerate(examples)]
    epochs = [int(ex["epoch"]) if ex.get("epoch") is not None else epoch for ex in examples]
    if len(examples) <= _PYTHON_KEYS_MAX_BATCH:
        return _example_keys_small(seed, epochs, indices)
    return example_keys(seed, epochs, indices)


@functools.lru_cache(maxsize=16)
def _seed_key(seed: int) -> np.ndarray:
    key = _splitmix64(np.atleast_1d(_as_uint64(seed)))
    key.flags.writeable = False
    return key


@functools.lru_cache(maxsize=64)
def _gap_counters(num_noise_gaps: int, num_nonnoise_gaps: int) -> np.ndarray:
    """splitmix64 of the gap counters of the noise stream, then of the non-noise stream (the same for every batch:
    computed once, read-only). Entry i of stream s hashes i + (s << 32), so an example's random numbers depend only
    on (its key, stream, i)."""
    counters = np.concatenate(
        [
            np.arange(num_noise_gaps, dtype=np.uint64) + np.uint64(_NOISE_STREAM << 32),
            np.arange(num_nonnoise_gaps, dtype=np.uint64) + np.uint64(_NONNOISE_STREAM << 32),
        ]
    )
    hashed = _splitmix64(counters)
    hashed.flags.writeable = False
    return hashed


def _random_cuts(random: np.ndarray, num_items: int, num_segments: int) -> np.ndarray:
    """(B, num_segments + 1) cut points 0 = c_0 < c_1 < ... < c_S = num_items: a uniformly random split of
    num_items items into num_segments non-empty segments (segment j is items [c_j, c_{j+1})).

    Picks num_segments - 1 of the num_items - 1 gaps between items uniformly (the gaps with the smallest random
    keys), as T5's `_random_segmentation` does with a shuffle. Example: num_items=5, num_segments=2, chosen gap 1
    -> cuts [0, 2, 5], segment lengths [2, 3]. `random`: (B, num_items - 1) distinct-per-row uint64 keys.
    """
    batch = random.shape[0]
    cuts = np.empty((batch, num_segments + 1), np.int64)
    cuts[:, 0] = 0
    cuts[:, -1] = num_items
    k = num_segments - 1
    if k == 0:
        return cuts
    # The values in a row are all distinct (splitmix64 is a bijection and the counters differ), so the k smallest
    # form a unique set: a linear-time partial selection picks exactly the gaps a full sort would.
    chosen = random.argpartition(k - 1, axis=1)[:, :k] if k < num_items - 1 else random.argsort(axis=1)
    chosen.sort(axis=1)
    cuts[:, 1:-1] = chosen
    cuts[:, 1:-1] += 1
    return cuts


def _noise_spans(
    length: int, noise_density: float, mean_noise_span_length: float, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends): (B, num_spans) int64 positions of each row's noise spans, [starts[j], ends[j]).

    Spans alternate non-noise, noise, non-noise, ...: non-noise span j comes right before noise span j, so noise
    span j starts after j + 1 non-noise and j noise segments.
    """
    _check_noise_args(noise_density, mean_noise_span_length)
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
    num_noise, num_spans = _noise_counts(length, noise_density, mean_noise_span_length)
    # One hash pass for both segmentations: the noise stream's gap keys, then the non-noise stream's.
    random = _splitmix64(keys[:, None] ^ _gap_counters(num_noise - 1, length - num_noise - 1)[None, :])
    noise_cuts = _random_cuts(random[:, : num_noise - 1], num_noise, num_spans)
    nonnoise_ends = _random_cuts(random[:, num_noise - 1 :], length - num_noise, num_spans)[:, 1:]
    return nonnoise_ends + noise_cuts[:, :-1], nonnoise_ends + noise_cuts[:, 1:]


def _mask_from_spans(starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Bool (B, length) mask, True inside the [starts, ends) spans (disjoint, increasing, ends <= length)."""
    rows = np.arange(starts.shape[0])[:, None]
    toggles = np.zeros((starts.shape[0], length + 1), bool)  # the mask flips at every start and every end
    toggles[rows, starts] = True
    toggles[rows, ends] = True
    return np.logical_xor.accumulate(toggles[:, :length], axis=1)


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, keys: np.ndarray
) -> np.ndarray:
    """Bool noise mask (B, length), one row per key, T5's `random_spans_noise_mask` semantics.

    num_noise = round(length * noise_density) clipped to [1, length - 1], split
    into num_spans = max(1, round(num_noise / mean_noise_span_length)) noise spans;
    the non-noise tokens are split into as many spans; spans alternate non-noise,
    noise, ..., so a row starts with non-noise and ends with noise.

    Example: length=10, noise_density=0.3, mean_noise_span_length=1.5 -> every row
    has 3 noise tokens in 2 spans, e.g. [F F T F F F F F T T].
    `keys` is a uint64 array (B,), e.g. from `example_keys`.
    """
    return _mask_from_spans(*_noise_spans(length, noise_density, mean_noise_span_length, keys), length)


def _span_to_sentinel(ids: np.ndarray, span_mask: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
    """Replace each run of True in `span_mask` by one sentinel (the k-th run by sentinel_ids[k]).

    Every row must keep the same number of tokens. Example: ids [a b c d], mask
    [F T T F] -> [a s0 d].
    """
    prev = np.zeros_like(span_mask)
    prev[:, 1:] = span_mask[:, :-1]
    first_in_span = span_mask & ~prev
    span_index = np.cumsum(first_in_span, axis=1) - 1
    values = np.where(first_in_span, sentinel_ids[np.maximum(span_index, 0)], ids)
    keep = ~(span_mask & prev)
    return values[keep].reshape(ids.shape[0], -1)


def _keep_with_sentinels(ids: np.ndarray, keep: np.ndarray, first: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
    """`_span_to_sentinel` when the spans' first positions are known: ids where `keep` (a scratch mask the caller
    hands over: it is modified), and sentinel_ids[j] at position first[:, j] of every row."""
    rows = np.arange(ids.shape[0])[:, None]
    values = ids.copy()
    values[rows, first] = sentinel_ids
    keep[rows, first] = True
    return values[keep].reshape(ids.shape[0], -1)


def _sentinel_ids(tokenizer: Any, num_spans: int, raw_length: int) -> np.ndarray:
    """Ids of <extra_id_0> .. <extra_id_{num_spans - 1}>, looked up by name; a ValueError if any is missing."""
    tokens = [SENTINEL_TEMPLATE.format(i) for i in range(num_spans)]
    if not tokens:
        return np.zeros(0, np.int64)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    unk_id = tokenizer.unk_token_id
    missing = [t for t, i in zip(tokens, ids) if i is None or i == unk_id]
    if missing or len(set(ids)) != num_spans:
        raise ValueError(
            f"tokenizer lacks sentinel tokens: need {num_spans} distinct ({tokens[0]} .. {tokens[-1]}) "
            f"for raw length {raw_length}; missing {missing[:3]}{'...' if len(missing) > 3 else ''}"
        )
    return np.asarray(ids, dtype=np.int64)


def _stack_blocks(examples: Sequence[dict], raw_length: int, source: str) -> np.ndarray:
    """(B, raw_length) int64 rows of the examples' "input_ids"; a ValueError naming any example of another length
    (`source`: where the raw length comes from, for the message)."""
    rows = np.empty((len(examples), raw_length), np.int64)
    for position, example in enumerate(examples):
        ids = np.asarray(example["input_ids"], dtype=np.int64)
        if ids.ndim != 1 or ids.shape[0] != raw_length:
            raise ValueError(
                f"example {position} has input_ids of shape {tuple(ids.shape)}, expected exactly "
                f"raw_length={raw_length} ids: the packing step must produce full-length blocks "
                f"of raw_length ({source})"
            )
        rows[position] = ids
    return rows


def _with_eos_padded(x: np.ndarray, eos_id: int, width: int, pad_id: int) -> tuple[np.ndarray, int]:
    """(rows of `x` followed by EOS, padded with pad_id to `width` columns; the filled width)."""
    out = np.full((x.shape[0], width), pad_id, np.int64)
    out[:, : x.shape[1]] = x
    out[:, x.shape[1]] = eos_id
    return out, x.shape[1] + 1


@dataclasses.dataclass
class T5DataCollator:
    """Batches raw token blocks into T5 span-corruption inputs and labels.

    Each example is a dict with "input_ids" of exactly `raw_length` ids, optionally
    "idx" (position in the dataset) and "epoch". Returns int64 tensors input_ids and
    attention_mask (B, input_length) and labels (B, target_length), padded with the
    pad id / 0 / LABEL_PAD_ID. T5ForConditionalGeneration builds decoder inputs from labels.

    The collator owns the lengths: `raw_length` (the block length packing must produce) and, unless given,
    `target_length` follow from input_length, noise_density and mean_noise_span_length
    (`check_span_corruption_settings`).

    Example (raw_length 8, the mask [. . X X . . . X]):
        input_ids [a b c d e f g h] -> input_ids [a b <extra_id_0> e f g <extra_id_1> </s> pad..]
                                        labels    [<extra_id_0> c d <extra_id_1> h </s> -100..]
    """

    tokenizer: Any
    noise_density: float = DEFAULT_NOISE_DENSITY
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH
    input_length: int = DEFAULT_INPUT_LENGTH
    target_length: int | None = None  # None: the length the targets need (114 for the defaults)
    seed: int = 0
    epoch: int = 0
    # Derived in __post_init__.
    raw_length: int = dataclasses.field(init=False)
    sentinel_ids: np.ndarray = dataclasses.field(init=False, repr=False)
    _examples_seen: int = dataclasses.field(init=False, default=0, repr=False)

    def __post_init__(self):
        if self.target_length is None:
            self.target_length = check_span_corruption_settings(
                self.input_length, self.noise_density, self.mean_noise_span_length
            )[1]
        self.raw_length, num_spans = check_span_corruption_lengths(
            self.input_length, self.target_length, self.noise_density, self.mean_noise_span_length
        )
        self.sentinel_ids = self._lookup_sentinels(num_spans)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        if self.eos_id is None or self.pad_id is None:
            raise ValueError("tokenizer needs an eos_token_id and a pad_token_id")

    def _lookup_sentinels(self, num_spans: int) -> np.ndarray:
        return _sentinel_ids(self.tokenizer, num_spans, self.raw_length)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for examples that carry no "epoch" key; changes every mask."""
        self.epoch = int(epoch)

    def _stack_input_ids(self, examples: Sequence[dict]) -> np.ndarray:
        return _stack_blocks(
            examples, self.raw_length, f"from compute_input_and_target_lengths({self.input_length}, ...)"
        )

    def _keys(self, examples: Sequence[dict]) -> np.ndarray:
        first = self._examples_seen
        self._examples_seen += len(examples)
        return _keys_of(examples, self.seed, self.epoch, first)

    def noise_mask(self, examples: Sequence[dict]) -> np.ndarray:
        """The (B, raw_length) noise mask __call__ would use (advances the idx counter likewise)."""
        return random_spans_noise_mask(
            self.raw_length, self.noise_density, self.mean_noise_span_length, self._keys(examples)
        )

    def corrupt(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
        """Span-corrupt (B, raw_length) ids with a given (B, raw_length) noise mask."""
        return self._batch(
            _span_to_sentinel(ids, mask, self.sentinel_ids), _span_to_sentinel(ids, ~mask, self.sentinel_ids)
        )

    def _batch(self, inputs: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
        inputs, filled = _with_eos_padded(inputs, self.eos_id, self.input_length, self.pad_id)
        labels, _ = _with_eos_padded(labels, self.eos_id, self.target_length, LABEL_PAD_ID)
        attention = np.zeros((inputs.shape[0], self.input_length), np.int64)
        attention[:, :filled] = 1
        return {
            "input_ids": torch.from_numpy(inputs),
            "attention_mask": torch.from_numpy(attention),
            "labels": torch.from_numpy(labels),
        }

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        """The same batch as corrupt(ids, noise_mask(examples)), built from the span positions directly."""
        ids = self._stack_input_ids(examples)
        starts, ends = _noise_spans(
            self.raw_length, self.noise_density, self.mean_noise_span_length, self._keys(examples)
        )
        mask = _mask_from_spans(starts, ends, self.raw_length)
        # Non-noise span 0 starts every row; non-noise span j > 0 starts where noise span j - 1 ends.
        nonnoise_starts = np.concatenate([np.zeros_like(starts[:, :1]), ends[:, :-1]], axis=1)
        return self._batch(
            _keep_with_sentinels(ids, ~mask, starts, self.sentinel_ids),
            _keep_with_sentinels(ids, mask, nonnoise_starts, self.sentinel_ids),
        )


@dataclasses.dataclass
class Seq2SeqCollator:
    """Dynamic padding for fine-tuning: pads each batch to its own longest input and target, never to a max length.

    Inputs are padded with the tokenizer's pad id (attention 0), labels with LABEL_PAD_ID so the loss ignores them.
    `pad_to_multiple_of` rounds the padded lengths up (8 suits GPU tensor cores; 1 = no rounding).

    >>> Seq2SeqCollator(tokenizer)([{"input_ids": [5, 6, 1]}, {"input_ids": [7, 1]}])["input_ids"]  # doctest: +SKIP
    tensor([[5, 6, 1], [7, 1, 0]])
    """

    tokenizer: Any
    pad_to_multiple_of: int = 1

    def _width(self, rows: Sequence[Sequence[int]]) -> int:
        longest = max((len(row) for row in rows), default=0)
        multiple = max(1, self.pad_to_multiple_of)
        return -(-longest // multiple) * multiple

    def _pad(self, rows: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
        out = np.full((len(rows), self._width(rows)), pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        inputs = [example["input_ids"] for example in examples]
        input_ids = self._pad(inputs, self.tokenizer.pad_token_id)
        attention = np.zeros_like(input_ids)
        for i, row in enumerate(inputs):
            attention[i, : len(row)] = 1
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention)}
        if "labels" in examples[0]:
            batch["labels"] = torch.from_numpy(self._pad([example["labels"] for example in examples], LABEL_PAD_ID))
        return batch


# ---------------------------------------------------------------------------------------------------------------
# Objectives beyond span corruption: prefix LM and UL2's mixture of denoisers

SPAN_CORRUPTION, UL2, PREFIX_LM, PMI = "span_corruption", "ul2", "prefix_lm", "pmi"
# The choices of pre_train_t5.py --objective. pmi is span corruption that masks a vocabulary's correlated n-grams whole
# (t5kit.pmi.PMISpanCorruptionCollator, a T5DataCollator: the same lengths and settings).
OBJECTIVES = (SPAN_CORRUPTION, UL2, PREFIX_LM, PMI)
# UL2's paradigm ("mode") tokens, one per denoiser family (Tay et al. 2022, section 3.1.3 "Mode switching").
UL2_MODE_TOKENS = {"R": "[NLU]", "X": "[NLG]", "S": "[S2S]"}
UL2_FAMILIES = tuple(UL2_MODE_TOKENS)  # the order of --ul2_rates
# Relative weights of the R, X and S families (--ul2_rates), each split equally among the family's denoisers: 2 4 1
# draws each of the seven denoisers equally often, as the paper's `ul2_objective` (appendix) samples its tasks when it
# is given no rates.
DEFAULT_UL2_RATES = (2.0, 4.0, 1.0)
DEFAULT_UL2_S_TARGET_FRACTION = 0.25  # the S-denoiser's mean target share of a block (--ul2_s_target_fraction)
# The per-example random streams beyond the two span segmentations (_NOISE_STREAM, _NONNOISE_STREAM).
_DENOISER_STREAM = 3
_SPLIT_STREAM = 4
_LONGEST_SUGGESTED_DENOISING_INPUT = 8192


@dataclasses.dataclass(frozen=True)
class Denoiser:
    """One denoising task of a mixture.

    A span denoiser (`mean_noise_span_length` set) is T5 span corruption of the whole block (`random_spans_noise_mask`
    with this noise density and mean span length, one sentinel per span in inputs and targets). The sequential
    denoiser (`mean_noise_span_length` None) is a prefix LM: the block's first tokens are the input, the rest is the
    target. Its target length is uniform on 1 .. T with T = round(2 * noise_density * raw_length) - 1 (clipped to
    [1, raw_length - 1]), so noise_density of the block is the target on average; at noise_density 0.5 the split
    point is uniform on 1 .. raw_length - 1, T5's `random_prefix_noise_mask`.

    `family` ("R", "X" or "S") picks the UL2 mode token of the input.
    """

    family: str
    noise_density: float
    mean_noise_span_length: float | None = None

    @property
    def sequential(self) -> bool:
        return self.mean_noise_span_length is None

    def longest_sequential_target(self, raw_length: int) -> int:
        """T: a sequential denoiser's target (without EOS) has 1 .. T tokens of a block of raw_length."""
        return min(raw_length - 1, max(1, int(round(2 * self.noise_density * raw_length)) - 1))

    def lengths(self, raw_length: int) -> tuple[int, int, int]:
        """(longest input, longest target, sentinels) for a block of raw_length; EOS counted, no mode token."""
        if self.sequential:
            return raw_length, self.longest_sequential_target(raw_length) + 1, 0
        num_noise, num_spans = _noise_counts(raw_length, self.noise_density, self.mean_noise_span_length)
        return raw_length - num_noise + num_spans + 1, num_noise + num_spans + 1, num_spans


# UL2's seven denoisers (Tay et al. 2022, section 3.1.2, the final mixture): R (mean span 3 and 8, rate 0.15); X (mean
# span 3 and 8 at rate 0.5, mean span 64 at rates 0.15 and 0.5); S (prefix LM, a quarter of the sequence as target).
# What DenoisingCollator makes of them, and where it departs from the paper, is in its docstring.
UL2_DENOISERS = (
    Denoiser("R", 0.15, 3.0),
    Denoiser("R", 0.15, 8.0),
    Denoiser("X", 0.5, 3.0),
    Denoiser("X", 0.5, 8.0),
    Denoiser("X", 0.15, 64.0),
    Denoiser("X", 0.5, 64.0),
    Denoiser("S", DEFAULT_UL2_S_TARGET_FRACTION),
)
# --objective prefix_lm: T5's prefix LM, the split point uniform on 1 .. raw_length - 1.
PREFIX_LM_DENOISER = Denoiser("S", 0.5)


def ul2_denoisers(
    rates: Sequence[float] = DEFAULT_UL2_RATES, s_target_fraction: float = DEFAULT_UL2_S_TARGET_FRACTION
) -> tuple[tuple[Denoiser, ...], tuple[float, ...]]:
    """(denoisers, per-denoiser weights): UL2_DENOISERS with the S-denoiser's mean target share `s_target_fraction`,
    and each family's weight in `rates` (R, X, S) split equally among its denoisers."""
    if len(rates) != len(UL2_FAMILIES):
        raise ValueError(f"ul2_rates needs {len(UL2_FAMILIES)} weights (R X S), got {len(rates)}: {list(rates)}")
    denoisers = tuple(
        dataclasses.replace(d, noise_density=s_target_fraction) if d.sequential else d for d in UL2_DENOISERS
    )
    family_rate = dict(zip(UL2_FAMILIES, (float(r) for r in rates)))
    family_size = {family: sum(d.family == family for d in denoisers) for family in UL2_FAMILIES}
    return denoisers, tuple(family_rate[d.family] / family_size[d.family] for d in denoisers)


def _check_denoisers(denoisers: Sequence[Denoiser], rates: Sequence[float]) -> None:
    if not denoisers or len(rates) != len(denoisers):
        raise ValueError(f"need one rate per denoiser: {len(denoisers)} denoisers, {len(rates)} rates")
    if any(not r >= 0 for r in rates) or not sum(rates) > 0:
        raise ValueError(f"ul2_rates must be >= 0 with a positive sum, got {list(rates)}")
    for d in denoisers:
        if d.family not in UL2_MODE_TOKENS:
            raise ValueError(f"denoiser family must be one of {', '.join(UL2_FAMILIES)}, got {d.family!r}")
        if d.sequential:
            if not 0.0 < d.noise_density <= 0.5:
                raise ValueError(f"ul2_s_target_fraction must be in (0, 0.5], got {d.noise_density}")
        else:
            _check_noise_args(d.noise_density, d.mean_noise_span_length)


def denoising_lengths(
    denoisers: Sequence[Denoiser], input_length: int, mode_tokens: bool
) -> tuple[int, int, int] | None:
    """(raw length, longest target, sentinels needed) of the longest block whose every denoiser's input (EOS and the
    mode token included) fits `input_length`; None when not even a block of 2 tokens fits.

    Example: the UL2 mixture at 512 inputs -> (511, 342, 85): the S-denoiser's longest input (510 prefix tokens, EOS,
    mode token) sets the block length; the X-denoiser at rate 0.5 and mean span 3 has the longest targets (255 noise
    tokens in 85 spans, EOS) and needs the most sentinels.
    """
    extra = int(mode_tokens)
    span_rates = [d.noise_density for d in denoisers if not d.sequential]
    upper = int((input_length + 2) / (1.0 - max(span_rates, default=0.0))) + 2
    for raw_length in range(upper, 1, -1):
        lengths = [d.lengths(raw_length) for d in denoisers]
        if all(longest_input + extra <= input_length for longest_input, _, _ in lengths):
            return raw_length, max(t for _, t, _ in lengths), max(s for _, _, s in lengths)
    return None


def _objective_denoisers(
    objective: str, ul2_rates: Sequence[float], ul2_s_target_fraction: float
) -> tuple[tuple[Denoiser, ...], tuple[float, ...], bool]:
    """(denoisers, weights, mode tokens) of --objective ul2 or prefix_lm."""
    if objective == UL2:
        return (*ul2_denoisers(ul2_rates, ul2_s_target_fraction), True)
    if objective == PREFIX_LM:
        return (PREFIX_LM_DENOISER,), (1.0,), False
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def check_objective_settings(
    objective: str = SPAN_CORRUPTION,
    input_length: int = DEFAULT_INPUT_LENGTH,
    noise_density: float = DEFAULT_NOISE_DENSITY,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
    ul2_rates: Sequence[float] = DEFAULT_UL2_RATES,
    ul2_s_target_fraction: float = DEFAULT_UL2_S_TARGET_FRACTION,
    prefix: str = "",
) -> tuple[int, int]:
    """(raw length, longest target) of a pre-training objective with these settings, as its collator computes them;
    a one-line ValueError naming the setting at fault otherwise (each name preceded by `prefix`, "--" for the flags).
    span_corruption and pmi are `check_span_corruption_settings`; noise_density and mean_noise_span_length apply only
    to them, ul2_rates and ul2_s_target_fraction only to ul2.

    check_objective_settings("ul2", 512) -> (511, 342); check_objective_settings("prefix_lm", 512) -> (512, 512)
    """
    if objective in (SPAN_CORRUPTION, PMI):
        return check_span_corruption_settings(input_length, noise_density, mean_noise_span_length, prefix)
    if objective not in OBJECTIVES:
        raise ValueError(f"{prefix}objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    try:
        denoisers, rates, mode_tokens = _objective_denoisers(objective, ul2_rates, ul2_s_target_fraction)
        _check_denoisers(denoisers, rates)
    except ValueError as err:
        raise ValueError(f"{prefix}{err}") from None
    active = [d for d, rate in zip(denoisers, rates) if rate > 0]
    found = denoising_lengths(active, input_length, mode_tokens)
    if found is None:
        shortest = next(
            (n for n in range(max(input_length + 1, 2), _LONGEST_SUGGESTED_DENOISING_INPUT)
             if denoising_lengths(active, n, mode_tokens)),
            None,
        )  # fmt: skip
        raise ValueError(
            f"{prefix}input_length {input_length} is too short for {prefix}objective {objective}"
            + (f"; the shortest that works is {shortest}" if shortest else "")
        )
    return found[0], found[1]


def objective_special_tokens(objective: str) -> tuple[str, ...]:
    """Tokens the tokenizer must have beyond T5's for this objective: UL2's mode tokens [NLU] [NLG] [S2S]."""
    return tuple(UL2_MODE_TOKENS.values()) if objective == UL2 else ()


def _stream_random(keys: np.ndarray, stream: int) -> np.ndarray:
    """One uint64 random number per key from its own stream (counter 0 of `stream`, as `_gap_counters` numbers)."""
    return _splitmix64(keys ^ _splitmix64(np.array([stream << 32], dtype=np.uint64)))


@dataclasses.dataclass
class DenoisingCollator:
    """A mixture of denoisers (UL2) or a prefix LM for pre-training, with dynamic padding.

    Each example (a dict with "input_ids" of exactly `raw_length` ids, optionally "idx" and "epoch", as for
    T5DataCollator) draws one denoiser from `denoisers` with probability proportional to `rates` (None: equal), and
    the denoiser's random choices (spans, split point), all as pure functions of its (seed, epoch, idx) key: the same
    example gets the same input and target in any batch, worker count or resume.

    Span denoisers corrupt as T5DataCollator does (inputs with one sentinel per noise span, targets the sentinels and
    the noise spans); the sequential denoiser gives input = the block's first part, target = the rest. Every input and
    target ends with EOS; with `mode_tokens` the input starts with its family's mode token ([NLU] R, [NLG] X, [S2S] S).

    Lengths: one block length for every denoiser, `raw_length`, the longest whose every input fits `input_length`
    (`denoising_lengths`); `target_length` is the longest possible target. Inputs and targets differ in length from
    denoiser to denoiser (UL2 at 512 inputs, mode token and EOS included: R inputs 446-462 tokens, X inputs 261-437
    with targets up to 342, S inputs up to 512), so a batch is padded to its own longest input and its own longest
    target (dynamic padding; rounded up to a multiple of `pad_to_multiple_of`), never to the longest possible:
    input_ids and attention_mask (B, widest input), labels (B, widest target) padded with LABEL_PAD_ID, which the
    loss ignores.

    Example (prefix LM, raw length 6, split point 4):
        input_ids [a b c d e f] -> input_ids [a b c d </s>]   labels [e f </s>]

    UL2 (`make_pretraining_collator("ul2", ...)`), against Tay et al. 2022, "UL2: Unifying Language Learning
    Paradigms", section 3.1.2 (Mixture of Denoisers) and 3.1.3 (Mode Switching):
    - The seven denoisers of the paper's final mixture (UL2_DENOISERS): R with mean span 3 and 8 at rate 0.15; X with
      mean span 3 and 8 at rate 0.5 and mean span 64 at rates 0.15 and 0.5; S, a prefix LM with 25% of the block as
      target on average (--ul2_s_target_fraction).
    - R and X spans: T5's `random_spans_noise_mask` with each (rate, mean span): round(rate * L) noise tokens in
      max(1, round(noise / mean span)) spans, split uniformly at random. This is what the paper's released
      `ul2_objective` (appendix) runs, T5's span corruption per setting; the paper's text describes span lengths
      drawn from a normal distribution around the mean instead.
    - S: one split per block, the target running to the block's end (section 3.1.2: a single span that ends the
      sequence, its length drawn uniformly): target length uniform on 1 .. T, T = round(2 * 0.25 * L) - 1.
    - Mixing: per example, denoiser i with probability rates[i] / sum(rates); --ul2_rates R X S default 2 4 1, each
      of the seven equally often, as the released `ul2_objective` samples its tasks when given no rates.
    - Mode tokens: [NLU] before R inputs, [NLG] before X inputs, [S2S] before S inputs (section 3.1.3), added to
      the tokenizer as special tokens (t5kit.tokenizer).
    - Departure: one block length for all denoisers, packed once (`raw_length`, 511 at 512 inputs), where the paper's
      code cuts each denoiser its own block so that every input fills the encoder; R and X inputs here are shorter
      than input_length (see Lengths above), and targets range from 2 to 342 tokens. bench/collator.py measures the
      padding this leaves in batches of 64: about 23% of input and 46% of target positions.
    """

    tokenizer: Any
    denoisers: tuple[Denoiser, ...] = UL2_DENOISERS
    rates: tuple[float, ...] | None = None
    input_length: int = DEFAULT_INPUT_LENGTH
    seed: int = 0
    epoch: int = 0
    mode_tokens: bool = True
    pad_to_multiple_of: int = 1
    # Derived in __post_init__.
    raw_length: int = dataclasses.field(init=False)
    target_length: int = dataclasses.field(init=False)
    sentinel_ids: np.ndarray = dataclasses.field(init=False, repr=False)
    _examples_seen: int = dataclasses.field(init=False, default=0, repr=False)

    def __post_init__(self):
        self.denoisers = tuple(self.denoisers)
        self.rates = tuple(float(r) for r in (self.rates if self.rates is not None else [1.0] * len(self.denoisers)))
        _check_denoisers(self.denoisers, self.rates)
        weights = np.asarray(self.rates)
        self._active = np.flatnonzero(weights > 0)
        cumulative = np.cumsum(weights[self._active]) / weights[self._active].sum()
        cumulative[-1] = 1.0  # a uniform draw in [0, 1) always lands on an active denoiser
        self._cumulative = cumulative
        found = denoising_lengths([self.denoisers[i] for i in self._active], self.input_length, self.mode_tokens)
        if found is None:
            raise ValueError(f"input_length={self.input_length} is too small for these denoisers")
        self.raw_length, self.target_length, num_sentinels = found
        self.sentinel_ids = _sentinel_ids(self.tokenizer, num_sentinels, self.raw_length)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        if self.eos_id is None or self.pad_id is None:
            raise ValueError("tokenizer needs an eos_token_id and a pad_token_id")
        self._mode_ids = np.zeros(len(self.denoisers), np.int64)
        if self.mode_tokens:
            for i, denoiser in enumerate(self.denoisers):
                token = UL2_MODE_TOKENS[denoiser.family]
                token_id = self.tokenizer.convert_tokens_to_ids(token)
                if token_id is None or token_id == self.tokenizer.unk_token_id:
                    raise ValueError(
                        f"tokenizer lacks the UL2 mode token {token}: add {', '.join(UL2_MODE_TOKENS.values())} as "
                        "special tokens (t5kit.tokenizer.add_special_tokens; pre_train_t5.py --objective ul2 does)"
                    )
                self._mode_ids[i] = token_id

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for examples that carry no "epoch" key; changes every example's draws."""
        self.epoch = int(epoch)

    def _keys(self, examples: Sequence[dict]) -> np.ndarray:
        first = self._examples_seen
        self._examples_seen += len(examples)
        return _keys_of(examples, self.seed, self.epoch, first)

    def denoiser_indices(self, keys: np.ndarray) -> np.ndarray:
        """(B,) index into `denoisers` of each key's denoiser: a uniform draw from the key's own stream, placed on
        the cumulative rates (a pure function of the key)."""
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
        if len(self._active) == 1:
            return np.full(keys.shape[0], self._active[0], np.int64)
        uniform = (_stream_random(keys, _DENOISER_STREAM) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return self._active[np.searchsorted(self._cumulative, uniform, side="right")]

    def sequential_target_lengths(self, denoiser: Denoiser, keys: np.ndarray) -> np.ndarray:
        """(B,) target lengths (without EOS) a sequential denoiser draws for these keys: uniform on 1 .. T."""
        longest = denoiser.longest_sequential_target(self.raw_length)
        return 1 + (_stream_random(keys, _SPLIT_STREAM) % np.uint64(longest)).astype(np.int64)

    def _span_denoise(self, denoiser: Denoiser, ids: np.ndarray, keys: np.ndarray):
        starts, ends = _noise_spans(self.raw_length, denoiser.noise_density, denoiser.mean_noise_span_length, keys)
        mask = _mask_from_spans(starts, ends, self.raw_length)
        nonnoise_starts = np.concatenate([np.zeros_like(starts[:, :1]), ends[:, :-1]], axis=1)
        sentinels = self.sentinel_ids[: starts.shape[1]]
        inputs = _keep_with_sentinels(ids, ~mask, starts, sentinels)
        targets = _keep_with_sentinels(ids, mask, nonnoise_starts, sentinels)
        inputs, input_length = _with_eos_padded(inputs, self.eos_id, inputs.shape[1] + 1, self.pad_id)
        targets, target_length = _with_eos_padded(targets, self.eos_id, targets.shape[1] + 1, LABEL_PAD_ID)
        rows = ids.shape[0]
        return inputs, np.full(rows, input_length), targets, np.full(rows, target_length)

    def _sequential_denoise(self, denoiser: Denoiser, ids: np.ndarray, keys: np.ndarray):
        rows = np.arange(ids.shape[0])
        target_lengths = self.sequential_target_lengths(denoiser, keys)
        prefix = self.raw_length - target_lengths  # 1 .. raw_length - 1 tokens
        width = int(prefix.max()) + 1
        inputs = np.where(np.arange(width)[None, :] < prefix[:, None], ids[:, :width], self.pad_id)
        inputs[rows, prefix] = self.eos_id
        steps = np.arange(int(target_lengths.max()) + 1)[None, :]
        source = np.minimum(prefix[:, None] + steps, self.raw_length - 1)
        targets = np.where(steps < target_lengths[:, None], np.take_along_axis(ids, source, axis=1), LABEL_PAD_ID)
        targets[rows, target_lengths] = self.eos_id
        return inputs, prefix + 1, targets, target_lengths + 1

    def _width(self, longest: int) -> int:
        multiple = max(1, self.pad_to_multiple_of)
        return -(-longest // multiple) * multiple

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        ids = _stack_blocks(examples, self.raw_length, f"DenoisingCollator.raw_length for input_length "
                                                       f"{self.input_length}")  # fmt: skip
        keys = self._keys(examples)
        choice = self.denoiser_indices(keys)
        offset = int(self.mode_tokens)
        input_lengths = np.empty(len(examples), np.int64)
        target_lengths = np.empty(len(examples), np.int64)
        parts = []
        for index in np.unique(choice):
            rows = np.flatnonzero(choice == index)
            denoiser = self.denoisers[index]
            denoise = self._sequential_denoise if denoiser.sequential else self._span_denoise
            inputs, input_lengths[rows], targets, target_lengths[rows] = denoise(denoiser, ids[rows], keys[rows])
            parts.append((rows, index, inputs, targets))
        input_lengths += offset
        input_ids = np.full((len(examples), self._width(int(input_lengths.max()))), self.pad_id, np.int64)
        labels = np.full((len(examples), self._width(int(target_lengths.max()))), LABEL_PAD_ID, np.int64)
        for rows, index, inputs, targets in parts:
            if offset:
                input_ids[rows, 0] = self._mode_ids[index]
            input_ids[rows, offset : offset + inputs.shape[1]] = inputs
            labels[rows, : targets.shape[1]] = targets
        attention = (np.arange(input_ids.shape[1])[None, :] < input_lengths[:, None]).astype(np.int64)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "labels": torch.from_numpy(labels),
        }


def make_pretraining_collator(
    objective: str,
    tokenizer: Any,
    *,
    input_length: int = DEFAULT_INPUT_LENGTH,
    seed: int = 0,
    noise_density: float = DEFAULT_NOISE_DENSITY,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
    ul2_rates: Sequence[float] = DEFAULT_UL2_RATES,
    ul2_s_target_fraction: float = DEFAULT_UL2_S_TARGET_FRACTION,
    pmi_vocabulary: Any = None,
) -> "T5DataCollator | DenoisingCollator":
    """The collator of a pre-training objective (pre_train_t5.py --objective): span_corruption is T5DataCollator
    (fixed lengths, the masks of every earlier run); pmi is t5kit.pmi.PMISpanCorruptionCollator (a T5DataCollator)
    with `pmi_vocabulary` (a vocabulary file path or a PMIVocabulary); ul2 and prefix_lm are DenoisingCollators
    (dynamic padding)."""
    if objective in (SPAN_CORRUPTION, PMI):
        settings = dict(
            tokenizer=tokenizer,
            noise_density=noise_density,
            mean_noise_span_length=mean_noise_span_length,
            input_length=input_length,
            seed=seed,
        )
        if objective == SPAN_CORRUPTION:
            return T5DataCollator(**settings)
        from t5kit.pmi import PMISpanCorruptionCollator  # imports this module: imported here, when it is asked for

        return PMISpanCorruptionCollator(**settings, vocabulary=pmi_vocabulary)
    denoisers, rates, mode_tokens = _objective_denoisers(objective, ul2_rates, ul2_s_target_fraction)
    return DenoisingCollator(
        tokenizer=tokenizer,
        denoisers=denoisers,
        rates=rates,
        input_length=input_length,
        seed=seed,
        mode_tokens=mode_tokens,
    )
