"""The `blocked` attention (t5kit/attention.py) computes T5's attention exactly, and hands off to SDPA where it should.

References are float64 computations of softmax(q k^T + bias + mask) v and their autograd gradients, so these tests
measure each implementation's own error rather than agreement between two fast paths.
"""

from __future__ import annotations

from unittest import mock

import torch
from absl.testing import absltest, parameterized
from transformers import T5Config, T5ForConditionalGeneration

from t5kit import attention


def reference(q, k, v, bias, masked):
    """float64 attention and its gradients, the definition the blocked kernel must match."""
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    b64 = bias.detach().double().requires_grad_()
    scores = q64 @ k64.transpose(-1, -2) + b64
    if masked is not None:
        scores = scores.masked_fill(masked, torch.finfo(torch.float64).min)
    return q64, k64, v64, b64, torch.softmax(scores, -1) @ v64


def inputs(batch, heads, q_len, k_len, dtype, bias_batch=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, 16, generator=gen).to(dtype) for n in (q_len, k_len, k_len))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    bias = (2 * torch.randn(bias_batch, heads, q_len, k_len, generator=gen)).requires_grad_()
    grad = torch.randn(batch, heads, q_len, 16, generator=gen).to(dtype)
    return q, k, v, bias, grad


def relative_error(got, want):
    return ((got.double() - want).abs().max() / want.abs().max()).item()


class KernelTest(parameterized.TestCase):
    @parameterized.product(
        dtype=[torch.float32, torch.bfloat16],
        # (block size in scores, batch): one head per block, head groups, whole batch elements, several per block
        blocks=[(16 * 40, 3), (4 * 16 * 40, 3), (1 << 19, 3), (1 << 19, 1)],
        mask=["none", "padding", "causal"],
        bias_batch=[1, 3],
    )
    def test_values_and_gradients_match_float64(self, dtype, blocks, mask, bias_batch):
        block_scores, batch = blocks
        bias_batch = min(bias_batch, batch)
        q_len, k_len = (40, 40) if mask == "causal" else (16, 40)
        q, k, v, bias, grad = inputs(batch, 8, q_len, k_len, dtype, bias_batch)
        masked = None
        if mask == "padding":
            masked = torch.zeros(batch, 1, 1, k_len, dtype=torch.bool)
            masked[0, ..., 30:] = True
            masked[..., 36:] = True  # padding of different lengths; the last keys are padding everywhere
        elif mask == "causal":
            masked = torch.ones(q_len, k_len, dtype=torch.bool).triu_(1)[None, None]
        with mock.patch.object(attention, "BLOCK_SCORES", block_scores):
            out = attention._BlockedAttention.apply(q, k, v, bias, masked)
            out.backward(grad)
        self.assertEqual(out.dtype, dtype)
        q64, k64, v64, b64, want = reference(q, k, v, bias, masked)
        want.backward(grad.double())
        # fp32: float rounding only. bf16: the inputs' and outputs' own rounding (8 bits of mantissa, 2^-8 = 4e-3).
        tol = 2e-5 if dtype == torch.float32 else 2e-2
        self.assertLess(relative_error(out, want), tol)
        for got, ref in ((q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad), (bias.grad, b64.grad)):
            self.assertEqual(got.shape, ref.shape)
            self.assertLess(relative_error(got, ref), tol)
        if masked is not None:  # no gradient reaches a bias entry masked out in every batch element it serves
            never = masked.all(0, keepdim=True) if bias_batch == 1 else masked
            never = never.expand_as(bias.grad)
            self.assertTrue(never.any())
            self.assertEqual(bias.grad.masked_select(never).abs().max().item(), 0.0)

    def test_blocks_cover_every_batch_element_and_head_once(self):
        for batch, heads, q_len, k_len in ((8, 8, 512, 512), (8, 8, 114, 114), (3, 6, 700, 700), (5, 12, 1, 9)):
            seen = torch.zeros(batch, heads, dtype=torch.int)
            for bs, hs in attention.attention_blocks(batch, heads, q_len, k_len):
                seen[bs, hs] += 1
                scores = seen[bs, hs].numel() * q_len * k_len
                self.assertLessEqual(scores, max(attention.BLOCK_SCORES, q_len * k_len))  # one head may exceed it
            self.assertTrue(torch.equal(seen, torch.ones_like(seen)), (batch, heads, q_len, k_len))

    def test_inference_matches_float64_and_builds_no_graph(self):
        q, k, v, bias, _ = inputs(2, 4, 8, 8, torch.float32)
        with torch.no_grad():
            out = attention._BlockedAttention.apply(q, k, v, bias, None)
        self.assertIsNone(out.grad_fn)
        q64, k64, v64, b64, want = reference(q, k, v, bias, None)
        self.assertLess(relative_error(out, want), 2e-5)


def tiny_model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=128,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        dropout_rate=dropout,
        decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config)


def use(model, implementation):
    attention.register()
    model.set_attn_implementation(implementation)
    return model


class ModelTest(parameterized.TestCase):
    def batch(self):
        gen = torch.Generator().manual_seed(1)
        ids = torch.randint(2, 128, (3, 21), generator=gen)
        labels = torch.randint(2, 128, (3, 7), generator=gen)
        mask = torch.ones_like(ids)
        mask[1, 15:] = 0  # padding in the encoder
        decoder_mask = torch.ones_like(labels)
        decoder_mask[2, 5:] = 0  # and in the decoder: a bool mask instead of the causal shortcut
        return dict(input_ids=ids, attention_mask=mask, labels=labels), decoder_mask

    def loss_and_grads(self, model, **batch):
        model.zero_grad()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    @parameterized.parameters(False, True)
    def test_training_step_equals_sdpa_in_fp32(self, decoder_mask):
        model = tiny_model()
        batch, dmask = self.batch()
        if decoder_mask:
            batch["decoder_attention_mask"] = dmask
        want_loss, want = self.loss_and_grads(use(model, "sdpa"), **batch)
        with mock.patch.object(attention, "_BlockedAttention", wraps=attention._BlockedAttention) as kernel:
            loss, got = self.loss_and_grads(use(model, "blocked"), **batch)
        self.assertEqual(kernel.apply.call_count, 6)  # 2 encoder self, 2 decoder self, 2 cross-attention layers
        self.assertAlmostEqual(loss, want_loss, delta=1e-6)
        self.assertEqual(got.keys(), want.keys())
        self.assertIn("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", got)
        for name in want:
            self.assertLess(relative_error(got[name], want[name].double()), 1e-4, name)

    def test_bf16_error_no_larger_than_sdpas(self):
        """Under bf16 autocast both paths round; measured against the same model in fp32, blocked's loss and
        gradient errors must stay within 2x of SDPA's (measured: about equal, 2e-4 loss and 1e-2 gradients)."""
        model = tiny_model(seed=3)
        batch, _ = self.batch()
        ref_loss, ref = self.loss_and_grads(use(model, "sdpa"), **batch)
        ref_flat = torch.cat([g.flatten() for g in ref.values()])
        errors = {}
        for implementation in ("sdpa", "blocked"):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, grads = self.loss_and_grads(use(model, implementation), **batch)
            flat = torch.cat([g.flatten() for g in grads.values()])
            errors[implementation] = (abs(loss - ref_loss), ((flat - ref_flat).norm() / ref_flat.norm()).item())
        self.assertLess(errors["blocked"][1], 2 * errors["sdpa"][1] + 1e-3, errors)
        self.assertLess(errors["blocked"][0], 2 * errors["sdpa"][0] + 1e-3, errors)

    def test_generate_is_unchanged(self):
        model = tiny_model().eval()
        batch, _ = self.batch()
        kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
        want = use(model, "sdpa").generate(**kw)
        self.assertTrue(torch.equal(use(model, "blocked").generate(**kw), want))

    @parameterized.named_parameters(
        ("dropout", dict(dropout=0.1), dict()),
        ("causal_rectangle", dict(), dict(q_len=3, causal=True)),
        ("compiling", dict(), dict(compiling=True)),
        ("additive_mask", dict(), dict(additive=True)),
    )
    def test_hands_off_to_sdpa(self, model_kw, case):
        model = use(tiny_model(**model_kw), "blocked").train()
        stack = model.decoder if case.get("causal") else model.encoder
        module = stack.block[0].layer[0].SelfAttention
        q_len = case.get("q_len", 5)
        q, k, v = torch.randn(2, 4, q_len, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
        mask = torch.zeros(2, 1, q_len, 5) if case.get("additive") else None
        with (
            mock.patch.object(attention, "sdpa_attention_forward", return_value=("sdpa", None)) as sdpa,
            mock.patch.object(torch.compiler, "is_compiling", return_value=case.get("compiling", False)),
        ):
            out, _ = attention.blocked_attention_forward(
                module,
                q,
                k,
                v,
                mask,
                dropout=module.dropout if module.training else 0.0,
                scaling=1.0,
                position_bias=torch.zeros(1, 4, q_len, 5),
            )
        self.assertEqual(out, "sdpa")
        sdpa.assert_called_once()


class SharedKeysTest(parameterized.TestCase):
    """Cross-attention with one key row per `repeats` query rows (rank eval's candidates against one cached copy of
    each example's encoder states) equals attention against the keys copied once per query row."""

    @parameterized.product(
        q_len=[1, 3],
        mask=["none", "padding", "per_query"],
        path=["blocked", "sdpa"],  # scaling != 1 sends the folded call to SDPA, as a GPU would
    )
    def test_equals_attention_over_copied_keys(self, q_len, mask, path):
        batch, repeats, heads, k_len = 3, 4, 4, 7
        module = tiny_model().decoder.block[0].layer[1].EncDecAttention  # cross-attention: not causal
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(batch * repeats, heads, q_len, 8, generator=gen)
        k, v = (torch.randn(batch, heads, k_len, 8, generator=gen) for _ in range(2))
        attend = None
        if mask == "padding":
            attend = torch.ones(batch, 1, 1, k_len, dtype=torch.bool)
            attend[0, ..., 4:] = False
            attend[2, ..., 6:] = False
        elif mask == "per_query":
            attend = torch.rand(batch, 1, q_len, k_len, generator=gen) > 0.3
            attend[..., 0] = True  # every query sees at least one key
        bias = torch.randn(1, heads, q_len, k_len, generator=gen)
        scaling = 1.0 if path == "blocked" else 0.5

        def run(keys, values, mask):
            return attention.blocked_attention_forward(
                module, q, keys, values, mask, scaling=scaling, position_bias=bias
            )[0]

        copied = [t.repeat_interleave(repeats, dim=0) for t in (k, v)]
        want = run(*copied, None if attend is None else attend.repeat_interleave(repeats, dim=0))
        with mock.patch.object(attention, "sdpa_attention_forward", wraps=attention.sdpa_attention_forward) as sdpa:
            got = run(k, v, attend)
        self.assertEqual(sdpa.called, path == "sdpa")
        self.assertEqual(got.shape, (batch * repeats, q_len, heads, 8))
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)

    def test_refuses_what_cannot_share_keys(self):
        model = tiny_model()
        cross = model.decoder.block[0].layer[1].EncDecAttention
        causal = model.decoder.block[0].layer[0].SelfAttention
        q, k = torch.randn(6, 4, 1, 8), torch.randn(3, 4, 5, 8)
        for module, keys, mask, message in (
            (causal, k, None, "only cross-attention"),  # self-attention rows never share a cache row
            (cross, torch.randn(4, 4, 5, 8), None, "not a multiple"),
            (cross, k, torch.ones(6, 1, 1, 5, dtype=torch.bool), "attention mask batch 6"),
        ):
            with self.assertRaisesRegex(ValueError, message):
                attention.blocked_attention_forward(module, q, keys, keys, mask, scaling=1.0)


class FlexTest(parameterized.TestCase):
    """FlexAttention with T5's bias in the score_mod, the GPU training path. Its forward runs on CPU (compiled or as
    FlexAttention's unfused reference); its backward is GPU-only and is checked by bench/gpu_checks.py."""

    @parameterized.product(
        dtype=[torch.float32, torch.bfloat16],
        mask=["none", "padding", "causal"],
        bias_batch=[1, 3],
    )
    def test_forward_matches_float64(self, dtype, mask, bias_batch):
        q_len, k_len = (40, 40) if mask == "causal" else (16, 40)
        q, k, v, bias, _ = inputs(3, 8, q_len, k_len, dtype, bias_batch)
        keep, masked = None, None
        if mask == "padding":
            keep = torch.ones(3, 1, 1, k_len, dtype=torch.bool)
            keep[0, ..., 30:] = False
            keep[..., 36:] = False
            masked = ~keep
        elif mask == "causal":
            masked = torch.ones(q_len, k_len, dtype=torch.bool).triu_(1)[None, None]
        with torch.no_grad():
            out = attention.flex_biased_attention(
                q.detach(), k.detach(), v.detach(), bias.detach(), keep, causal=mask == "causal", compiled=False
            )
        self.assertEqual(out.dtype, dtype)
        *_, want = reference(q, k, v, bias, masked)
        self.assertLess(relative_error(out, want), 2e-5 if dtype == torch.float32 else 2e-2)

    def test_compiled_forward_matches_float64(self):
        """The kernel torch.compile builds from the same score_mod (the CPU inductor backend here)."""
        q, k, v, bias, _ = inputs(2, 4, 16, 24, torch.float32)
        keep = torch.ones(2, 1, 1, 24, dtype=torch.bool)
        keep[1, ..., 20:] = False
        with torch.no_grad():
            out = attention.flex_biased_attention(q.detach(), k.detach(), v.detach(), bias.detach(), keep)
        *_, want = reference(q, k, v, bias, ~keep)
        self.assertLess(relative_error(out, want), 2e-5)

    @parameterized.parameters(False, True)
    def test_model_in_training_mode_equals_eager(self, decoder_mask):
        """The dispatch passes the right bias, mask and causality for every attention of the model: with the flex
        path allowed on CPU, a training-mode forward (no grad: no CPU backward) equals the eager implementation."""
        model = tiny_model().train()
        batch, dmask = ModelTest().batch()
        if decoder_mask:
            batch["decoder_attention_mask"] = dmask
        with torch.no_grad():
            want = use(model, "eager")(**batch, use_cache=False).logits
            with (
                mock.patch.object(attention, "FLEX_DEVICES", ("cpu",)),
                mock.patch.object(attention, "_compiled_flex_attention", return_value=attention.flex_attention),
                mock.patch.object(attention, "flex_biased_attention", wraps=attention.flex_biased_attention) as flex,
            ):
                got = use(model, "blocked")(**batch, use_cache=False).logits
        self.assertEqual(flex.call_count, 6)  # 2 encoder self, 2 decoder self, 2 cross-attention layers
        self.assertLess(relative_error(got, want.double()), 1e-5)

    @parameterized.named_parameters(
        ("cpu", dict(), dict(devices=("cuda",))),
        ("eval", dict(), dict(eval=True)),
        ("dropout", dict(dropout=0.1), dict()),
        ("additive_mask", dict(), dict(additive=True)),
    )
    def test_not_used(self, model_kw, case):
        model = use(tiny_model(**model_kw), "blocked").train(not case.get("eval"))
        module = model.encoder.block[0].layer[0].SelfAttention
        q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
        mask = torch.zeros(2, 1, 5, 5) if case.get("additive") else None
        with (
            mock.patch.object(attention, "FLEX_DEVICES", case.get("devices", ("cpu",))),
            mock.patch.object(attention, "flex_biased_attention") as flex,
        ):
            attention.blocked_attention_forward(
                module,
                q,
                k,
                v,
                mask,
                dropout=module.dropout if module.training else 0.0,
                scaling=1.0,
                position_bias=torch.zeros(1, 4, 5, 5),
            )
        flex.assert_not_called()


if __name__ == "__main__":
    absltest.main()
