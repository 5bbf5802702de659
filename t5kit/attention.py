"""Cache-blocked attention for T5 on CPU, registered as the `blocked` attention implementation.

T5 adds a learned relative position bias to every attention score. That bias needs a gradient, so PyTorch's SDPA
cannot use its fused CPU kernel and falls back to the math path. The math path writes the full batch x heads x query
x key score tensor to memory several times per layer (scores, the bias add, the safe-softmax checks and casts, and
the same again in backward). On 2 CPU cores that memory traffic, not the matmuls, is most of the encoder's step.

`blocked_attention_forward` computes the same function block by block. Each block is a few batch elements or heads
whose fp32 scores fit in about 4 MB, so they stay in cache from the score matmul through the softmax to the value
matmul. Backward uses the flash-attention identity dS = P * (dP - rowsum(dO * O)), so it never re-reads dP for a
separate softmax-backward reduction. The core runs in fp32 whatever the input dtype, which makes it more accurate
than the bf16 math path as well as faster (measured in bench/attention.py; tests/test_attention.py checks values
and gradients against a float64 reference).

It runs wherever the model is on CPU in eager mode without attention dropout, decoding steps included, so that
teacher-forced scoring, rank eval and generate compute the same numbers. Everything else (GPUs, where SDPA has fused
kernels that support a bias gradient; torch.compile, which fuses the math path itself; attention dropout; custom
additive masks) goes to transformers' own SDPA function.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "blocked"
BLOCK_SCORES = 1 << 19  # fp32 scores per block: 2 MB, one L2; measured best of 0.25-16 MB (bench/attention.py)


def _blocks(batch: int, heads: int, q_len: int, k_len: int) -> list[tuple[slice, slice]]:
    """(batch slice, head slice) pairs covering batch x heads, each with about BLOCK_SCORES scores: several whole
    batch elements when one is small, else a group of heads (a divisor of `heads`) of one batch element."""
    rows = max(1, BLOCK_SCORES // (q_len * k_len))
    if rows >= heads:
        step = rows // heads
        return [(slice(b, min(b + step, batch)), slice(0, heads)) for b in range(0, batch, step)]
    group = max(g for g in range(1, rows + 1) if heads % g == 0)
    return [(slice(b, b + 1), slice(h, h + group)) for b in range(batch) for h in range(0, heads, group)]


class _BlockedAttention(torch.autograd.Function):
    """softmax(q k^T + bias + mask) v. `bias` is (1 or batch, heads, q, k); `masked` is a bool tensor broadcastable
    to (batch, 1, q, k), True where a key must not be attended to, or None.

    Precision follows FlashAttention: the scores, softmax, dP and dS are fp32 whatever the input dtype; with bf16
    inputs the matmuls whose inner dimension is the sequence (P V, P^T dO, dS K, dS^T Q) take P and dS rounded to
    bf16, as autocast's math path does, at twice the fp32 speed."""

    @staticmethod
    def forward(ctx, query, key, value, bias, masked):
        with torch.autocast(query.device.type, enabled=False):  # the fp32 parts must not be autocast to bf16
            return _BlockedAttention._forward(ctx, query, key, value, bias, masked)

    @staticmethod
    def _forward(ctx, query, key, value, bias, masked):
        low = query.dtype
        q, k = query.float(), key.float()
        batch, heads, q_len, _ = q.shape
        blocks = _blocks(batch, heads, q_len, k.shape[2])
        out = torch.empty(query.shape, dtype=low, device=q.device)
        keep = any(ctx.needs_input_grad)  # (grad mode is off inside forward; this says whether backward will run)
        probs = []
        for bs, hs in blocks:
            scores = torch.matmul(q[bs, hs], k[bs, hs].transpose(-1, -2))
            if bias is not None:
                scores.add_(bias[bs if bias.shape[0] > 1 else slice(0, 1), hs])
            if masked is not None:
                scores.masked_fill_(masked[bs if masked.shape[0] > 1 else slice(0, 1)], torch.finfo(torch.float32).min)
            p = torch.softmax(scores, dim=-1)
            torch.matmul(p.to(low), value[bs, hs], out=out[bs, hs])
            if keep:
                probs.append(p)
        ctx.blocks = blocks
        ctx.bias_batch = None if bias is None else bias.shape[0]
        ctx.save_for_backward(query, key, value, out, *probs)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        with torch.autocast(grad_out.device.type, enabled=False):
            return _BlockedAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        query, key, value, out, *probs = ctx.saved_tensors
        need_q, need_k, need_v, need_bias, _ = ctx.needs_input_grad
        low = query.dtype
        g, g32, v32 = grad_out.to(low), grad_out.float(), value.float()
        rowsum = (g32 * out.float()).sum(-1, keepdim=True)  # rowsum(dP * P), from the output instead of the scores
        dq, dk, dv = (
            torch.empty_like(t) if need else None for t, need in ((query, need_q), (key, need_k), (value, need_v))
        )
        dbias = None
        if need_bias:
            dbias = torch.zeros((ctx.bias_batch, *query.shape[1:3], key.shape[2]), dtype=torch.float32, device=g.device)
        for (bs, hs), p in zip(ctx.blocks, probs):
            if need_v:
                torch.matmul(p.to(low).transpose(-1, -2), g[bs, hs], out=dv[bs, hs])
            ds = torch.matmul(g32[bs, hs], v32[bs, hs].transpose(-1, -2)).sub_(rowsum[bs, hs]).mul_(p)
            if need_bias:
                if ctx.bias_batch > 1:
                    dbias[bs, hs] = ds
                else:
                    dbias[0, hs] += ds.sum(0)
            ds = ds.to(low)
            if need_q:
                torch.matmul(ds, key[bs, hs], out=dq[bs, hs])
            if need_k:
                torch.matmul(ds.transpose(-1, -2), query[bs, hs], out=dk[bs, hs])
        return dq, dk, dv, dbias, None


def _applies(module, query, key, attention_mask, dropout: float, scaling: float | None) -> bool:
    if query.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    if dropout > 0 or scaling != 1.0:  # T5 neither scales scores nor, with dropout off, drops attention weights
        return False
    if attention_mask is None and getattr(module, "is_causal", False):
        # The mask function left causality to SDPA's is_causal: a square block, or one query that sees every key.
        return query.shape[2] in (1, key.shape[2])
    return attention_mask is None or attention_mask.dtype == torch.bool  # not a custom additive mask


def blocked_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_bias: torch.Tensor | None = None,
    **kwargs,
):
    """transformers' attention-function signature; returns (batch, q, heads, head_dim) output and no weights."""
    if not _applies(module, query, key, attention_mask, dropout, scaling):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
            position_bias=position_bias, **kwargs,
        )
    q_len = query.shape[2]
    if attention_mask is None and getattr(module, "is_causal", False) and q_len > 1:  # causality was left to SDPA
        masked = torch.ones(q_len, q_len, dtype=torch.bool, device=query.device).triu_(1)[None, None]
    else:
        masked = None if attention_mask is None else ~attention_mask
    if position_bias is not None and position_bias.dtype != torch.float32:
        position_bias = position_bias.float()
    out = _BlockedAttention.apply(query, key, value, position_bias, masked)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Registers `blocked` with transformers (idempotent); its masks are SDPA's (bool, True = attend)."""
    AttentionInterface.register(NAME, blocked_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
