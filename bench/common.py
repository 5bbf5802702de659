"""Helpers shared by the benchmark scripts: paths, machine description, matmul peak, step timing, FLOP counts.

Benchmarks never reach the network: importing this module sets the offline switches (hub, datasets, W&B).
"""

from __future__ import annotations

import datetime
import os
import platform
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
RESULTS_DIR = BENCH / "results"
WORK_DIR = BENCH / "out"  # git-ignored: run folders, cached tokenizers

from tests.helpers import find_shared_data  # noqa: E402  (benchmarks run from the repository: python -m bench.X)

SHARED_DATA = find_shared_data(REPO)  # real text, read in place and never copied into the repository

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


def report_tail(worst_contention: float | None, consequence: str, info: dict[str, str] | None = None) -> list[str]:
    """Closing markdown lines of a benchmark report: a bold contention warning where other processes took more
    than 10% of the CPUs (`consequence` completes the sentence), then the machine description."""
    lines = []
    if (worst_contention or 0.0) > 0.10:
        share = f"{worst_contention:.0%}"
        lines.append(f"- **CPU contention: other processes took up to {share} of the CPUs {consequence}**")
    return lines + ["", "Machine:", "", machine_markdown(info)]


class CpuContention:
    """How much of the machine's CPU time other processes used between start() and stop().

    Busy time of all CPUs from /proc/stat minus this process's own CPU time (and its children's), as a fraction of
    wall time x cores. On a shared machine a benchmark's timings are only trustworthy when this is near 0.
    """

    def __init__(self):
        self._start = None

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> "CpuContention":
        self._start = (time.perf_counter(), self._busy_seconds(), self._own_seconds())
        return self

    def stop(self) -> float | None:
        """Fraction (0..1) of all cores' time used by other processes; None where /proc/stat is unavailable."""
        wall0, busy0, own0 = self._start
        busy1 = self._busy_seconds()
        if busy0 is None or busy1 is None:
            return None
        wall = time.perf_counter() - wall0
        others = (busy1 - busy0) - (self._own_seconds() - own0)
        return max(0.0, others / (wall * (os.cpu_count() or 1)))


# ---------------------------------------------------------------------------------------------------------------
# Matmul peak


def peak_matrix_size() -> int:
    """n of the n x n x n product that measures the matmul peak: 8192 on a GPU (smaller products leave it
    launch-bound, which would flatter MFU), 2048 on a CPU."""
    return 8192 if torch.cuda.is_available() else 2048


def matmul_peak_gflops(
    dtype: torch.dtype,
    n: int = 2048,
    min_seconds: float = 1.0,
    min_repeats: int = 3,
    max_seconds: float = 10.0,
    max_contention: float = 0.10,
    device: str | None = None,
) -> tuple[float, float | None]:
    """(best GFLOP/s, its contention) of an n x n x n `torch.mm` in `dtype` (2 n^3 FLOPs), after one warm-up.

    Repeats for at least `min_seconds` and `min_repeats`; repeats during which other processes took more than
    `max_contention` of the CPUs do not count towards `min_repeats` (it keeps going up to `max_seconds`).
    `device` defaults to the GPU where there is one (where the Trainer would train), else the CPU.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a = torch.randn(n, n, dtype=torch.float32, device=device).to(dtype)
    b = torch.randn(n, n, dtype=torch.float32, device=device).to(dtype)
    out = torch.empty(n, n, dtype=dtype, device=device)
    torch.mm(a, b, out=out)  # warm-up (kernel selection, page faults)
    sync()
    best, best_share, clean, start = float("inf"), None, 0, time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if (clean >= min_repeats and elapsed >= min_seconds) or (elapsed >= max_seconds and best < float("inf")):
            break
        meter = CpuContention().start()
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        seconds = time.perf_counter() - t0
        share = meter.stop()
        is_clean = share is None or share <= max_contention
        clean += is_clean
        if seconds < best and (is_clean or clean == 0):
            best, best_share = seconds, share
    return 2 * n**3 / best / 1e9, best_share


# ---------------------------------------------------------------------------------------------------------------
# Timing training steps


def wait_for_idle(max_seconds: float, max_contention: float = 0.10, probe_seconds: float = 1.0) -> float:
    """Sleeps until other processes take at most `max_contention` of the CPUs over `probe_seconds`, or until
    `max_seconds` have passed; returns the seconds waited (one probe on an idle machine)."""
    start = time.perf_counter()
    while True:
        meter = CpuContention().start()
        time.sleep(probe_seconds)
        share = meter.stop()
        waited = time.perf_counter() - start
        if share is None or share <= max_contention or waited >= max_seconds:
            return waited


class StepTimer(TrainerCallback):
    """Times optimizer steps, and keeps only those that ran without CPU contention from other processes.

    A step's duration is the interval between the ends of steps k-1 and k: fetching and collating the batch,
    forward, backward, optimizer and scheduler step, callbacks (on a GPU, a step ends once its kernels finish).
    The first `warmup_steps` steps are never kept. After them, each step's contention (the CPU share other
    processes took during it, `CpuContention`) is recorded; a step above `max_contention` is discarded (on a shared
    2-core machine one busy neighbour makes a step several times slower) and training goes on until `steps` clean
    steps are in, or for at most `max_discarded` extra steps, or until the timed steps add up to `max_seconds` (the
    Trainer is told to stop then; give it max_steps >= warmup_steps + steps + max_discarded).
    With `wait_idle_seconds` > 0, training also pauses (outside any timed step) after the warm-up and after each
    discarded step until the machine is idle again, for at most that many seconds in all.
    """

    def __init__(
        self,
        warmup_steps: int,
        steps: int,
        max_discarded: int = 0,
        max_contention: float = 0.10,
        max_seconds: float = float("inf"),
        wait_idle_seconds: float = 0.0,
    ):
        if warmup_steps < 1 or steps < 1:
            raise ValueError("warmup_steps and steps must be >= 1 (the first step's start is not a step end)")
        self.warmup_steps, self.steps = warmup_steps, steps
        self.max_discarded, self.max_contention, self.max_seconds = max_discarded, max_contention, max_seconds
        self.wait_idle_seconds = wait_idle_seconds
        self.on_train_begin()

    def on_train_begin(self, *args, **kwargs):
        self.steps_done = 0
        self.waited = 0.0
        self.window: list[tuple[float, float | None]] = []  # (seconds, contention) of each step after warm-up
        self.warmup_seconds: list[float] = []  # the untimed warm-up steps (the first holds any compilation)
        self._last_end = time.perf_counter()
        self._contention = CpuContention()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # the step's kernels have run, not just been queued
        now = time.perf_counter()
        self.steps_done += 1
        if self.steps_done > self.warmup_steps:
            self.window.append((now - self._last_end, self._contention.stop()))
        else:
            self.warmup_seconds.append(now - self._last_end)
        if (
            len(self.clean()) >= self.steps
            or len(self.window) >= self.steps + self.max_discarded
            or sum(t for t, _ in self.window) >= self.max_seconds
        ):
            control.should_training_stop = True
        elif self.steps_done == self.warmup_steps or (self.window and not self._is_clean(self.window[-1][1])):
            budget = self.wait_idle_seconds - self.waited
            if budget > 0:
                self.waited += wait_for_idle(budget, self.max_contention)
        self._last_end = time.perf_counter()
        self._contention.start()
        return control

    def _is_clean(self, share: float | None) -> bool:
        return share is None or share <= self.max_contention

    def clean(self) -> list[tuple[float, float | None]]:
        return [(t, c) for t, c in self.window if self._is_clean(c)]

    def kept(self) -> list[tuple[float, float | None]]:
        """The steps to report: the clean ones (at most `steps`), or, where none was clean, every timed step."""
        clean = self.clean()[: self.steps]
        return clean if clean else list(self.window)

    def summary(self) -> dict:
        kept = self.kept()
        if not kept:
            raise RuntimeError(f"no step after the {self.warmup_steps} warm-up steps was recorded")
        shares = [c for _, c in kept if c is not None]
        return {
            "step_seconds": [t for t, _ in kept],
            "discarded_steps": len(self.window) - len(kept) if self.clean() else 0,
            "all_contended": not self.clean(),
            "contention": max(shares) if shares else None,
            "waited_seconds": self.waited,
            "warmup_step_seconds": list(self.warmup_seconds),
        }


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
