"""What a run leaves behind can be trusted: a rerun of a finished run changes nothing, a resume says where it resumes
and logs each step once, and args.yaml holds every flag in the form --config reads.

Tiny models on a Tiny Shakespeare slice (pre-training) and an SST-2 slice of the real GLUE files (fine-tuning).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

from absl.testing import absltest

import fine_tune_t5
import pre_train_t5
from t5kit import evaluation, fault_tolerance, outputs
from t5kit.args import ModelArguments, parse_args
from t5kit.corpus import PretrainDataArguments
from t5kit.finetune_data import FineTuneDataArguments
from t5kit.parameter_efficient import ParameterEfficientArguments
from t5kit.tracking import METRICS_LOG, flags_config
from t5kit.training import ARGS_FILE, write_args_file
from tests.helpers import SHARED_DATA, ModuleScratch, corpus_slice, run_script_here

SCRATCH = ModuleScratch("test_run_records_")
setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down
RESUME = ["--resume_from_checkpoint", "latest"]
PRETRAIN = [
    "--model_config",
    "tiny",
    "--vocab_size",
    "300",
    "--input_length",
    "32",
    "--per_device_train_batch_size",
    "4",
    "--max_train_samples",
    "40",
    "--max_eval_samples",
    "8",
    "--max_steps",
    "5",
    "--save_steps",
    "2",
    "--save_total_limit",
    "5",
    "--logging_steps",
    "1",
    "--dropout_rate",
    "0.1",
    "--report_to",
    "none",
    "--disable_tqdm",
    "True",
]
FINETUNE = ["--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(SHARED_DATA / "glue"),
            "--model_config", "tiny", "--vocab_size", "500", "--per_device_train_batch_size", "8",
            "--max_train_samples", "200", "--max_eval_samples", "24", "--max_steps", "6", "--eval_strategy", "steps",
            "--eval_steps", "3", "--learning_rate", "3e-3", "--logging_steps", "1", "--eval_mode", "rank",
            "--do_train", "--do_eval", "--report_to", "none", "--disable_tqdm", "True"]  # fmt: skip
FINAL_FILES = ("all_results.json", "model.safetensors", "trainer_state.json", "metrics.jsonl")


def snapshot(run: Path) -> dict[str, bytes]:
    """The bytes of a run's final files, and the names of its checkpoints."""
    files = {name: (run / name).read_bytes() for name in FINAL_FILES}
    files["checkpoints"] = " ".join(p.name for p in fault_tolerance.complete_checkpoints(run)).encode()
    return files


def metrics_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / METRICS_LOG).read_text().splitlines()]


class RerunAndResumeTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = SCRATCH.path()
        cls.corpus = corpus_slice(tmp, lines=1500)
        cls.pretrain_argv = ["--train_files", str(cls.corpus), *PRETRAIN]

    def pretrain(self, out: Path, *extra: str) -> str:
        code, output = run_script_here(pre_train_t5.main, [*self.pretrain_argv, "--output_dir", str(out), *extra])
        self.assertEqual(code, 0, output[-3000:])
        return output

    def finetune(self, out: Path, *extra: str) -> str:
        code, output = run_script_here(fine_tune_t5.main, [*FINETUNE, "--output_dir", str(out), *extra])
        self.assertEqual(code, 0, output[-3000:])
        return output

    def test_rerunning_a_finished_run_changes_nothing(self):
        for name, run in (("pretrain", self.pretrain), ("finetune", self.finetune)):
            with self.subTest(name):
                out = SCRATCH.path() / f"finished-{name}"
                run(out)
                before = snapshot(out)
                output = run(out, *RESUME)
                self.assertIn(f"{out}: already complete (step", output)
                self.assertEqual(snapshot(out), before)
                # More steps than the finished run had: it continues (and says from where)
                if name == "pretrain":
                    output = run(out, *RESUME, "--max_steps", "7")
                    self.assertIn("resuming from checkpoint-5 (step 5 of 7)", output)
                    self.assertEqual(json.loads((out / "trainer_state.json").read_text())["global_step"], 7)

    def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(self):
        out = SCRATCH.path() / "damaged"
        self.pretrain(out)
        (out / "all_results.json").unlink()
        weights = out / "checkpoint-5" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated copy
        output = self.pretrain(out, *RESUME)
        self.assertRegex(output, r"checkpoint-5 is damaged \(model\.safetensors is cut short \(\d+ of \d+ bytes\)\)")
        self.assertIn("resuming from checkpoint-4 (step 4 of 5)", output)
        self.assertIsNone(fault_tolerance.checkpoint_damage(out / "checkpoint-5"))  # saved again, whole
        (out / "checkpoint-4" / "model.safetensors").unlink()
        code, output = run_script_here(
            pre_train_t5.main,
            [*self.pretrain_argv, "--output_dir", str(out), "--resume_from_checkpoint", str(out / "checkpoint-4")],
        )
        self.assertEqual(code, 2)
        self.assertIn("checkpoint-4: no weights file (model.safetensors or adapter_model.safetensors)", output)

    def test_resuming_an_older_checkpoint_drops_the_later_ones_and_rotates_by_step(self):
        out = SCRATCH.path() / "older"
        self.pretrain(out, "--save_total_limit", "2")  # keeps checkpoint-4 and checkpoint-5
        reference = [row["loss"] for row in metrics_rows(out) if "loss" in row]
        output = self.pretrain(out, "--save_total_limit", "2", "--resume_from_checkpoint", str(out / "checkpoint-4"),
                               "--max_steps", "6")  # fmt: skip
        self.assertIn("resuming from checkpoint-4: removing the later checkpoint-5", output)
        # this run's own checkpoints are the newest: `latest` and the rotation agree
        self.assertEqual([p.name for p in fault_tolerance.complete_checkpoints(out)], ["checkpoint-4", "checkpoint-6"])
        self.assertEqual([row["step"] for row in metrics_rows(out) if "loss" in row], [1, 2, 3, 4, 5, 6])
        self.assertEqual([row["loss"] for row in metrics_rows(out) if "loss" in row][:4], reference[:4])

    def test_overwrite_output_dir_replaces_the_earlier_run_entirely(self):
        out = SCRATCH.path() / "overwritten"
        self.pretrain(out, "--max_steps", "5")  # checkpoints 2, 4, 5
        output = self.pretrain(out, "--max_steps", "3", "--save_steps", "3", "--overwrite_output_dir", "True")
        self.assertIn("deleting the earlier run's checkpoint-2, checkpoint-4, checkpoint-5", output)
        self.assertEqual([p.name for p in fault_tolerance.complete_checkpoints(out)], ["checkpoint-3"])
        self.assertEqual([row["step"] for row in metrics_rows(out) if "loss" in row], [1, 2, 3])

    def test_resume_is_announced_logs_each_step_once_and_warns_of_nothing(self):
        out = SCRATCH.path() / "interrupted"
        reference = self.pretrain(SCRATCH.path() / "uninterrupted")
        self.pretrain(out)
        # As if killed after step 5 was logged but before checkpoint-5 and the final files were written
        shutil.rmtree(out / "checkpoint-5")
        for name in ("all_results.json", "model.safetensors", "trainer_state.json"):
            (out / name).unlink()
        output = self.pretrain(out, *RESUME)
        self.assertIn(
            "resuming from checkpoint-4 (step 4 of 5); 3 metrics.jsonl row(s) logged after it removed", output
        )
        self.assertNotIn("missing keys", output + reference)  # the tied embeddings are not missing
        rows = metrics_rows(out)

        def essentials(rows):  # what a row logged, without its timings
            return [(row["step"], row.get("loss"), row.get("eval_loss"), "train_loss" in row) for row in rows]

        # each row once, as if never killed
        self.assertEqual(essentials(rows), essentials(metrics_rows(SCRATCH.path() / "uninterrupted")))

    def test_resuming_at_the_last_checkpoint_trains_no_step_past_the_end(self):
        for name, run in (("pretrain", self.pretrain), ("finetune", self.finetune)):
            with self.subTest(name):
                out = SCRATCH.path() / f"last-{name}"
                run(out)
                results = json.loads((out / "all_results.json").read_text())
                (out / "all_results.json").unlink()  # killed in the final evaluation, after the last checkpoint
                output = run(out, *RESUME)
                self.assertIn("checkpoint-6 is the run's last step" if name == "finetune" else
                              "checkpoint-5 is the run's last step", output)  # fmt: skip
                self.assertEqual(json.loads((out / "trainer_state.json").read_text())["global_step"], 6 if
                                 name == "finetune" else 5)  # fmt: skip
                again = json.loads((out / "all_results.json").read_text())
                # the same final model (fine-tuning: the best checkpoint, restored again) scores the same
                for key in ("eval_loss", "eval_accuracy", "eval_span_accuracy"):
                    if key in results:
                        self.assertAlmostEqual(again[key], results[key], places=5, msg=key)
                self.assertIn("not measured", again["train_metrics"])


class ArgsFileTest(absltest.TestCase):
    def test_args_file_round_trips_every_flag_without_secrets(self):
        tmp = SCRATCH.path()
        cases = {
            "pretrain": ((ModelArguments, PretrainDataArguments, pre_train_t5.PretrainingArguments),
                         ["--config", "configs/pretrain_cpu.yaml", "--train_files", "a.txt", "b.txt",
                          "--noise_density", "0.2"]),
            "finetune": ((ModelArguments, FineTuneDataArguments, ParameterEfficientArguments,
                          fine_tune_t5.FineTuneArguments),
                         ["--config", "configs/finetune_cpu.yaml", "--model_name_or_path", "random_init:runs/pt",
                          "--benchmark", "glue", "--dataset_name", "rte", "--data_dir", "glue_data", "--lora_r", "4"]),
        }  # fmt: skip
        for name, (types, argv) in cases.items():
            with self.subTest(name):
                out = tmp / f"args-{name}"
                out.mkdir()
                secret = "hf_args_secret_5521"
                *groups, train = parse_args(types, [*argv, "--output_dir", str(out), "--hub_token", secret])
                path = write_args_file(train, tuple(groups))
                text = path.read_text()
                self.assertNotIn(secret, text)
                self.assertNotIn("hub_token", text)
                *groups2, train2 = parse_args(types, ["--config", str(path)])
                first, second = flags_config(train, tuple(groups)), flags_config(train2, tuple(groups2))
                self.assertEqual(second, first)
                self.assertGreater(len(first), 100)  # every group's flags, the Trainer's included
                self.assertEqual(second["learning_rate"], 1e-2 if name == "pretrain" else 3e-4)  # from the config

    def test_a_run_folder_reruns_from_its_args_file(self):
        tmp = SCRATCH.path()
        corpus = corpus_slice(tmp, lines=1500)
        first = tmp / "from-flags"
        code, output = run_script_here(pre_train_t5.main, ["--train_files", str(corpus), *PRETRAIN, "--output_dir",
                                                           str(first)])  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        self.assertTrue((first / ARGS_FILE).is_file())
        second = tmp / "from-args-file"
        code, output = run_script_here(pre_train_t5.main, ["--config", str(first / ARGS_FILE), "--output_dir",
                                                           str(second)])  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        losses = [[row["loss"] for row in metrics_rows(run) if "loss" in row] for run in (first, second)]
        self.assertEqual(losses[0], losses[1])
        self.assertLen(losses[0], 5)


class ReportsTest(absltest.TestCase):
    """What a fine-tuning run reports says which weights it scored, against what baseline, and what it predicted."""

    @classmethod
    def setUpClass(cls):
        cls.folder = SCRATCH.path() / "report"
        cls.plotted = []
        plot = evaluation.plot_eval_metric
        with mock.patch.object(evaluation, "plot_eval_metric",
                               lambda *a: (cls.plotted.append(a), plot(*a))):  # fmt: skip
            code, output = run_script_here(fine_tune_t5.main, [*FINETUNE, "--output_dir", str(cls.folder)])
        assert code == 0, output[-3000:]
        cls.output = output
        cls.results = json.loads((cls.folder / "all_results.json").read_text())

    def test_results_name_the_scored_checkpoint_the_baseline_and_the_predicted_labels(self):
        state = json.loads((self.folder / "trainer_state.json").read_text())
        best = Path(state["best_model_checkpoint"]).name
        self.assertEqual(self.results["scored_checkpoint"], best)
        table = (self.folder / "results.md").read_text()
        self.assertIn(f"Scored model: {best}, restored at the end of training (step 6) as the best of 2 evaluations "
                      "by eval_accuracy", table)  # fmt: skip
        # The majority class of the 24 dev rows scored, counted here from the real file (header: sentence, label)
        rows = (SHARED_DATA / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:25]
        positives = sum(row.rsplit("\t", 1)[1] == "1" for row in rows)
        majority = max(positives, 24 - positives) / 24 * 100
        self.assertAlmostEqual(self.results["eval_majority_baseline"], majority)
        shares = self.results["eval_predicted_labels"]
        self.assertAlmostEqual(sum(shares.values()), 100.0)
        predictions = [
            json.loads(line)["prediction"]
            for line in (self.folder / "predictions" / "glue_sst2_validation.jsonl").read_text().splitlines()
        ]
        self.assertAlmostEqual(shares.get("positive", 0.0), 100 * predictions.count("positive") / 24)
        self.assertIn(f"scores accuracy {majority:.1f}", table)
        self.assertEqual(len(shares) == 1, "Warning: every prediction is" in table)

    def test_every_file_read_is_counted_in_the_results(self):
        files = self.results["files_read"]
        for name in ("train.tsv", "dev.tsv"):
            lines = (SHARED_DATA / "glue" / "SST-2" / name).read_text(encoding="utf-8").splitlines()
            blank = sum(not line.strip() for line in lines)
            [counts] = [c for path, c in files.items() if Path(path).parts[-2:] == ("SST-2", name)]
            # the whole file is read and counted; --max_train_samples / --max_eval_samples cut afterwards
            self.assertEqual(counts, {"rows": len(lines) - 1 - blank, "blank_lines_skipped": blank,
                                      "empty_text_fields": 0})  # fmt: skip

    def test_blank_lines_of_a_custom_file_are_skipped_counted_and_printed(self):
        folder = SCRATCH.path() / "custom-blank"
        folder.mkdir(parents=True, exist_ok=True)
        train = folder / "train.tsv"
        train.write_text(
            "source\ttarget\n" + "".join(f"question {i}\tanswer {i % 3}\n\n" for i in range(12)), encoding="utf-8"
        )  # a blank line after each of the 12 rows
        code, output = run_script_here(fine_tune_t5.main, [
            "--benchmark", "custom", "--train_file", str(train), "--model_config", "tiny",
            "--tokenizer_name_or_path", str(self.folder),  # the SST-2 run's: 12 short rows cannot train one
            "--do_train", "--eval_strategy", "no", "--max_steps", "1", "--per_device_train_batch_size", "4",
            "--report_to", "none", "--disable_tqdm", "True", "--output_dir", str(folder / "run")])  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        results = json.loads((folder / "run" / "all_results.json").read_text())
        self.assertEqual(results["files_read"], {str(train): {"rows": 12, "blank_lines_skipped": 12,
                                                              "empty_text_fields": 0}})  # fmt: skip
        self.assertIn(f"{train}: 12 rows, 0 empty text fields, 12 blank lines skipped", output)

    def test_plot_keeps_the_final_evaluation_apart_from_the_training_curve(self):
        ((history, key, path, final),) = self.plotted
        self.assertEqual(key, "eval_accuracy")
        self.assertEqual([row["step"] for row in history if key in row], [3, 6])  # the evaluations during training
        state = json.loads((self.folder / "trainer_state.json").read_text())
        best = Path(state["best_model_checkpoint"]).name
        # the final evaluation is drawn at the step of the weights it scored, not at the last step
        self.assertEqual(
            final, (state["best_global_step"], self.results["eval_accuracy"], f"final evaluation ({best})")
        )
        self.assertGreater(path.stat().st_size, 0)

    def test_constant_predictions_are_called_out(self):
        from t5kit.tasks import get_task

        spec = get_task("glue", "rte")
        report = outputs.label_report(spec, ["entailment"] * 3 + ["not_entailment"], ["not_entailment"] * 4)
        self.assertEqual(report["predicted_labels"], {"not_entailment": 100.0})
        self.assertEqual(report["majority_baseline"], 75.0)
        line = outputs.describe_labels("validation", report)
        self.assertIn("every prediction is 'not_entailment': the model ignores its input", line)
        mixed = outputs.label_report(spec, ["entailment", "not_entailment"], ["entailment", "maybe"])
        self.assertEqual(mixed["predicted_labels"], {"entailment": 50.0, outputs.INVALID_LABEL: 50.0})
        self.assertNotIn("Warning", outputs.describe_labels("validation", mixed))

    def test_saved_model_is_not_capped_at_the_tasks_label_length(self):
        from transformers import AutoTokenizer, GenerationConfig, T5ForConditionalGeneration

        config = GenerationConfig.from_pretrained(self.folder)
        self.assertNotEqual(config.max_length, 3)  # SST-2's longest target, decoder start included: 3 tokens
        model = T5ForConditionalGeneration.from_pretrained(self.folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(self.folder)
        inputs = tokenizer(["sst2 sentence: a fine film"], return_tensors="pt")
        generated = model.generate(**inputs, min_new_tokens=8, max_new_tokens=8)
        self.assertEqual(generated.shape[1], 9)  # decoder start + 8 tokens: past the 3 an SST-2 label needs

    def test_a_tie_on_the_metric_goes_to_the_lower_eval_loss(self):
        from transformers import T5Config, T5ForConditionalGeneration

        from t5kit.training import T5Trainer

        args = fine_tune_t5.FineTuneArguments(
            output_dir=str(SCRATCH.path() / "tie"),
            do_train=True,
            eval_strategy="steps",
            eval_steps=3,
            report_to="none",
            metric_for_best_model="eval_accuracy",
            greater_is_better=True,
        )
        model = T5ForConditionalGeneration(
            T5Config(vocab_size=32, d_model=8, d_ff=8, d_kv=4, num_layers=1, num_heads=2)
        )
        trainer = T5Trainer(model=model, args=args, eval_dataset=[{"input_ids": [1]}])
        picks = []
        for step, accuracy, loss in ((3, 50.0, 2.0), (6, 50.0, 1.5), (9, 50.0, 1.8), (12, 40.0, 0.1)):
            trainer.state.global_step = step
            metrics = {"eval_accuracy": accuracy, "eval_loss": loss}
            trainer.state.log_history.append({**metrics, "step": step})
            picks.append(trainer._determine_best_metric(metrics, None))
        self.assertEqual(picks, [True, True, False, False])
        self.assertEqual(trainer.state.best_global_step, 6)
        self.assertEqual(trainer.state.best_metric, 50.0)

    def test_span_accuracy_is_a_percentage(self):
        import numpy as np
        from transformers import EvalPrediction

        from t5kit.training import token_accuracy_metrics

        _, compute = token_accuracy_metrics()
        labels = np.array([[5, 6, 7, -100], [5, 9, -100, -100]])
        predictions = np.array([[5, 6, 0, 0], [5, 9, 3, 3]])
        self.assertEqual(compute(EvalPrediction(predictions, labels)), {"span_accuracy": 80.0})  # 4 of 5 tokens


class HubUnreachableTest(absltest.TestCase):
    def test_a_hub_dataset_that_cannot_be_reached_is_one_line_naming_the_way_out(self):
        out = SCRATCH.path() / "hub"
        env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}  # as with no network, without the wait
        cases = (
            (fine_tune_t5.main, ["--benchmark", "glue", "--dataset_name", "rte", "--model_config", "tiny",
                                 "--vocab_size", "300", "--do_train", "--report_to", "none"],
             "error: dataset nyu-mll/glue (rte): the Hugging Face hub cannot be reached", "--data_dir"),
            (pre_train_t5.main, ["--dataset_name", "wikitext", "--dataset_config_name", "wikitext-2-raw-v1",
                                 "--model_config", "tiny", "--vocab_size", "300", "--report_to", "none"],
             "error: dataset wikitext (wikitext-2-raw-v1): the Hugging Face hub cannot be reached", "--train_files"),
        )  # fmt: skip
        for main, argv, message, hint in cases:
            with self.subTest(message):
                code, output = run_script_here(main, [*argv, "--output_dir", str(out / main.__module__)], env=env)
                self.assertEqual(code, 2, output[-2000:])
                error = [line for line in output.splitlines() if line.startswith("error:")]
                self.assertLen(error, 1)
                self.assertIn(message, error[0])
                self.assertIn(hint, error[0])
                self.assertNotIn("Traceback", output)


if __name__ == "__main__":
    absltest.main()
