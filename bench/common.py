"""Helpers shared by the benchmark scripts: paths, machine description, matmul peak, step timing, FLOP counts.

Benchmarks never reach the network: importing this module sets the offline switches (hub, datasets, W&B).
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path

for _key, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
    ("WANDB_MODE", "disabled"),
    ("TOKENIZERS_PARALLELISM", "false"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
):
    os.environ.setdefault(_key, _value)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Real text lives beside the checkout (<repo>/../shared/data); it is read in place, never copied into the repo.
SHARED_DATA = Path(os.environ.get("T5_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS_DIR = BENCH / "results"
WORK_DIR = BENCH / "out"  # git-ignored: run folders, cached tokenizers

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# The machine


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor() or "unknown", flags


def machine_info() -> dict[str, str]:
    model, flags = _cpuinfo()
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": model,
        "cpu_cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "cpu_flags": ", ".join(simd) or "none of avx2/avx512f/avx512_bf16/amx",
        "torch_cpu_capability": str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def machine_markdown(info: dict[str, str] | None = None) -> str:
    info = info or machine_info()
    return "\n".join(f"- **{key}**: {value}" for key, value in info.items())


# ---------------------------------------------------------------------------------------------------------------
# Matmul peak


def matmul_peak_gflops(dtype: torch.dtype, n: int = 2048, min_seconds: float = 1.0, min_repeats: int = 3) -> float:
    """Best-of-repeats GFLOP/s of an n x n x n `torch.mm` in `dtype` (2 n^3 FLOPs each), after one warm-up."""
    a = torch.randn(n, n, dtype=torch.float32).to(dtype)
    b = torch.randn(n, n, dtype=torch.float32).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up (kernel selection, page faults)
    best, repeats, start = float("inf"), 0, time.perf_counter()
    while repeats < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
        repeats += 1
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------------------------------------------------------
# Timing training steps


class StepTimer(TrainerCallback):
    """Records `time.perf_counter()` at the end of every optimizer step.

    The interval between the ends of steps k and k+1 is one whole training step as the Trainer runs it: fetching
    and collating the batch, forward, backward, optimizer and scheduler step, callbacks.
    """

    def __init__(self):
        self.step_ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.step_ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ends.append(time.perf_counter())

    def timed(self, warmup_steps: int, steps: int) -> list[float]:
        """Durations of steps warmup_steps+1 .. warmup_steps+steps (needs warmup_steps >= 1)."""
        if warmup_steps < 1:
            raise ValueError("warmup_steps must be >= 1: the first step's start is not a step end")
        ends = self.step_ends[warmup_steps - 1 : warmup_steps + steps]
        if len(ends) != steps + 1:
            raise RuntimeError(f"expected {warmup_steps + steps} step ends, recorded {len(self.step_ends)}")
        return [b - a for a, b in zip(ends, ends[1:])]


# ---------------------------------------------------------------------------------------------------------------
# FLOPs


def t5_matmul_flops_per_example(config, input_length: int, target_length: int) -> dict[str, float]:
    """Analytic forward-pass matmul FLOPs of one T5 example (2 FLOPs per multiply-accumulate).

    Counts every matmul as the implementation runs it: encoder self-attention projections and both attention
    products (full L x L, no masking savings), feed-forward (3 matrices for gated-GELU, 2 otherwise), decoder
    self-attention, cross-attention (K/V projections over the encoder tokens, products over L_in) and the LM head
    over the vocabulary. Ignores layer norms, softmax, the relative position bias and the embedding lookup
    (< 2% here). Training FLOPs ~= 3x forward (backward = 2x forward).
    """
    d, ff, vocab = config.d_model, config.d_ff, config.vocab_size
    inner = config.num_heads * config.d_kv
    ff_mats = 3 if str(config.feed_forward_proj).startswith("gated") else 2
    li, lt = input_length, target_length
    enc_layers = config.num_layers
    dec_layers = config.num_decoder_layers if config.num_decoder_layers is not None else config.num_layers
    encoder = enc_layers * (li * (4 * d * inner + ff_mats * d * ff) + 2 * li * li * inner)
    decoder = dec_layers * (
        lt * (4 * d * inner + 2 * d * inner + ff_mats * d * ff)  # self-attn q,k,v,o + cross-attn q,o + FFN
        + li * 2 * d * inner  # cross-attn k, v over the encoder output
        + 2 * lt * lt * inner  # self-attention products
        + 2 * lt * li * inner  # cross-attention products
    )
    head = lt * d * vocab
    macs = {"encoder": encoder, "decoder": decoder, "lm_head": head}
    forward = {key: 2.0 * value for key, value in macs.items()}
    forward["total"] = sum(forward.values())
    return forward


def t5_train_flops_per_step(config, batch_size: int, input_length: int, target_length: int) -> float:
    return 3.0 * batch_size * t5_matmul_flops_per_example(config, input_length, target_length)["total"]


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def markdown_table(headers: list[str], rows: list[list], align: list[str] | None = None) -> str:
    align = align or ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
