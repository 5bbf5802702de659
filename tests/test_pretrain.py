"""End-to-end pre-training on real text with a tiny model: tokenizer, training, outputs, reload, resume, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch
from absl.testing import absltest, parameterized
from transformers import AutoTokenizer, T5ForConditionalGeneration

import pre_train_t5
from t5kit.args import ModelArguments, UsageError, bf16_supported, parse_args
from t5kit.corpus import PretrainDataArguments
from t5kit.tokenizer import NUM_SENTINELS, train_tokenizer
from tests.helpers import REPO, corpus_slice

TINY = ["--model_config", "tiny", "--input_length", "64", "--per_device_train_batch_size", "8", "--report_to", "none"]


def loss_trace(run_dir: Path) -> dict[int, float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {row["step"]: row["loss"] for row in state["log_history"] if "loss" in row}


class TokenizerTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        corpus = corpus_slice(cls.tmp, "corpus/wikitext2_tokenized/part-000.txt", lines=1500)
        texts = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
        cls.tokenizer = train_tokenizer(texts, vocab_size=1000, output_dir=cls.tmp / "tok")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_special_ids_follow_t5_layout(self):
        tok = self.tokenizer
        self.assertLen(tok, 1000)
        self.assertEqual((tok.pad_token_id, tok.eos_token_id, tok.unk_token_id), (0, 1, 2))
        sentinel_ids = tok.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(NUM_SENTINELS)])
        # T5: <extra_id_0> is the highest id, then counting down.
        self.assertEqual(sentinel_ids, list(range(999, 999 - NUM_SENTINELS, -1)))

    @parameterized.parameters("The tower is 324 metres tall .", "Homarus gammarus , known as the European lobster")
    def test_round_trip_and_reload(self, text):
        ids = self.tokenizer(text).input_ids
        self.assertEqual(ids[-1], 1)  # EOS appended
        self.assertNotIn(self.tokenizer.unk_token_id, ids)
        self.assertEqual(self.tokenizer.decode(ids, skip_special_tokens=True), text)
        reloaded = AutoTokenizer.from_pretrained(self.tmp / "tok")
        self.assertEqual(reloaded(text).input_ids, ids)
        self.assertEqual(reloaded.convert_tokens_to_ids("<extra_id_0>"), 999)

    def test_too_small_vocab_is_a_usage_error(self):
        with self.assertRaisesRegex(UsageError, "--vocab_size"):
            train_tokenizer(["a b c"], vocab_size=50, output_dir=self.tmp / "bad")


class PretrainEndToEndTest(absltest.TestCase):
    """One 50-step run shared by the checks below (a fresh tokenizer trained on real text)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.corpus = corpus_slice(cls.tmp, lines=4000)
        cls.run_dir = cls.tmp / "run"
        cls.argv = [
            "--train_files", str(cls.corpus), "--vocab_size", "800", *TINY,
            "--max_steps", "50", "--logging_steps", "5", "--save_steps", "20", "--seed", "3",
            "--learning_rate", "3e-3", "--output_dir", str(cls.run_dir),
        ]  # fmt: skip
        cls.results = pre_train_t5.main(cls.argv)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_loss_falls(self):
        trace = list(loss_trace(self.run_dir).values())
        self.assertLen(trace, 10)
        self.assertLess(sum(trace[-3:]) / 3, sum(trace[:2]) / 2 - 0.5)

    def test_run_folder_contents(self):
        for name in ("model.safetensors", "config.json", "tokenizer.json", "all_results.json", "trainer_state.json",
                     "loss.png", "checkpoint-20", "checkpoint-40"):  # fmt: skip
            self.assertTrue((self.run_dir / name).exists(), name)
        results = json.loads((self.run_dir / "all_results.json").read_text())
        for key in (
            "train_loss",
            "eval_loss",
            "eval_span_accuracy",
            "train_samples_per_second",
            "effective_batch_size",
        ):
            self.assertIn(key, results)
        self.assertEqual(results["effective_batch_size"], 8)
        self.assertGreater(results["corpus_train_blocks"], 50)
        self.assertGreater(results["corpus_empty_documents_skipped"], 0)  # tiny shakespeare has blank lines

    def test_reload_model_and_tokenizer(self):
        model = T5ForConditionalGeneration.from_pretrained(self.run_dir)
        tokenizer = AutoTokenizer.from_pretrained(self.run_dir)
        self.assertEqual(model.config.vocab_size % 128, 0)
        self.assertGreaterEqual(model.config.vocab_size, len(tokenizer))
        batch = tokenizer(["First Citizen : <extra_id_0> speak ."], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=5)
        self.assertEqual(out.shape[0], 1)

    def test_resume_continues_the_same_trace(self):
        """Resuming from checkpoint-20 replays steps 21-50 with the same data, masks and optimizer state."""
        resumed_dir = self.tmp / "resumed"
        shutil.copytree(self.run_dir / "checkpoint-20", resumed_dir / "checkpoint-20")
        shutil.copytree(self.run_dir / "tokenizer", resumed_dir / "tokenizer")
        argv = [a if a != str(self.run_dir) else str(resumed_dir) for a in self.argv]
        pre_train_t5.main([*argv, "--resume_from_checkpoint", "latest"])
        original, resumed = loss_trace(self.run_dir), loss_trace(resumed_dir)
        for step in range(25, 51, 5):
            self.assertAlmostEqual(resumed[step], original[step], places=4, msg=f"step {step}")

    def test_existing_checkpoints_need_resume_flag(self):
        with self.assertRaisesRegex(UsageError, "resume_from_checkpoint latest"):
            pre_train_t5.main(self.argv)


# bf16 autocast rounds every matmul input to 8 mantissa bits (unit roundoff 2^-8 = 3.9e-3, relative); on the 6-step
# run below, bf16 vs fp32 and compiled vs eager bf16 losses (~7) differed by at most 1.3e-3 (measured 2026-11-30 on an
# AVX-512 BF16 CPU). 5e-3 leaves about 4x headroom; fp32 differences were ~1e-6.
LOSS_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-3}
NEEDS_FAST_BF16 = "bf16 is emulated here (no AVX-512 BF16 / AMX / bf16 GPU): the toolkit runs fp32 by default"


def six_step_argv(tmp: Path) -> list[str]:
    corpus = corpus_slice(tmp, lines=2000)
    return ["--train_files", str(corpus), "--vocab_size", "800", *TINY, "--max_steps", "6", "--logging_steps", "1",
            "--seed", "3", "--save_strategy", "no", "--validation_split_percentage", "0"]  # fmt: skip


class TorchCompileTest(parameterized.TestCase):
    """--torch_compile is a speed option only: the same 6 steps give the same per-step losses as eager mode, in
    each precision (compiled kernels reorder float sums and fuse casts differently: LOSS_TOLERANCE).

    The first compiled step takes ~15-40 s on 2 CPU cores, so this is one of the slowest tests in the suite.
    """

    @parameterized.parameters("fp32", "bf16")
    def test_loss_trace_matches_eager(self, precision):
        if precision == "bf16" and not bf16_supported():
            self.skipTest(NEEDS_FAST_BF16)
        tmp = Path(self.create_tempdir().full_path)
        argv = [*six_step_argv(tmp), "--bf16", str(precision == "bf16")]
        pre_train_t5.main([*argv, "--output_dir", str(tmp / "eager")])
        results = pre_train_t5.main([*argv, "--output_dir", str(tmp / "compiled"), "--torch_compile", "True"])
        eager, compiled = loss_trace(tmp / "eager"), loss_trace(tmp / "compiled")
        self.assertEqual(sorted(compiled), list(range(1, 7)))
        self.assertEqual(sorted(eager), sorted(compiled))
        for step in eager:
            self.assertAlmostEqual(compiled[step], eager[step], delta=LOSS_TOLERANCE[precision], msg=f"step {step}")
        self.assertTrue(results.get("torch_compile"), results)
        self.assertEqual(results["precision"], precision)

    def test_on_by_default_only_on_a_gpu(self):
        argv = ["--output_dir", self.create_tempdir().full_path, "--train_files", "corpus.txt"]
        parsed = parse_args((ModelArguments, PretrainDataArguments, pre_train_t5.PretrainingArguments), argv)[2]
        self.assertEqual(parsed.torch_compile, torch.cuda.is_available())
        with mock.patch.object(torch.cuda, "is_available", return_value=True):
            self.assertTrue(pre_train_t5.compiles_by_default(use_cpu=False))
            self.assertFalse(pre_train_t5.compiles_by_default(use_cpu=True))
        with mock.patch.object(torch.cuda, "is_available", return_value=False):
            self.assertFalse(pre_train_t5.compiles_by_default(use_cpu=False))


class Bf16DefaultTest(absltest.TestCase):
    """Where bf16 is fast, it is the default, and its loss trace stays within bf16 rounding of the fp32 one."""

    def test_default_is_bf16_and_tracks_fp32(self):
        if not bf16_supported():
            self.skipTest(NEEDS_FAST_BF16)
        tmp = Path(self.create_tempdir().full_path)
        argv = six_step_argv(tmp)
        default = pre_train_t5.main([*argv, "--output_dir", str(tmp / "default")])
        fp32 = pre_train_t5.main([*argv, "--output_dir", str(tmp / "fp32"), "--bf16", "False"])
        self.assertEqual((default["precision"], fp32["precision"]), ("bf16", "fp32"))
        fast, exact = loss_trace(tmp / "default"), loss_trace(tmp / "fp32")
        self.assertEqual(sorted(fast), list(range(1, 7)))
        self.assertEqual(sorted(fast), sorted(exact))
        differences = [abs(fast[step] - exact[step]) for step in exact]
        self.assertLess(max(differences), LOSS_TOLERANCE["bf16"], differences)
        self.assertGreater(max(differences), 0.0)  # bf16 really ran: its rounding shows in the losses


class PretrainInputErrorsTest(parameterized.TestCase):
    def setUp(self):
        self.tmp = Path(self.create_tempdir().full_path)

    def run_main(self, *extra: str):
        argv = ["--vocab_size", "300", *TINY, "--max_steps", "2", "--output_dir", str(self.tmp / "out"), *extra]
        return pre_train_t5.main(argv)

    def test_missing_file(self):
        with self.assertRaisesRegex(UsageError, r"nope\.txt: file not found \(--train_files\)$"):
            self.run_main("--train_files", str(self.tmp / "nope.txt"))

    def test_only_blank_documents(self):
        (self.tmp / "blank.txt").write_text("\n  \n\n")
        with self.assertRaisesRegex(UsageError, "no non-empty documents"):
            self.run_main("--train_files", str(self.tmp / "blank.txt"))

    def test_srun_tasks_without_a_distributed_launcher_are_refused(self):
        from unittest import mock

        (self.tmp / "a.txt").write_text("some text\n")
        with mock.patch.dict("os.environ", {"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "0"}):
            with self.assertRaisesRegex(UsageError, r"started 2 processes \(SLURM_STEP_NUM_TASKS=2\).*unsynchronised"):
                self.run_main("--train_files", str(self.tmp / "a.txt"))

    def test_fp16_is_refused(self):
        (self.tmp / "a.txt").write_text("some text\n")
        with self.assertRaisesRegex(UsageError, "--fp16 is refused"):
            self.run_main("--train_files", str(self.tmp / "a.txt"), "--fp16")

    def test_usage_error_exits_2_without_traceback(self):
        proc = subprocess.run(
            [sys.executable, str(REPO / "pre_train_t5.py"), "--train_files", str(self.tmp / "nope.txt"),
             "--vocab_size", "300", "--model_config", "tiny", "--output_dir", str(self.tmp / "out")],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip
        self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
        self.assertRegex(proc.stderr, r"error: .*nope\.txt: file not found \(--train_files\)")
        self.assertNotIn("Traceback", proc.stderr)


class SpanCorruptionFlagsTest(parameterized.TestCase):
    """The flags keep their names and defaults; the collator module owns the defaults and checks them before any
    data is read (the file named here does not exist, and is never opened)."""

    def test_defaults_are_the_collators(self):
        import data_collators as dc
        from t5kit.corpus import PretrainDataArguments

        args = PretrainDataArguments(train_files=["never-read.txt"])
        self.assertEqual(
            (args.input_length, args.noise_density, args.mean_noise_span_length),
            (dc.DEFAULT_INPUT_LENGTH, dc.DEFAULT_NOISE_DENSITY, dc.DEFAULT_MEAN_NOISE_SPAN_LENGTH),
        )
        self.assertEqual((args.input_length, args.noise_density, args.mean_noise_span_length), (512, 0.15, 3.0))

    @parameterized.parameters(
        ({"noise_density": 0.0}, r"^--noise_density must be in \(0, 1\), got 0\.0$"),
        ({"mean_noise_span_length": 0.5}, r"^--mean_noise_span_length must be >= 1, got 0\.5$"),
        ({"input_length": 5}, r"^--input_length 5 is too short for span corruption .*the shortest that works is 10$"),
    )
    def test_checked_before_any_data_is_read(self, flags, message):
        from t5kit.corpus import PretrainDataArguments

        with self.assertRaisesRegex(UsageError, message):
            PretrainDataArguments(train_files=["never-read.txt"], **flags)


class StreamingAndFormatsTest(absltest.TestCase):
    def test_streamed_jsonl_corpus_holds_out_eval_blocks(self):
        tmp = Path(self.create_tempdir().full_path)
        lines = corpus_slice(tmp, lines=1500).read_text(encoding="utf-8").splitlines()
        (tmp / "docs.jsonl").write_text("".join(json.dumps({"body": line}) + "\n" for line in lines))
        results = pre_train_t5.main([
            "--train_files", str(tmp / "docs.jsonl"), "--text_column", "body", "--streaming", "--vocab_size", "300",
            *TINY, "--max_steps", "4", "--max_eval_samples", "8", "--save_strategy", "no",
            "--output_dir", str(tmp / "run"),
        ])  # fmt: skip
        self.assertEqual(results["corpus_eval_blocks"], 8)
        self.assertIn("eval_loss", results)
        self.assertEqual(json.loads((tmp / "run" / "trainer_state.json").read_text())["global_step"], 4)

    def test_blank_line_separated_documents(self):
        from t5kit.corpus import CorpusReport, PretrainDataArguments, drop_empty_documents, load_documents

        tmp = Path(self.create_tempdir().full_path)
        (tmp / "paras.txt").write_text("one line\nsame doc\n\n\nsecond doc\n\n")
        args = PretrainDataArguments(train_files=[str(tmp / "paras.txt")], document_split="blank_line")
        report = CorpusReport()
        docs = drop_empty_documents(load_documents(args), report)
        self.assertEqual(docs["text"], ["one line same doc", "second doc"])


class ModelSourcesTest(absltest.TestCase):
    """A saved dataset as corpus, a config.json architecture, continued pre-training, T5's Adafactor recipe."""

    def test_saved_dataset_config_json_then_continue_with_adafactor(self):
        import datasets

        tmp = Path(self.create_tempdir().full_path)
        lines = [line for line in corpus_slice(tmp, lines=1200).read_text(encoding="utf-8").splitlines()]
        datasets.Dataset.from_dict({"body": lines}).save_to_disk(str(tmp / "saved"))
        config = {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 2, "num_layers": 1, "num_decoder_layers": 1,
                  "feed_forward_proj": "gated-gelu"}  # fmt: skip
        (tmp / "arch.json").write_text(json.dumps(config))
        common = ["--train_files", str(tmp / "saved"), "--text_column", "body", "--input_length", "32",
                  "--per_device_train_batch_size", "4", "--max_steps", "3", "--save_strategy", "no"]  # fmt: skip
        pre_train_t5.main([*common, "--vocab_size", "300", "--model_config", str(tmp / "arch.json"),
                           "--output_dir", str(tmp / "scratch")])  # fmt: skip
        scratch = T5ForConditionalGeneration.from_pretrained(tmp / "scratch")
        self.assertEqual((scratch.config.d_model, scratch.config.num_layers), (32, 1))
        results = pre_train_t5.main([*common, "--model_name_or_path", str(tmp / "scratch"),
                                     "--config", str(REPO / "configs" / "t5_adafactor.yaml"),
                                     "--logging_steps", "1", "--output_dir", str(tmp / "continued")])  # fmt: skip
        self.assertIn("train_loss", results)
        state = json.loads((tmp / "continued" / "trainer_state.json").read_text())
        self.assertEqual(state["global_step"], 3)
        # The recipe's linear warm-up to 0.01 over 10,000 steps: the k-th step runs at 0.01 * (k - 1) / 10000.
        rates = [row["learning_rate"] for row in state["log_history"] if "loss" in row]
        for got, want in zip(rates, [0.0, 1e-6, 2e-6], strict=True):
            self.assertAlmostEqual(got, want, places=12)


class ConfigFileTest(absltest.TestCase):
    def test_yaml_config_with_command_line_override(self):
        tmp = Path(self.create_tempdir().full_path)
        corpus = corpus_slice(tmp, lines=800)
        (tmp / "cfg.yaml").write_text(
            f"train_files: [{corpus}]\nvocab_size: 300\nmodel_config: tiny\ninput_length: 32\nmax_steps: 50\n"
            f"per_device_train_batch_size: 4\noutput_dir: {tmp / 'run'}\nsave_strategy: 'no'\n"
        )
        results = pre_train_t5.main(["--config", str(tmp / "cfg.yaml"), "--max_steps", "3"])
        state = json.loads((tmp / "run" / "trainer_state.json").read_text())
        self.assertEqual(state["global_step"], 3)  # the command line wins over the file
        self.assertEqual(results["input_length"], 32)  # the file wins over the default


if __name__ == "__main__":
    absltest.main()
