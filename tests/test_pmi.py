"""Tests for t5kit.pmi: PMI vocabulary files, the PMI_n vocabulary builder and PMI span corruption."""

import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from absl.testing import absltest, parameterized
from transformers import ByT5Tokenizer

import data_collators as dc
from t5kit import pmi, readers
from t5kit.args import UsageError
from t5kit.tokenizer import train_tokenizer

BYT5 = ByT5Tokenizer()
FILLER = (
    "river stone garden window market silver harbor lantern meadow candle forest bridge winter summer yellow quiet "
    "narrow gentle ancient morning evening village mountain letter pocket basket travel castle orchard valley shadow "
    "copper thunder"
).split()
NGRAMS = ("new york", "in spite of", "united states of america", "prime minister")
TMP: Path
TOKENIZERS: dict = {}


def synthetic_text(rng: np.random.Generator, num_words: int, ngram_rate: float = 0.12) -> str:
    """Filler words with the NGRAMS inserted at `ngram_rate` (a third of them title-cased)."""
    words: list[str] = []
    while len(words) < num_words:
        if rng.random() < ngram_rate:
            ngram = str(rng.choice(NGRAMS))
            words.extend((ngram.title() if rng.random() < 1 / 3 else ngram).split())
        else:
            words.append(str(rng.choice(FILLER)))
    return " ".join(words)


def setUpModule():
    global TMP
    TMP = Path(tempfile.mkdtemp(prefix="test_pmi_"))
    rng = np.random.default_rng(0)
    texts = [synthetic_text(rng, 30, ngram_rate=0.3) for _ in range(400)]
    TOKENIZERS["byt5"] = BYT5
    # A SentencePiece unigram tokenizer in T5's layout (80 pieces + 100 sentinels): words split into several
    # pieces, the first of a word carrying the "▁" marker.
    TOKENIZERS["sentencepiece"] = train_tokenizer(texts, 180, TMP / "spiece")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def write(name: str, content: str | bytes) -> Path:
    path = TMP / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def packed_blocks(tokenizer, raw_length: int, count: int, seed: int = 0, ngram_rate: float = 0.12) -> list[dict]:
    """`count` blocks of raw_length ids cut from synthetic documents joined by EOS (as packing does), with idx."""
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    while len(stream) < raw_length * count:
        stream += tokenizer(synthetic_text(rng, 60, ngram_rate), add_special_tokens=False)["input_ids"]
        stream.append(tokenizer.eos_token_id)
    return [{"input_ids": stream[i * raw_length : (i + 1) * raw_length], "idx": i} for i in range(count)]


def make_collators(tokenizer, input_length=128, noise_density=0.15, mean_noise_span_length=3.0, seed=0, **kwargs):
    """(PMI collator, T5 collator) with the same settings."""
    settings = dict(
        tokenizer=tokenizer,
        noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length,
        input_length=input_length,
        seed=seed,
    )
    vocabulary = kwargs.pop("vocabulary", pmi.PMIVocabulary.from_ngrams(NGRAMS))
    return (
        pmi.PMISpanCorruptionCollator(**settings, vocabulary=vocabulary, **kwargs),
        dc.T5DataCollator(**settings),
    )


def sentinel_set(tokenizer) -> set[int]:
    return set(tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(100)]))


def reconstruct(tokenizer, input_row: torch.Tensor, label_row: torch.Tensor) -> list[int]:
    """Independent inverse of span corruption: each target span put back at its sentinel in the inputs."""
    sentinels = sentinel_set(tokenizer)
    inputs = [t for t in input_row.tolist() if t != tokenizer.pad_token_id]
    labels = [t for t in label_row.tolist() if t != dc.LABEL_PAD_ID]
    assert inputs[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
    spans: dict[int, list[int]] = {}
    current = None
    for token in labels[:-1]:
        if token in sentinels:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out: list[int] = []
    for token in inputs[:-1]:
        out.extend(spans.pop(token) if token in sentinels else [token])
    assert not spans, "target spans without a sentinel in the inputs"
    return out


def runs(mask_row: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True."""
    padded = np.concatenate([[False], mask_row, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary files


class VocabularyFileTest(parameterized.TestCase):
    def test_reads_good_file(self):
        path = write("good.txt", "new york\n\nin spite of\r\nUnited States of America\n   \nnew york\nthe 1 2 3 4\n")
        vocabulary = pmi.PMIVocabulary.read(path)
        self.assertEqual(
            vocabulary.ngrams,
            (
                ("new", "york"),
                ("in", "spite", "of"),
                ("united", "states", "of", "america"),
                ("the", "1", "2", "3", "4"),
            ),
        )
        self.assertEqual(vocabulary.blank_lines, 2)
        self.assertEqual(vocabulary.duplicates, 1)
        self.assertEqual(vocabulary.source, str(path))
        self.assertEqual(vocabulary.length_counts(), {2: 1, 3: 1, 4: 1, 5: 1})
        self.assertEqual(pmi.PMIVocabulary.read(path, limit=2).ngrams, vocabulary.ngrams[:2])

    @parameterized.named_parameters(
        ("one_word", "new york\nyork\n", 2, "1 word ('york'); a PMI n-gram has 2 to 5 words"),
        ("six_words", "new york\n\na b c d e f\n", 3, "6 words ('a b c d e f'); a PMI n-gram has 2 to 5 words"),
        ("not_utf8", b"new york\nnew \xff york\n", 2, "not valid UTF-8"),
    )
    def test_bad_line_names_file_and_line(self, content, line, message):
        path = write("bad.txt", content)
        with self.assertRaises(readers.InputFileError) as caught:
            pmi.PMIVocabulary.read(path, flag="--pmi_vocabulary")
        text = str(caught.exception)
        self.assertRegex(text, rf"^{re.escape(str(path))}:{line}: {re.escape(message)}")
        self.assertTrue(text.endswith("(--pmi_vocabulary)"), text)
        self.assertNotIn("\n", text)
        self.assertIsInstance(caught.exception, UsageError)  # the scripts print it in one line and exit 2

    @parameterized.named_parameters(("blank_lines_only", "\n  \n\n", "holds no n-gram"), ("empty", "", "file is empty"))
    def test_file_without_ngrams(self, content, message):
        path = write("empty.txt", content)
        with self.assertRaisesRegex(readers.InputFileError, rf"^{re.escape(str(path))}: {message}"):
            pmi.PMIVocabulary.read(path)

    def test_write_read_round_trip(self):
        vocabulary = pmi.PMIVocabulary.from_ngrams(["New York", ("in", "spite", "of")])
        path = TMP / "round_trip.txt"
        vocabulary.write(path)
        self.assertEqual(path.read_text(encoding="utf-8"), "new york\nin spite of\n")
        self.assertEqual(pmi.PMIVocabulary.read(path).ngrams, vocabulary.ngrams)

    def test_as_vocabulary(self):
        path = write("as.txt", "new york\n")
        expected = (("new", "york"),)
        self.assertEqual(pmi.as_vocabulary(path).ngrams, expected)
        self.assertEqual(pmi.as_vocabulary(str(path)).ngrams, expected)
        self.assertEqual(pmi.as_vocabulary(["new york"]).ngrams, expected)
        vocabulary = pmi.PMIVocabulary.from_ngrams(["new york"])
        self.assertIs(pmi.as_vocabulary(vocabulary), vocabulary)
        for bad in (None, pmi.PMIVocabulary):
            with self.assertRaisesRegex(ValueError, "a PMI vocabulary is needed"):
                pmi.as_vocabulary(bad)
        with self.assertRaisesRegex(ValueError, "n-gram 1: 1 word"):
            pmi.PMIVocabulary.from_ngrams(["new york", "york"])


# ---------------------------------------------------------------------------------------------------------------
# Building a vocabulary

# 19 two-word documents: "new york" 3 times; "the cat" 4 times, but "the" and "cat" are spread evenly over
# {the, a} x {cat, dog}, so the pair is frequent and carries no association beyond chance.
BIGRAM_CORPUS = ["new york"] * 3 + ["the cat"] * 4 + ["the dog"] * 4 + ["a cat"] * 4 + ["a dog"] * 4
# 6 three-word documents, for PMI_n of a trigram.
TRIGRAM_CORPUS = ["new york city"] * 2 + ["new york times"] * 2 + ["old city hall"] * 2


class BuilderTest(parameterized.TestCase):
    def corpus(self, name: str, lines: list[str]) -> Path:
        return write(name, "\n".join(lines) + "\n")

    def test_bigram_golden_values_and_rank(self):
        counts = pmi.count_ngrams([self.corpus("bigrams.txt", BIGRAM_CORPUS)], min_count=2, log=None)
        # Computed by hand: N_1 = 38 words, N_2 = 19 bigram windows.
        #   PMI(new york) = log (3/19) / ((3/38) (3/38)) = log (38^2 / (3 * 19)) = log (76/3)
        #   PMI(the cat)  = log (4/19) / ((8/38) (8/38)) = log (19/4)
        self.assertEqual(counts.windows[1], 38)
        self.assertEqual(counts.windows[2], 19)
        self.assertEqual(counts.count("new york"), 3)
        self.assertEqual(counts.count("the cat"), 4)
        scores = self.scores(counts, "pmi_n")
        self.assertAlmostEqual(scores["new york"], math.log(76 / 3), places=12)
        self.assertAlmostEqual(scores["the cat"], math.log(19 / 4), places=12)
        vocabulary, rows = pmi.select_vocabulary(
            pmi.pmi_scores(counts), counts.words, size=5, length_shares=(1, 0, 0, 0)
        )
        self.assertEqual(vocabulary.ngrams[0], ("new", "york"))  # ranks above the more frequent "the cat"
        self.assertEqual(rows[0][:3], ("new york", 2, 3))
        self.assertEqual(sorted(" ".join(g) for g in vocabulary.ngrams[1:]), ["a cat", "a dog", "the cat", "the dog"])

    def test_trigram_golden_values(self):
        counts = pmi.count_ngrams([self.corpus("trigrams.txt", TRIGRAM_CORPUS)], min_count=2, log=None)
        # Computed by hand: N_1 = 18, N_2 = 12, N_3 = 6; p(new) = p(york) = p(city) = 4/18, p(new york) = 4/12,
        # p(york city) = 2/12, p(new york city) = 2/6. The segmentations of "new york city":
        #   new | york city       (4/18)(2/12)       = 1/27
        #   new york | city       (4/12)(4/18)       = 2/27   <- the largest
        #   new | york | city     (4/18)^3           = 8/729
        # PMI_3 = log (1/3) / (2/27) = log 4.5; with p^2 in the numerator: log (1/9) / (2/27) = log 1.5.
        # PMI(new york) = log (4/12) / ((4/18)^2) = log 6.75 (equation 3 and the bigram PMI agree for n = 2).
        self.assertEqual([counts.windows[k] for k in (1, 2, 3)], [18, 12, 6])
        plain, freq = self.scores(counts, "pmi_n"), self.scores(counts, "pmi_n_freq")
        self.assertAlmostEqual(plain["new york city"], math.log(4.5), places=12)
        self.assertAlmostEqual(freq["new york city"], math.log(1.5), places=12)
        self.assertAlmostEqual(plain["new york"], math.log(6.75), places=12)
        self.assertAlmostEqual(freq["new york"], math.log(6.75) + math.log(4 / 12), places=12)
        # "old city hall": every part occurs only with the others, so PMI_3 = -log max(p(old) p(city hall), ...).
        self.assertAlmostEqual(plain["old city hall"], math.log((2 / 6) / ((2 / 18) * (2 / 12))), places=12)

    def scores(self, counts, measure) -> dict[str, float]:
        out = {}
        for scored in pmi.pmi_scores(counts, measure).values():
            for words, score in zip(scored.words.tolist(), scored.scores.tolist()):
                out[" ".join(counts.words[w] for w in words)] = score
        return out

    def test_words_lowercase_documents_and_punctuation(self):
        lines = ["New York , new YORK !", "big new", "york big", "new york ,"] + ["a , b"] * 3
        counts = pmi.count_ngrams([self.corpus("words.txt", lines)], min_count=2, log=None)
        self.assertEqual(counts.count("new york"), 3)  # lowercased; "big new" / "york big": not across documents
        self.assertEqual(counts.count("york ,"), 0)  # "," has no letter or digit: in no n-gram
        self.assertEqual(counts.windows[1], 6 + 2 + 2 + 3 + 9)  # punctuation still counts as words
        kept = pmi.count_ngrams([self.corpus("words.txt", lines)], 2, keep_punctuation=True, log=None)
        self.assertEqual(kept.count("york ,"), 2)
        self.assertEqual(kept.count("a , b"), 3)

    def test_min_count_prunes(self):
        counts = pmi.count_ngrams([self.corpus("bigrams.txt", BIGRAM_CORPUS)], min_count=4, log=None)
        self.assertEqual(counts.count("new york"), 0)
        self.assertEqual(counts.count("the cat"), 4)
        self.assertEqual(counts.words, ["a", "cat", "dog", "the"])

    def test_records_and_several_files(self):
        first = write("docs.jsonl", "".join(json.dumps({"body": line}) + "\n" for line in BIGRAM_CORPUS[:9]))
        second = self.corpus("rest.txt", BIGRAM_CORPUS[9:])
        counts = pmi.count_ngrams([first, second], min_count=2, text_column="body", log=None)
        self.assertEqual((counts.count("new york"), counts.count("the cat"), counts.windows[2]), (3, 4, 19))

    def test_table_reduction_is_reported(self):
        rng = np.random.default_rng(0)
        lines = [" ".join(rng.choice(FILLER, 8)) for _ in range(300)] + ["new york"] * 50
        logged: list[str] = []
        counts = pmi.count_ngrams([self.corpus("many.txt", lines)], 1, max_table_entries=64, log=logged.append)
        self.assertGreater(counts.reductions, 0)
        self.assertTrue(any("table reduction" in line for line in logged), logged)
        self.assertLessEqual(len(counts.keys[2]), 64)
        self.assertEqual(counts.count("new york"), 50)  # the frequent pair is never dropped: its count is exact

    def test_quotas(self):
        plenty = {n: 100 for n in range(2, 6)}
        self.assertEqual(pmi._quotas(10, pmi.DEFAULT_LENGTH_SHARES, plenty), {2: 6, 3: 2, 4: 1, 5: 1})
        self.assertEqual(
            pmi._quotas(10, pmi.DEFAULT_LENGTH_SHARES, {2: 2, 3: 100, 4: 0, 5: 0}), {2: 2, 3: 8, 4: 0, 5: 0}
        )
        self.assertEqual(pmi._quotas(10, (1, 0, 0, 0), {2: 3, 3: 100, 4: 0, 5: 0}), {2: 3, 3: 0, 4: 0, 5: 0})

    def test_command_line(self):
        corpus = self.corpus("trigrams.txt", TRIGRAM_CORPUS)
        output, scores = TMP / "cli_vocab.txt", TMP / "cli_scores.tsv"
        argv = ["build", "--train_files", str(corpus), "--output", str(output), "--min_count", "2", "--size", "4"]
        summary = pmi.main([*argv, "--scores_output", str(scores), "--no_progress"])
        vocabulary = pmi.PMIVocabulary.read(output)
        self.assertEqual(summary["ngrams"], 4)
        self.assertEqual(len(vocabulary), 4)
        # Shares of 4: 2 bigrams, 1 trigram; the 4- and 5-gram slot (none exist) goes to the larger share.
        self.assertEqual(vocabulary.length_counts(), {2: 3, 3: 1, 4: 0, 5: 0})
        lines = scores.read_text(encoding="utf-8").splitlines()
        self.assertEqual(lines[0], "ngram\tn\tcount\tscore")
        self.assertEqual(lines[1].split("\t")[0], " ".join(vocabulary.ngrams[0]))

    @parameterized.named_parameters(
        ("missing_file", ["--train_files", "/nonexistent/corpus.txt"], "file not found"),
        ("bad_shares", ["--length_shares", "0.5,0.5"], "--length_shares must be 4"),
        ("bad_min_count", ["--min_count", "0"], "--min_count must be >= 1"),
    )
    def test_command_line_errors(self, override, message):
        corpus = self.corpus("bigrams.txt", BIGRAM_CORPUS)
        argv = ["build", "--train_files", str(corpus), "--output", str(TMP / "x.txt"), "--no_progress", *override]
        with self.assertRaisesRegex(UsageError, re.escape(message)):
            pmi.main(argv)


# ---------------------------------------------------------------------------------------------------------------
# Token-level matching


class TokenIndexTest(parameterized.TestCase):
    def test_sentencepiece_ngram_tokens_as_in_running_text(self):
        tokenizer = TOKENIZERS["sentencepiece"]
        index = pmi.TokenNgramIndex(pmi.PMIVocabulary.from_ngrams(["new york"]), tokenizer)
        text = "river New York and new york meadow"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        found = index.find(np.array([ids]))[0]
        self.assertEqual([tokenizer.decode(ids[s:e]) for s, e in found], ["New York", "new york"])
        for sequence in index.sequences("new york"):
            self.assertTrue(tokenizer.convert_ids_to_tokens(sequence[0]).startswith("\u2581"))  # the word marker
        # The tokens of the n-gram alone equal those inside the text.
        alone = tuple(tokenizer("new york", add_special_tokens=False)["input_ids"])
        self.assertIn(alone, index.sequences("new york"))
        self.assertEqual(tuple(ids[found[1][0] : found[1][1]]), alone)

    def test_byte_tokenizer_leaves_the_space_out(self):
        index = pmi.TokenNgramIndex(pmi.PMIVocabulary.from_ngrams(["new york"]), BYT5, case_variants=("lower",))
        self.assertEqual(index.sequences("new york"), [tuple(b + 3 for b in b"new york")])

    @parameterized.product(
        tokenizer=["sentencepiece", "byt5"],
        case=[
            ("river new york meadow", ["new york"]),
            ("new york, river", ["new york"]),
            ("river new yorker meadow", []),
            ("river renew york meadow", []),
            ("New York", ["New York"]),
            ("NEW YORK", []),  # "upper" is not in the default case variants
        ],
    )
    def test_matches_only_whole_words(self, tokenizer, case):
        text, expected = case
        tokenizer = TOKENIZERS[tokenizer]
        index = pmi.TokenNgramIndex(pmi.PMIVocabulary.from_ngrams(["new york"]), tokenizer)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        found = index.find(np.array([ids]))[0]
        self.assertEqual([tokenizer.decode(ids[s:e]).strip() for s, e in found], expected)

    def test_boundaries_at_special_tokens(self):
        tokenizer = TOKENIZERS["byt5"]
        index = pmi.TokenNgramIndex(pmi.PMIVocabulary.from_ngrams(["new york"]), tokenizer)
        piece = tokenizer("new york", add_special_tokens=False)["input_ids"]
        row = [tokenizer.eos_token_id, *piece, tokenizer.eos_token_id, *piece]
        self.assertEqual(index.find(np.array([row]))[0], [(1, 9), (10, 18)])

    def test_masking_units(self):
        draws = pmi._Draws(1, 3)
        # An occurrence inside another gives way to it (AI21: the larger one is the unit).
        self.assertEqual(pmi.masking_units([(2, 4), (0, 6), (0, 2), (7, 9)], draws), [(0, 6), (7, 9)])
        # Partial overlaps: one of the two, chosen at random; both outcomes occur over keys.
        outcomes = {tuple(pmi.masking_units([(0, 3), (2, 5)], pmi._Draws(key, 3))) for key in range(40)}
        self.assertEqual(outcomes, {((0, 3),), ((2, 5),)})


# ---------------------------------------------------------------------------------------------------------------
# The collator


class CollatorTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("byt5_default", "byt5", 128, 0.15, 3.0),
        ("byt5_long_spans", "byt5", 256, 0.3, 8.0),
        ("sentencepiece_default", "sentencepiece", 128, 0.15, 3.0),
        ("sentencepiece_short_spans", "sentencepiece", 96, 0.2, 1.0),
    )
    def test_plugs_into_t5_collator(self, tokenizer, input_length, density, span_length):
        tokenizer = TOKENIZERS[tokenizer]
        collator, t5 = make_collators(tokenizer, input_length, density, span_length)
        self.assertIsInstance(collator, dc.T5DataCollator)
        self.assertEqual((collator.raw_length, collator.target_length), (t5.raw_length, t5.target_length))
        examples = packed_blocks(tokenizer, collator.raw_length, 24)
        batch, reference = collator(examples), t5(examples)
        self.assertEqual(set(batch), {"input_ids", "attention_mask", "labels"})
        for key in batch:
            self.assertEqual(batch[key].shape, reference[key].shape, key)
            self.assertEqual(batch[key].dtype, torch.int64, key)
        torch.testing.assert_close(batch["attention_mask"], reference["attention_mask"])
        if span_length > 1:
            self.assertGreater(collator.stats["ngram_spans"], 0)
        else:  # T5's counts then make every span one token: no n-gram of 2 or more tokens fits
            self.assertEqual(collator.stats["ngram_spans"], 0)
        for row in range(len(examples)):
            self.assertEqual(
                reconstruct(tokenizer, batch["input_ids"][row], batch["labels"][row]), examples[row]["input_ids"]
            )

    @parameterized.named_parameters(("byt5", "byt5"), ("sentencepiece", "sentencepiece"))
    def test_noise_density_and_span_length(self, tokenizer):
        tokenizer = TOKENIZERS[tokenizer]
        collator, t5 = make_collators(tokenizer, 128)
        examples = packed_blocks(tokenizer, collator.raw_length, 300)
        mask = collator.noise_mask(examples)
        t5_mask = t5.noise_mask(examples)
        spans = [len(runs(row)) for row in mask]
        # Every example has T5's counts exactly, so the averages match too.
        np.testing.assert_array_equal(mask.sum(axis=1), t5_mask.sum(axis=1))
        self.assertEqual(spans, [len(runs(row)) for row in t5_mask])
        density = mask.mean()
        span_length = mask.sum() / sum(spans)
        self.assertAlmostEqual(density, 0.15, delta=0.5 / collator.raw_length)
        self.assertAlmostEqual(span_length, 3.0, delta=0.25)
        self.assertLess(collator.stats["fallbacks"], 0.02 * len(examples))

    @parameterized.named_parameters(("byt5", "byt5"), ("sentencepiece", "sentencepiece"))
    def test_ngrams_masked_whole_far_more_often(self, tokenizer):
        tokenizer = TOKENIZERS[tokenizer]
        collator, t5 = make_collators(tokenizer, 128)
        examples = packed_blocks(tokenizer, collator.raw_length, 300)
        ids = collator._stack_input_ids(examples)
        occurrences = collator.index.find(ids)
        rates = {}
        for name, mask in (("pmi", collator.noise_mask(examples)), ("t5", t5.noise_mask(examples))):
            whole = partial = total = 0
            for row, spans in enumerate(occurrences):
                for start, end in spans:
                    masked = int(mask[row, start:end].sum())
                    whole += masked == end - start
                    partial += 0 < masked < end - start
                    total += 1
            rates[name] = (whole / total, partial / total)
        self.assertGreater(sum(len(s) for s in occurrences), 500)
        self.assertGreater(rates["pmi"][0], 2 * rates["t5"][0], rates)
        self.assertGreater(rates["pmi"][0], 0.1, rates)
        # Masked whole or not at all, but for the rare fallback to T5's mask.
        self.assertLess(rates["pmi"][1], 0.01, rates)
        self.assertGreater(rates["t5"][1], 0.1, rates)

    def test_deterministic_from_seed_epoch_and_index(self):
        tokenizer = TOKENIZERS["sentencepiece"]
        collator, _ = make_collators(tokenizer, 128, seed=3)
        examples = packed_blocks(tokenizer, collator.raw_length, 12)
        mask = collator.noise_mask(examples)
        again, _ = make_collators(tokenizer, 128, seed=3)
        reordered = [examples[i] for i in (5, 2, 11, 0)]
        np.testing.assert_array_equal(again.noise_mask(reordered), mask[[5, 2, 11, 0]])
        np.testing.assert_array_equal(again.noise_mask(examples), mask)  # the same examples in a later batch
        batch, again_batch = collator(examples), again(examples)
        for key in batch:
            torch.testing.assert_close(batch[key], again_batch[key])
        other_seed, _ = make_collators(tokenizer, 128, seed=4)
        self.assertFalse(np.array_equal(other_seed.noise_mask(examples), mask))
        epoch = [dict(example, epoch=1) for example in examples]
        self.assertFalse(np.array_equal(collator.noise_mask(epoch), mask))
        collator.set_epoch(1)
        np.testing.assert_array_equal(collator.noise_mask(examples), collator.noise_mask(epoch))

    def test_without_ngrams_it_is_span_corruption(self):
        tokenizer = TOKENIZERS["byt5"]
        collator, t5 = make_collators(tokenizer, 128, vocabulary=["thunder river meadow"])
        examples = packed_blocks(tokenizer, collator.raw_length, 16, ngram_rate=0.0)
        self.assertEqual(collator.index.find(collator._stack_input_ids(examples)), [[]] * 16)
        batch, reference = collator(examples), t5(examples)
        for key in batch:
            torch.testing.assert_close(batch[key], reference[key])

    def test_corrupt_matches_base_and_handles_any_span_layout(self):
        tokenizer = TOKENIZERS["byt5"]
        collator, t5 = make_collators(tokenizer, 32)
        examples = packed_blocks(tokenizer, collator.raw_length, 8)
        ids = collator._stack_input_ids(examples)
        t5_mask = t5.noise_mask(examples)  # T5's layout: starts with non-noise, ends with noise
        for key, value in collator.corrupt(ids, t5_mask).items():
            torch.testing.assert_close(value, t5.corrupt(ids, t5_mask)[key])
        # A mask that starts with noise and ends without: the targets still open every span with its sentinel.
        flipped = t5_mask[:, ::-1].copy()
        batch = collator.corrupt(ids, flipped)
        sentinel0 = tokenizer.convert_tokens_to_ids("<extra_id_0>")
        self.assertTrue((batch["labels"][:, 0] == sentinel0).all())
        for row in range(len(ids)):
            self.assertEqual(reconstruct(tokenizer, batch["input_ids"][row], batch["labels"][row]), ids[row].tolist())

    def test_vocabulary_file_and_errors(self):
        path = write("collator_vocab.txt", "\n".join(NGRAMS) + "\n")
        collator, _ = make_collators(BYT5, 64, vocabulary=path)
        self.assertEqual(len(collator.vocabulary), len(NGRAMS))
        with self.assertRaisesRegex(ValueError, "a PMI vocabulary is needed"):
            pmi.PMISpanCorruptionCollator(tokenizer=BYT5, input_length=64)
        with self.assertRaisesRegex(ValueError, "unknown case variants"):
            make_collators(BYT5, 64, case_variants=("lower", "camel"))


if __name__ == "__main__":
    absltest.main()
