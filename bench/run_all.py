"""Runs every benchmark and gathers their markdown into bench/results.md (`make bench`).

    .venv/bin/python -m bench.run_all                       # all benchmarks at their defaults
    .venv/bin/python -m bench.run_all --only pretrain_throughput
    .venv/bin/python -m bench.run_all --quick --results_dir /tmp/b --output /tmp/b/results.md   # smoke test

Each benchmark is a module bench/<name>.py (run as `python -m bench.<name>`) that accepts `--output FILE` and
writes its markdown section there. It runs in its own process (so one benchmark's threads, caches and memory never
colour another's timings), one after the other. At the end it prints a summary table (each benchmark's bold
findings, its wall time) and puts it in results.md under the machine description. To add a benchmark: write the
module and append it to BENCHMARKS with the flags of its quick mode. Budget: `make bench` should stay under 20
minutes on 2 cores. Measured end to end: 8 min on an AVX2-only CPU (fp32) and 10-12 min on an AVX-512 BF16 one
(six pre-training variants, the 1.6M-parameter SST-2 model, rank vs generate in bf16 and fp32), with the
pre-training tokenizer and compiled kernels cached; a fresh clone adds their first-time cost and `make setup`
(12.9 min in all). Each part is also bounded by its own limits (idle waits, 60 s of timed steps per variant, 300 s
per fine-tuning side).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)


@dataclass
class Benchmark:
    name: str  # bench/<name>.py, run as python -m bench.<name>
    args: list[str] = field(default_factory=list)  # flags for the full run
    quick_args: list[str] = field(default_factory=list)  # flags for --quick (seconds, tiny model)


TINY_CORPUS = common.SHARED_DATA / "corpus" / "tinyshakespeare" / "part-000.txt"

BENCHMARKS: list[Benchmark] = [
    Benchmark("attention", quick_args=["--quick"]),
    Benchmark(
        "pretrain_throughput",
        quick_args=[
            "--model_config",
            "tiny",
            "--input_length",
            "64",
            "--steps",
            "2",
            "--warmup_steps",
            "1",
            "--vocab_size",
            "1000",
            "--train_files",
            str(TINY_CORPUS),
            "--bf16",
            "off",
            "--wait_idle_s",
            "0",
            "--max_discarded",
            "0",
            "--compile",
            "off",
            "--work_dir",
            str(common.WORK_DIR / "quick"),
        ],
    ),  # fmt: skip
    Benchmark(
        "pretrain_quality", quick_args=["--quick", "--work_dir", str(common.WORK_DIR / "quick" / "pretrain_quality")]
    ),
    Benchmark("finetune_sst2", quick_args=["--quick"]),
    Benchmark("preprocessing", quick_args=["--quick", "--work_dir", str(common.WORK_DIR / "quick" / "preprocessing")]),
    Benchmark("collator", quick_args=["--quick"]),
]


def headlines(markdown: str, limit: int = 4) -> list[str]:
    """A section's findings for the summary: its first `limit` bullets with a bold part (or its failure note)."""
    body = markdown.split("\nMachine:")[0]  # the machine description's bullets are bold too
    found = [line[2:].replace("**", "") for line in body.splitlines() if line.startswith("- ") and "**" in line]
    if not found and "**failed**" in markdown:
        found = [line.replace("**", "") for line in markdown.splitlines() if "**failed**" in line]
    return found[:limit]


def run_benchmark(bench: Benchmark, output: Path, quick: bool) -> tuple[str, float, int]:
    """Runs one benchmark script; returns (its markdown or a failure note, seconds, exit status)."""
    output.unlink(missing_ok=True)
    extra = bench.quick_args if quick else bench.args
    # Run from the repository (the cwd) with a relative output path, so the reports' commands hold no machine path.
    output_arg = os.path.relpath(output, common.REPO)
    command = [sys.executable, "-m", f"bench.{bench.name}", *extra, "--output", output_arg]
    started = time.perf_counter()
    status = subprocess.call(command, cwd=common.REPO)
    seconds = time.perf_counter() - started
    if status == 0 and output.is_file():
        return output.read_text(encoding="utf-8").strip(), seconds, status
    rerun = f"`.venv/bin/python bench/{bench.name}.py`"
    note = f"## {bench.name}\n\n**failed** (exit status {status}); run {rerun} to see why."
    return note, seconds, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick mode (a smoke test, not numbers)")
    parser.add_argument("--results_dir", default=str(common.RESULTS_DIR), help="per-benchmark markdown goes here")
    parser.add_argument("--output", default=str(common.BENCH / "results.md"), help="combined markdown")
    args = parser.parse_args(argv)
    known = [bench.name for bench in BENCHMARKS]
    unknown = sorted(set(args.only or []) - set(known))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    selected = [bench for bench in BENCHMARKS if not args.only or bench.name in args.only]
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)

    sections, failures, rows = [], 0, []
    total_started = time.perf_counter()
    for bench in selected:
        print(f"=== {bench.name}{' (quick)' if args.quick else ''}", flush=True)
        markdown, seconds, status = run_benchmark(bench, results_dir / f"{bench.name}.md", args.quick)
        failures += status != 0
        sections.append(f"{markdown}\n\n_{bench.name}: {seconds:.0f} s wall in all_")
        findings = "<br>".join(headlines(markdown)) or "(see its section)"
        rows.append(f"| {bench.name} | {'ok' if status == 0 else 'FAILED'} | {seconds:.0f} | {findings} |")
    total = time.perf_counter() - total_started
    table = [
        "| benchmark | status | wall s | findings |",
        "|---|---|---:|---|",
        *rows,
        f"| all | {'ok' if not failures else f'{failures} failed'} | {total:.0f} | |",
    ]
    header = [
        "# Benchmarks" + (" (quick mode: a smoke test, not numbers to quote)" if args.quick else ""),
        "",
        "Generated by `make bench` (`.venv/bin/python -m bench.run_all`); each section is also in "
        f"{os.path.relpath(args.results_dir, common.REPO)}.",
        "",
        "Machine:",
        "",
        common.machine_markdown(),
        "",
        "Summary:",
        "",
        *table,
    ]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    print("\n" + "\n".join(table))
    print(f"\nwritten to {out}" + (f" ({failures} benchmark(s) failed)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
