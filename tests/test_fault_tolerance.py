"""Kill-and-resume, pre-emption, NaN and secret-handling tests with real SIGKILL/SIGTERM of script subprocesses.

Faults are injected by tests/fault_injection.py at deterministic points. Every run uses dropout, gradient
accumulation and several epochs, so an exact trace needs the data order, span-corruption masks, dropout RNG, LR
schedule, optimizer, accumulation position and epoch to carry across each kill.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch
from absl.testing import absltest
from safetensors.torch import load_file

import fine_tune_t5
import pre_train_t5
from data_collators import T5DataCollator
from t5kit import fault_tolerance
from t5kit.exit_codes import EXIT_NONFINITE, EXIT_PREEMPTED
from t5kit.tokenizer import train_tokenizer
from t5kit.training import T5Trainer
from tests.helpers import REPO, SHARED_DATA, corpus_slice, run_script_here

SECRETS = {"WANDB_API_KEY": "wandb-secret-4f1c9e", "HF_TOKEN": "hf_secret_77ab12"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **SECRETS}
# 40 blocks, 4 per micro-batch, 2 micro-batches per step: 5 optimizer steps per epoch, 14 steps = 2.8 epochs.
PRETRAIN = ["--model_config", "tiny", "--input_length", "32", "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "2", "--max_train_samples", "40", "--max_eval_samples", "8",
            "--max_steps", "14", "--save_steps", "2", "--save_total_limit", "2", "--logging_steps", "1",
            "--dropout_rate", "0.1", "--seed", "7", "--report_to", "none", "--disable_tqdm", "True"]  # fmt: skip
RESUME = ["--resume_from_checkpoint", "latest"]


def run(fault: str, script: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tests" / "fault_injection.py"), fault, script, *argv],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip


def trace(run_dir: Path) -> dict[int, float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {row["step"]: row["loss"] for row in state["log_history"] if "loss" in row}


def fault_log(run_dir: Path) -> list[list[dict]]:
    """The rows of fault_log.jsonl, one list per run."""
    runs: list[list[dict]] = []
    for line in (run_dir / "fault_log.jsonl").read_text().splitlines():
        row = json.loads(line)
        runs.append([]) if "run" in row else runs[-1].append(row)
    return runs


class PretrainKillResumeTest(absltest.TestCase):
    """One uninterrupted run; one run killed and resumed four times: its trace must equal the first, step for step."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        corpus = corpus_slice(cls.tmp, lines=1500)
        texts = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
        train_tokenizer(texts, vocab_size=300, output_dir=cls.tmp / "tok")
        cls.argv = ["--train_files", str(corpus), "--tokenizer_name_or_path", str(cls.tmp / "tok"), *PRETRAIN]
        code, cls.reference_output = run_script_here(
            pre_train_t5.main, [*cls.argv, "--output_dir", str(cls.tmp / "ref")], env=SECRETS
        )
        assert code == 0, cls.reference_output[-3000:]
        cls.ref_trace = trace(cls.tmp / "ref")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assert_matches_reference(self, rows: list[dict]) -> None:
        for row in rows:
            if "loss" in row:
                self.assertEqual(row["loss"], self.ref_trace[row["step"]], f"step {row['step']}")

    def test_kills_and_sigterm_resume_the_exact_trace(self):
        out = self.tmp / "killed"
        argv = [*self.argv, "--output_dir", str(out)]
        stages = [
            ("kill_micro:9", [], -9, "checkpoint-4"),  # mid-accumulation: step 5's first of 2 micro-batches
            ("kill_after_save:8", RESUME, -9, "checkpoint-8"),  # right after a checkpoint, mid-epoch 2
            ("kill_in_save:12", RESUME, -9, "checkpoint-10"),  # during a save: checkpoint-10 (epoch end) survives
            (
                "sigterm_micro:5",
                RESUME,
                EXIT_PREEMPTED,
                "checkpoint-13",
            ),  # SIGTERM in step 13 (micro-batches count per process)
            ("none", RESUME, 0, "checkpoint-14"),
        ]
        for fault, extra, code, latest in stages:
            proc = run(fault, "pre_train_t5.py", [*argv, *extra])
            self.assertEqual(proc.returncode, code, f"{fault}:\n{proc.stderr[-3000:]}")
            complete = fault_tolerance.complete_checkpoints(out)
            self.assertEqual(complete[-1].name, latest, fault)
            if fault.startswith("kill_in_save"):
                self.assertTrue((out / "tmp-checkpoint-12").is_dir())  # the partial save, never resumed from
                self.assertFalse((out / "tmp-checkpoint-12" / fault_tolerance.TRAINER_STATE).exists())
            if fault.startswith("sigterm"):
                self.assertIn("SIGTERM received: saved checkpoint-13", proc.stderr)
                self.assertNotIn("Traceback", proc.stderr)
        self.assertEqual(trace(out), self.ref_trace)  # the final state: steps 1-14, each from the run that kept it
        runs = fault_log(out)
        for rows in runs:  # every step any run logged, killed runs included, equals the uninterrupted run's
            self.assert_matches_reference(rows)
        # Resumed at step 4: steps 5-8 trained on 8 micro-batches, collated with 1 more (accelerate's dataloader
        # fetches one batch ahead); the 8 skipped micro-batches were never fetched or collated.
        self.assertEqual(sum("collated" in row for row in runs[1]), 9)
        self.assertEqual([row["step"] for row in runs[1] if "loss" in row], [5, 6, 7, 8])
        self.assertFalse(list(out.glob("tmp-*")))  # the next start removed the partial save
        for folder in (out, *fault_tolerance.complete_checkpoints(out)):  # weights as safetensors only, never pickles
            self.assertTrue((folder / "model.safetensors").is_file(), folder)
            self.assertFalse(list(folder.glob("pytorch_model*.bin")), folder)
        self.assertEqual(
            [p.name for p in fault_tolerance.complete_checkpoints(out)], ["checkpoint-13", "checkpoint-14"]
        )

    def test_secrets_are_never_logged_or_saved(self):
        """WANDB_API_KEY and HF_TOKEN from the environment appear in no output, run file or checkpoint."""
        for name, secret in SECRETS.items():
            self.assertNotIn(secret, self.reference_output, name)
            for path in (self.tmp / "ref").rglob("*"):
                if path.is_file():
                    self.assertNotIn(secret.encode(), path.read_bytes(), f"{name} in {path}")

    def test_streamed_corpus_resumes_exactly_without_collating_skipped_batches(self):
        argv = [*self.argv, "--streaming", "--max_steps", "6", "--save_steps", "3"]  # later flags win
        ref, resumed = self.tmp / "stream-ref", self.tmp / "stream-resumed"
        code, output = run_script_here(pre_train_t5.main, [*argv, "--output_dir", str(ref)])
        self.assertEqual(code, 0, output[-3000:])
        shutil.copytree(ref / "checkpoint-3", resumed / "checkpoint-3")
        original, batches = T5DataCollator.__call__, []

        def collate(collator, examples):
            batches.append(len(examples))
            return original(collator, examples)

        with mock.patch.object(T5DataCollator, "__call__", collate):
            code, output = run_script_here(pre_train_t5.main, [*argv, "--output_dir", str(resumed), *RESUME])
        self.assertEqual(code, 0, output[-3000:])
        self.assertEqual(trace(resumed), trace(ref))
        epochs = [[row["epoch"] for row in json.loads((d / "trainer_state.json").read_text())["log_history"]
                   if "loss" in row] for d in (ref, resumed)]  # fmt: skip
        for got, want in zip(epochs[1], epochs[0], strict=True):
            self.assertAlmostEqual(got, want, places=9)
        # Steps 4-6: 6 micro-batches, 1 fetched ahead by accelerate, 1 eval batch; the 6 skipped were never collated.
        self.assertLen(batches, 8)

    def run_with_nan_at_micro_batch(self, micro_batch: int, *extra: str) -> tuple[int, str, Path]:
        """Runs pre_train_t5 in this process with one NaN loss; (exit code, output, run folder)."""
        out = Path(tempfile.mkdtemp(dir=self.tmp))
        original, seen = T5Trainer.compute_loss, {"count": 0}

        def compute_loss(trainer, model, inputs, *args, **kwargs):
            loss = original(trainer, model, inputs, *args, **kwargs)
            if model.training:
                seen["count"] += 1
                if seen["count"] == micro_batch:
                    return loss * float("nan")
            return loss

        with mock.patch.object(T5Trainer, "compute_loss", compute_loss):
            code, output = run_script_here(pre_train_t5.main, [*self.argv, *extra, "--output_dir", str(out)])
        return code, output, out

    def test_nonfinite_loss_stops_with_step_and_hint_saving_nothing_corrupt(self):
        code, stderr, out = self.run_with_nan_at_micro_batch(5, "--max_steps", "4")  # step 3
        self.assertEqual(code, EXIT_NONFINITE, stderr[-3000:])
        self.assertIn("error: the loss or gradients became NaN/inf at step 3", stderr)
        self.assertIn("--bf16", stderr)
        self.assertIn("--learning_rate", stderr)
        self.assertEqual([p.name for p in fault_tolerance.complete_checkpoints(out)], ["checkpoint-2"])
        weights = load_file(out / "checkpoint-2" / "model.safetensors")
        self.assertTrue(all(torch.isfinite(w).all() for w in weights.values()))

    def test_skip_nonfinite_steps_skips_the_update(self):
        code, stderr, out = self.run_with_nan_at_micro_batch(5, "--max_steps", "4", "--skip_nonfinite_steps", "1")
        self.assertEqual(code, 0, stderr[-3000:])
        results = json.loads((out / "all_results.json").read_text())
        self.assertEqual(results["nonfinite_steps_skipped"], 1)
        self.assertEqual({s: v for s, v in trace(out).items() if s < 3}, {1: self.ref_trace[1], 2: self.ref_trace[2]})
        weights = load_file(out / "model.safetensors")
        self.assertTrue(all(torch.isfinite(w).all() for w in weights.values()))


class FineTuneKillResumeTest(absltest.TestCase):
    """Fine-tuning with early stopping: killed after the checkpoint whose early-stopping counter is 1."""

    def test_kill_after_checkpoint_resumes_trace_and_early_stopping(self):
        tmp = Path(self.create_tempdir().full_path)
        argv = [
            "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(SHARED_DATA / "glue"),
            "--model_config", "tiny", "--vocab_size", "300", "--dropout_rate", "0.1", "--max_train_samples", "40",
            "--max_eval_samples", "16", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
            "--per_device_eval_batch_size", "16", "--learning_rate", "1e-6", "--max_steps", "40",
            "--eval_strategy", "steps", "--eval_steps", "3", "--early_stopping_patience", "2", "--eval_mode", "rank",
            "--logging_steps", "1", "--seed", "3", "--report_to", "none", "--disable_tqdm", "True", "--do_train",
            "--do_eval",
        ]  # fmt: skip
        code, output = run_script_here(fine_tune_t5.main, [*argv, "--output_dir", str(tmp / "ref")])
        self.assertEqual(code, 0, output[-3000:])
        ref_state = json.loads((tmp / "ref" / "trainer_state.json").read_text())
        self.assertEqual(ref_state["global_step"], 9)  # accuracy never improves after step 3: patience 2 stops at 9
        out = tmp / "killed"
        killed = run("kill_after_save:6", "fine_tune_t5.py", [*argv, "--output_dir", str(out)])  # mid-epoch 2
        self.assertEqual(killed.returncode, -9, killed.stderr[-3000:])
        saved = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
        counter = saved["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]
        self.assertEqual(counter["early_stopping_patience_counter"], 1)
        resumed = run("none", "fine_tune_t5.py", [*argv, "--output_dir", str(out), *RESUME])
        self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
        state = json.loads((out / "trainer_state.json").read_text())
        self.assertEqual(state["global_step"], 9)  # the counter survived: without it the run would stop at 12
        self.assertEqual(trace(out), trace(tmp / "ref"))
        self.assertEqual(Path(state["best_model_checkpoint"]).name, Path(ref_state["best_model_checkpoint"]).name)


class SecurityTest(absltest.TestCase):
    def test_no_remote_code_and_only_safe_loading(self):
        """No trust_remote_code; yaml.safe_load only; any torch.load in our code passes weights_only=True (the
        Trainer's own loads of optimizer, scheduler and rng_state.pth do, in transformers 5.23)."""
        sources = [p for p in REPO.rglob("*.py") if ".venv" not in p.parts and p.name != Path(__file__).name]
        for path in sources:
            text = path.read_text(encoding="utf-8")
            self.assertNotIn("trust_remote_code", text, path)
            self.assertNotIn("yaml.load(", text, path)
            for call in re.findall(r"torch\.load\([^)]*\)", text):
                self.assertIn("weights_only=True", call, path)

    def test_hub_token_flag_is_not_kept_in_the_arguments(self):
        from t5kit.args import T5TrainingArguments

        argv = ["pre_train_t5.py", "--hub_token", "hf_flag_secret", "--hub_token=hf_flag_secret", "--seed", "1"]
        with mock.patch.dict(os.environ, {}, clear=False), mock.patch.object(sys, "argv", list(argv)):
            args = T5TrainingArguments(output_dir="/tmp/x", hub_token="hf_flag_secret")
            self.assertIsNone(args.hub_token)  # so training_args.bin and tracker configs never hold it
            self.assertEqual(os.environ["HF_TOKEN"], "hf_flag_secret")
            # W&B records the process's argv with the run
            self.assertEqual(sys.argv, ["pre_train_t5.py", "--hub_token", "<redacted>", "--hub_token=<redacted>",
                                        "--seed", "1"])  # fmt: skip


class AtomicCheckpointTest(absltest.TestCase):
    def test_latest_ignores_incomplete_checkpoints(self):
        tmp = Path(self.create_tempdir().full_path)
        for step, complete in ((2, True), (4, True), (6, False)):
            (tmp / f"checkpoint-{step}").mkdir()
            if complete:
                (tmp / f"checkpoint-{step}" / fault_tolerance.TRAINER_STATE).write_text("{}")
        (tmp / "tmp-checkpoint-8").mkdir()
        self.assertEqual([p.name for p in fault_tolerance.complete_checkpoints(tmp)], ["checkpoint-2", "checkpoint-4"])
        fault_tolerance.remove_incomplete_checkpoints(tmp)
        self.assertFalse((tmp / "tmp-checkpoint-8").exists())

    def test_a_resave_killed_between_its_renames_keeps_the_step(self):
        """_move_into_place moves checkpoint-N aside, then the new copy into place: a kill between the two leaves
        no checkpoint-N. The next start puts the complete new copy in place, or else the old one back."""
        for new_complete, kept in ((True, "new"), (False, "old")):
            with self.subTest(new_complete=new_complete):
                tmp = Path(self.create_tempdir().full_path)
                for folder, marker in (("tmp-old-checkpoint-4", "old"), ("tmp-checkpoint-4", "new")):
                    (tmp / folder).mkdir()
                    (tmp / folder / "which").write_text(marker)
                (tmp / "tmp-old-checkpoint-4" / fault_tolerance.TRAINER_STATE).write_text("{}")
                if new_complete:
                    (tmp / "tmp-checkpoint-4" / fault_tolerance.TRAINER_STATE).write_text("{}")
                fault_tolerance.remove_incomplete_checkpoints(tmp)
                self.assertEqual([p.name for p in fault_tolerance.complete_checkpoints(tmp)], ["checkpoint-4"])
                self.assertEqual((tmp / "checkpoint-4" / "which").read_text(), kept)
                self.assertEqual(sorted(p.name for p in tmp.iterdir()), ["checkpoint-4"])


if __name__ == "__main__":
    absltest.main()
