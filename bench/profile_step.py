"""Where one pre-training step's time goes: the default path's training step, profiled by kernel category.

    .venv/bin/python -m bench.profile_step --model_config mini --batch_size 8     # this CPU
    python -m bench.profile_step --model_config base --batch_size 128            # a GPU: T5-base, nanoT5's batch

The step is the one `pre_train_t5.py` runs, without the Trainer around it: the model built from a T5 v1.1 preset
the way the script builds it (`t5kit.modeling.build_config` + `speed_up_feed_forward`, our attention registered:
blocked on CPU, SDPA on a GPU), dropout 0, bf16 autocast where the hardware has it (`--bf16`), the chunked
`token_cross_entropy`, gradient clipping at 1.0 and fused AdamW, on random token ids (the same shapes as packed
span-corrupted blocks: `--input_length` in, `--target_length` out). After `--warmup` steps it times `--steps` steps
(the mean; a GPU is synchronised after each), then profiles one more with `torch.profiler` and sums the time of each
kernel (GPU) or operator (CPU, self time) into matmul, attention, optimizer and other (elementwise, norms, copies),
with MFU against the `torch.mm` peak measured in the same process (`common.matmul_peak_gflops`).
"""

from __future__ import annotations

import argparse
import time

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from transformers import T5ForConditionalGeneration  # noqa: E402

from t5kit import attention, modeling  # noqa: E402
from t5kit.args import bf16_supported  # noqa: E402
from t5kit.loss import token_cross_entropy  # noqa: E402

# Substrings of kernel (GPU) or operator (CPU) names, checked in this order; the rest is "other".
CATEGORIES = (
    ("attention", ("attention", "fmha", "flash", "blockedattention", "softmax")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "aten::mm", "aten::addmm", "aten::bmm", "aten::linear")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
)


class _VocabOnly:
    """What `build_config` reads from a tokenizer: its length and special-token ids (T5's usual ones)."""

    def __init__(self, size: int):
        self.size, self.pad_token_id, self.eos_token_id = size, 0, 1

    def __len__(self) -> int:
        return self.size


def category(name: str) -> str:
    lowered = name.lower()
    for label, needles in CATEGORIES:
        if any(needle in lowered for needle in needles):
            return label
    return "other"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_config", default="mini", help="T5 v1.1 preset (tiny, mini, small, base, large)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--input_length", type=int, default=512)
    p.add_argument("--target_length", type=int, default=114, help="114: what 568 raw tokens give at noise 0.15")
    p.add_argument("--vocab_size", type=int, default=32000)
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="auto: where the hardware has it")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=15, help="list this many of the slowest kernels / operators")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and bf16_supported())
    attention.register()
    torch.manual_seed(0)
    config = modeling.build_config(args.model_config, _VocabOnly(args.vocab_size), dropout_rate=0.0)
    config._attn_implementation = attention.NAME
    model = T5ForConditionalGeneration(config).to(device).train()
    modeling.speed_up_feed_forward(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    vocab = config.vocab_size
    inputs = torch.randint(2, vocab, (args.batch_size, args.input_length), device=device)
    labels = torch.randint(2, vocab, (args.batch_size, args.target_length), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=inputs, decoder_input_ids=model._shift_right(labels)).logits
            loss = token_cross_entropy(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    sync()
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        seconds.append(time.perf_counter() - start)
    step_seconds = sum(seconds) / len(seconds)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync()
    totals, rows = {}, []
    for event in prof.key_averages():
        if device == "cuda":  # kernels carry device time; CPU-side operators launching them carry none of their own
            us = event.self_device_time_total if event.device_type == torch.autograd.DeviceType.CUDA else 0
        else:
            us = event.self_cpu_time_total
        if us > 0:
            totals[category(event.key)] = totals.get(category(event.key), 0.0) + us / 1e6
            rows.append((us / 1e6, event.count, event.key))
    profiled = sum(totals.values())

    flops = common.t5_train_flops_per_step(config, args.batch_size, args.input_length, args.target_length)
    precision = torch.bfloat16 if bf16 else torch.float32
    peak, _ = common.matmul_peak_gflops(precision, n=common.peak_matrix_size(), max_contention=1.0)
    result = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else common.machine_info()["cpu"],
        "model_config": args.model_config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "precision": "bf16" if bf16 else "fp32",
        "step_seconds": step_seconds,
        "achieved_gflops": flops / step_seconds / 1e9,
        "peak_gflops": peak,
        "mfu": flops / step_seconds / 1e9 / peak,
        "profiled_seconds": profiled,
        "categories": {label: totals.get(label, 0.0) for label, _ in (*CATEGORIES, ("other", ()))},
        "top": sorted(rows, reverse=True)[: args.top],
    }
    print(
        f"{result['device']}: {args.model_config} ({result['parameters']:,} parameters), batch {args.batch_size} x "
        f"{args.input_length} / {args.target_length}, {result['precision']}: {step_seconds:.3f} s/step (mean of "
        f"{args.steps}), {result['achieved_gflops']:,.0f} GFLOP/s = {100 * result['mfu']:.0f}% of the measured "
        f"{result['precision']} torch.mm peak ({peak:,.0f} GFLOP/s)"
    )
    print(f"profiled step: {profiled:.3f} s of {'kernel' if device == 'cuda' else 'operator self'} time")
    for label, secs in result["categories"].items():
        print(f"  {label:10s} {secs:8.3f} s  {100 * secs / profiled:5.1f}%")
    print(f"slowest {args.top}:")
    for secs, count, name in result["top"]:
        print(f"  {secs * 1e3:9.2f} ms  {count:5d}x  {category(name):9s}  {name[:110]}")
    return result


if __name__ == "__main__":
    main()
