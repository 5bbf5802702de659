"""Launcher files: SLURM templates (syntax, rendering with example values, requeue on signal), accelerate YAMLs,
the ZeRO-3 JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from absl.testing import absltest, parameterized

from t5kit.exit_codes import EXIT_PREEMPTED
from tests.helpers import REPO

SLURM = sorted((REPO / "slurm").glob("*"))
ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))
STUBBED = ("accelerate", "torchrun", "srun", "scontrol", "wandb")


# A training command that behaves as the scripts do on SIGUSR1: it saves, then exits with EXIT_PREEMPTED.
PREEMPTIBLE = f'trap "echo saved >> $LOG; exit {EXIT_PREEMPTED}" USR1\nsleep 30 & wait\n'


def make_stubs(folder: Path, log: Path, behaviour: dict[str, str] | None = None) -> dict[str, str]:
    """Commands that record their arguments instead of running; `scontrol show hostnames` prints two nodes.
    `behaviour` maps a command to extra bash run after the recording (e.g. PREEMPTIBLE, or `exit 3`)."""
    folder.mkdir()
    for name in STUBBED:
        body = f'echo "{name} $*" >> {log}\n'
        if name == "scontrol":
            body += 'if [ "$1" = show ]; then printf "node-a\\nnode-b\\n"; fi\n'
        body += (behaviour or {}).get(name, "").replace("$LOG", str(log))
        (folder / name).write_text("#!/usr/bin/env bash\n" + body)
        (folder / name).chmod(0o755)
    (folder / "activate").write_text("")
    return {
        **os.environ,
        "PATH": f"{folder}:{os.environ['PATH']}",
        "ENV_ACTIVATE": str(folder / "activate"),
        "ARGS": "--train_files corpus.txt --model_config small",
        "SLURM_JOB_ID": "123",
        "SLURM_JOB_NODELIST": "node-[a-b]",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS": "2",
        "SLURM_GPUS_ON_NODE": "4",
        "SWEEP_ID": "me/t5/abc123",
    }


class SlurmTemplatesTest(parameterized.TestCase):
    @parameterized.named_parameters((path.name, path) for path in SLURM)
    def test_bash_syntax(self, path):
        subprocess.run(["bash", "-n", str(path)], check=True)

    def render(self, name: str, tasks: str = "2") -> str:
        tmp = Path(self.create_tempdir().full_path)
        env = make_stubs(tmp / "bin", tmp / "calls.log")
        env["SLURM_NTASKS"] = tasks
        subprocess.run(["bash", str(REPO / "slurm" / name)], env=env, check=True, cwd=REPO, timeout=60)
        return (tmp / "calls.log").read_text()

    def test_single_node_renders_accelerate_launch(self):
        calls = self.render("train_single_node.sbatch")
        self.assertIn("accelerate launch --num_processes 4 --num_machines 1 pre_train_t5.py --train_files corpus.txt"
                      " --model_config small --resume_from_checkpoint latest", calls)  # fmt: skip

    def test_multi_node_renders_torchrun_with_rendezvous_on_first_node(self):
        calls = self.render("train_multi_node.sbatch")
        self.assertIn("--nnodes 2 --nproc_per_node 4", calls)
        self.assertIn("--rdzv_endpoint node-a:29500 --rdzv_id 123", calls)
        self.assertIn("srun --kill-on-bad-exit=1 torchrun", calls)

    def test_sweep_agent_pinned_to_its_gpu(self):
        calls = self.render("sweep_agents.sbatch", tasks="1")  # agents start 10 s apart: one task keeps it short
        self.assertIn("CUDA_VISIBLE_DEVICES=0 wandb agent --count 5 me/t5/abc123", calls)

    def test_signal_is_forwarded_and_the_job_requeued_after_the_checkpoint(self):
        tmp = Path(self.create_tempdir().full_path)
        env = make_stubs(tmp / "bin", tmp / "calls.log", {"accelerate": PREEMPTIBLE})
        job = subprocess.Popen(["bash", str(REPO / "slurm" / "train_single_node.sbatch")], env=env, cwd=REPO)
        log, deadline = tmp / "calls.log", time.time() + 20
        while not (log.exists() and "accelerate" in log.read_text()):
            self.assertLess(time.time(), deadline, "the training command never started")
            time.sleep(0.1)
        time.sleep(0.5)  # let the stub install its trap
        job.send_signal(signal.SIGUSR1)
        self.assertEqual(job.wait(timeout=30), 0)
        calls = (tmp / "calls.log").read_text().splitlines()
        self.assertEqual(calls[-2:], ["saved", "scontrol requeue 123"])  # requeued only once the save is done

    @parameterized.named_parameters(("preempted", EXIT_PREEMPTED, 0, True), ("failed", 3, 3, False))
    def test_requeue_on_the_preempted_exit_code_only(self, code, job_code, requeued):
        """Training that exits 75 on its own (SLURM signalled it directly) is requeued; a failure is not."""
        tmp = Path(self.create_tempdir().full_path)
        env = make_stubs(tmp / "bin", tmp / "calls.log", {"srun": f"exit {code}\n"})
        proc = subprocess.run(["bash", str(REPO / "slurm" / "train_multi_node.sbatch")], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        self.assertEqual(proc.returncode, job_code, proc.stderr)
        self.assertEqual("scontrol requeue 123" in (tmp / "calls.log").read_text(), requeued)


class LauncherConfigsTest(parameterized.TestCase):
    @parameterized.named_parameters((path.stem, path) for path in ACCELERATE_CONFIGS)
    def test_accelerate_config_loads(self, path):
        from accelerate.commands.config.config_args import ClusterConfig

        config = ClusterConfig.from_yaml_file(str(path))
        self.assertIn(str(config.distributed_type).split(".")[-1], ("NO", "MULTI_GPU", "FSDP", "DEEPSPEED"))
        ds_file = (config.deepspeed_config or {}).get("deepspeed_config_file")
        if ds_file:
            self.assertTrue((REPO / ds_file).is_file(), ds_file)
            self.assertNotIn(config.mixed_precision, ("fp16", "bf16"))  # bf16 lives in the JSON

    def test_zero3_gathers_16bit_weights_on_save(self):
        config = json.loads((REPO / "zero_stage3_config.json").read_text())
        self.assertEqual(config["zero_optimization"]["stage"], 3)
        self.assertTrue(config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"])
        self.assertEqual(config["bf16"]["enabled"], "auto")
        self.assertEqual(config["train_micro_batch_size_per_gpu"], "auto")


if __name__ == "__main__":
    absltest.main()
