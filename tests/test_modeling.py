"""t5kit.modeling.load_model speeds up T5's feed-forward layers (fused tanh GELU for `gelu_new`, no fp32 round trip
under autocast) without changing what is computed or what is saved."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from absl.testing import absltest, parameterized
from transformers import T5ForConditionalGeneration
from transformers.activations import GELUTanh, NewGELUActivation
from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

from t5kit import modeling
from t5kit.args import ModelArguments


class _Vocabulary:
    """What build_config reads from a tokenizer: its size and special ids."""

    pad_token_id, eos_token_id = 0, 1

    def __len__(self):
        return 100


def activations(model) -> list[type]:
    return [type(m.act) for m in model.modules() if isinstance(getattr(m, "act", None), torch.nn.Module)]


class FeedForwardTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        torch.manual_seed(0)
        self.model = modeling.load_model(ModelArguments(model_config="tiny"), _Vocabulary(), default_dropout=0.0)

    def test_every_feed_forward_is_changed_and_config_json_keeps_gelu_new(self):
        config = self.model.config
        layers = config.num_layers + config.num_decoder_layers
        self.assertEqual(activations(self.model), [GELUTanh] * layers)
        gated = [m for m in self.model.modules() if isinstance(m, T5DenseGatedActDense)]
        self.assertEqual([type(m) for m in gated], [modeling._GatedFeedForward] * layers)
        with tempfile.TemporaryDirectory() as tmp:
            self.model.save_pretrained(tmp)
            self.assertEqual(json.loads((Path(tmp) / "config.json").read_text())["dense_act_fn"], "gelu_new")
            plain = T5ForConditionalGeneration.from_pretrained(tmp)  # what other tools load: gelu_new
            self.assertEqual(set(activations(plain)), {NewGELUActivation})
            reloaded = modeling.load_model(ModelArguments(model_name_or_path=tmp), _Vocabulary(), None)
            self.assertEqual(set(activations(reloaded)), {GELUTanh})

    @parameterized.parameters(
        # fp32: float rounding only. bf16 autocast: both round the same bf16 matmul outputs; 5 AdamW steps at lr 1e-3.
        (torch.float32, 1e-5),
        (torch.bfloat16, 5e-3),
    )
    def test_loss_trace_matches_gelu_new(self, dtype, tolerance):
        fused = self.model
        slow = T5ForConditionalGeneration(fused.config)
        slow.load_state_dict(fused.state_dict())
        self.assertEqual(set(activations(slow)), {NewGELUActivation})
        self.assertEqual(set(activations(fused)), {GELUTanh})
        gen = torch.Generator().manual_seed(1)
        inputs = torch.randint(2, 100, (4, 24), generator=gen)
        labels = torch.randint(2, 100, (4, 8), generator=gen)
        traces = []
        for model in (slow, fused):
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            trace = []
            for _ in range(5):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    loss = model(input_ids=inputs, labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                trace.append(loss.item())
            traces.append(trace)
        self.assertLess(traces[1][-1], traces[1][0])  # it trains
        for slow_loss, fused_loss in zip(*traces):
            self.assertAlmostEqual(slow_loss, fused_loss, delta=tolerance * abs(slow_loss))

    def test_gated_layer_computes_the_same_with_and_without_autocast(self):
        """Under bf16 autocast the skipped fp32 round trip is exact: output and gradients are bit-identical to
        transformers' forward. Outside autocast transformers' forward itself runs."""
        ours = [m for m in self.model.modules() if isinstance(m, modeling._GatedFeedForward)][0]
        x = torch.randn(2, 5, self.model.config.d_model)
        for autocast in (True, False):
            results = []
            for forward in (T5DenseGatedActDense.forward, modeling._GatedFeedForward.forward):
                ours.zero_grad()
                inputs = x.clone().requires_grad_()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    out = forward(ours, inputs)
                out.float().square().sum().backward()
                results.append([out, inputs.grad, ours.wi_0.weight.grad, ours.wo.weight.grad])
            self.assertEqual(results[0][0].dtype, torch.bfloat16 if autocast else torch.float32)
            for theirs, mine in zip(*results):
                self.assertTrue(torch.equal(theirs, mine), f"autocast={autocast}")


if __name__ == "__main__":
    absltest.main()
