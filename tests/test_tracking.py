"""Trackers never need the network: W&B without a key goes offline by itself; TensorBoard writes event files."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

from absl.testing import absltest

import pre_train_t5
from tests.helpers import corpus_slice


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
        self.assertTrue(list((tmp / "run").glob("**/events.out.tfevents.*")), "TensorBoard event file written")


if __name__ == "__main__":
    absltest.main()
