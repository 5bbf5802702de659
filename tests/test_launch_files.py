"""Launcher files: SLURM templates (syntax, rendering with example values, requeue on signal, the two layouts of sweep
agents and the `accelerate` their trials run), accelerate YAMLs, the ZeRO-3 JSON."""

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

SLURM = sorted(p for p in (REPO / "slurm").rglob("*") if p.is_file())
ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))
STUBBED = ("accelerate", "torchrun", "srun", "scontrol", "wandb")


# A training command that behaves as the scripts do on SIGUSR1: it saves, then exits with EXIT_PREEMPTED.
PREEMPTIBLE = f'trap "echo saved >> $LOG; exit {EXIT_PREEMPTED}" USR1\nsleep 30 & wait\n'
# srun: runs its command (what follows the --options) as two tasks, SLURM_PROCID 0 and 1.
SRUN_TWO_TASKS = 'while [ "${1#--}" != "$1" ]; do shift; done\nfor id in 0 1; do SLURM_PROCID=$id "$@"; done\n'
# wandb agent: records the GPUs it was given, then runs two trials as the sweep files' command and its DeepSpeed
# variant spell them, resolving `accelerate` on PATH as the real agent does.
AGENT_TRIALS = (
    'echo "agent sees CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}" >> $LOG\n'
    "accelerate launch fine_tune_t5.py --learning_rate=0.001 --lr_scheduler_type=cosine\n"
    "accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml fine_tune_t5.py --learning_rate=0.001\n"
)


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

    def render(self, name: str, tasks: str = "2", behaviour: dict[str, str] | None = None, **env_vars: str) -> str:
        tmp = Path(self.create_tempdir().full_path)
        env = make_stubs(tmp / "bin", tmp / "calls.log", behaviour)
        env["SLURM_NTASKS"] = tasks
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.update(env_vars)
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

    def render_agents(self, name: str) -> list[str]:
        behaviour = {"srun": SRUN_TWO_TASKS, "wandb": AGENT_TRIALS}
        return self.render(name, behaviour=behaviour, STAGGER="0").splitlines()

    def test_sweep_agents_one_per_gpu(self):
        """One srun task per GPU, SLURM confining each to its GPU; each trial is one process on it."""
        calls = self.render_agents("sweep_agents.sbatch")
        agent = 'sleep $((SLURM_PROCID * STAGGER)); exec wandb agent --count "$COUNT" "$SWEEP_ID"'  # staggered starts
        self.assertEqual(calls[0], f"srun --ntasks=2 --gpus-per-task=1 --cpus-per-task=1 bash -c {agent}")
        self.assertEqual(calls.count("wandb agent --count 5 me/t5/abc123"), 2)
        self.assertEqual(calls.count("agent sees CUDA_VISIBLE_DEVICES=unset"), 2)  # SLURM's to set, not the template's
        self.assertIn("accelerate launch --num_processes 1 fine_tune_t5.py --learning_rate=0.001 "
                      "--lr_scheduler_type=cosine", calls)  # fmt: skip
        self.assertIn("accelerate launch --num_processes 1 --config_file configs/accelerate/deepspeed_zero2.yaml "
                      "fine_tune_t5.py --learning_rate=0.001", calls)  # fmt: skip

    def test_sweep_agent_per_node_launches_trials_on_all_its_gpus(self):
        calls = self.render_agents("sweep_agent_per_node.sbatch")
        self.assertTrue(calls[0].startswith("srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 bash -c "), calls[0])
        self.assertEqual(calls.count("wandb agent --count 5 me/t5/abc123"), 2)
        self.assertEqual(calls.count("agent sees CUDA_VISIBLE_DEVICES=unset"), 2)
        self.assertIn("accelerate launch --multi_gpu --num_processes 4 fine_tune_t5.py --learning_rate=0.001 "
                      "--lr_scheduler_type=cosine", calls)  # fmt: skip
        # The DeepSpeed variant keeps its config file, which chooses the distributed type.
        self.assertIn("accelerate launch --num_processes 4 --config_file configs/accelerate/deepspeed_zero2.yaml "
                      "fine_tune_t5.py --learning_rate=0.001", calls)  # fmt: skip
        calls = self.render("sweep_agent_per_node.sbatch", behaviour={"srun": SRUN_TWO_TASKS, "wandb": AGENT_TRIALS},
                            STAGGER="0", GPUS="2")  # fmt: skip
        self.assertIn("accelerate launch --multi_gpu --num_processes 2 fine_tune_t5.py", calls)

    @parameterized.parameters("sweep_agents.sbatch", "sweep_agent_per_node.sbatch")
    def test_sweep_id_must_name_the_project(self, name):
        tmp = Path(self.create_tempdir().full_path)
        env = {**make_stubs(tmp / "bin", tmp / "calls.log"), "SWEEP_ID": "abc123"}
        proc = subprocess.run(["bash", str(REPO / "slurm" / name)], env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        self.assertEqual(proc.returncode, 2)
        self.assertIn("ENTITY/PROJECT/SWEEP_ID", proc.stderr)
        self.assertFalse((tmp / "calls.log").exists())  # no agent started

    def test_trial_accelerate_passes_everything_else_through(self):
        tmp = Path(self.create_tempdir().full_path)
        env = make_stubs(tmp / "bin", tmp / "calls.log")
        env["PATH"] = f"{REPO / 'slurm' / 'bin'}:{env['PATH']}"
        shim = str(REPO / "slurm" / "bin" / "accelerate")
        subprocess.run([shim, "launch", "x.py"], env=env, check=True)  # GPUS_PER_TRIAL unset
        env["GPUS_PER_TRIAL"] = "4"
        subprocess.run([shim, "launch", "--num_processes", "2", "x.py"], env=env, check=True)
        subprocess.run([shim, "env"], env=env, check=True)
        calls = (tmp / "calls.log").read_text().splitlines()
        self.assertEqual(
            calls, ["accelerate launch x.py", "accelerate launch --num_processes 2 x.py", "accelerate env"]
        )
        env["PATH"] = f"{REPO / 'slurm' / 'bin'}:/usr/bin:/bin"  # only itself: says so instead of calling itself
        proc = subprocess.run([shim, "launch", "x.py"], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 127)
        self.assertIn("no other accelerate on PATH", proc.stderr)

    @parameterized.named_parameters((path.name, path) for path in SLURM)
    def test_no_template_sets_cuda_visible_devices(self, path):
        """SLURM assigns each task its GPUs (--gpus-per-task, --gpus-per-node); a template overriding
        CUDA_VISIBLE_DEVICES would point a task at a GPU index outside what SLURM gave it."""
        code = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
        self.assertNotIn("CUDA_VISIBLE_DEVICES", "\n".join(code))

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
