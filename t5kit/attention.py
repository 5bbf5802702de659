"""Cache-blocked attention for T5 on CPU, registered as the `blocked` attention implementation.

T5 adds a learned relative position bias to every attention score. That bias needs a gradient, so PyTorch's SDPA
cannot use its fused CPU kernel and falls back to the math path. The math path writes the full batch x heads x query
x key score tensor to memory several times per layer (scores, the bias add, the safe-softmax checks and casts, and
the same again in backward). On 2 CPU cores that memory traffic, not the matmuls, is most of the encoder's step.

`blocked_attention_forward` computes the same function block by block. Each block is a few batch elements or heads
whose fp32 scores fit in about 2 MB, so they stay in cache from the score matmul through the softmax to the value
matmul, and in backward from dP through the softmax backward to dQ and dK. The core runs in fp32 whatever the input
dtype: its error against float64 is at most the math path's (bench/attention.py measures both speed and error;
tests/test_attention.py checks values and gradients against a float64 reference).

It runs wherever the model is on CPU in eager mode without attention dropout, decoding steps included, so that
teacher-forced scoring, rank eval and generate compute the same numbers.

On a GPU, training without attention dropout goes to `flex_biased_attention`: FlexAttention with the bias added
inside the fused kernel (a `score_mod` reading the bias tensor), whose backward also computes the bias gradient, so
the bias never forces the unfused path. It runs compiled (torch.compile of flex_attention; inlined when the whole
model is compiled). `python -m bench.gpu_checks` checks its values and gradients against float64 on the GPU before
it measures any speed; tests/test_attention.py checks the forward on CPU (FlexAttention has no CPU backward).

Everything else (GPU evaluation and generation, where SDPA's fused kernels take a bias without a gradient;
torch.compile on CPU, which fuses the math path itself; attention dropout; custom additive masks) goes to
transformers' own SDPA function.
"""

from __future__ import annotations

import functools

import torch
from torch.nn.attention.flex_attention import flex_attention
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "blocked"
FLEX_DEVICES = ("cuda",)  # where training attention runs in FlexAttention (its backward is GPU-only)
BLOCK_SCORES = 1 << 19  # fp32 scores per block: 2 MB, one L2; measured best of 0.25-16 MB (bench/attention.py)


def attention_blocks(batch: int, heads: int, q_len: int, k_len: int) -> list[tuple[slice, slice]]:
    """(batch slice, head slice) pairs covering batch x heads, each with about BLOCK_SCORES scores: several whole
    batch elements when one is small, else a group of heads (a divisor of `heads`) of one batch element."""
    rows = max(1, BLOCK_SCORES // (q_len * k_len))
    if rows >= heads:
        step = rows // heads
        return [(slice(b, min(b + step, batch)), slice(0, heads)) for b in range(0, batch, step)]
    group = max(g for g in range(1, rows + 1) if heads % g == 0)
    # Head-major: consecutive blocks share a head group, so its slice of the bias gradient stays in cache.
    return [(slice(b, b + 1), slice(h, h + group)) for h in range(0, heads, group) for b in range(batch)]


class _BlockedAttention(torch.autograd.Function):
    """softmax(q k^T + bias + mask) v, computed in fp32 whatever the input dtype (the output and the gradients are
    cast back to it). `bias` is (1 or batch, heads, q, k); `masked` is a bool tensor broadcastable to
    (batch, 1, q, k), True where a key must not be attended to, or None.

    Rounding P and dS to bf16 for the sequence-long matmuls (as FlashAttention does) measured ~7% faster per call on
    this CPU but doubled the q/k/v gradient error and raised the bias gradient's from 1e-6 to 8e-3 (bench/attention.py
    shapes), so every matmul here stays fp32."""

    @staticmethod
    def forward(ctx, query, key, value, bias, masked):
        with torch.autocast(query.device.type, enabled=False):  # the fp32 core must not be autocast to bf16
            q, k, v = query.float(), key.float(), value.float()
            batch, heads, q_len, _ = q.shape
            blocks = attention_blocks(batch, heads, q_len, k.shape[2])
            out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
            keep = any(ctx.needs_input_grad)  # (grad mode is off inside forward; this says whether backward runs)
            probs = []
            for bs, hs in blocks:
                scores = torch.matmul(q[bs, hs], k[bs, hs].transpose(-1, -2))
                if bias is not None:
                    scores.add_(bias[bs if bias.shape[0] > 1 else slice(0, 1), hs])
                if masked is not None:
                    fill = torch.finfo(torch.float32).min
                    scores.masked_fill_(masked[bs if masked.shape[0] > 1 else slice(0, 1)], fill)
                p = torch.softmax(scores, dim=-1)
                torch.matmul(p, v[bs, hs], out=out[bs, hs])
                if keep:
                    probs.append(p)
        ctx.blocks = blocks
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.dtypes = query.dtype, key.dtype, value.dtype
        ctx.save_for_backward(q, k, v, *probs)
        return out.to(query.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, *probs = ctx.saved_tensors
        need_q, need_k, need_v, need_bias, _ = ctx.needs_input_grad
        with torch.autocast(grad_out.device.type, enabled=False):
            g = grad_out.float()
            dq, dk, dv = (torch.empty_like(t) if need else None for t, need in ((q, need_q), (k, need_k), (v, need_v)))
            dbias = torch.zeros(ctx.bias_shape, dtype=torch.float32, device=g.device) if need_bias else None
            for (bs, hs), p in zip(ctx.blocks, probs):
                if need_v:
                    torch.matmul(p.transpose(-1, -2), g[bs, hs], out=dv[bs, hs])
                dp = torch.matmul(g[bs, hs], v[bs, hs].transpose(-1, -2))
                ds = torch._softmax_backward_data(dp, p, -1, torch.float32)  # p * (dp - sum(p * dp)), one pass
                if need_bias:
                    if dbias.shape[0] > 1:
                        dbias[bs, hs] = ds
                    elif ds.shape[0] == 1:
                        dbias[0, hs] += ds[0]
                    else:
                        dbias[0, hs] += ds.sum(0)
                if need_q:
                    torch.matmul(ds, k[bs, hs], out=dq[bs, hs])
                if need_k:
                    torch.matmul(ds.transpose(-1, -2), q[bs, hs], out=dk[bs, hs])
        grads = [None if grad is None else grad.to(dtype) for grad, dtype in zip((dq, dk, dv), ctx.dtypes)]
        return *grads, dbias, None


def _applies(module, query, key, attention_mask, dropout: float, scaling: float | None) -> bool:
    if query.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    if dropout > 0 or scaling != 1.0:  # T5 neither scales scores nor, with dropout off, drops attention weights
        return False
    if attention_mask is None and getattr(module, "is_causal", False):
        # The mask function left causality to SDPA's is_causal: a square block, or one query that sees every key.
        return query.shape[2] in (1, key.shape[2])
    return attention_mask is None or attention_mask.dtype == torch.bool  # not a custom additive mask


@functools.cache
def _compiled_flex_attention():
    return torch.compile(flex_attention)  # static shapes first, dynamic after a shape changes (fine-tuning)


def flex_biased_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    bias: torch.Tensor | None,
    keep: torch.Tensor | None = None,
    causal: bool = False,
    compiled: bool = True,
) -> torch.Tensor:
    """softmax(q k^T + bias) v over the allowed keys, T5's attention (no 1/sqrt(d) scale), in one FlexAttention call.

    `bias` is (1 or batch, heads, q, k) and may need a gradient: the score_mod reads it, so FlexAttention's backward
    returns its gradient. `keep` is a bool tensor broadcastable to (batch, 1, q, k), True where a key may be attended
    to; `causal` adds k <= q. Both are applied in the score_mod (no block sparsity: T5's decoder self-attention is a
    small share of a step). Returns (batch, heads, q, head_dim) in the query's dtype. `compiled=False` runs
    FlexAttention's unfused reference (for tests; it materialises the scores)."""
    batch, _, q_len, _ = query.shape
    k_len = key.shape[2]
    per_example_bias = bias is not None and bias.shape[0] > 1
    if keep is not None:
        keep = keep.expand(batch, 1, q_len, k_len)

    def score_mod(score, b, h, q_idx, kv_idx):
        if bias is not None:
            score = score + bias[b if per_example_bias else 0, h, q_idx, kv_idx]
        if keep is not None:
            score = torch.where(keep[b, 0, q_idx, kv_idx], score, -float("inf"))
        if causal:
            score = torch.where(kv_idx <= q_idx, score, -float("inf"))
        return score

    run = flex_attention if not compiled or torch.compiler.is_compiling() else _compiled_flex_attention()
    return run(query, key, value, score_mod=score_mod, scale=1.0)


def _flex_applies(module, query, key, attention_mask, dropout: float, scaling: float | None) -> bool:
    """Training on a FLEX_DEVICES device without attention dropout, with T5's unscaled scores and a bool mask."""
    if query.device.type not in FLEX_DEVICES or not module.training or dropout > 0 or scaling != 1.0:
        return False
    if attention_mask is None and getattr(module, "is_causal", False):
        return query.shape[2] == key.shape[2]
    return attention_mask is None or attention_mask.dtype == torch.bool


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
    if query.shape[0] != key.shape[0]:
        return _over_shared_keys(module, query, key, value, attention_mask, dropout, scaling, position_bias, **kwargs)
    if _flex_applies(module, query, key, attention_mask, dropout, scaling):
        causal = attention_mask is None and getattr(module, "is_causal", False) and query.shape[2] > 1
        out = flex_biased_attention(query, key, value, position_bias, attention_mask, causal)
        return out.transpose(1, 2).contiguous(), None
    if not _applies(module, query, key, attention_mask, dropout, scaling):
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            position_bias=position_bias,
            **kwargs,
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


def _over_shared_keys(module, query, key, value, attention_mask, dropout, scaling, position_bias, **kwargs):
    """Cross-attention whose keys and values are shared by `repeats` consecutive query rows: query row b * repeats + j
    reads key row b. Rank eval scores several candidates per example this way against one cached copy of each
    example's encoder states, instead of copying the states once per candidate.

    Without causality every query position sees the same keys, so the rows' queries are folded into one row's query
    positions, attended (blocked, or SDPA where that applies), and unfolded."""
    batch, heads, q_len, head_dim = query.shape
    repeats = batch // key.shape[0]
    if getattr(module, "is_causal", False):
        raise ValueError(
            f"query batch {batch} != key batch {key.shape[0]} in causal self-attention: only cross-attention may "
            "share keys across query rows"
        )
    if batch != repeats * key.shape[0]:
        raise ValueError(f"query batch {batch} is not a multiple of key batch {key.shape[0]}")
    for name, extra in (("attention mask", attention_mask), ("position bias", position_bias)):
        if extra is not None and extra.shape[0] not in (1, key.shape[0]):
            raise ValueError(f"{name} batch {extra.shape[0]} must be 1 or the key batch {key.shape[0]}")
    if attention_mask is not None and attention_mask.shape[2] > 1:  # per-query-position rows: one set per fold
        attention_mask = attention_mask.repeat(1, 1, repeats, 1)
    if position_bias is not None and position_bias.shape[2] > 1:
        position_bias = position_bias.repeat(1, 1, repeats, 1)
    folded = query.view(key.shape[0], repeats, heads, q_len, head_dim).transpose(1, 2)
    folded = folded.reshape(key.shape[0], heads, repeats * q_len, head_dim)
    out, _ = blocked_attention_forward(
        module,
        folded,
        key,
        value,
        attention_mask,
        dropout=dropout,
        scaling=scaling,
        position_bias=position_bias,
        **kwargs,
    )  # (key batch, repeats * q_len, heads, head_dim)
    return out.reshape(batch, q_len, heads, head_dim), None


def register() -> str:
    """Registers `blocked` with transformers (idempotent); its masks are SDPA's (bool, True = attend)."""
    AttentionInterface.register(NAME, blocked_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
