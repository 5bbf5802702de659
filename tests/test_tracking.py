"""Trackers never need the network: W&B without a key or server goes offline by itself; TensorBoard writes events.

The offline W&B runs are read back from their local run folder (the .wandb file, with wandb's own protobuf
records): the config holds every flag of every argument group, the history the metric names the sweeps use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import yaml
from absl.testing import absltest

import pre_train_t5
from t5kit import tracking
from t5kit.sweep_configs import logged_keys, program_logged_keys
from t5kit.tasks import get_task
from tests.helpers import REPO, SHARED_DATA, corpus_slice


class OfflineTrackingTest(absltest.TestCase):
    def test_wandb_without_key_goes_offline_and_tensorboard_logs(self):
        tmp = Path(self.create_tempdir().full_path)
        corpus = corpus_slice(tmp, lines=600)
        env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT")}
        env.update(HOME=str(tmp), WANDB_DIR=str(tmp), WANDB_SILENT="true")  # no ~/.netrc login either
        with mock.patch.dict(os.environ, env, clear=True), self.assertLogs("t5kit", level="WARNING") as logs:
            pre_train_t5.main([
                "--train_files", str(corpus), "--vocab_size", "300", "--model_config", "tiny", "--input_length", "32",
                "--per_device_train_batch_size", "4", "--max_steps", "4", "--logging_steps", "2",
                "--save_strategy", "no", "--report_to", "wandb,tensorboard", "--output_dir", str(tmp / "run"),
            ])  # fmt: skip
            self.assertEqual(os.environ["WANDB_MODE"], "offline")
        self.assertTrue(any("no API key found, logging offline" in line for line in logs.output))
        runs = list((tmp / "wandb").glob("offline-run-*"))
        self.assertLen(runs, 1)
        self.assertTrue(list(runs[0].glob("**/*.wandb")), "the offline run holds its history file")
        import wandb

        wandb.finish()  # main() leaves the run open, as the Trainer's callback does; the file is complete after this
        run = tracking.read_wandb_run(runs[0], wait_s=60)  # wandb's service may still be writing it
        self.assertEqual((run["project"], run["group"], run["name"]), ("t5-toolkit", "pretrain", "pretrain-run"))
        for flag, value in (("input_length", 32), ("train_files", [str(corpus)]), ("model_config", "tiny"),
                            ("max_steps", 4)):  # fmt: skip
            self.assertEqual(run["config"][flag], value, flag)  # model, corpus and training flags alike
        sweep = yaml.safe_load((REPO / "sweeps" / "pretrain.yaml").read_text())
        keys = set().union(*run["history"])
        self.assertContainsSubset(program_logged_keys(sweep), keys)  # sweeps/pretrain.yaml's metric among them
        self.assertIn(sweep["metric"]["name"], keys)
        self.assertTrue(list((tmp / "run").glob("**/events.out.tfevents.*")), "TensorBoard event file written")


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


if __name__ == "__main__":
    absltest.main()
