"""Several pre-training corpora mixed with given probabilities (--corpus_groups / a --dataset_name list,
--corpus_probabilities, --corpus_stopping_strategy): the flags, the realised shares and their report.

The two groups are real text: short Shakespeare lines ("plays", ~33 characters) and longer Gutenberg sentences
("books", ~106), so document shares and token shares differ. The unit checks use the byte-level ByT5 tokenizer
(no training); the end-to-end runs train a tiny model for a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl.testing import absltest, parameterized
from transformers import ByT5Tokenizer

import pre_train_t5
from t5kit.args import UsageError
from t5kit.corpus import (
    GROUP_COLUMN,
    CorpusReport,
    PretrainDataArguments,
    StreamIndexedBlocks,
    drop_empty_documents,
    load_documents,
    pack_corpus,
    split_blocks,
)
from t5kit.exit_codes import EXIT_USAGE
from tests.helpers import ModuleScratch, corpus_slice, run_script_here

SCRATCH = ModuleScratch("test_corpus_mixing_")
setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down

PLAYS = "corpus/tinyshakespeare/part-000.txt"
BOOKS = "corpus/gutenberg_nltk_tokenized/part-000.txt"
RAW_LENGTH = 128
# A realised document share is a binomial proportion: over n draws its standard deviation is sqrt(p (1 - p) / n),
# 0.0072 for p = 0.8 at the ~3,100 documents of the smallest mixture below (first_exhausted). 0.03 is over 4 of
# those; the counts are also fixed for a seed (checked below), so a pass is no matter of luck.
SHARE_TOLERANCE = 0.03


def group_files(lines: int = 3000) -> tuple[Path, Path]:
    """The first `lines` lines of each group's file, written once per module."""
    return corpus_slice(SCRATCH.path(), PLAYS, lines=lines), corpus_slice(SCRATCH.path(), BOOKS, lines=lines)


def mixture_args(probabilities=(0.8, 0.2), lines: int = 3000, **flags) -> PretrainDataArguments:
    plays, books = group_files(lines)
    return PretrainDataArguments(
        corpus_groups=[f"plays={plays}", f"books={books}"], corpus_probabilities=list(probabilities), **flags
    )


def mix(args: PretrainDataArguments, seed: int = 7):
    """(report, train blocks, eval blocks) of a mixture, through the same calls as pre_train_t5; a stream's train
    blocks are read to the end (as a run that trains on all of them)."""
    report = CorpusReport()
    docs = drop_empty_documents(load_documents(args, report, seed=seed), report)
    packed = pack_corpus(docs, ByT5Tokenizer(), RAW_LENGTH, None, report)
    train, evaluation = split_blocks(packed, args, seed, report)
    if args.streaming:
        for _ in StreamIndexedBlocks(train):
            pass
    return report, train, evaluation


def shares(report: CorpusReport, key: str = "share") -> dict[str, float]:
    return {name: entry[key] for name, entry in report.mixture.items()}


class MixtureFlagsTest(parameterized.TestCase):
    """Mistakes in the mixture flags are one-line UsageErrors naming the flag, raised when the flags are parsed:
    the files named here do not exist and are never opened."""

    @parameterized.named_parameters(
        ("sum_off_one", ["--corpus_groups", "a=x.txt", "b=y.txt", "--corpus_probabilities", "0.8", "0.3"],
         r"^--corpus_probabilities 0\.8 0\.3 sum to 1\.1, not 1 \(tolerance 0\.001\)$"),
        ("count_mismatch", ["--corpus_groups", "a=x.txt", "b=y.txt", "--corpus_probabilities", "0.5", "0.3", "0.2"],
         r"^--corpus_probabilities has 3 values for 2 corpus groups \(a, b\): give one per group"),
        ("negative", ["--corpus_groups", "a=x.txt", "b=y.txt", "--corpus_probabilities", "1.2", "-0.2"],
         r"^--corpus_probabilities: -0\.2 for group b; each must be > 0"),
        ("zero", ["--corpus_groups", "a=x.txt", "b=y.txt", "--corpus_probabilities", "1", "0"],
         r"^--corpus_probabilities: 0 for group b; each must be > 0"),
        ("missing_probabilities", ["--corpus_groups", "a=x.txt", "b=y.txt"],
         r"^2 corpus groups \(a, b\): give --corpus_probabilities with one probability per group"),
        ("probabilities_without_groups", ["--train_files", "x.txt", "y.txt", "--corpus_probabilities", "0.5", "0.5"],
         r"^--corpus_probabilities weighs the groups of a mixture: give them with --corpus_groups"),
        ("group_without_name", ["--corpus_groups", "x.txt", "b=y.txt", "--corpus_probabilities", "0.5", "0.5"],
         r"^--corpus_groups: 'x\.txt' is not NAME=PATH\[,PATH\.\.\.\]$"),
        ("group_twice", ["--corpus_groups", "a=x.txt", "a=y.txt", "--corpus_probabilities", "0.5", "0.5"],
         r"^--corpus_groups: group a is given twice"),
        ("empty_path", ["--corpus_groups", "a=x.txt,,z.txt", "b=y.txt", "--corpus_probabilities", "0.5", "0.5"],
         r"^--corpus_groups: 'a=x\.txt,,z\.txt' has an empty path"),
        ("groups_and_train_files", ["--train_files", "x.txt", "--corpus_groups", "a=x.txt"],
         r"^--train_files and --corpus_groups are exclusive: pick one corpus source$"),
        ("groups_and_hub", ["--corpus_groups", "a=x.txt", "--dataset_name", "allenai/c4"],
         r"^--corpus_groups and --dataset_name are exclusive: pick one corpus source$"),
        ("hub_config_count", ["--dataset_name", "allenai/c4,bookcorpus", "--dataset_config_name", "en,x,y",
                              "--corpus_probabilities", "0.5", "0.5"],
         r"^--dataset_config_name en,x,y: 3 entries for 2 datasets in --dataset_name"),
        ("hub_probability_count", ["--dataset_name", "allenai/c4,bookcorpus", "--dataset_config_name", "en,",
                                   "--corpus_probabilities", "1"],
         r"^--corpus_probabilities has 1 value for 2 corpus groups \(allenai/c4:en, bookcorpus\)"),
        ("unknown_stopping_strategy", ["--corpus_groups", "a=x.txt", "b=y.txt", "--corpus_probabilities", "0.5",
                                       "0.5", "--corpus_stopping_strategy", "never"],
         r"^--corpus_stopping_strategy must be all_exhausted or first_exhausted, got 'never'$"),
    )  # fmt: skip
    def test_refused_with_one_line_before_any_data_is_read(self, flags, pattern):
        out = Path(self.create_tempdir().full_path) / "out"
        argv = [
            *flags,
            "--model_config",
            "tiny",
            "--vocab_size",
            "300",
            "--report_to",
            "none",
            "--output_dir",
            str(out),
        ]
        code, output = run_script_here(pre_train_t5.main, argv)
        self.assertEqual(code, EXIT_USAGE, output[-2000:])
        lines = output.strip().splitlines()
        self.assertLen(lines, 1, output[-2000:])
        self.assertRegex(lines[0].removeprefix("error: "), pattern)
        self.assertFalse(out.exists())  # refused before the run folder was made

    def test_a_streamed_mixture_is_read_in_the_main_process(self):
        """A data loader worker would draw the mixture with other random choices than the eval blocks' (datasets
        shifts each worker's generator) and keep the counts: refused, before the corpus is read."""
        with self.assertRaisesRegex(UsageError, r"^--streaming with a corpus mixture and --dataloader_num_workers 1: "):
            pre_train_t5.main(["--corpus_groups", "a=x.txt", "b=y.txt", "--corpus_probabilities", "0.5", "0.5",
                               "--streaming", "--max_steps", "2", "--dataloader_num_workers", "1", "--model_config",
                               "tiny", "--output_dir", self.create_tempdir().full_path])  # fmt: skip

    def test_probabilities_within_tolerance_are_rescaled(self):
        args = PretrainDataArguments(corpus_groups=["a=x", "b=y", "c=z"], corpus_probabilities=[0.333] * 3)
        self.assertSequenceAlmostEqual(args.mixture_probabilities(), [1 / 3] * 3, places=12)

    def test_hub_list_names_its_groups(self):
        args = PretrainDataArguments(dataset_name="allenai/c4,bookcorpus", dataset_config_name="en,",
                                     corpus_probabilities=[0.7, 0.3])  # fmt: skip
        groups = args.mixture_groups()
        want = [("allenai/c4:en", "allenai/c4", "en", "train"), ("bookcorpus", "bookcorpus", None, "train")]
        self.assertEqual([(g.name, g.dataset, g.config, g.split) for g in groups], want)

    def test_an_unreachable_hub_group_is_one_line(self):
        args = PretrainDataArguments(dataset_name="allenai/c4,bookcorpus", dataset_config_name="en,",
                                     corpus_probabilities=[0.7, 0.3], streaming=True)  # fmt: skip
        with self.assertRaisesRegex(
            UsageError, r"^dataset allenai/c4 \(en\): .*give local corpora with --corpus_groups$"
        ):
            load_documents(args)

    def test_single_corpus_flags_are_no_mixture(self):
        for args in (PretrainDataArguments(train_files=["a.txt", "b.txt"]), PretrainDataArguments(dataset_name="c4")):
            self.assertEqual((args.mixture_groups(), args.mixture_probabilities()), ([], []))

    def test_a_group_file_error_names_the_groups_flag(self):
        with self.assertRaisesRegex(UsageError, r"nope\.txt: file not found \(--corpus_groups\)$"):
            load_documents(PretrainDataArguments(corpus_groups=["a=nope.txt"]))


class MixtureSharesTest(parameterized.TestCase):
    """Realised shares of a 0.8 / 0.2 mixture of two files of 3,000 lines each."""

    @classmethod
    def setUpClass(cls):
        cls.report, cls.train, _ = mix(mixture_args())

    def test_document_shares_follow_the_probabilities(self):
        got = shares(self.report)
        self.assertAlmostEqual(got["plays"], 0.8, delta=SHARE_TOLERANCE)
        self.assertAlmostEqual(got["books"], 0.2, delta=SHARE_TOLERANCE)
        self.assertEqual({n: e["probability"] for n, e in self.report.mixture.items()}, {"plays": 0.8, "books": 0.2})

    def test_counts_cover_the_training_blocks_exactly(self):
        entries = self.report.mixture
        self.assertEqual(sum(e["tokens"] for e in entries.values()), len(self.train) * RAW_LENGTH)
        self.assertEqual(self.train.column_names, ["input_ids"])  # the count columns are gone
        # A Gutenberg sentence is ~3x a Shakespeare line: its token share is well above its document share.
        self.assertGreater(entries["books"]["token_share"], entries["books"]["share"] + 0.2)
        self.assertIn(f"the {len(self.train)} training blocks (exact", self.report.mixture_counted)

    def test_empty_documents_are_dropped_per_group_before_mixing(self):
        plays, books = group_files()
        blank = sum(not line.strip() for line in plays.read_text(encoding="utf-8").splitlines())
        self.assertGreater(blank, 100)
        self.assertEqual(self.report.empty_documents_skipped, blank)
        self.assertEqual(self.report.documents, 6000)  # every line of both files read once
        self.assertEqual(self.report.mixture["plays"]["source_documents"], 3000 - blank)
        self.assertEqual(self.report.mixture["books"]["source_documents"], 3000)

    def test_all_exhausted_draws_every_document_and_repeats_the_rest(self):
        for entry in self.report.mixture.values():
            self.assertGreaterEqual(entry["mixture_documents"], entry["source_documents"])
        plays = self.report.mixture["plays"]
        self.assertGreater(plays["mixture_documents"], 3 * plays["source_documents"])  # 0.8 of ~15,000 draws

    def test_first_exhausted_ends_with_the_first_group_to_run_out(self):
        report, _, _ = mix(mixture_args(corpus_stopping_strategy="first_exhausted"))
        plays, books = report.mixture["plays"], report.mixture["books"]
        self.assertEqual(plays["mixture_documents"], plays["source_documents"])  # ran out first (needs 1/0.8 draws)
        self.assertLess(books["mixture_documents"], books["source_documents"])  # the rest is never read
        self.assertAlmostEqual(shares(report)["plays"], 0.8, delta=SHARE_TOLERANCE)

    def test_deterministic_for_a_seed(self):
        report, train, _ = mix(mixture_args(), seed=7)
        self.assertEqual(report.mixture, self.report.mixture)
        self.assertEqual(train[:50]["input_ids"], self.train[:50]["input_ids"])
        other, other_train, _ = mix(mixture_args(), seed=8)
        self.assertNotEqual(other_train[:50]["input_ids"], self.train[:50]["input_ids"])
        self.assertAlmostEqual(shares(other)["plays"], 0.8, delta=SHARE_TOLERANCE)

    def test_streaming_agrees_with_the_dataset(self):
        report, _, evaluation = mix(mixture_args(streaming=True, max_eval_samples=10))
        self.assertEqual(evaluation.column_names, ["input_ids"])
        for name in ("plays", "books"):
            self.assertAlmostEqual(shares(report)[name], shares(self.report)[name], delta=0.01)
            self.assertAlmostEqual(shares(report, "token_share")[name], shares(self.report, "token_share")[name],
                                   delta=0.01)  # fmt: skip
        self.assertIn("read from the stream", report.mixture_counted)

    def test_a_resumed_stream_counts_the_blocks_it_skipped(self):
        args = mixture_args(streaming=True, max_eval_samples=0, lines=600)
        full, _, _ = mix(args)
        report = CorpusReport()
        docs = drop_empty_documents(load_documents(args, report, seed=7), report)
        train, _ = split_blocks(pack_corpus(docs, ByT5Tokenizer(), RAW_LENGTH, None, report), args, 7, report)
        blocks = StreamIndexedBlocks(train)
        blocks.resume_at(0, 25)
        self.assertEqual([row["idx"] for row in blocks][0], 25)
        self.assertEqual(report.mixture, full.mixture)


class MixtureEndToEndTest(absltest.TestCase):
    """Tiny pre-training runs on two groups: the realised shares are printed and saved in all_results.json."""

    def run_pretraining(self, *flags: str) -> tuple[dict, str]:
        plays, books = group_files(lines=1500)
        out = Path(self.create_tempdir().full_path) / "run"
        argv = ["--corpus_groups", f"plays={plays}", f"books={books}", "--corpus_probabilities", "0.8", "0.2",
                "--vocab_size", "300", "--model_config", "tiny", "--input_length", "64",
                "--per_device_train_batch_size", "8", "--save_strategy", "no", "--report_to", "none",
                "--disable_tqdm", "True", "--seed", "5", "--output_dir", str(out), *flags]  # fmt: skip
        code, output = run_script_here(pre_train_t5.main, argv)
        self.assertEqual(code, 0, output[-3000:])
        return json.loads((out / "all_results.json").read_text()), output

    def test_dataset_run_saves_and_prints_the_shares(self):
        results, output = self.run_pretraining("--max_steps", "3")
        mixture = results["corpus_mixture"]
        self.assertEqual(set(mixture), {"plays", "books"})
        self.assertEqual(mixture["plays"]["probability"], 0.8)
        self.assertAlmostEqual(mixture["plays"]["share"], 0.8, delta=SHARE_TOLERANCE)
        self.assertAlmostEqual(mixture["books"]["share"], 0.2, delta=SHARE_TOLERANCE)
        tokens = sum(entry["tokens"] for entry in mixture.values())
        self.assertEqual(tokens, results["corpus_train_blocks"] * results["raw_length"])
        self.assertIn("training blocks (exact", results["corpus_mixture_counted"])
        self.assertRegex(output, r"\| plays \| 0\.8000 \| \d+ \| 0\.[78]\d+ \|")

    def test_streamed_run_counts_what_it_read(self):
        steps, batch = 10, 8
        results, output = self.run_pretraining("--streaming", "--max_steps", str(steps), "--max_eval_samples", "4")
        mixture = results["corpus_mixture"]
        blocks_read = sum(entry["tokens"] for entry in mixture.values()) / results["raw_length"]
        # The trained blocks, plus at most the data loader's look-ahead.
        self.assertGreaterEqual(blocks_read, steps * batch)
        self.assertLessEqual(blocks_read, (steps + 2) * batch)
        documents = sum(entry["documents"] for entry in mixture.values())
        self.assertGreater(documents, 100)
        # ~220 documents (seed 5): a binomial share's standard deviation is ~0.027 here.
        self.assertAlmostEqual(mixture["plays"]["share"], 0.8, delta=0.12)
        self.assertIn("read from the stream", results["corpus_mixture_counted"])
        self.assertIn("| books | 0.2000 |", output)


class GroupSourcesTest(absltest.TestCase):
    def test_a_group_of_several_paths_and_a_saved_folder(self):
        import datasets

        tmp = Path(self.create_tempdir().full_path)
        (tmp / "a.txt").write_text("one\ntwo\n\nthree\n")
        (tmp / "b.jsonl").write_text('{"text": "four"}\n{"text": null}\n')
        datasets.Dataset.from_dict({"text": ["x", "y", "z", ""]}).save_to_disk(str(tmp / "saved"))
        args = PretrainDataArguments(
            corpus_groups=[f"small={tmp / 'a.txt'},{tmp / 'b.jsonl'}", f"saved={tmp / 'saved'}"],
            corpus_probabilities=[0.5, 0.5],
        )
        report = CorpusReport()
        docs = load_documents(args, report, seed=1)
        self.assertEqual(report.documents, 10)  # 4 + 2 rows of the first group, 4 of the second
        self.assertEqual(report.empty_documents_skipped, 3)
        self.assertEqual({n: e["source_documents"] for n, e in report.mixture.items()}, {"small": 4, "saved": 3})
        texts = set(drop_empty_documents(docs, report)["text"])
        self.assertEqual(texts, {"one", "two", "three", "four", "x", "y", "z"})  # all_exhausted: every document
        self.assertEqual(report.documents, 10)  # drop_empty_documents leaves a mixture's counts alone

    def test_flags_from_a_config_file(self):
        from t5kit.args import parse_args

        path = Path(self.create_tempdir().full_path) / "mix.yaml"
        path.write_text("corpus_groups: [wiki=a.txt, books=b.jsonl]\ncorpus_probabilities: [0.7, 0.3]\n")
        (args,) = parse_args((PretrainDataArguments,), ["--config", str(path)])
        self.assertEqual([g.name for g in args.mixture_groups()], ["wiki", "books"])
        self.assertEqual(args.mixture_probabilities(), [0.7, 0.3])


class SingleCorpusUnchangedTest(absltest.TestCase):
    def test_no_mixture_keys_and_no_group_column(self):
        plays, _ = group_files(lines=300)
        args = PretrainDataArguments(train_files=[str(plays)])
        report = CorpusReport()
        docs = drop_empty_documents(load_documents(args, report), report)
        self.assertEqual(docs.column_names, ["text"])
        self.assertNotIn(GROUP_COLUMN, docs.column_names)
        packed = pack_corpus(docs, ByT5Tokenizer(), RAW_LENGTH, None, report)
        self.assertEqual(packed.column_names, ["input_ids"])
        split_blocks(packed, args, 1, report)
        self.assertFalse({"corpus_mixture", "corpus_mixture_counted"} & set(report.as_dict()))


if __name__ == "__main__":
    absltest.main()
