"""Real 2-process CPU runs (gloo) under the launchers users use: accelerate DDP, torchrun, DeepSpeed ZeRO-2/3, and a
wrong launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from absl.testing import absltest
from transformers import T5ForConditionalGeneration

from t5kit.tokenizer import train_tokenizer
from tests.helpers import REPO, SHARED_DATA, corpus_slice

BIN = Path(sys.executable).parent
# PYTHONFAULTHANDLER: a process that aborts prints every thread's Python stack (the tail of stderr is reported).
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
       "PYTHONFAULTHANDLER": "1"}  # fmt: skip
ACCELERATE_CPU_2 = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29517"]


def run(command: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(command[:6])} ... exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def losses(run_dir: Path) -> list[float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [row["loss"] for row in state["log_history"] if "loss" in row]


class DistributedCpuTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.corpus = corpus_slice(cls.tmp, lines=2000)
        texts = [line for line in cls.corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
        train_tokenizer(texts, vocab_size=500, output_dir=cls.tmp / "tok")

    def pretrain_argv(self, out: Path, per_device: int, save_steps: int | None = None) -> list[str]:
        saving = ["--save_steps", str(save_steps)] if save_steps else ["--save_strategy", "no"]
        return [
            "pre_train_t5.py",
            "--train_files",
            str(self.corpus),
            "--tokenizer_name_or_path",
            str(self.tmp / "tok"),
            "--model_config",
            "tiny",
            "--input_length",
            "64",
            "--per_device_train_batch_size",
            str(per_device),
            "--max_steps",
            "6",
            "--logging_steps",
            "1",
            *saving,
            "--seed",
            "5",
            "--output_dir",
            str(out),
        ]

    def test_accelerate_ddp_and_torchrun_pretraining_match_one_process(self):
        one, two, torchrun = self.tmp / "one", self.tmp / "two", self.tmp / "torchrun"
        run([sys.executable, *self.pretrain_argv(one, per_device=8)])
        run(["env", "ACCELERATE_USE_CPU=true", *ACCELERATE_CPU_2, *self.pretrain_argv(two, per_device=4)])
        run(["env", "ACCELERATE_USE_CPU=true", "torchrun", "--nproc_per_node", "2", "--master_port", "29519",
             *self.pretrain_argv(torchrun, per_device=4)])  # fmt: skip
        for launched in (two, torchrun):
            results = json.loads((launched / "all_results.json").read_text())
            self.assertEqual((results["world_size"], results["effective_batch_size"]), (2, 8))
            self.assertEqual(results["distributed_type"], "MULTI_CPU")
            self.assertTrue(results["parameters_agree_across_processes"])
            self.assertLen(losses(launched), 6)
            for step, (a, b) in enumerate(zip(losses(one), losses(launched), strict=True), start=1):
                self.assertAlmostEqual(
                    a, b, delta=1e-3 * abs(a), msg=f"{launched.name} step {step}: 1 process {a} vs {b}"
                )

    def test_checkpoints_resume_under_the_same_launcher(self):
        """A checkpoint written by 2 DDP processes (and one by DeepSpeed ZeRO-2) resumes with the same loss trace."""
        launchers = {
            "ddp": ["env", "ACCELERATE_USE_CPU=true", *ACCELERATE_CPU_2],
            "zero2": ["deepspeed", "--num_gpus", "2", "--master_port", "29521"],
        }
        for name, launcher in launchers.items():
            full, resumed = self.tmp / f"{name}-full", self.tmp / f"{name}-resumed"
            extra = ["--deepspeed", "zero_stage2_config.json"] if name == "zero2" else []
            run([*launcher, *self.pretrain_argv(full, per_device=4, save_steps=3), *extra])
            shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
            run([*launcher, *self.pretrain_argv(resumed, per_device=4, save_steps=3), *extra,
                 "--resume_from_checkpoint", "latest"])  # fmt: skip
            self.assertEqual(losses(resumed)[-3:], losses(full)[-3:], name)

    def test_accelerate_ddp_fine_tuning_matches_one_process(self):
        one, two = self.tmp / "ft-one", self.tmp / "ft-two"
        argv = ["fine_tune_t5.py", "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir",
                str(SHARED_DATA / "glue"), "--tokenizer_name_or_path", str(self.tmp / "tok"), "--model_config", "tiny",
                "--do_train", "--max_train_samples", "200", "--max_steps", "6", "--logging_steps", "1",
                "--eval_strategy", "no", "--save_strategy", "no", "--seed", "5",
                # Random order and no dropout: both runs see the same global batches and compute the same function.
                # Length grouping sizes its mega-batches by the per-device batch, so its order differs by design.
                "--train_sampling_strategy", "random", "--dropout_rate", "0"]  # fmt: skip
        run([sys.executable, *argv, "--per_device_train_batch_size", "8", "--output_dir", str(one)])
        run(["env", "ACCELERATE_USE_CPU=true", *ACCELERATE_CPU_2, *argv, "--per_device_train_batch_size", "4",
             "--do_eval", "--max_eval_samples", "37", "--output_dir", str(two)])  # fmt: skip
        results = json.loads((two / "all_results.json").read_text())
        self.assertEqual((results["world_size"], results["effective_batch_size"]), (2, 8))
        self.assertTrue(results["parameters_agree_across_processes"])
        # Each process averages over its own label tokens, so the traces agree to float tolerance, not bit for bit.
        for step, (a, b) in enumerate(zip(losses(one), losses(two), strict=True), start=1):
            self.assertAlmostEqual(a, b, delta=2e-3 * abs(a), msg=f"step {step}: 1 process {a} vs 2 processes {b}")
        lines = (two / "predictions" / "glue_sst2_validation.jsonl").read_text().splitlines()
        self.assertLen(lines, 37)  # an odd count: the gather must drop the padding sample

    def test_deepspeed_zero2_pretraining_saves_a_loadable_model(self):
        out = self.tmp / "ds"
        run(["deepspeed", "--num_gpus", "2", "--master_port", "29518", *self.pretrain_argv(out, per_device=4),
             "--deepspeed", "zero_stage2_config.json"])  # fmt: skip
        results = json.loads((out / "all_results.json").read_text())
        self.assertEqual((results["distributed_type"], results["world_size"]), ("DEEPSPEED", 2))
        self.assertTrue(results["parameters_agree_across_processes"])
        model = T5ForConditionalGeneration.from_pretrained(out)
        self.assertEqual(model.config.d_model, 64)

    def test_deepspeed_zero3_fine_tuning_with_generation_eval(self):
        """ZeRO-3 shards the weights: generation needs synced processes, and the save must gather 16-bit weights."""
        out = self.tmp / "z3"
        run(["deepspeed", "--num_gpus", "2", "--master_port", "29520", "fine_tune_t5.py", "--deepspeed",
             "zero_stage3_config.json", "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir",
             str(SHARED_DATA / "glue"), "--tokenizer_name_or_path", str(self.tmp / "tok"), "--model_config", "tiny",
             "--do_train", "--do_eval", "--eval_mode", "generate", "--max_train_samples", "200",
             "--max_eval_samples", "37", "--max_steps", "4", "--per_device_train_batch_size", "8",
             "--eval_strategy", "no", "--output_dir", str(out)])  # fmt: skip
        results = json.loads((out / "all_results.json").read_text())
        self.assertEqual((results["distributed_type"], results["world_size"]), ("DEEPSPEED", 2))
        self.assertIn("eval_accuracy", results)
        self.assertLen((out / "predictions" / "glue_sst2_validation.jsonl").read_text().splitlines(), 37)
        model = T5ForConditionalGeneration.from_pretrained(out)  # full weights, not ZeRO shards
        self.assertEqual(tuple(model.shared.weight.shape)[1], 64)
        self.assertGreater(float(model.shared.weight.abs().mean()), 0.1)

    def test_fsdp_config_on_cpu_falls_back_to_ddp_and_says_so(self):
        """accelerate only shards with FSDP on GPUs; on CPU the shipped fsdp.yaml trains as DDP, with a warning."""
        out = self.tmp / "fsdp"
        proc = run(["accelerate", "launch", "--config_file", "configs/accelerate/fsdp.yaml", "--num_processes", "2",
                    "--main_process_port", "29522", *self.pretrain_argv(out, per_device=4)])  # fmt: skip
        results = json.loads((out / "all_results.json").read_text())
        self.assertEqual((results["distributed_type"], results["world_size"]), ("MULTI_CPU", 2))
        self.assertTrue(results["parameters_agree_across_processes"])
        self.assertIn("the launcher asked for FSDP, but accelerate runs MULTI_CPU", proc.stderr)
        T5ForConditionalGeneration.from_pretrained(out)

    def test_two_unsynchronised_processes_stop_with_a_clear_error(self):
        """srun -n 2 python script.py: two processes that would each train alone."""
        procs = []
        for rank in (0, 1):
            env = {**ENV, "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": str(rank)}
            procs.append(subprocess.Popen([sys.executable, *self.pretrain_argv(self.tmp / "bad", per_device=4)],
                                          cwd=REPO, env=env, stderr=subprocess.PIPE, text=True))  # fmt: skip
        for proc in procs:
            _, stderr = proc.communicate(timeout=300)
            self.assertEqual(proc.returncode, 2, stderr[-2000:])
            self.assertIn("started 2 processes", stderr)
            self.assertIn("unsynchronised", stderr)
            self.assertNotIn("Traceback", stderr)


if __name__ == "__main__":
    absltest.main()
