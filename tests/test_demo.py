"""`make demo` end to end, shrunk to seconds with --quick: data from the Python install, pre-train, fine-tune."""

import json
import shutil
import tempfile
from pathlib import Path

from absl.testing import absltest

import demo


class DemoTest(absltest.TestCase):
    def test_quick_demo_runs_offline_and_writes_both_run_folders(self):
        tmp = Path(tempfile.mkdtemp())
        try:
            results = demo.main(["--output_dir", str(tmp), "--quick"])
            self.assertIn("eval_loss", results["pretrain"])
            self.assertIn("eval_accuracy", results["finetune"])
            self.assertIn("eval_accuracy", results["random_init"])  # the control, fine-tuned the same way
            control = json.loads((tmp / "finetune_random_init" / "all_results.json").read_text())
            self.assertEqual(control["eval_accuracy"], results["random_init"]["eval_accuracy"])
            rows = (tmp / "data" / "train.jsonl").read_text().splitlines()
            self.assertGreater(len(rows), 100)
            self.assertIn(json.loads(rows[0])["target"], demo.DEMO_MODULES)
            predictions = (tmp / "finetune" / "predictions" / "custom_custom_validation.jsonl").read_text()
            self.assertTrue(predictions.startswith('{"input": "module:'))
            # `make demo` again: every stage is complete, nothing is trained again, and the same numbers print
            model = (tmp / "finetune" / "model.safetensors").read_bytes()
            again = demo.main(["--output_dir", str(tmp), "--quick"])
            self.assertEqual(again["finetune"]["eval_accuracy"], results["finetune"]["eval_accuracy"])
            self.assertEqual(again["pretrain"]["eval_loss"], results["pretrain"]["eval_loss"])
            self.assertEqual((tmp / "finetune" / "model.safetensors").read_bytes(), model)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    absltest.main()
