"""The bad-input catalogue: one case per mistake, each through a script's real entry point (`run_main(main, argv)`).

A mistake exits 2 with exactly one `error: ...` line naming the file (and line, where there is one) and the flag to
fix, and no traceback. Where skipping is the documented behaviour (empty documents, over-long texts), the skip is
counted in all_results.json instead.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import torch
from absl.testing import absltest, parameterized
from transformers import T5ForConditionalGeneration

import fine_tune_t5
import pre_train_t5
from t5kit import fault_tolerance
from t5kit.exit_codes import EXIT_USAGE
from t5kit.tokenizer import train_tokenizer
from t5kit.training import T5Trainer
from tests.helpers import corpus_slice, run_script_here

SCRIPTS = {"pretrain": pre_train_t5.main, "finetune": fine_tune_t5.main}
PRETRAIN = ["--model_config", "tiny", "--input_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "2",
            "--report_to", "none", "--disable_tqdm", "True"]  # fmt: skip
FINETUNE = ["--model_config", "tiny", "--report_to", "none", "--disable_tqdm", "True"]
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"

# name, script, the error line it must print
CATALOGUE = [
    # Files: one format for the corpus and the task files (t5kit.readers), "FILE:LINE: message (column 'X', --flag)".
    ("malformed_jsonl_corpus", "pretrain", r"docs\.jsonl:2: invalid JSON: .* \(--train_files\)$"),
    ("malformed_jsonl_task_file", "finetune", r"train\.jsonl:2: invalid JSON: .* \(--train_file\)$"),
    ("missing_column_corpus", "pretrain", r"docs\.jsonl:1: no column 'text'; found: body \(--text_column\)$"),
    ("non_string_text_corpus", "pretrain",
     r"docs\.jsonl:2: holds a list, expected text \(column 'text', --text_column\)$"),
    ("number_as_text_corpus", "pretrain",
     r"docs\.jsonl:1: holds a number, expected text \(column 'text', --text_column\)$"),
    ("missing_column_task_file", "finetune",
     r"train\.jsonl:1: no column 'source'; found: text, target \(--train_file\)$"),
    ("missing_t2t_key", "finetune",
     r"train\.jsonl:1: 'translation' object has no column 't'; found: s, x \(--train_file\)$"),
    ("empty_corpus_file", "pretrain", r"empty\.txt: file is empty \(--train_files\)$"),
    ("empty_task_file", "finetune", r"train\.jsonl: file is empty \(--train_file\)$"),
    ("non_utf8_corpus", "pretrain", r"latin1\.txt:3: not valid UTF-8 \(byte 0xe9 .*\(--train_files\)$"),
    ("non_utf8_glue_tsv", "finetune", r"SST-2/dev\.tsv:3: not valid UTF-8 \(byte 0xe9 .*\(--data_dir\)$"),
    ("unknown_glue_label", "finetune",
     r"SST-2/dev\.tsv:3: label 'maybe' is not in the sst2 label set.*\(column 'label', --data_dir\)$"),
    ("stsb_score_out_of_range", "finetune", r"STS-B/dev\.tsv:3: score '7\.0'.*\(column 'score', --data_dir\)$"),
    ("config_unknown_key", "pretrain", r"cfg\.yaml: unknown key\(s\) max_stepz"),
    ("config_bad_yaml", "pretrain", r"cfg\.yaml:\d+: not valid YAML"),
    ("unknown_task", "finetune", r"--dataset_name 'nope' is not a glue task; choose one of: .*sst2"),
    ("output_dir_not_writable", "pretrain", r"--output_dir .*a_file/out: not writable \(Not a directory\)"),
    ("resume_other_model_shape", "pretrain",
     r"--resume_from_checkpoint .*checkpoint-1: .*another shape \(d_model 64 vs 32.*checkpoint vs this run"),
    ("output_dir_holds_another_run", "pretrain",
     r"--output_dir .*out holds another run \(all_results\.json, .*\); pass --resume_from_checkpoint latest to "
     r"continue it, --overwrite_output_dir to replace it, or choose another --output_dir"),
    ("finetune_into_the_model_folder", "finetune",
     r"--output_dir .*out is the folder --model_name_or_path reads its model from: the run would replace that model"),
    ("tokenizer_of_another_vocab_size", "pretrain",
     r"out/tokenizer holds a tokenizer of 300 tokens from an earlier run, but --vocab_size is 400"),
    ("max_steps_zero", "pretrain", r"--max_steps 0 trains nothing"),
    ("fp16_from_the_launcher", "pretrain", r"the launcher asks for fp16 \(ACCELERATE_MIXED_PRECISION=fp16"),
    ("input_length_too_short", "pretrain", r"--input_length 3 is too short for span corruption with --noise_density "
                                           r"0\.15 and --mean_noise_span_length 3\.0; the shortest that works is 10"),
    ("config_wrong_type", "pretrain", r"cfg\.yaml:2: max_steps: 2\.5 is not an integer \(as the --max_steps flag"),
    ("config_not_a_number", "pretrain", r"cfg\.yaml:1: learning_rate: 'fast' is not a number"),
    ("config_not_a_choice", "finetune", r"cfg\.yaml:1: lr_scheduler_type: 'cosinus' is not one of linear, cosine"),
    ("eval_mode_not_a_choice", "finetune", r"cfg\.yaml:1: eval_mode: 'ranked' is not one of generate, rank"),
    ("predict_with_generate_off", "finetune",
     r"--predict_with_generate False would score raw logits as text; predictions follow --eval_mode"),
    ("streaming_without_max_steps", "pretrain", r"--streaming needs --max_steps"),
    ("custom_training_without_a_validation_file", "finetune",
     r"evaluation \(--do_eval, or --eval_strategy steps/epoch during training; --eval_strategy no trains without "
     r"it\) needs --validation_file"),
    ("streaming_with_several_workers", "pretrain",
     r"--streaming with --dataloader_num_workers 2: each worker would .* Use --dataloader_num_workers 0 or 1"),
    ("disk_full_during_save", "pretrain",
     r"saving checkpoint-4 to .* failed at step 4: No space left on device \(--output_dir\); "
     r"the previous checkpoint checkpoint-2 is intact"),
]  # fmt: skip


def run_script(script: str, argv: list[str]) -> tuple[int, str]:
    return run_script_here(SCRIPTS[script], argv)


class BadInputTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.shared = Path(tempfile.mkdtemp())
        cls.corpus = corpus_slice(cls.shared, lines=600)
        texts = [line for line in cls.corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
        train_tokenizer(texts, vocab_size=300, output_dir=cls.shared / "tok")
        cls.tok = ["--tokenizer_name_or_path", str(cls.shared / "tok")]

    def setUp(self):
        self.tmp = Path(self.create_tempdir().full_path)
        self.out = ["--output_dir", str(self.tmp / "out")]

    def write(self, relative: str, content: str | bytes) -> str:
        path = self.tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return str(path)

    # Each case writes its input and returns the script's argv.
    def corpus_case(self, name: str, content: str | bytes) -> list[str]:
        return ["--train_files", self.write(name, content), "--vocab_size", "300", *PRETRAIN, *self.out]

    def task_file_case(self, content: str) -> list[str]:
        path = self.write("train.jsonl", content)
        return ["--benchmark", "custom", "--train_file", path, "--do_train", "--eval_strategy", "no", "--vocab_size",
                "300", *FINETUNE, *self.out]  # fmt: skip

    def glue_case(self, task: str, relative: str, content: str | bytes) -> list[str]:
        self.write(f"glue/{relative}", content)
        return ["--benchmark", "glue", "--dataset_name", task, "--data_dir", str(self.tmp / "glue"), "--do_eval",
                "--vocab_size", "300", *FINETUNE, *self.out]  # fmt: skip

    def case_malformed_jsonl_corpus(self):
        return self.corpus_case("docs.jsonl", '{"text": "ok"}\n{"text": oops}\n')

    def case_malformed_jsonl_task_file(self):
        return self.task_file_case('{"source": "a", "target": "b"}\n{"source": "c", oops}\n')

    def case_missing_column_corpus(self):
        return self.corpus_case("docs.jsonl", '{"body": "hello there"}\n')

    def case_non_string_text_corpus(self):
        return self.corpus_case("docs.jsonl", '{"text": "fine"}\n{"text": ["a", "b"]}\n')

    def case_number_as_text_corpus(self):
        return self.corpus_case("docs.jsonl", '{"text": 5}\n')

    def case_missing_column_task_file(self):
        return self.task_file_case('{"text": "a", "target": "b"}\n')

    def case_missing_t2t_key(self):
        return self.task_file_case('{"translation": {"s": "a", "x": "b"}}\n')

    def case_empty_corpus_file(self):
        return self.corpus_case("empty.txt", "")

    def case_empty_task_file(self):
        return self.task_file_case("")

    def case_non_utf8_corpus(self):
        return self.corpus_case("latin1.txt", "good line\nsecond line\ncaf\xe9 au lait\n".encode("latin-1"))

    def case_non_utf8_glue_tsv(self):
        return self.glue_case("sst2", "SST-2/dev.tsv", b"sentence\tlabel\nok\t1\ncaf\xe9\t0\n")

    def case_unknown_glue_label(self):
        return self.glue_case("sst2", "SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nhmm\tmaybe\n")

    def case_stsb_score_out_of_range(self):
        rows = "0\tmain\tf\t2012\t1\tnone\tnone\tA.\tB.\t3.5\n1\tmain\tf\t2012\t2\tnone\tnone\tC.\tD.\t7.0\n"
        return self.glue_case("stsb", "STS-B/dev.tsv", f"{STSB_HEADER}\n{rows}")

    def case_config_unknown_key(self):
        return ["--train_files", "x.txt", "--config", self.write("cfg.yaml", "max_stepz: 3\n"), *self.out]

    def case_config_bad_yaml(self):
        return ["--train_files", "x.txt", "--config", self.write("cfg.yaml", "max_steps: [3\n"), *self.out]

    def case_unknown_task(self):
        return ["--dataset_name", "nope", "--do_train", *FINETUNE, *self.out]

    def case_output_dir_not_writable(self):
        return ["--train_files", str(self.corpus), *self.tok, *PRETRAIN,
                "--output_dir", self.write("a_file", "not a folder") + "/out"]  # fmt: skip

    def case_resume_other_model_shape(self):
        argv = ["--train_files", str(self.corpus), *self.tok, *PRETRAIN, "--save_steps", "1", "--max_steps", "1"]
        pre_train_t5.main([*argv, *self.out])
        arch = self.write("arch.json", json.dumps({"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 2,
                                                   "num_layers": 1, "num_decoder_layers": 1}))  # fmt: skip
        return [*argv, "--model_config", arch, "--max_steps", "2", "--resume_from_checkpoint", "latest", *self.out]

    def case_output_dir_holds_another_run(self):
        argv = ["--train_files", str(self.corpus), *self.tok, *PRETRAIN, "--max_steps", "1", "--save_strategy", "no"]
        pre_train_t5.main([*argv, *self.out])  # a finished run with no checkpoint
        return [*argv, *self.out]

    def case_finetune_into_the_model_folder(self):
        pre_train_t5.main(["--train_files", str(self.corpus), *self.tok, *PRETRAIN, "--max_steps", "1", *self.out])
        return ["--model_name_or_path", str(self.tmp / "out"), "--benchmark", "glue", "--dataset_name", "sst2",
                "--do_train", "--report_to", "none", *self.out]  # fmt: skip

    def case_tokenizer_of_another_vocab_size(self):
        train_tokenizer(
            [line for line in self.corpus.read_text(encoding="utf-8").splitlines() if line.strip()],
            vocab_size=300,
            output_dir=self.tmp / "out" / "tokenizer",
        )  # left by a run killed early
        return ["--train_files", str(self.corpus), "--vocab_size", "400", *PRETRAIN, "--resume_from_checkpoint",
                "latest", *self.out]  # fmt: skip

    def case_max_steps_zero(self):
        return ["--train_files", str(self.corpus), *self.tok, *PRETRAIN, "--max_steps", "0", *self.out]

    def case_fp16_from_the_launcher(self):
        self.enter_context(mock.patch.dict(os.environ, {"ACCELERATE_MIXED_PRECISION": "fp16"}))
        return ["--train_files", str(self.corpus), *self.tok, *PRETRAIN, *self.out]

    def case_input_length_too_short(self):
        return ["--train_files", str(self.corpus), *self.tok, *PRETRAIN, "--input_length", "3", *self.out]

    def case_config_wrong_type(self):
        config = self.write("cfg.yaml", "learning_rate: 0.001\nmax_steps: 2.5\n")
        return ["--train_files", str(self.corpus), *self.tok, "--config", config, *self.out]

    def case_config_not_a_number(self):
        config = self.write("cfg.yaml", "learning_rate: fast\n")
        return ["--train_files", str(self.corpus), *self.tok, "--config", config, *self.out]

    def case_config_not_a_choice(self):
        config = self.write("cfg.yaml", "lr_scheduler_type: cosinus\n")
        return ["--benchmark", "glue", "--dataset_name", "sst2", "--do_train", *FINETUNE, "--config", config,
                *self.out]  # fmt: skip

    def case_eval_mode_not_a_choice(self):
        config = self.write("cfg.yaml", "eval_mode: ranked\n")
        return ["--benchmark", "glue", "--dataset_name", "sst2", "--do_eval", *FINETUNE, "--config", config, *self.out]

    def case_predict_with_generate_off(self):
        return ["--benchmark", "glue", "--dataset_name", "sst2", "--do_eval", "--predict_with_generate", "False",
                *FINETUNE, *self.out]  # fmt: skip

    def case_streaming_without_max_steps(self):
        return ["--train_files", str(self.corpus), *self.tok, "--model_config", "tiny", "--streaming", *self.out]

    def case_streaming_with_several_workers(self):
        return ["--train_files", str(self.corpus), *self.tok, *PRETRAIN, "--streaming", "--dataloader_num_workers",
                "2", *self.out]  # fmt: skip

    def case_custom_training_without_a_validation_file(self):
        path = self.write("train.jsonl", '{"source": "a", "target": "b"}\n')
        return ["--benchmark", "custom", "--train_file", path, "--do_train", "--vocab_size", "300", *FINETUNE,
                *self.out]  # fmt: skip

    def case_disk_full_during_save(self):
        original = T5Trainer._save_rng_state

        def save_rng_state(trainer, output_dir):
            if trainer.state.global_step == 4:  # the disk fills while checkpoint-4 is written
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), output_dir)
            original(trainer, output_dir)

        self.enter_context(mock.patch.object(T5Trainer, "_save_rng_state", save_rng_state))
        return ["--train_files", str(self.corpus), *self.tok, *PRETRAIN, "--max_steps", "6", "--save_steps", "2",
                "--save_total_limit", "1", *self.out]  # fmt: skip

    @parameterized.named_parameters(CATALOGUE)
    def test_one_clear_error(self, script, pattern):
        code, stderr = run_script(script, getattr(self, f"case_{self._testMethodName.split('_', 4)[-1]}")())
        self.assertEqual(code, EXIT_USAGE, stderr[-3000:])
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        self.assertLen(errors, 1, stderr[-3000:])
        self.assertRegex(errors[0], pattern)
        self.assertNotIn("Traceback", stderr)

    def test_disk_full_leaves_the_previous_checkpoint_loadable(self):
        """With --save_total_limit 1, checkpoint-2 is the only complete checkpoint when the save of checkpoint-4
        fails: it must survive, loadable."""
        code, _ = run_script("pretrain", self.case_disk_full_during_save())
        self.assertEqual(code, EXIT_USAGE)
        out = self.tmp / "out"
        self.assertEqual([p.name for p in fault_tolerance.complete_checkpoints(out)], ["checkpoint-2"])
        self.assertFalse(list(out.glob("tmp-*")))
        model = T5ForConditionalGeneration.from_pretrained(out / "checkpoint-2")
        self.assertTrue(all(torch.isfinite(p).all() for p in model.parameters()))

    def test_empty_documents_are_skipped_and_counted(self):
        blank = sum(not line.strip() for line in self.corpus.read_text(encoding="utf-8").splitlines())
        code, output = run_script("pretrain", ["--train_files", str(self.corpus), *self.tok, *PRETRAIN,
                                               "--max_steps", "1", "--save_strategy", "no", *self.out])  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        results = json.loads((self.tmp / "out" / "all_results.json").read_text())
        self.assertGreater(blank, 0)
        self.assertEqual(results["corpus_empty_documents_skipped"], blank)

    def test_a_test_only_task_predicts_without_a_metric_to_optimise(self):
        rows = "".join(f"{i}\tThe cat sat {i}.\tA cat sat.\n" for i in range(4))
        self.write("glue/diagnostic/diagnostic.tsv", "index\tsentence1\tsentence2\n" + rows)
        code, output = run_script("finetune", ["--benchmark", "glue", "--dataset_name", "ax", "--data_dir",
                                               str(self.tmp / "glue"), "--do_predict", *self.tok, *FINETUNE,
                                               *self.out])  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        lines = (self.tmp / "out" / "submission" / "AX.tsv").read_text().splitlines()
        self.assertEqual(lines[0], "index\tprediction")
        self.assertLen(lines, 5)

    def test_tsv_corpus_has_no_quoting_and_counts_its_blank_rows(self):
        """As GLUE's files and the fine-tuning reader: a field that opens a quote is text, not the start of a quoted
        field that would swallow the following rows; a blank last row is one empty document, skipped and counted."""
        lines = self.corpus.read_text(encoding="utf-8").splitlines()
        texts = [line.replace("\t", " ") for line in lines if line.strip()]
        self.assertGreater(len(texts), 400)
        texts[10] = '"' + texts[10]  # opens a quote that never closes
        body = "".join(f"{i}\t{text}\n" for i, text in enumerate(texts))
        path = self.write("docs.tsv", "\ufeffid\ttext\n" + body + "\n")  # a BOM, and a blank last row
        code, output = run_script("pretrain", ["--train_files", path, *self.tok, *PRETRAIN, "--max_steps", "1",
                                               "--save_strategy", "no", *self.out])  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        results = json.loads((self.tmp / "out" / "all_results.json").read_text())
        self.assertEqual(results["corpus_documents"], len(texts) + 1)
        self.assertEqual(results["corpus_empty_documents_skipped"], 1)

    def test_overlong_texts_are_truncated_and_counted(self):
        rows = [("short one", "a"), ("a much longer input " * 20, "b"), ("short two", "a")]
        path = self.write("dev.jsonl", "".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in rows))
        code, output = run_script("finetune", ["--benchmark", "custom", "--validation_file", path, "--do_eval",
                                               "--max_source_length", "16", "--max_target_length", "4", *self.tok,
                                               *FINETUNE, *self.out])  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        results = json.loads((self.tmp / "out" / "all_results.json").read_text())
        self.assertEqual((results["sources_truncated"], results["targets_truncated"]), (1, 0))


if __name__ == "__main__":
    absltest.main()
