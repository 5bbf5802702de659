"""`--rms_scaled_updates`: AdamW with each tensor's step scaled by its RMS (t5kit.optim.AdamWScale)."""

from __future__ import annotations

import torch
from absl.testing import absltest

from t5kit.args import T5TrainingArguments, UsageError
from t5kit.optim import MIN_SCALE, AdamWScale, rms
from t5kit.training import T5Trainer
from tests.test_attention import tiny_model


class AdamWScaleTest(absltest.TestCase):
    def test_equals_adamw_with_the_learning_rate_times_the_rms(self):
        """Step t of AdamWScale is AdamW's step t with lr * max(1e-3, RMS(p_t)), tensor by tensor."""
        torch.manual_seed(0)
        shapes = [(4, 3), (5,), (2, 2)]
        ours = [torch.nn.Parameter(torch.randn(s) * scale) for s, scale in zip(shapes, (2.0, 0.01, 0.0))]
        reference = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        lr = 0.05
        optimizer = AdamWScale(ours, lr=lr, betas=(0.9, 0.99), eps=1e-8)
        plain = [torch.optim.AdamW([p], lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0) for p in reference]
        for _ in range(5):
            grads = [torch.randn(s) for s in shapes]
            for p, q, g in zip(ours, reference, grads):
                p.grad, q.grad = g.clone(), g.clone()
            for q, opt in zip(reference, plain):
                opt.param_groups[0]["lr"] = lr * max(MIN_SCALE, rms(q))
                opt.step()
            optimizer.step()
            for p, q in zip(ours, reference):
                torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        self.assertGreater(float(ours[2].detach().abs().max()), 0.0)  # a zero tensor moves (at MIN_SCALE)

    def test_invalid_settings(self):
        p = torch.nn.Parameter(torch.zeros(2))
        with self.assertRaisesRegex(ValueError, "invalid lr"):
            AdamWScale([p], lr=0.0)

    def test_the_trainer_builds_it_with_its_parameter_groups(self):
        tmp = self.create_tempdir().full_path
        args = T5TrainingArguments(output_dir=tmp, rms_scaled_updates=True, learning_rate=0.01, weight_decay=0.1,
                                   report_to="none")  # fmt: skip
        trainer = T5Trainer(model=tiny_model(), args=args)
        optimizer = trainer.create_optimizer()
        self.assertIsInstance(optimizer, AdamWScale)
        self.assertEqual(optimizer.defaults["lr"], 0.01)
        decays = sorted(group["weight_decay"] for group in optimizer.param_groups)
        self.assertEqual(decays, [0.0, 0.1])  # layer norms without decay, as the Trainer groups them
        plain = T5Trainer(model=tiny_model(), args=T5TrainingArguments(output_dir=tmp, report_to="none"))
        self.assertNotIsInstance(plain.create_optimizer(), AdamWScale)

    def test_refused_with_deepspeed(self):
        with self.assertRaisesRegex(UsageError, "--rms_scaled_updates is not supported with --deepspeed"):
            T5TrainingArguments(output_dir="x", rms_scaled_updates=True, deepspeed="zero_stage2_config.json")


if __name__ == "__main__":
    absltest.main()
