"""T5 attention, forward + backward: the `blocked` implementation (t5kit/attention.py) against SDPA as T5 calls it.

    .venv/bin/python -m bench.attention                      # the pre-training benchmark's shapes, ~40 s
    .venv/bin/python -m bench.attention --quick --output /tmp/a.md

Shapes: the `mini` model of bench/pretrain_throughput.py (8 heads of 32, batch 8) at its lengths: encoder
self-attention 512 x 512 with the learned position bias (which needs a gradient), decoder self-attention 114 x 114
(causal, biased) and cross-attention 114 x 512 (no bias). Inputs are bf16 where bf16 is fast (as under the default
autocast) and fp32 otherwise; both paths get the same tensors. SDPA is transformers' `sdpa_attention_forward`, the
function T5 calls by default, so the bias reaches PyTorch as a float mask, as in training.

Timing: `--repeats` rounds; each round times each implementation once (forward, then backward), alternating which
goes first; the report gives the median round, and the ratio of medians. Error: the largest |difference| of the
output and of each gradient from a float64 computation of the same attention, relative to the largest float64 value.
A block-size sweep (encoder shape, blocked only) shows why t5kit.attention.BLOCK_SCORES has its value.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

import torch  # noqa: E402
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402

from t5kit import attention  # noqa: E402
from t5kit.args import bf16_supported  # noqa: E402

HEADS, HEAD_DIM, BATCH = 8, 32, 8
SHAPES = [  # name, query length, key length, causal, biased
    ("encoder self-attention", 512, 512, False, True),
    ("decoder self-attention", 114, 114, True, True),
    ("cross-attention", 114, 512, False, False),
]


def make_inputs(batch, q_len, k_len, dtype, biased, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, HEADS, n, HEAD_DIM, generator=gen).to(dtype) for n in (q_len, k_len, k_len))
    bias = torch.randn(1, HEADS, q_len, k_len, generator=gen) * (2.0 if biased else 0.0)
    grad = torch.randn(batch, HEADS, q_len, HEAD_DIM, generator=gen).to(dtype)
    return [q, k, v, bias.requires_grad_(biased)], grad


def run_once(implementation, tensors, grad, causal):
    """One forward and backward as T5Attention makes it; returns (forward s, backward s, output, input grads)."""
    q, k, v, bias = (t.detach().requires_grad_(t.requires_grad or i < 3) for i, t in enumerate(tensors))
    module = SimpleNamespace(is_causal=causal, training=True)
    t0 = time.perf_counter()
    out, _ = implementation(module, q, k, v, None, dropout=0.0, scaling=1.0, position_bias=bias)
    t1 = time.perf_counter()
    out.backward(grad.transpose(1, 2))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out.transpose(1, 2), [q.grad, k.grad, v.grad, bias.grad]


def float64_reference(tensors, grad, causal):
    q, k, v, bias = (t.detach().double().requires_grad_() for t in tensors)
    scores = q @ k.transpose(-1, -2) + bias
    if causal:
        scores = scores.masked_fill(torch.ones_like(scores[0, 0], dtype=torch.bool).triu(1), float("-inf"))
    out = torch.softmax(scores, -1) @ v
    out.backward(grad.double())
    return out, [q.grad, k.grad, v.grad, bias.grad]


def max_relative_error(got, reference):
    pairs = [(g, r) for g, r in zip(got, reference) if g is not None]
    return max(((g.double() - r).abs().max() / r.abs().max()).item() for g, r in pairs)


def compare(name, q_len, k_len, causal, biased, dtype, repeats, batch):
    tensors, grad = make_inputs(batch, q_len, k_len, dtype, biased)
    implementations = {"sdpa": sdpa_attention_forward, "blocked": attention.blocked_attention_forward}
    times = {key: [] for key in implementations}
    results = {}
    for key, fn in implementations.items():  # warm-up, and the outputs for the error check
        *_, out, grads = run_once(fn, tensors, grad, causal)
        results[key] = [out, *grads]
    meter = common.CpuContention().start()
    for round_ in range(repeats):
        order = list(implementations.items())
        for key, fn in order if round_ % 2 == 0 else order[::-1]:
            forward, backward, *_ = run_once(fn, tensors, grad, causal)
            times[key].append(forward + backward)
    contention = meter.stop()
    ref_out, ref_grads = float64_reference(tensors, grad, causal)
    if not biased:
        ref_grads[3] = None
    row = {"shape": name, "q": q_len, "k": k_len, "contention": contention}
    for key in implementations:
        row[key] = statistics.median(times[key])
        row[f"{key}_error"] = max_relative_error(results[key], [ref_out, *ref_grads])
    row["ratio"] = row["sdpa"] / row["blocked"]
    return row


def block_sweep(dtype, repeats, exponents, batch):
    tensors, grad = make_inputs(batch, 512, 512, dtype, True)
    rows = []
    for exponent in exponents:
        with mock.patch.object(attention, "BLOCK_SCORES", 1 << exponent):
            run_once(attention.blocked_attention_forward, tensors, grad, False)
            runs = [run_once(attention.blocked_attention_forward, tensors, grad, False) for _ in range(repeats)]
        seconds = [forward + backward for forward, backward, *_ in runs]
        rows.append((exponent, statistics.median(seconds)))
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="batch 1, 3 repeats, a short sweep (a smoke test)")
    parser.add_argument("--output", default=str(common.RESULTS_DIR / "attention.md"))
    args = parser.parse_args(argv)
    batch = 1 if args.quick else BATCH
    if args.quick:
        args.repeats = 3
    dtype = torch.bfloat16 if bf16_supported() else torch.float32
    dtype_name = "bf16" if dtype == torch.bfloat16 else "fp32"
    started = time.perf_counter()
    rows = [compare(*shape, dtype, args.repeats, batch) for shape in SHAPES]
    sweep = block_sweep(dtype, args.repeats, (17, 19, 21) if args.quick else (16, 17, 18, 19, 20, 21, 22), batch)
    chosen = attention.BLOCK_SCORES.bit_length() - 1

    table = common.markdown_table(
        ["attention", "q x k", "sdpa ms", "blocked ms", "blocked / sdpa speed", "sdpa error", "blocked error"],
        [
            [r["shape"], f"{r['q']} x {r['k']}", f"{r['sdpa'] * 1e3:.1f}", f"{r['blocked'] * 1e3:.1f}",
             f"**{r['ratio']:.2f}x**", f"{r['sdpa_error']:.1e}", f"{r['blocked_error']:.1e}"]
            for r in rows
        ],
    )  # fmt: skip
    sweep_table = common.markdown_table(
        ["block (fp32 scores)", "MB", "encoder fwd + bwd ms"],
        [[f"2^{e}{' (used)' if e == chosen else ''}", f"{(1 << e) * 4 / 2**20:g}", f"{s * 1e3:.1f}"] for e, s in sweep],
    )
    enc = rows[0]
    lines = [
        "## Attention: blocked vs SDPA (forward + backward)",
        "",
        f"Command: `.venv/bin/python -m bench.attention{' --quick' if args.quick else ''}`",
        "",
        f"Batch {batch}, {HEADS} heads of {HEAD_DIM}, {dtype_name} inputs, median of {args.repeats} interleaved"
        " rounds.",
        "",
        table,
        "",
        f"- **blocked / sdpa = {enc['ratio']:.2f}x on the encoder's biased self-attention**"
        f" ({enc['sdpa'] * 1e3:.0f} ms -> {enc['blocked'] * 1e3:.0f} ms per layer, forward + backward); error vs"
        f" float64: sdpa {enc['sdpa_error']:.1e}, blocked {enc['blocked_error']:.1e} (the largest over the output and"
        " the q, k, v, bias gradients).",
        "- Error = max |x - x_float64| / max |x_float64|; bf16 inputs and outputs carry bf16's own rounding (2^-8).",
        "",
        "Block-size sweep (encoder shape, blocked):",
        "",
        sweep_table,
        *common.report_tail(
            max(r["contention"] or 0.0 for r in rows), "while this ran: ratios hold better than times."
        ),
        "",
        f"_{time.perf_counter() - started:.0f} s_",
    ]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return {"rows": rows, "sweep": sweep}


if __name__ == "__main__":
    main()
