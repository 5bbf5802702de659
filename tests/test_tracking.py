"""Trackers never need the network: W&B without a key or server goes offline by itself; TensorBoard writes events.

The offline W&B runs are read back from their local run folder (the .wandb file, with wandb's own protobuf
records): the config holds every flag of every argument group, the history the metric names the sweeps use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import yaml
from absl.testing import absltest

from t5kit import outputs, tracking
from t5kit.args import T5TrainingArguments, parse_args
from t5kit.sweep_configs import logged_keys, program_logged_keys
from t5kit.tasks import get_task
from tests.helpers import REPO, SHARED_DATA, corpus_slice


def _env_without_wandb(tmp: Path, **values: str) -> dict[str, str]:
    """The environment of a user with no W&B account: no WANDB_* variable, no ~/.netrc login (HOME is `tmp`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **values)
    return env


class DefaultTrackingTest(absltest.TestCase):
    """A user with no W&B account and no flag about tracking: W&B logs offline (one line says so) and TensorBoard
    writes events; a run stopped after a checkpoint and resumed continues the same W&B run, each row logged once; the
    final run folder has its model card."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="test_tracking_"))
        cls.corpus = corpus_slice(cls.tmp, lines=600)
        cls.out = cls.tmp / "run"
        argv = ["--train_files", str(cls.corpus), "--vocab_size", "300", "--model_config", "tiny",
                "--input_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "6", "--save_steps", "2",
                "--logging_steps", "1", "--eval_strategy", "steps", "--eval_steps", "3", "--max_eval_samples", "8",
                "--disable_tqdm", "True", "--output_dir", str(cls.out)]  # fmt: skip
        env = _env_without_wandb(cls.tmp, WANDB_DIR=str(cls.tmp))
        # Attempt 1 stops (exit 3) at a NaN loss in step 4: checkpoint-2 is saved, steps 1-3 and the step-3
        # evaluation are logged. Attempt 2 resumes from checkpoint-2 and logs steps 3 and on again.
        attempts = ([sys.executable, "tests/fault_injection.py", "nan_micro:4", "pre_train_t5.py", *argv],
                    [sys.executable, "pre_train_t5.py", *argv, "--resume_from_checkpoint", "latest"])  # fmt: skip
        cls.results = [subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
                       for command in attempts]  # fmt: skip
        folders = sorted((cls.tmp / "wandb").glob("offline-run-*"))  # in time order
        cls.runs = [tracking.read_wandb_run(folder, wait_s=60) for folder in folders]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_w_and_b_goes_offline_by_itself_in_one_line_and_tensorboard_logs(self):
        first, second = self.results
        self.assertEqual(first.returncode, 3, first.stderr[-3000:])  # the NaN stop
        self.assertEqual(second.returncode, 0, second.stderr[-3000:])
        for attempt in self.results:
            lines = [line for line in (attempt.stdout + attempt.stderr).splitlines()
                     if "wandb" in line.lower() or "w&b" in line.lower()]  # fmt: skip
            self.assertLen(lines, 1, lines)  # wandb's own dozen lines are silenced
            self.assertIn("W&B: no API key found: logging offline to", lines[0])
            self.assertIn("--report_to none turns W&B off", lines[0])
        self.assertLen(self.runs, 2)
        for run in self.runs:
            self.assertEqual((run["project"], run["group"], run["name"]), ("t5-toolkit", "pretrain", "pretrain-run"))
            self.assertTrue(run["finished"])
        config = self.runs[1]["config"]
        for flag, value in (("input_length", 32), ("train_files", [str(self.corpus)]), ("model_config", "tiny"),
                            ("max_steps", 6), ("report_to", ["wandb", "tensorboard"])):  # fmt: skip
            self.assertEqual(config[flag], value, flag)  # model, corpus and training flags alike
        sweep = yaml.safe_load((REPO / "sweeps" / "pretrain.yaml").read_text())
        keys = set().union(*self.runs[0]["history"], *self.runs[1]["history"])
        self.assertContainsSubset(program_logged_keys(sweep), keys)  # sweeps/pretrain.yaml's metric among them
        self.assertIn(sweep["metric"]["name"], keys)
        self.assertTrue(list(self.out.glob("**/events.out.tfevents.*")), "TensorBoard event file written")

    def test_the_resumed_run_continues_the_same_wandb_run_logging_each_row_once(self):
        record = json.loads((self.out / tracking.WANDB_RUN_FILE).read_text())
        self.assertEqual([run["id"] for run in self.runs], [record["id"]] * 2)
        self.assertLen(record["local_dirs"], 2)  # both attempts: `wandb sync` uploads them as this one run

        def steps(run, kind):
            return [row["train/global_step"] for row in run["history"] if tracking._row_kind(row) == kind]

        self.assertEqual(steps(self.runs[0], "train"), [1, 2, 3])
        self.assertEqual(steps(self.runs[0], "eval"), [3])
        self.assertEqual(steps(self.runs[1], "train"), [4, 5, 6])  # step 3, logged again from checkpoint-2: not twice
        self.assertEqual(steps(self.runs[1], "eval"), [6, 6])  # during training, and the final evaluation
        # The run folder's own log has every row once too, the same losses as the W&B run.
        rows = tracking.read_metrics_log(self.out / tracking.METRICS_LOG)
        losses = [row["loss"] for row in rows if "loss" in row]
        logged = [row["train/loss"] for run in self.runs for row in run["history"] if "train/loss" in row]
        self.assertEqual(logged, losses)

    def test_the_run_folder_has_a_model_card(self):
        text = (self.out / "README.md").read_text()
        self.assertTrue(text.startswith("---\n"))
        meta = yaml.safe_load(text.split("---\n")[1])
        self.assertEqual(meta["library_name"], "transformers")
        self.assertContainsSubset(["t5", "span-corruption"], meta["tags"])
        self.assertNotIn("base_model", meta)  # from scratch
        results = json.loads((self.out / "all_results.json").read_text())
        # The command of the final attempt, the args.yaml rerun, and the final metrics
        self.assertIn(f"python pre_train_t5.py --train_files {self.corpus}", text)
        self.assertIn("--resume_from_checkpoint latest", text)
        self.assertIn("python pre_train_t5.py --config args.yaml", text)
        for key in ("eval_loss", "eval_span_accuracy", "train_loss"):
            self.assertIn(f"| {key} | {results[key]:.4g} |", text)
        self.assertIn("Span corruption", text)
        self.assertIn(f"W&B run `t5-toolkit/{self.runs[0]['id']}`", text)


class WandbOfflineFineTuneTest(absltest.TestCase):
    def test_offline_run_logs_every_flag_and_the_sweep_metric(self):
        """WANDB_MODE=offline: a tiny SST-2 run's local W&B folder holds the flags and the task's metric keys."""
        tmp = Path(self.create_tempdir().full_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        env.update(HOME=str(tmp), WANDB_MODE="offline", WANDB_DIR=str(tmp), WANDB_SILENT="true", OMP_NUM_THREADS="1")
        out = tmp / "sst2"
        result = subprocess.run([
            sys.executable, str(REPO / "fine_tune_t5.py"), "--benchmark", "glue", "--dataset_name", "sst2",
            "--data_dir", str(SHARED_DATA / "glue"), "--model_config", "tiny", "--vocab_size", "500",
            "--do_train", "--do_eval", "--max_train_samples", "320", "--max_eval_samples", "32", "--max_steps", "12",
            "--eval_strategy", "steps", "--eval_steps", "6", "--logging_steps", "3", "--eval_mode", "rank",
            "--per_device_train_batch_size", "16", "--report_to", "wandb", "--disable_tqdm", "True",
            "--output_dir", str(out),
        ], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        runs = list((tmp / "wandb").glob("offline-run-*"))
        self.assertLen(runs, 1)
        run = tracking.read_wandb_run(runs[0], wait_s=60)
        self.assertEqual((run["project"], run["group"], run["name"]), ("t5-toolkit", "glue/sst2", "glue-sst2-sst2"))
        expected = {"benchmark": "glue", "dataset_name": "sst2", "model_config": "tiny", "max_eval_samples": 32,
                    "max_train_samples": 320, "eval_mode": "rank", "max_steps": 12, "learning_rate": 3e-4}  # fmt: skip
        for flag, value in expected.items():
            self.assertEqual(run["config"].get(flag), value, flag)
        keys = set().union(*run["history"])
        self.assertContainsSubset(logged_keys(get_task("glue", "sst2")), keys)
        sweep = yaml.safe_load((REPO / "sweeps" / "glue_sst2.yaml").read_text())
        self.assertIn(sweep["metric"]["name"], keys)
        evals = [row["eval/accuracy"] for row in run["history"] if "eval/accuracy" in row]
        final = json.loads((out / "all_results.json").read_text())["eval_accuracy"]
        self.assertAlmostEqual(evals[-1], final)
        # The run folder's metrics log (what the offline sweep runner follows) has the same evaluations.
        rows = tracking.read_metrics_log(out / tracking.METRICS_LOG)
        self.assertEqual([r["eval_accuracy"] for r in rows if "eval_accuracy" in r], evals)
        self.assertEqual(json.loads((out / tracking.WANDB_RUN_FILE).read_text())["id"], run["id"])
        meta = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
        self.assertEqual((meta["datasets"], meta["metrics"]), (["nyu-mll/glue"], ["accuracy"]))


class WandbModeTest(absltest.TestCase):
    def env(self, **values):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        env.update(HOME=self.create_tempdir().full_path, **values)
        return mock.patch.dict(os.environ, env, clear=True)

    def test_key_but_unreachable_server_goes_offline_without_waiting(self):
        # Refused; a name that never resolves; an address that a proxy may answer, but not with its certificate.
        for url in ("http://127.0.0.1:9", "https://api.wandb.invalid", "https://10.255.255.1"):
            with self.env(WANDB_API_KEY="x" * 40, WANDB_BASE_URL=url, WANDB_PROBE_TIMEOUT="1"):
                start = time.monotonic()
                with self.assertLogs("t5kit", level="WARNING") as logs:
                    self.assertEqual(tracking.choose_wandb_mode(), "offline")
                self.assertLess(time.monotonic() - start, 5)
                self.assertEqual(os.environ["WANDB_MODE"], "offline")
                self.assertIn("server unreachable", logs.output[0])

    def test_explicit_modes_are_kept(self):
        for mode in ("offline", "disabled"):
            with self.env(WANDB_MODE=mode, WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9"):
                self.assertEqual(tracking.choose_wandb_mode(), mode)

    def test_config_has_every_group_and_no_token(self):
        import dataclasses

        @dataclasses.dataclass
        class Group:
            dataset_name: str = "sst2"
            hub_token: str | None = "hf_secret"

        args = mock.Mock(to_dict=lambda: {"learning_rate": 0.1, "push_to_hub_token": None})
        config = tracking.flags_config(args, (Group(),))
        self.assertEqual(config, {"dataset_name": "sst2", "hub_token": "<HUB_TOKEN>", "learning_rate": 0.1,
                                  "push_to_hub_token": None})  # fmt: skip

    def test_failed_start_restarts_offline(self):
        args = mock.Mock(run_name="r", report_to=["wandb"])
        failing_once = mock.patch("wandb.init", side_effect=[RuntimeError("timed out"), None])
        with self.env(WANDB_PROJECT="p"), failing_once as init:
            with self.assertLogs("t5kit", level="WARNING") as logs:
                tracking.start_wandb_run(args, {"a": 1})
            self.assertEqual(init.call_args_list[1].kwargs["mode"], "offline")
            self.assertEqual(init.call_args_list[1].kwargs["config"], {"a": 1})
            self.assertEqual(os.environ["WANDB_MODE"], "offline")
        self.assertIn("timed out", logs.output[0])
        with self.env(WANDB_PROJECT="p"), mock.patch("wandb.init", side_effect=RuntimeError("no disk")):
            with self.assertLogs("t5kit", level="WARNING"):
                tracking.start_wandb_run(args, {})
        self.assertEqual(args.report_to, ["none"])  # training goes on without W&B

    def test_a_sweep_agents_run_keeps_the_sweeps_project(self):
        out = self.create_tempdir().full_path
        args = T5TrainingArguments(output_dir=out, report_to="wandb")
        run = mock.Mock(id="sweeprun", project="their-project", entity="them", offline=True, dir=f"{out}/w/files")
        for sweep, project in (({"WANDB_SWEEP_ID": "abc123", "WANDB_RUN_ID": "sweeprun"}, None),
                               ({}, tracking.DEFAULT_PROJECT)):  # fmt: skip
            with self.subTest(sweep=bool(sweep)):
                with self.env(WANDB_MODE="offline", **sweep), mock.patch("wandb.init", return_value=run) as init:
                    tracking.configure_trackers(args, "r", "pretrain")
                    self.assertEqual(init.call_args.kwargs["project"], project)
                    self.assertEqual(os.environ.get("WANDB_PROJECT"), project)  # not set for a sweep's run
                    self.assertNotIn("id", init.call_args.kwargs)  # a new run: the agent's WANDB_RUN_ID, or wandb's

    def test_a_resumed_run_continues_the_folders_wandb_run(self):
        out = Path(self.create_tempdir().full_path)
        (out / tracking.WANDB_RUN_FILE).write_text(json.dumps({"id": "first", "project": "p0", "local_dirs": ["a"]}))
        run = mock.Mock(id="first", project="p0", entity="", offline=True, dir=str(out / "b" / "files"))
        for resume, expected in (("latest", {"id": "first", "resume": "allow", "project": "p0"}), (None, {})):
            args = T5TrainingArguments(output_dir=str(out), report_to="wandb", resume_from_checkpoint=resume)
            with self.env(WANDB_MODE="offline"), mock.patch("wandb.init", return_value=run) as init:
                tracking.configure_trackers(args, "r")
            self.assertEqual({k: init.call_args.kwargs.get(k) for k in expected}, expected)
            record = json.loads((out / tracking.WANDB_RUN_FILE).read_text())
            if resume:  # every attempt's local folder
                self.assertEqual(record["local_dirs"], ["a", str(out / "b")])
            else:  # a new run (in a folder whose earlier run went): a new W&B run
                self.assertNotIn("id", init.call_args.kwargs)
                self.assertEqual(record["local_dirs"], [str(out / "b")])

    def test_report_to_defaults_to_wandb_and_tensorboard(self):
        out = self.create_tempdir().full_path
        for argv, expected in (([], ["wandb", "tensorboard"]), (["--report_to", "none"], []),
                               (["--report_to", "wandb"], ["wandb"])):  # fmt: skip
            (parsed,) = parse_args((T5TrainingArguments,), [*argv, "--output_dir", out])
            self.assertEqual(parsed.report_to, expected)


class WandbCallback:
    """Stands in for transformers' WandbCallback (follow_wandb_history finds it by its class name)."""

    def __init__(self, run):
        self.run = run

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        self.run.log({"train/global_step": state.global_step, **logs})


class FollowHistoryTest(absltest.TestCase):
    def test_rows_the_wandb_run_lacks_are_logged_once_and_rows_it_holds_are_not(self):
        """The W&B run holds steps 1-2 and, at step 2, one train row (an attempt killed before wandb wrote its eval
        row); the folder's metrics.jsonl holds steps 1-3 (resumed from checkpoint-3)."""
        out = Path(self.create_tempdir().full_path)
        rows = [{"loss": 1.0, "step": 1}, {"loss": 0.9, "step": 2}, {"eval_loss": 0.95, "step": 2},
                {"loss": 0.8, "step": 3}]  # fmt: skip
        (out / tracking.METRICS_LOG).write_text("".join(json.dumps(row) + "\n" for row in rows))
        (out / tracking.WANDB_RUN_FILE).write_text(json.dumps({"id": "r1", "local_dirs": []}))
        logged = []
        run = mock.Mock(id="r1", offline=False, summary={"train/global_step": 2,
                        tracking.HELD_KEY: {"step": 2, "train": 1}}, log=logged.append)  # fmt: skip
        callback = WandbCallback(run)
        trainer = mock.Mock(args=mock.Mock(output_dir=str(out)), callback_handler=mock.Mock(callbacks=[callback]))
        trainer.is_world_process_zero.return_value = True
        with mock.patch.dict(sys.modules, wandb=mock.Mock(run=run)):
            tracking.follow_wandb_history(trainer)
        self.assertEqual([(row["train/global_step"], set(row) - {"train/global_step"}) for row in logged],
                         [(2, {"eval/loss"}), (3, {"train/loss"})])  # fmt: skip
        logged.clear()
        for step, logs in ((4, {"loss": 0.7}), (4, {"eval_loss": 0.7}), (5, {"loss": 0.6})):
            callback.on_log(None, mock.Mock(global_step=step), None, logs=logs)
        self.assertEqual([row["train/global_step"] for row in logged], [4, 4, 5])
        self.assertEqual(run.summary[tracking.HELD_KEY], {"step": 5, "train": 1})
        # A resume from checkpoint-3 again: the W&B run now holds up to step 5; rows 4 and 5 are not logged again.
        held = tracking._HeldRows(5, {"train": 1})
        self.assertEqual([held.held(step, kind) for step, kind in ((4, "train"), (4, "eval"), (5, "train"),
                                                                   (5, "eval"), (6, "train"))],
                         [True, True, True, False, False])  # fmt: skip


class ModelCardTest(absltest.TestCase):
    def folder(self, flags: dict, results: dict) -> Path:
        out = Path(self.create_tempdir().full_path)
        (out / "args.yaml").write_text(yaml.safe_dump(flags))
        (out / "all_results.json").write_text(json.dumps(results))
        return out

    def test_a_fine_tuned_card_names_its_base_model_task_and_metrics(self):
        out = self.folder({"model_name_or_path": "google/t5-v1_1-small", "benchmark": "glue", "dataset_name": "sst2",
                           "eval_mode": "rank", "run_name": "glue-sst2-x"},
                          {"task": "glue/sst2", "eval_accuracy": 91.25, "eval_runtime": 3.5,
                           "train_loss": 0.2})  # fmt: skip
        text = outputs.write_model_card(out, command="python fine_tune_t5.py --benchmark glue").read_text()
        meta = yaml.safe_load(text.split("---\n")[1])
        self.assertEqual(meta["base_model"], "google/t5-v1_1-small")
        self.assertEqual((meta["datasets"], meta["metrics"]), (["nyu-mll/glue"], ["accuracy"]))
        self.assertContainsSubset(["fine-tuned", "glue", "sst2"], meta["tags"])
        self.assertIn("| eval_accuracy | 91.25 |", text)
        self.assertNotIn("eval_runtime", text)
        self.assertIn("python fine_tune_t5.py --benchmark glue", text)
        # Written again with later results: the card follows all_results.json
        (out / "all_results.json").write_text(json.dumps({"task": "glue/sst2", "eval_accuracy": 92.5}))
        self.assertIn("| eval_accuracy | 92.5 |", outputs.write_model_card(out).read_text())

    def test_a_local_base_model_is_named_in_the_text_only_and_a_users_readme_is_kept(self):
        base = self.create_tempdir().full_path
        out = self.folder({"model_name_or_path": base, "benchmark": "glue", "dataset_name": "rte"}, {})
        (out / "README.md").write_text("my notes\n")
        path = outputs.write_model_card(out)
        self.assertEqual(path.name, outputs.FOREIGN_CARD)
        self.assertEqual((out / "README.md").read_text(), "my notes\n")
        text = path.read_text()
        self.assertNotIn("base_model", yaml.safe_load(text.split("---\n")[1]))  # the hub takes only a hub id there
        self.assertIn(f"the local model folder `{base}`", text)
        self.assertIn("No final metrics yet", text)
        outputs.remove_model_card(out)  # a new run in the folder: only a card written here goes
        self.assertTrue((out / "README.md").is_file())


if __name__ == "__main__":
    absltest.main()
