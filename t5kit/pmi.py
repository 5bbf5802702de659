"""PMI-Masking for T5 span corruption: a vocabulary of correlated word n-grams, and a collator that masks them whole.

Levine, Lenz, Lieber, Abend, Leyton-Brown, Tennenholtz & Shoham, "PMI-Masking: Principled masking of correlated
spans", ICLR 2021 (arXiv:2010.01825); the released vocabularies and their construction notes are in
github.com/AI21Labs/pmi-masking (README).

Vocabulary file (AI21's format): one n-gram per line, its 2 to 5 words separated by spaces, e.g. `new york`. Blank
lines are skipped and counted; any other line without 2 to 5 words is an error naming FILE:LINE. Words are
lowercased when read (the collator matches case variants, see TokenNgramIndex).

Building one (`python -m t5kit.pmi build --train_files FILES --output vocab.txt --min_count N --size K`):

- Words are the whitespace-separated tokens of a document, lowercased with str.lower(); no other normalisation.
  Punctuation counts as words in the corpus totals, but a word without any letter or digit can be in no n-gram
  (unless --keep_punctuation). A .txt file holds one document per line; .jsonl/.json/.csv/.tsv files hold one per
  record (--text_column). N-grams never cross a document.
- Probabilities are relative frequencies per length: p(s) = count(s) / N_k, with N_k the number of k-word windows
  in the corpus (k = the number of words of s).
- Score (--measure pmi_n, the default): the paper's PMI_n (equation 3),

      PMI_n(w1..wn) = min over segmentations S of w1..wn into 2 or more contiguous parts of
                      log p(w1..wn) - sum over the parts s of S of log p(s)
                    = log p(w1..wn) - max over S of sum_s log p(s).

  For n = 2 it is the bigram PMI log p(w1 w2) / (p(w1) p(w2)). --measure pmi_n_freq uses log p(w1..wn)^2 in place
  of log p(w1..wn): the variant AI21's README gives for its released lists ("exp" in their names), which favours
  frequent n-grams.
- Ranking, as the AI21 README describes: one ranking per length, and the vocabulary takes the top --size of them in
  the shares --length_shares (default 50% bigrams, 25% trigrams, 12.5% 4-grams, 12.5% 5-grams; the slots a length
  cannot fill go to the others). Ties: higher count first, then more frequent words first.
- Counting streams over the files with bounded memory. Pass 1 counts words (a Counter). Pass 2 writes the corpus
  as int32 word ids to a temporary file (-1 for a word below --min_count or without a letter or digit, and between
  documents). Passes 3 to 6, one per length k = 2..5, read it back in chunks and count only the k-grams whose two
  (k-1)-word sub-n-grams both reached --min_count: an n-gram never occurs more often than its parts, so this
  pruning loses no n-gram that reaches --min_count. Counts are sorted int64 arrays (key, count), 16 bytes per
  distinct n-gram. A table that would exceed --max_table_entries distinct n-grams drops its rarest entries (the
  word2vec vocabulary-reduce rule): counts are exact unless the log reports such a reduction, after which an
  n-gram's count can be low by what was dropped.

Masking (PMISpanCorruptionCollator, a T5DataCollator): the vocabulary's n-grams are mapped to token-id sequences
(TokenNgramIndex); an occurrence must start and end at word boundaries. In each block, the occurrences become
masking units as the AI21 README specifies: one that contains another wins, and of two that partly overlap one is
chosen at random. Then, for T5 span corruption:

1. T5's random span mask for the example is drawn (the same keys, so the same mask as T5DataCollator);
2. every unit that mask touches (covers at least one of its positions) becomes one noise span, whole, while the
   budget allows (each example keeps exactly T5's number of noise tokens and of noise spans, so that inputs and
   targets keep the lengths the base collator fixes; units that would break the budget stay unmasked);
3. the remaining noise tokens and spans are random spans placed outside every unit (and not adjacent to a chosen
   unit, so spans never merge): span lengths are a uniformly random composition of the remaining tokens, each span
   goes to a stretch of free tokens with probability proportional to the number of places it fits there.

So every example has exactly round(noise_density * raw_length) noise tokens in the T5 number of spans: the density
and mean span length are T5's exactly (with --mean_noise_span_length 1, where T5's counts make every span one token,
no n-gram of two or more tokens can be masked). Where the random spans do not fit (a block dense with units), chosen
units give their budget back one at a time, the last chosen first; a block where even that fails keeps T5's random
mask as it is (rare; counted in `stats`). Otherwise an n-gram is masked whole or not at all. A block whose T5 mask
touches no unit keeps that mask too: with no n-gram in the text the collator is T5DataCollator. Randomness is a pure
function of (seed, epoch, index), as in the base collator.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_collators import T5DataCollator, random_spans_noise_mask, splitmix64_int
from t5kit import readers
from t5kit.args import UsageError

MIN_WORDS, MAX_WORDS = 2, 5
VOCABULARY_FLAG = "--pmi_vocabulary"  # the flag named in vocabulary file errors (callers may pass their own)
FILES_FLAG = "--train_files"
COLUMN_FLAG = "--text_column"
MEASURES = ("pmi_n", "pmi_n_freq")
DEFAULT_LENGTH_SHARES = (0.5, 0.25, 0.125, 0.125)  # 2-, 3-, 4-, 5-grams (AI21 README)
DEFAULT_MIN_COUNT = 10
DEFAULT_MAX_TABLE_ENTRIES = 20_000_000  # 16 bytes each: ~320 MB per table, a few times that while merging
CHUNK_TOKENS = 1 << 20  # word ids per numpy chunk in the counting passes
# Case forms of a (lowercased) vocabulary n-gram that the collator looks for in the text.
DEFAULT_CASE_VARIANTS = ("lower", "capitalize", "title")
_CONTEXT = "x"  # text put before an n-gram so that it is tokenized as inside running text
_WORD_MARKERS = ("\u2581", "\u0120")  # SentencePiece's "▁" and byte-level BPE's "Ġ": a token that starts a word


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary files


@dataclasses.dataclass(frozen=True)
class PMIVocabulary:
    """Word n-grams (tuples of 2 to 5 lowercased words), most associated first within each length when built here.

    >>> PMIVocabulary.from_ngrams(["new york", "in spite of"]).ngrams
    (('new', 'york'), ('in', 'spite', 'of'))
    """

    ngrams: tuple[tuple[str, ...], ...]
    source: str | None = None  # the file it was read from
    blank_lines: int = 0  # blank lines skipped when read
    duplicates: int = 0  # repeated n-grams dropped (the first one kept)

    def __len__(self) -> int:
        return len(self.ngrams)

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter(self.ngrams)

    @classmethod
    def from_ngrams(cls, ngrams: Iterable[str | Sequence[str]], source: str | None = None) -> PMIVocabulary:
        """From n-gram strings ("new york") or word sequences; a ValueError for one without 2 to 5 words."""
        seen: dict[tuple[str, ...], None] = {}
        duplicates = 0
        for position, ngram in enumerate(ngrams):
            words = tuple(w.lower() for w in (ngram.split() if isinstance(ngram, str) else ngram))
            problem = _ngram_problem(words)
            if problem:
                raise ValueError(f"n-gram {position}: {problem}")
            duplicates += words in seen
            seen.setdefault(words, None)
        return cls(tuple(seen), source=source, duplicates=duplicates)

    @classmethod
    def read(cls, path: str | os.PathLike, flag: str = VOCABULARY_FLAG, limit: int | None = None) -> PMIVocabulary:
        """Reads a vocabulary file (the first `limit` n-grams if given). Errors are readers.InputFileError (a
        UsageError), one line each: "vocab.txt:7: 1 word ('york'); a PMI n-gram has 2 to 5 words (--pmi_vocabulary)".
        """
        readers.check_file(path, flag)
        seen: dict[tuple[str, ...], None] = {}
        blank = duplicates = 0
        for number, line in readers.read_lines(path, flag):
            words = tuple(line.lower().split())
            if not words:
                blank += 1
                continue
            problem = _ngram_problem(words)
            if problem:
                raise readers.InputFileError(path, number, problem, flag)
            if words in seen:
                duplicates += 1
                continue
            seen[words] = None
            if limit is not None and len(seen) >= limit:
                break
        if not seen:
            raise readers.InputFileError(path, None, "holds no n-gram (only blank lines)", flag)
        return cls(tuple(seen), source=str(path), blank_lines=blank, duplicates=duplicates)

    def write(self, path: str | os.PathLike) -> None:
        """Writes the AI21 format: one n-gram per line, words separated by one space."""
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(" ".join(words) + "\n" for words in self.ngrams)

    def length_counts(self) -> dict[int, int]:
        """Number of n-grams of each length (2..5)."""
        counts = Counter(len(words) for words in self.ngrams)
        return {n: counts.get(n, 0) for n in range(MIN_WORDS, MAX_WORDS + 1)}


def _ngram_problem(words: Sequence[str]) -> str | None:
    if MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    shown = " ".join(words)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{len(words)} word{'s' if len(words) != 1 else ''} ({shown!r}); a PMI n-gram has 2 to 5 words"


def as_vocabulary(vocabulary: Any, flag: str = VOCABULARY_FLAG) -> PMIVocabulary:
    """A PMIVocabulary from itself, a file path, or n-gram strings / word sequences."""
    if isinstance(vocabulary, PMIVocabulary):
        return vocabulary
    if isinstance(vocabulary, (str, os.PathLike)):
        return PMIVocabulary.read(vocabulary, flag)
    if vocabulary is None or isinstance(vocabulary, type):
        raise ValueError(
            "a PMI vocabulary is needed: a PMIVocabulary (PMIVocabulary.read(path)), a file path or a list of "
            f"n-grams, got {vocabulary!r}"
        )
    return PMIVocabulary.from_ngrams(vocabulary)


# ---------------------------------------------------------------------------------------------------------------
# Counting n-grams


@dataclasses.dataclass
class NgramCounts:
    """The n-grams of 1..5 words that reached min_count, as chained sorted key arrays.

    words: the counted words (id = position), most frequent first. keys[1] = word ids; for k >= 2, keys[k] holds
    (index of the k-gram's first k-1 words in keys[k - 1]) * len(words) + (id of its last word), sorted; counts[k]
    is aligned with keys[k]. windows[k] = N_k, the number of k-word windows in the corpus (all words counted).
    """

    words: list[str]
    keys: dict[int, np.ndarray]
    counts: dict[int, np.ndarray]
    windows: dict[int, int]
    min_count: int
    reductions: int = 0  # times a table was cut to --max_table_entries (counts are exact when 0)
    reduction_threshold: int = 0  # largest count dropped by a reduction

    def index(self, ngrams: np.ndarray) -> np.ndarray:
        """(m,) indices in keys[k] of the (m, k) word-id rows, -1 where the n-gram is not counted."""
        vocab = len(self.words)
        idx = ngrams[:, 0].astype(np.int64)
        for k in range(2, ngrams.shape[1] + 1):
            idx = _lookup(self.keys[k], np.where(idx >= 0, idx * vocab + ngrams[:, k - 1], -1), idx >= 0)
        return idx

    def word_ids(self, k: int) -> np.ndarray:
        """(len(keys[k]), k) word ids of the counted k-grams."""
        vocab = max(len(self.words), 1)
        out = np.empty((len(self.keys[k]), k), np.int64)
        idx = np.arange(len(self.keys[k]))
        for level in range(k, 1, -1):
            key = self.keys[level][idx]
            out[:, level - 1] = key % vocab
            idx = key // vocab
        out[:, 0] = idx
        return out

    def count(self, ngram: str) -> int:
        """Count of one n-gram given as text ("new york"); 0 when it was not counted."""
        ids = {w: i for i, w in enumerate(self.words)}
        words = ngram.lower().split()
        if not 1 <= len(words) <= MAX_WORDS or any(w not in ids for w in words):
            return 0
        row = np.array([[ids[w] for w in words]], np.int64)
        position = int(self.index(row)[0])
        return int(self.counts[len(words)][position]) if position >= 0 else 0


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Positions of `keys` in `sorted_keys`, -1 where absent or not `valid`."""
    if len(sorted_keys) == 0:
        return np.full(keys.shape, -1, np.int64)
    position = np.searchsorted(sorted_keys, keys)
    np.minimum(position, len(sorted_keys) - 1, out=position)
    return np.where(valid & (sorted_keys[position] == keys), position, -1)


def _has_word_character(word: str) -> bool:
    return any(ch.isalnum() for ch in word)


def _documents(paths: Sequence[str], text_column: str) -> Iterator[tuple[str, int]]:
    """(text, characters read) per document of the files: .txt one per line, records per --text_column."""
    for path in paths:
        if Path(path).suffix.lower() in readers.RECORD_SUFFIXES:
            for row in readers.read_records(path, FILES_FLAG, columns=[text_column], columns_flag=COLUMN_FLAG):
                text = readers.text_value(row, text_column, COLUMN_FLAG, null_ok=True)
                yield text, len(text) + 1
        else:
            for _, line in readers.read_lines(path, FILES_FLAG):
                yield line, len(line) + 1


def _tqdm_disable(progress: bool | None) -> bool | None:
    """tqdm's `disable` for a `progress` setting: None shows bars on a terminal only."""
    return None if progress is None else not progress


def _progress(total: int, desc: str, progress: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=_tqdm_disable(progress), leave=False)


class _Table:
    """Streaming counts of int64 keys with at most `max_entries` distinct keys kept (word2vec-style reduce)."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self.keys = np.empty(0, np.int64)
        self.counts = np.empty(0, np.int64)
        self.pending: list[np.ndarray] = []
        self.pending_size = 0
        self.reductions = 0
        self.threshold = 0

    def add(self, keys: np.ndarray) -> None:
        if len(keys):
            self.pending.append(keys)
            self.pending_size += len(keys)
        if self.pending_size >= self.max_entries:
            self.merge()

    def merge(self) -> None:
        if not self.pending:
            return
        chunk_keys, chunk_counts = np.unique(np.concatenate(self.pending), return_counts=True)
        self.pending, self.pending_size = [], 0
        keys = np.concatenate([self.keys, chunk_keys])
        counts = np.concatenate([self.counts, chunk_counts])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.counts = np.bincount(inverse.ravel(), weights=counts, minlength=len(self.keys)).astype(np.int64)
        if len(self.keys) > self.max_entries:
            # Keep the entries above the smallest count threshold that leaves at most half the budget.
            keep_at_most = max(self.max_entries // 2, 1)
            threshold = int(np.partition(self.counts, len(self.counts) - keep_at_most - 1)[-keep_at_most - 1])
            keep = self.counts > threshold
            self.keys, self.counts = self.keys[keep], self.counts[keep]
            self.reductions += 1
            self.threshold = max(self.threshold, threshold)

    def result(self, min_count: int) -> tuple[np.ndarray, np.ndarray]:
        self.merge()
        keep = self.counts >= min_count
        return self.keys[keep], self.counts[keep]


def count_ngrams(
    paths: Sequence[str | os.PathLike],
    min_count: int = DEFAULT_MIN_COUNT,
    *,
    text_column: str = "text",
    keep_punctuation: bool = False,
    max_table_entries: int = DEFAULT_MAX_TABLE_ENTRIES,
    tmp_dir: str | None = None,
    progress: bool | None = None,
    log=print,
) -> NgramCounts:
    """Counts the 1- to 5-word n-grams of the files that occur at least `min_count` times (see the module docstring).

    progress: tqdm bars (None: only on a terminal). log: called with one line per pass (None: silent).
    """
    if min_count < 1:
        raise UsageError(f"--min_count must be >= 1, got {min_count}")
    if max_table_entries < 2:
        raise UsageError(f"--max_table_entries must be >= 2, got {max_table_entries}")
    paths = [str(p) for p in paths]
    if not paths:
        raise UsageError(f"{FILES_FLAG}: give at least one file")
    for path in paths:
        readers.check_file(path, FILES_FLAG)
    log = log or (lambda *_: None)
    total_chars = sum(os.path.getsize(p) for p in paths)

    # Pass 1: words and document lengths.
    started = time.perf_counter()
    word_counts: Counter = Counter()
    lengths: Counter = Counter()
    reductions, threshold = 0, 0
    with _progress(total_chars, "pass 1/6: words", progress) as bar:
        for text, size in _documents(paths, text_column):
            words = text.lower().split()
            word_counts.update(words)
            lengths[len(words)] += 1
            bar.update(size)
            if len(word_counts) > max_table_entries:
                cut = sorted(word_counts.values())[len(word_counts) - max_table_entries // 2 - 1]
                word_counts = Counter({w: c for w, c in word_counts.items() if c > cut})
                reductions, threshold = reductions + 1, max(threshold, cut)
    windows = {k: sum(max(0, n - k + 1) * docs for n, docs in lengths.items()) for k in range(1, MAX_WORDS + 1)}
    distinct = len(word_counts)
    frequent = {w: c for w, c in word_counts.items() if c >= min_count and (keep_punctuation or _has_word_character(w))}
    del word_counts
    kept = sorted(frequent, key=lambda w: (-frequent[w], w))
    word_id = {w: i for i, w in enumerate(kept)}
    vocab = len(kept)
    keys = {1: np.arange(vocab, dtype=np.int64)}
    counts = {1: np.array([frequent[w] for w in kept], np.int64)}
    log(
        f"pass 1: {windows[1]:,} words in {sum(lengths.values()):,} documents, {distinct:,} distinct, "
        f"{vocab:,} counted (>= {min_count}) [{time.perf_counter() - started:.1f} s]"
    )

    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="pmi_ids_") as tmp:
        # Pass 2: the corpus as word ids, -1 between documents and for words that no counted n-gram can hold.
        started = time.perf_counter()
        ids_path = Path(tmp) / "ids.int32"
        written = 0
        with open(ids_path, "wb") as out, _progress(total_chars, "pass 2/6: word ids", progress) as bar:
            buffer: list[int] = []
            for text, size in _documents(paths, text_column):
                buffer.extend([word_id.get(w, -1) for w in text.lower().split()])
                buffer.append(-1)
                bar.update(size)
                if len(buffer) >= CHUNK_TOKENS:
                    np.asarray(buffer, np.int32).tofile(out)
                    written += len(buffer)
                    buffer = []
            np.asarray(buffer, np.int32).tofile(out)
            written += len(buffer)
        del word_id
        log(f"pass 2: {written:,} word ids written [{time.perf_counter() - started:.1f} s]")
        corpus = np.memmap(ids_path, dtype=np.int32, mode="r") if written else np.empty(0, np.int32)

        # Passes 3..6, one per k = 2..5: k-grams whose (k-1)-gram prefix and suffix both reached min_count.
        for k in range(2, MAX_WORDS + 1):
            started = time.perf_counter()
            if len(keys[k - 1]) and (len(keys[k - 1]) - 1) * vocab + vocab >= 2**63:
                raise UsageError("too many distinct n-grams for 64-bit keys: raise --min_count")
            table = _Table(max_table_entries)
            with _progress(written * 4, f"pass {k + 1}/6: {k}-grams", progress) as bar:
                for start in range(0, written, CHUNK_TOKENS):
                    stop = min(start + CHUNK_TOKENS, written)
                    chunk = np.asarray(corpus[start : min(stop + k - 1, written)], np.int64)
                    table.add(_chunk_keys(chunk, k, stop - start, keys, vocab))
                    bar.update((stop - start) * 4)
            keys[k], counts[k] = table.result(min_count)
            reductions += table.reductions
            threshold = max(threshold, table.threshold)
            log(
                f"pass {k + 1}: {len(table.keys):,} distinct candidate {k}-grams, {len(keys[k]):,} counted "
                f"(>= {min_count}) [{time.perf_counter() - started:.1f} s]"
            )
        del corpus
    if reductions:
        log(
            f"warning: {reductions} table reduction(s) to --max_table_entries {max_table_entries:,} dropped n-grams "
            f"seen up to {threshold} times; counts may be low by up to that much per reduction"
        )
    return NgramCounts(kept, keys, counts, windows, min_count, reductions, threshold)


def _chunk_keys(chunk: np.ndarray, k: int, starts: int, keys: dict[int, np.ndarray], vocab: int) -> np.ndarray:
    """Keys of the candidate k-grams starting at the first `starts` positions of `chunk` (int64 word ids)."""
    if len(chunk) < k:
        return np.empty(0, np.int64)
    idx = chunk  # index of the (j)-gram starting at each position, -1 if not counted; j = 1 here
    for j in range(2, k + 1):
        prefix, last = idx[:-1], chunk[j - 1 :]
        valid = (prefix >= 0) & (last >= 0)
        key = np.where(valid, prefix * vocab + last, -1)
        if j < k:
            idx = _lookup(keys[j], key, valid)
        else:
            valid &= idx[1:] >= 0  # the suffix (k-1)-gram was counted too
            return key[:starts][valid[:starts]]
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------------------
# Scores and the vocabulary


def _segmentations(n: int) -> list[list[tuple[int, int]]]:
    """All segmentations of positions 0..n-1 into 2 or more contiguous parts, as (start, end) lists."""
    out = []
    for cuts in itertools.product((False, True), repeat=n - 1):
        if not any(cuts):
            continue
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [n]
        out.append(list(zip(bounds[:-1], bounds[1:])))
    return out


@dataclasses.dataclass
class ScoredNgrams:
    """The counted n-grams of one length with their scores: words (m, n) word ids, counts (m,), scores (m,)."""

    n: int
    words: np.ndarray
    counts: np.ndarray
    scores: np.ndarray


def pmi_scores(counts: NgramCounts, measure: str = "pmi_n") -> dict[int, ScoredNgrams]:
    """PMI_n (or its frequency-weighted variant) of every counted n-gram of 2..5 words (see the module docstring)."""
    if measure not in MEASURES:
        raise UsageError(f"--measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    out = {}
    for n in range(MIN_WORDS, MAX_WORDS + 1):
        words = counts.word_ids(n)
        logp: dict[tuple[int, int], np.ndarray] = {}
        present = np.ones(len(words), bool)
        for start in range(n):
            for end in range(start + 1, n + 1):
                idx = counts.index(words[:, start:end])
                present &= idx >= 0
                seg_counts = counts.counts[end - start][np.maximum(idx, 0)] if len(idx) else np.empty(0, np.int64)
                log_windows = math.log(max(counts.windows[end - start], 1))
                with np.errstate(divide="ignore"):
                    logp[start, end] = np.log(seg_counts.astype(np.float64)) - log_windows
        best = np.full(len(words), -np.inf)
        for segmentation in _segmentations(n):
            best = np.maximum(best, sum(logp[part] for part in segmentation))
        whole = logp[0, n] * (2.0 if measure == "pmi_n_freq" else 1.0)
        keep = present  # False only where a table reduction dropped a part of the n-gram
        out[n] = ScoredNgrams(n, words[keep], counts.counts[n][keep], (whole - best)[keep])
    return out


def _parse_shares(text: str | Sequence[float]) -> tuple[float, ...]:
    values = [float(v) for v in text.split(",")] if isinstance(text, str) else [float(v) for v in text]
    if len(values) != MAX_WORDS - MIN_WORDS + 1 or any(v < 0 for v in values) or not math.isclose(sum(values), 1.0):
        raise UsageError(f"--length_shares must be 4 non-negative numbers (2- to 5-grams) that sum to 1, got {text!r}")
    return tuple(values)


def _quotas(size: int, shares: Sequence[float], available: dict[int, int]) -> dict[int, int]:
    """How many n-grams of each length: `shares` of `size`, the slots a length cannot fill passed to the others in
    proportion to their shares (a length of share 0 gets none)."""
    lengths = [n for n in range(MIN_WORDS, MAX_WORDS + 1) if shares[n - MIN_WORDS] > 0]
    quota = {n: 0 for n in range(MIN_WORDS, MAX_WORDS + 1)}
    left = min(size, sum(available[n] for n in lengths))
    while left > 0:
        open_ = [n for n in lengths if quota[n] < available[n]]
        weights = {n: shares[n - MIN_WORDS] for n in open_}
        total = sum(weights.values())
        grant = {n: math.floor(left * weights[n] / total) for n in open_}
        if not any(grant.values()):  # fewer slots than lengths: one each, largest share first
            for n in sorted(open_, key=lambda n: (-weights[n], n))[:left]:
                grant[n] = 1
        for n in open_:
            take = min(grant[n], available[n] - quota[n], left)
            quota[n] += take
            left -= take
    return quota


def select_vocabulary(
    scored: dict[int, ScoredNgrams],
    words: Sequence[str],
    size: int,
    length_shares: Sequence[float] = DEFAULT_LENGTH_SHARES,
) -> tuple[PMIVocabulary, list[tuple[str, int, int, float]]]:
    """The top `size` n-grams by score, per length in `length_shares`; and (n-gram, n, count, score) rows in the
    vocabulary's order (by length, then best score first)."""
    if size < 1:
        raise UsageError(f"--size must be >= 1, got {size}")
    quota = _quotas(size, length_shares, {n: len(s.scores) for n, s in scored.items()})
    ngrams, rows = [], []
    for n in range(MIN_WORDS, MAX_WORDS + 1):
        s = scored[n]
        order = np.lexsort((np.arange(len(s.scores)), -s.counts, -s.scores))[: quota[n]]
        for i in order.tolist():
            text = " ".join(words[w] for w in s.words[i].tolist())
            ngrams.append(text)
            rows.append((text, n, int(s.counts[i]), float(s.scores[i])))
    return PMIVocabulary.from_ngrams(ngrams), rows


def build_vocabulary(
    paths: Sequence[str | os.PathLike],
    size: int,
    min_count: int = DEFAULT_MIN_COUNT,
    measure: str = "pmi_n",
    length_shares: Sequence[float] = DEFAULT_LENGTH_SHARES,
    **count_kwargs,
) -> tuple[PMIVocabulary, list[tuple[str, int, int, float]]]:
    """count_ngrams + pmi_scores + select_vocabulary: the vocabulary and its (n-gram, n, count, score) rows."""
    counts = count_ngrams(paths, min_count, **count_kwargs)
    return select_vocabulary(pmi_scores(counts, measure), counts.words, size, length_shares)


# ---------------------------------------------------------------------------------------------------------------
# Token-level matching


def _hash_multipliers(n: int) -> np.ndarray:
    """n fixed odd 64-bit multipliers for the position-weighted window hash."""
    return np.array([splitmix64_int(0x5EED + i) | 1 for i in range(n)], dtype=np.uint64)


class TokenNgramIndex:
    """The vocabulary's n-grams as token-id sequences of a tokenizer, and where they occur in token blocks.

    Each n-gram is tokenized in every form of `case_variants` ("lower": new york, "capitalize": New york,
    "title": New York, "upper": NEW YORK) as the tokenizer tokenizes it inside running text: the tokens of
    "x new york" after those of "x", so that a SentencePiece "▁" or byte-level BPE "Ġ" word marker is the one a word
    gets after a space; leading separator tokens (whitespace without a marker: a byte tokenizer's space) are not
    part of the n-gram. (Should the tokens of "x new york" not begin with those of "x", "new york" is tokenized
    alone.) Sequences holding the unknown token are left out.

    An occurrence must begin and end at word boundaries: the token after it starts a word (a marker, a special token,
    a token starting with a character that is not a letter or digit, or the end of the block), and so does the
    n-gram's first token (for byte tokenizers: the token before it does not end with a letter or digit). So
    "new york" does not match inside "new yorker" or "renew york".
    """

    def __init__(
        self,
        vocabulary: PMIVocabulary,
        tokenizer: Any,
        case_variants: Sequence[str] = DEFAULT_CASE_VARIANTS,
        progress: bool | None = None,
    ):
        unknown = set(case_variants) - {"lower", "capitalize", "title", "upper"}
        if unknown:
            raise ValueError(f"unknown case variants {sorted(unknown)}; use lower, capitalize, title, upper")
        self.tokenizer = tokenizer
        self.vocabulary = vocabulary
        texts, owners = [], []
        for entry, words in enumerate(vocabulary.ngrams):
            for form in dict.fromkeys(_case_form(words, v) for v in case_variants):
                texts.append(form)
                owners.append(entry)
        self._flags = self._token_flags(len(tokenizer))
        sequences = self._tokenize(texts, progress)
        by_length: dict[int, dict[tuple[int, ...], int]] = {}
        for sequence, entry in zip(sequences, owners):
            if len(sequence) >= 2:
                by_length.setdefault(len(sequence), {}).setdefault(sequence, entry)
        self.num_sequences = sum(len(s) for s in by_length.values())
        self.lengths = sorted(by_length)
        self._multipliers = _hash_multipliers(max(self.lengths, default=0))
        self._tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for length, table in by_length.items():
            rows = np.array(list(table), dtype=np.int64).reshape(-1, length)
            hashes = self._hash_rows(rows)
            order = np.argsort(hashes, kind="stable")
            entries = np.fromiter(table.values(), dtype=np.int64, count=len(table))
            self._tables[length] = (hashes[order], rows[order], entries[order])

    # -- building

    def _tokenize(self, texts: list[str], progress: bool | None) -> list[tuple[int, ...]]:
        context = self._encode([_CONTEXT])[0]
        out: list[tuple[int, ...]] = []
        alone: list[int] = []  # texts whose tokens in context do not start with the context's: tokenized alone
        batch = 20_000
        from tqdm.auto import tqdm

        with tqdm(total=len(texts), desc="tokenizing n-grams", disable=_tqdm_disable(progress), leave=False) as bar:
            for start in range(0, len(texts), batch):
                part = texts[start : start + batch]
                for position, ids in enumerate(self._encode([f"{_CONTEXT} {t}" for t in part]), start):
                    if ids[: len(context)] == context:
                        out.append(self._clean(ids[len(context) :]))
                    else:
                        out.append(())
                        alone.append(position)
                bar.update(len(part))
        if alone:
            for position, ids in zip(alone, self._encode([texts[i] for i in alone])):
                out[position] = self._clean(ids)
        return out

    def _clean(self, ids: list[int]) -> tuple[int, ...]:
        """The n-gram's tokens: leading separator tokens (a byte tokenizer's space) dropped; () if one is unknown."""
        start = 0
        while start < len(ids) and self._flags[ids[start], 3]:
            start += 1
        unk = self.tokenizer.unk_token_id
        return tuple(ids[start:]) if unk is None or unk not in ids else ()

    def _encode(self, texts: list[str]) -> list[list[int]]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:  # a fast tokenizer: its Rust batch encoder, without the Python wrapping per text
            return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _token_flags(self, size: int) -> np.ndarray:
        """(size, 4) bools per token id: starts a word (marker or special token), first character is a word
        character, last character is a word character, is a separator (whitespace only, no word marker)."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(size)))
        special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        flags = np.zeros((size, 4), bool)
        for i, token in enumerate(tokens):
            if token is None or i in special:
                flags[i, 0] = True
                continue
            flags[i, 0] = token.startswith(_WORD_MARKERS)
            text = token.lstrip("".join(_WORD_MARKERS))
            flags[i, 1] = bool(text) and _is_word_char(text[0])
            flags[i, 2] = bool(text) and _is_word_char(text[-1])
            flags[i, 3] = bool(token) and not flags[i, 0] and not token.strip()
        return flags

    def _hash_rows(self, rows: np.ndarray) -> np.ndarray:
        values = rows.astype(np.uint64) + np.uint64(1)
        return (values * self._multipliers[: rows.shape[1]]).sum(axis=1, dtype=np.uint64)

    # -- matching

    def sequences(self, ngram: str | Sequence[str]) -> list[tuple[int, ...]]:
        """The token-id sequences that stand for one vocabulary n-gram (every case form that tokenizes)."""
        words = tuple(w.lower() for w in (ngram.split() if isinstance(ngram, str) else ngram))
        entry = self.vocabulary.ngrams.index(words)
        return [tuple(row.tolist()) for _, rows, entries in self._tables.values() for row in rows[entries == entry]]

    def word_starts(self, ids: np.ndarray) -> np.ndarray:
        """(B, L + 1) bools: True at i where a word starts at token i (a word boundary between tokens i-1 and i);
        positions 0 and L are boundaries."""
        ids = np.asarray(ids, np.int64)
        if ids.size and ids.max() >= len(self._flags):  # ids beyond the tokenizer: treat them as boundaries
            grown = np.zeros((int(ids.max()) + 1, 4), bool)
            grown[:, 0] = True
            grown[: len(self._flags)] = self._flags
            self._flags = grown
        flags = self._flags[np.clip(ids, 0, None)]
        out = np.ones((ids.shape[0], ids.shape[1] + 1), bool)
        out[:, 1:-1] = flags[:, 1:, 0] | ~flags[:, 1:, 1] | ~flags[:, :-1, 2]
        return out

    def find(self, ids: np.ndarray) -> list[list[tuple[int, int]]]:
        """Per row of the (B, L) token ids: the (start, end) spans where a vocabulary n-gram occurs, sorted (they may
        overlap)."""
        ids = np.asarray(ids, np.int64)
        batch, length = ids.shape
        found: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
        if not self.lengths or length < 2:
            return found
        boundary = self.word_starts(ids)
        values = ids.astype(np.uint64) + np.uint64(1)
        hashes = np.zeros((batch, length), np.uint64)
        for width in range(1, min(self.lengths[-1], length) + 1):
            # hashes[:, i] is the hash of the window of `width` tokens starting at i (windows shrink by one).
            hashes = hashes[:, : length - width + 1] + values[:, width - 1 :] * self._multipliers[width - 1]
            if width not in self._tables:
                continue
            table_hashes, rows, _ = self._tables[width]
            position = np.minimum(np.searchsorted(table_hashes, hashes), len(table_hashes) - 1)
            row_of, start = np.nonzero(table_hashes[position] == hashes)
            if not len(row_of):
                continue
            windows = ids[row_of[:, None], start[:, None] + np.arange(width)]
            real = (windows == rows[position[row_of, start]]).all(axis=1)
            real &= boundary[row_of, start] & boundary[row_of, start + width]
            for r, s in zip(row_of[real].tolist(), start[real].tolist()):
                found[r].append((s, s + width))
        for spans in found:
            spans.sort()
        return found


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _case_form(words: Sequence[str], variant: str) -> str:
    if variant == "capitalize":
        words = [words[0][:1].upper() + words[0][1:], *words[1:]]
    elif variant == "title":
        words = [w[:1].upper() + w[1:] for w in words]
    elif variant == "upper":
        words = [w.upper() for w in words]
    return " ".join(words)


# ---------------------------------------------------------------------------------------------------------------
# Per-example randomness: splitmix64 of (key, stream, counter), as data_collators does for the base mask.

_UNIT_STREAM = 3  # streams 1 and 2 are the base collator's


class _Draws:
    """Counter-based random numbers of one example: the i-th draw is splitmix64(key ^ (stream << 32 | i))."""

    __slots__ = ("key", "counter")

    def __init__(self, key: int, stream: int):
        self.key = key
        self.counter = stream << 32

    def next(self) -> int:
        value = splitmix64_int(self.key ^ self.counter)
        self.counter += 1
        return value

    def below(self, n: int) -> int:
        """Uniform in [0, n) (multiply-shift: bias below n / 2**64)."""
        return (self.next() * n) >> 64

    def distinct(self, n: int, k: int) -> list[int]:
        """k distinct values of range(n), uniformly, sorted (Floyd's algorithm)."""
        chosen: set[int] = set()
        for top in range(n - k, n):
            value = self.below(top + 1)
            chosen.add(top if value in chosen else value)
        return sorted(chosen)

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def masking_units(occurrences: Sequence[tuple[int, int]], draws: _Draws) -> list[tuple[int, int]]:
    """Non-overlapping units from n-gram occurrences (AI21 README): an occurrence inside another is dropped; of
    occurrences that partly overlap, units are picked in random order, each kept if it overlaps none kept."""
    outer: list[tuple[int, int]] = []
    reach = -1
    for start, end in sorted(set(occurrences), key=lambda span: (span[0], -span[1])):
        if end <= reach:  # inside an earlier occurrence (which starts no later and ends no earlier)
            continue
        outer.append((start, end))
        reach = end
    if all(a[1] <= b[0] for a, b in zip(outer, outer[1:])):
        return outer
    priority = [draws.next() for _ in outer]
    taken: list[tuple[int, int]] = []
    occupied = bytearray(outer[-1][1])
    for i in sorted(range(len(outer)), key=priority.__getitem__):
        start, end = outer[i]
        if not any(occupied[start:end]):
            taken.append((start, end))
            occupied[start:end] = b"\x01" * (end - start)
    return sorted(taken)


def _random_composition(total: int, parts: int, draws: _Draws) -> list[int]:
    """`total` split into `parts` positive integers, uniformly over compositions."""
    cuts = [0, *[c + 1 for c in draws.distinct(total - 1, parts - 1)], total]
    return [b - a for a, b in zip(cuts, cuts[1:])]


def _place_spans(
    segments: list[tuple[int, int]], num_spans: int, num_tokens: int, draws: _Draws
) -> list[tuple[int, int]] | None:
    """`num_spans` disjoint, non-adjacent spans of `num_tokens` tokens in all inside the (start, length) free
    segments; None if the greedy placement finds no room."""
    if num_spans == 0:
        return []
    lengths = sorted(_random_composition(num_tokens, num_spans, draws), reverse=True)
    slots = [length + 1 for _, length in segments]  # a span takes its tokens plus one separator slot
    assigned: list[list[int]] = [[] for _ in segments]
    for span in lengths:
        weights = [s - span if s > span else 0 for s in slots]  # places a span of this length fits in
        total = sum(weights)
        if total == 0:
            return None
        pick = draws.below(total)
        for i, weight in enumerate(weights):
            if pick < weight:
                break
            pick -= weight
        slots[i] -= span + 1
        assigned[i].append(span)
    spans = []
    for (segment_start, _), spare, chosen in zip(segments, slots, assigned):
        if not chosen:
            continue
        draws.shuffle(chosen)
        # Interleave the spans (with their separators) and `spare` free slots uniformly.
        offset = 0
        for k, (position, span) in enumerate(zip(draws.distinct(spare + len(chosen), len(chosen)), chosen)):
            start = segment_start + position - k + offset
            spans.append((start, start + span))
            offset += span + 1
    return spans


def _free_segments(length: int, units: list[tuple[int, int]], chosen: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, length) runs of positions outside every unit and not next to a chosen unit."""
    blocked = bytearray(length)
    for start, end in units:
        blocked[start:end] = b"\x01" * (end - start)
    for start, end in chosen:
        if start > 0:
            blocked[start - 1] = 1
        if end < length:
            blocked[end] = 1
    segments, i = [], 0
    while i < length:
        j = blocked.find(b"\x00", i)
        if j < 0:
            break
        i = blocked.find(b"\x01", j)
        i = length if i < 0 else i
        segments.append((j, i - j))
    return segments


# ---------------------------------------------------------------------------------------------------------------
# The collator


@dataclasses.dataclass
class PMISpanCorruptionCollator(T5DataCollator):
    """T5 span corruption where the vocabulary's n-grams are masked whole (see the module docstring).

    vocabulary: a PMIVocabulary, a vocabulary file path, or n-gram strings. case_variants: the case forms of each
    n-gram looked for (TokenNgramIndex). Inputs, labels and their lengths are those of T5DataCollator with the same
    settings; `stats` counts examples, n-gram spans and tokens masked, and fallbacks to T5's mask.

    >>> collator = PMISpanCorruptionCollator(tokenizer=tok, input_length=512, seed=0,
    ...                                      vocabulary=PMIVocabulary.read("vocab.txt"))  # doctest: +SKIP
    >>> batch = collator([{"input_ids": block, "idx": 7} for block in blocks])  # doctest: +SKIP
    """

    vocabulary: Any = dataclasses.field(default=None, repr=False)
    case_variants: tuple[str, ...] = DEFAULT_CASE_VARIANTS
    index: TokenNgramIndex = dataclasses.field(init=False, repr=False)
    stats: dict[str, int] = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.vocabulary = as_vocabulary(self.vocabulary)
        self.index = TokenNgramIndex(self.vocabulary, self.tokenizer, self.case_variants)
        self.stats = {"examples": 0, "ngram_spans": 0, "ngram_tokens": 0, "fallbacks": 0}

    def noise_mask(self, examples: Sequence[dict]) -> np.ndarray:
        """The (B, raw_length) noise mask __call__ would use (advances the idx counter likewise)."""
        ids = self._stack_input_ids(examples)
        return self.pmi_noise_mask(ids, self._keys(examples))

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        ids = self._stack_input_ids(examples)
        return self.corrupt(ids, self.pmi_noise_mask(ids, self._keys(examples)))

    def corrupt(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
        """Span-corrupt with any mask of T5's token and span counts: noise span j becomes sentinel j in the inputs,
        and the targets are sentinel j followed by span j's tokens, for each span in order (T5's format; unlike the
        base method, the mask may start with noise or end without)."""
        ids, mask = np.asarray(ids, np.int64), np.asarray(mask, bool)
        batch, length = ids.shape
        previous = np.zeros_like(mask)
        previous[:, 1:] = mask[:, :-1]
        first = mask & ~previous
        span_index = np.maximum(np.cumsum(first, axis=1) - 1, 0)
        if span_index.size and span_index.max() >= len(self.sentinel_ids):
            raise ValueError(f"mask has more than {len(self.sentinel_ids)} noise spans in a row")
        # Two slots per position: the sentinel that opens a span there (if one does), then the token.
        values = np.stack([self.sentinel_ids[span_index], ids], axis=2).reshape(batch, 2 * length)
        in_inputs = np.stack([first, ~mask], axis=2).reshape(batch, 2 * length)
        in_labels = np.stack([first, mask], axis=2).reshape(batch, 2 * length)
        return self._batch(values[in_inputs].reshape(batch, -1), values[in_labels].reshape(batch, -1))

    def pmi_noise_mask(self, ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """The noise mask of (B, raw_length) ids for the examples' keys (data_collators.example_keys)."""
        base = random_spans_noise_mask(self.raw_length, self.noise_density, self.mean_noise_span_length, keys)
        num_noise, num_spans = (int(base[0].sum()) if len(base) else 0), len(self.sentinel_ids)
        mask = base.copy()
        for row, occurrences in enumerate(self.index.find(ids)):
            self.stats["examples"] += 1
            if occurrences:
                self._mask_row(mask[row], base[row], occurrences, int(keys[row]), num_noise, num_spans)
        _check_counts(mask, num_noise, num_spans)
        return mask

    def _mask_row(
        self,
        out: np.ndarray,
        base: np.ndarray,
        occurrences: list[tuple[int, int]],
        key: int,
        num_noise: int,
        num_spans: int,
    ) -> None:
        draws = _Draws(key, _UNIT_STREAM)
        units = masking_units(occurrences, draws)
        covered = np.concatenate([[0], np.cumsum(base)]).tolist()
        touched = [(s, e) for s, e in units if covered[e] > covered[s]]
        if not touched:
            return  # T5's mask avoids every unit already
        priority = [draws.next() for _ in touched]
        chosen: list[tuple[int, int]] = []
        taken = bytearray(len(base) + 2)  # chosen positions, shifted by one so both neighbours are in range
        tokens_left, spans_left = num_noise, num_spans
        for i in sorted(range(len(touched)), key=priority.__getitem__):
            start, end = touched[i]
            tokens_after, spans_after = tokens_left - (end - start), spans_left - 1
            if spans_after < 0 or tokens_after < spans_after or (spans_after == 0 and tokens_after):
                continue  # over the budget: T5's counts must hold
            if taken[start] or taken[end + 1]:
                continue  # next to a chosen unit: the two would merge into one span
            chosen.append((start, end))
            taken[start + 1 : end + 1] = b"\x01" * (end - start)
            tokens_left, spans_left = tokens_after, spans_after
        while True:
            spans = _place_spans(_free_segments(len(base), units, chosen), spans_left, tokens_left, draws)
            if spans is not None:
                break
            if not chosen:
                self.stats["fallbacks"] += 1
                return  # keep T5's mask
            start, end = chosen.pop()  # give the last chosen unit's budget back to the random spans
            tokens_left, spans_left = tokens_left + end - start, spans_left + 1
        out[:] = False
        for start, end in chosen + spans:
            out[start:end] = True
        self.stats["ngram_spans"] += len(chosen)
        self.stats["ngram_tokens"] += sum(e - s for s, e in chosen)


def _check_counts(mask: np.ndarray, num_noise: int, num_spans: int) -> None:
    """Every row must have T5's counts (the fixed input and target lengths depend on them)."""
    starts = mask[:, :1].sum(axis=1) + (mask[:, 1:] & ~mask[:, :-1]).sum(axis=1)
    if (mask.sum(axis=1) != num_noise).any() or (starts != num_spans).any():
        raise RuntimeError(f"PMI noise mask lost T5's counts ({num_noise} noise tokens in {num_spans} spans)")


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m t5kit.pmi", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a PMI n-gram vocabulary from a corpus")
    build.add_argument(
        "--train_files",
        nargs="+",
        required=True,
        help=".txt (one document per line), .jsonl, .json, .csv or .tsv files",
    )
    build.add_argument("--output", required=True, help="vocabulary file to write (one n-gram per line)")
    build.add_argument("--min_count", type=int, default=DEFAULT_MIN_COUNT, help="least occurrences of an n-gram")
    build.add_argument("--size", type=int, default=800_000, help="number of n-grams in the vocabulary")
    build.add_argument(
        "--measure",
        choices=MEASURES,
        default="pmi_n",
        help="pmi_n: the paper's equation 3; pmi_n_freq: p(w1..wn)^2 in the numerator (AI21's released lists)",
    )
    build.add_argument(
        "--length_shares",
        default=",".join(str(s) for s in DEFAULT_LENGTH_SHARES),
        help="shares of 2-, 3-, 4- and 5-grams, e.g. 0.5,0.25,0.125,0.125",
    )
    build.add_argument("--text_column", default="text", help="column holding the text in .jsonl/.csv/.tsv files")
    build.add_argument(
        "--keep_punctuation", action="store_true", help="let words without a letter or digit be in n-grams"
    )
    build.add_argument(
        "--max_table_entries",
        type=int,
        default=DEFAULT_MAX_TABLE_ENTRIES,
        help="most distinct n-grams of one length held in memory",
    )
    build.add_argument("--scores_output", help="also write a TSV: n-gram, n, count, score")
    build.add_argument("--tmp_dir", help="folder for the temporary word-id file (4 bytes per word)")
    build.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    rss_start = _max_rss_mb()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    vocabulary, rows = build_vocabulary(
        args.train_files,
        args.size,
        args.min_count,
        args.measure,
        _parse_shares(args.length_shares),
        text_column=args.text_column,
        keep_punctuation=args.keep_punctuation,
        max_table_entries=args.max_table_entries,
        tmp_dir=args.tmp_dir,
        progress=False if args.no_progress else None,
        log=log,
    )
    vocabulary.write(args.output)
    if args.scores_output:
        with open(args.scores_output, "w", encoding="utf-8") as handle:
            handle.write("ngram\tn\tcount\tscore\n")
            handle.writelines(f"{text}\t{n}\t{count}\t{score:.6f}\n" for text, n, count, score in rows)
    summary = {
        "ngrams": len(vocabulary),
        "by_length": vocabulary.length_counts(),
        "seconds": round(time.perf_counter() - started, 1),
        "max_rss_mb": round(_max_rss_mb()),
        "max_rss_mb_before_build": round(rss_start),
    }
    log(
        f"wrote {args.output}: {summary['ngrams']:,} n-grams {summary['by_length']} in {summary['seconds']} s; "
        f"peak RSS {summary['max_rss_mb']} MB ({summary['max_rss_mb_before_build']} MB before building)"
    )
    return summary


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


if __name__ == "__main__":
    try:
        main()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
