"""The offline sweep runner (sweep.py / t5kit.sweep).

A real sweep: 3 trials of a tiny model on an SST-2 slice of the real GLUE files, interrupted during the second trial
and resumed: the first trial is not run again, the interrupted one runs again with its parameters, the results
table lists 3 trials and names the best. The runner's mechanics (hyperband stopping, failed trials, grid end,
mistakes in the sweep file) are checked with a stand-in program that logs a metric the way the scripts do.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import yaml
from absl.testing import absltest

from t5kit import sweep as sweep_lib
from t5kit.exit_codes import EXIT_PREEMPTED, EXIT_USAGE
from tests.helpers import REPO, SHARED_DATA

# Logs eval_loss = quality + 1/i at evaluation i to metrics.jsonl, as T5Trainer does, then all_results.json.
FAKE_PROGRAM = """
import argparse, json, os, pathlib, time
p = argparse.ArgumentParser()
p.add_argument("--output_dir", required=True)
p.add_argument("--quality", type=float, default=1.0)
p.add_argument("--evals", type=int, default=4)
p.add_argument("--sleep", type=float, default=0.05)
p.add_argument("--fail", default="False")
p.add_argument("--preempt_once", default="False")
p.add_argument("--resume_from_checkpoint")
p.add_argument("--note", default="")
p.add_argument("--hub_token")
a = p.parse_args()
out = pathlib.Path(a.output_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "received.json").write_text(json.dumps({"note": a.note, "hub_token_flag": a.hub_token is not None,
                                               "HF_TOKEN": os.environ.get("HF_TOKEN") == "hf_sweep_secret_91"}))
if a.fail == "True":
    raise SystemExit("boom: asked to fail")
if a.preempt_once == "True" and not (out / "preempted").exists():
    (out / "preempted").write_text("")
    raise SystemExit(75)
for i in range(1, a.evals + 1):
    loss = a.quality + 1.0 / i
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 10 * i, "eval_loss": loss}) + "\\n")
    time.sleep(a.sleep)
(out / "all_results.json").write_text(json.dumps({"eval_loss": loss}))
"""


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class RunnerMechanicsTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = Path(self.create_tempdir().full_path)
        self.program = self.tmp / "prog.py"
        self.program.write_text(FAKE_PROGRAM)

    def sweep(self, **overrides) -> dict:
        config = {
            "program": str(self.program),
            "command": ["${env}", "${interpreter}", "${program}", "${args}"],
            "method": "grid",
            "metric": {"name": "eval/loss", "goal": "minimize"},
            "parameters": {"quality": {"values": [0.1, 0.2, 5.0]}, "evals": {"value": 40}},
        }
        config.update(overrides)
        return config

    def run_sweep(self, config: dict, *args: str, name="s") -> tuple[int, Path]:
        path = write_yaml(self.tmp / f"{name}.yaml", config)
        out = self.tmp / f"{name}-out"
        code = sweep_lib.main([str(path), "--sweep_dir", str(out), "--poll_s", "0.05", *args])
        return code, out

    def test_hyperband_stops_a_trial_that_falls_behind(self):
        config = self.sweep(early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
        config["parameters"]["evals"] = {"value": 4}
        config["parameters"]["sleep"] = {"value": 0.3}  # the third trial would run 40 x 0.3 s unless stopped
        config["parameters"]["quality"] = {"values": [0.1, 0.2, 5.0]}
        code, out = self.run_sweep(config, "--count", "10")
        self.assertEqual(code, 0)
        trials = json.loads((out / "sweep_state.json").read_text())["trials"]
        self.assertEqual([t["state"] for t in trials], ["finished", "finished", "stopped"])  # the grid has 3 points
        self.assertLess(len(trials[2]["history"]), 4)
        self.assertIn("Best: **trial-001**", (out / "results.md").read_text())

    def test_failed_trial_is_recorded_and_the_sweep_goes_on(self):
        config = self.sweep(parameters={"fail": {"values": ["True", "False"]}, "evals": {"value": 2}})
        code, out = self.run_sweep(config, "--count", "5")
        self.assertEqual(code, 0)
        trials = json.loads((out / "sweep_state.json").read_text())["trials"]
        self.assertEqual([t["state"] for t in trials], ["failed", "finished"])
        self.assertIn("boom: asked to fail", (out / "logs" / "trial-001.log").read_text())
        rows = (out / "results.csv").read_text().splitlines()
        self.assertLen(rows, 3)
        self.assertTrue((out / "results.png").stat().st_size > 0)

    def test_results_record_each_trials_flags_and_command_but_no_secret(self):
        secret = "hf_sweep_secret_91"
        config = self.sweep(parameters={"quality": {"values": [0.1, 0.2]}, "evals": {"value": 2},
                                        "output_dir": {"value": "ignored"}})  # fmt: skip
        code, out = self.run_sweep(config, "--count", "2", "--set", "note=from-set", "--set", f"hub_token={secret}")
        self.assertEqual(code, 0)
        trials = json.loads((out / "sweep_state.json").read_text())["trials"]
        received = json.loads((Path(trials[0]["output_dir"]) / "received.json").read_text())
        # --set reached the trial; the secret came through the environment, not the command line
        self.assertEqual(received, {"note": "from-set", "hub_token_flag": False, "HF_TOKEN": True})
        self.assertEqual(trials[1]["flags"], {"evals": 2, "note": "from-set", "quality": 0.2,
                                              "output_dir": trials[1]["output_dir"]})  # fmt: skip
        with (out / "results.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        header = next(iter(csv.reader((out / "results.csv").open())))
        self.assertEqual(header.count("output_dir"), 1)
        self.assertEqual([r["quality"] for r in rows], ["0.1", "0.2"])
        self.assertEqual([r["note"] for r in rows], ["from-set", "from-set"])  # a --set-only flag has its column
        self.assertEqual([r["evals"] for r in rows], ["2", "2"])
        self.assertIn("--note=from-set", rows[0]["command"])
        self.assertIn(f"--output_dir={trials[0]['output_dir']}", rows[0]["command"])
        table = (out / "results.md").read_text()
        self.assertIn("`--note=from-set`", table)
        self.assertIn(f"- trial-002: `{trials[1]['command']}`", table)
        for path in out.rglob("*"):
            if path.is_file():
                self.assertNotIn(secret.encode(), path.read_bytes(), path)

    def test_project_and_name_of_a_wandb_sweep_file(self):
        """`project:` and `name:` load; trials get the project as WANDB_PROJECT unless it is set already."""
        program = self.tmp / "env_prog.py"
        program.write_text(
            "import argparse, json, os, pathlib\n"
            "a = argparse.ArgumentParser(); a.add_argument('--output_dir'); a.add_argument('--quality')\n"
            "out = pathlib.Path(a.parse_args().output_dir); out.mkdir(parents=True, exist_ok=True)\n"
            "(out / 'all_results.json').write_text(json.dumps({'eval_loss': 1.0, "
            "'project': os.environ.get('WANDB_PROJECT')}))\n"
        )
        config = self.sweep(program=str(program), project="t5-sweeps-here", name="demo-lr-schedule",
                            parameters={"quality": {"values": [0.1]}})  # fmt: skip
        for preset, expected, name in ((None, "t5-sweeps-here", "a"), ("mine", "mine", "b")):
            env = {k: v for k, v in os.environ.items() if k != "WANDB_PROJECT"}
            if preset:
                env["WANDB_PROJECT"] = preset
            with mock.patch.dict(os.environ, env, clear=True):
                code, out = self.run_sweep(config, "--count", "1", name=name)
            self.assertEqual(code, 0)
            trial = json.loads((out / "sweep_state.json").read_text())["trials"][0]
            results = json.loads((Path(trial["output_dir"]) / "all_results.json").read_text())
            self.assertEqual(results["project"], expected)

    def test_set_cannot_override_a_searched_parameter(self):
        path = write_yaml(self.tmp / "c.yaml", self.sweep())
        argv = [str(path), "--sweep_dir", str(self.tmp / "c-out"), "--set", "quality=3"]
        with self.assertRaisesRegex(sweep_lib.SweepError, "'quality' is searched by"):
            sweep_lib.Runner(sweep_lib.build_parser().parse_args(argv))

    def test_preempted_trial_stops_the_runner_and_resumes(self):
        # Each trial exits 75 (pre-empted after a checkpoint) on its first attempt.
        config = self.sweep(parameters={"preempt_once": {"value": "True"}, "quality": {"values": [0.1, 0.2]}})
        codes = [self.run_sweep(config, "--count", "2")[0] for _ in range(3)]
        self.assertEqual(codes, [EXIT_PREEMPTED, EXIT_PREEMPTED, 0])
        out = self.tmp / "s-out"
        self.assertFalse((out / sweep_lib.LOCK_FILE).exists())
        trials = json.loads((out / "sweep_state.json").read_text())["trials"]
        self.assertEqual([(t["state"], t["attempts"]) for t in trials], [("finished", 2), ("finished", 2)])

    def test_one_runner_per_folder(self):
        out = self.tmp / "locked"
        out.mkdir()
        (out / sweep_lib.LOCK_FILE).write_text(str(os.getppid()))  # a live process
        path = write_yaml(self.tmp / "l.yaml", self.sweep())
        self.assertEqual(sweep_lib.main([str(path), "--sweep_dir", str(out)]), EXIT_USAGE)

    def assert_usage_error(self, config_text: str, pattern: str, *args: str):
        path = self.tmp / "bad.yaml"
        path.write_text(config_text)
        with self.assertRaisesRegex(sweep_lib.SweepError, pattern):
            argv = [str(path), "--sweep_dir", str(self.tmp / "o"), *args]
            sweep_lib.Runner(sweep_lib.build_parser().parse_args(argv))
        self.assertEqual(sweep_lib.main([str(path), "--sweep_dir", str(self.tmp / "o"), *args]), EXIT_USAGE)

    def test_mistakes_name_the_file_and_line(self):
        good = yaml.safe_dump(self.sweep(), sort_keys=False)
        self.assert_usage_error("program: x.py\nmethod: grid\nparameters:\n  a: [1\n", r"bad\.yaml:\d+: not valid YAML")
        unknown = good.replace("  evals:\n", "  learning_rat:\n    value: 1\n  evals:\n")
        line = unknown.splitlines().index("  learning_rat:") + 1
        self.assert_usage_error(unknown, rf"bad\.yaml:{line}: parameter 'learning_rat' is not a flag of prog\.py")
        missing = good.replace(str(self.program), "missing.py")
        self.assert_usage_error(missing, r"bad\.yaml:1: program missing\.py not found")
        self.assert_usage_error(good.replace("method: grid", "method: sobol"), r"bad\.yaml:\d+: method must be one of")
        self.assert_usage_error(good, r"--set nope=\.\.\.: 'nope' is not a flag of prog\.py", "--set", "nope=1")
        schema = good.replace("    values:\n", "    distribution: normalish\n    values:\n", 1)
        line = schema.splitlines().index("  quality:") + 1
        self.assert_usage_error(schema, rf"bad\.yaml:{line}: not a valid W&B sweep config")

    def test_resume_keeps_the_done_trials(self):
        config = self.sweep(parameters={"quality": {"values": [0.3, 0.1, 0.2]}, "evals": {"value": 2}})
        code, out = self.run_sweep(config, "--count", "1")
        self.assertEqual(code, 0)
        first = (out / "logs" / "trial-001.log").read_text()
        code, out = self.run_sweep(config, "--count", "3")
        self.assertEqual(code, 0)
        trials = json.loads((out / "sweep_state.json").read_text())["trials"]
        self.assertEqual([t["params"]["quality"] for t in trials], [0.3, 0.1, 0.2])
        self.assertEqual([t["attempts"] for t in trials], [1, 1, 1])
        self.assertEqual((out / "logs" / "trial-001.log").read_text(), first)
        self.assertIn("Best: **trial-002**", (out / "results.md").read_text())
        # Another sweep file in the same folder is refused.
        config["parameters"]["evals"] = {"value": 3}
        path = write_yaml(self.tmp / "s.yaml", config)
        self.assertEqual(sweep_lib.main([str(path), "--sweep_dir", str(out)]), EXIT_USAGE)


SST2_SWEEP = {
    "program": "fine_tune_t5.py",
    "command": ["accelerate", "launch", "${program}", "${args}"],
    "method": "bayes",
    "metric": {"name": "eval/accuracy", "goal": "maximize"},
    "parameters": {
        "benchmark": {"value": "glue"},
        "dataset_name": {"value": "sst2"},
        "data_dir": {"value": str(SHARED_DATA / "glue")},
        "model_config": {"value": "tiny"},
        "vocab_size": {"value": 500},
        "do_train": {"value": True},
        "do_eval": {"value": True},
        "max_train_samples": {"value": 320},
        "max_eval_samples": {"value": 32},
        "max_steps": {"value": 12},
        "eval_strategy": {"value": "steps"},
        "eval_steps": {"value": 6},
        "eval_mode": {"value": "rank"},
        "per_device_train_batch_size": {"value": 16},
        "logging_steps": {"value": 3},
        "report_to": {"value": "none"},
        "disable_tqdm": {"value": True},
        "seed": {"value": 0},
        "learning_rate": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.01},
    },
}


class RealSweepTest(absltest.TestCase):
    def test_three_trials_on_sst2_interrupted_and_resumed(self):
        tmp = Path(self.create_tempdir().full_path)
        path = write_yaml(tmp / "sst2.yaml", SST2_SWEEP)
        out = tmp / "sweep"
        # --launcher python: one plain process per trial (no accelerate config on this CPU machine).
        command = [sys.executable, str(REPO / "sweep.py"), str(path), "--count", "3", "--launcher", "python",
                   "--sweep_dir", str(out), "--poll_s", "0.5"]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        runner = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        state_path = out / "sweep_state.json"
        deadline = time.time() + 240
        while time.time() < deadline and runner.poll() is None:  # interrupt once the second trial has started
            trials = json.loads(state_path.read_text())["trials"] if state_path.is_file() else []
            if len(trials) == 2 and trials[1]["state"] == "running" and (out / "logs" / "trial-002.log").is_file():
                runner.send_signal(signal.SIGTERM)
                break
            time.sleep(0.2)
        output, _ = runner.communicate(timeout=120)
        self.assertEqual(runner.returncode, EXIT_PREEMPTED, output)  # SIGTERM: resume on requeue
        self.assertIn("rerun the same command to resume", output)
        trials = json.loads(state_path.read_text())["trials"]
        self.assertEqual([t["state"] for t in trials], ["finished", "running"])
        interrupted_params = trials[1]["params"]
        first_log = (out / "logs" / "trial-001.log").read_text()

        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("trial-002 was interrupted", result.stdout)
        self.assertNotIn("reading the flags", result.stdout)  # cached in the state file
        trials = json.loads(state_path.read_text())["trials"]
        self.assertEqual([t["state"] for t in trials], ["finished"] * 3)
        self.assertEqual([t["attempts"] for t in trials], [1, 2, 1])  # trial-001 was not run again
        self.assertEqual(trials[1]["params"], interrupted_params)
        self.assertEqual((out / "logs" / "trial-001.log").read_text(), first_log)
        for trial in trials:
            run = Path(trial["output_dir"])
            self.assertEqual(run.parent, out / "trials")
            accuracy = json.loads((run / "all_results.json").read_text())["eval_accuracy"]
            self.assertAlmostEqual(trial["metric"], accuracy)
            self.assertGreaterEqual(len(trial["history"]), 2)  # read from metrics.jsonl
        table = (out / "results.md").read_text()
        for name in ("trial-001", "trial-002", "trial-003"):
            self.assertIn(name, table)
        best = max(trials, key=lambda t: t["metric"])
        self.assertIn(f"Best: **{best['name']}** with eval/accuracy = {best['metric']:.4f}", table)
        self.assertIn(f"best: {best['name']}", result.stdout)
        self.assertLen((out / "results.csv").read_text().splitlines(), 4)
        self.assertTrue((out / "results.png").stat().st_size > 0)

        # The runner is killed after trial-003 has finished but before it recorded that: the next start runs the
        # trial again with --resume_from_checkpoint latest, which finds the run complete and changes nothing.
        state = json.loads(state_path.read_text())
        state["trials"][2]["state"] = "running"
        state_path.write_text(json.dumps(state))
        run = Path(trials[2]["output_dir"])
        before = {name: (run / name).read_bytes() for name in ("all_results.json", "model.safetensors")}
        checkpoints = sorted(p.name for p in run.glob("checkpoint-*"))
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("already complete", (out / "logs" / "trial-003.log").read_text())
        self.assertEqual({name: (run / name).read_bytes() for name in before}, before)
        self.assertEqual(sorted(p.name for p in run.glob("checkpoint-*")), checkpoints)
        rerun = json.loads(state_path.read_text())["trials"][2]
        self.assertEqual((rerun["state"], rerun["metric"]), ("finished", trials[2]["metric"]))


class CommandTest(absltest.TestCase):
    def test_launchers(self):
        sweep = {"command": ["${env}", "${interpreter}", "${program}", "${args}"]}
        args = ["--a=1", "--do_train=True"]
        from_yaml = sweep_lib.build_command(sweep, "yaml", Path("p.py"), args)
        self.assertEqual(from_yaml[1:], [sys.executable, "p.py", *args])  # after /usr/bin/env
        self.assertEqual(sweep_lib.build_command(sweep, "python", Path("p.py"), args), [sys.executable, "p.py", *args])
        custom = sweep_lib.build_command(sweep, "torchrun --nproc_per_node 2", Path("p.py"), args)
        self.assertEqual(custom[1:], ["--nproc_per_node", "2", "p.py", *args])
        flags = {"command": ["${interpreter}", "${program}", "${args_no_boolean_flags}"]}
        self.assertEqual(sweep_lib.build_command(flags, "yaml", Path("p.py"), args)[2:], ["--a=1", "--do_train"])

    def test_trainer_keys(self):
        self.assertEqual(sweep_lib.trainer_key("eval/accuracy"), "eval_accuracy")
        self.assertEqual(sweep_lib.trainer_key("train/loss"), "loss")
        self.assertEqual(sweep_lib.trainer_key("eval_loss"), "eval_loss")

    def test_metrics_log_after_a_resume(self):
        from t5kit.tracking import read_metrics_log

        path = Path(self.create_tempdir().full_path) / "metrics.jsonl"
        rows = [{"step": 5, "eval_loss": 3}, {"step": 10, "eval_loss": 2}, {"step": 15, "eval_loss": 1},
                {"step": 10, "eval_loss": 2.5}, {"step": 15, "eval_loss": 1.5}]  # fmt: skip
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 2')  # and a torn last line
        self.assertEqual([r["eval_loss"] for r in read_metrics_log(path)], [3, 2.5, 1.5])


if __name__ == "__main__":
    absltest.main()
