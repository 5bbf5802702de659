"""Pre-training throughput: this toolkit's default path against the plain Seq2SeqTrainer recipe, in one process.

    .venv/bin/python -m bench.pretrain_throughput                      # defaults: mini, batch 8, 512/114, ~3 min
    .venv/bin/python -m bench.pretrain_throughput --model_config tiny --input_length 64 --steps 3 --warmup_steps 1 \\
        --vocab_size 1000 --train_files ../shared/data/corpus/tinyshakespeare/part-000.txt --output /tmp/t.md

Variants, all on the same model shape (`--model_config`, T5 v1.1 preset), the same tokenizer, the same packed blocks
of the same corpus, the same global batch and the same input / target lengths:

- **ours**: `pre_train_t5.main([...])` on its default path: bf16 autocast where the hardware has fast bf16
  (AVX-512 BF16 / AMX / GPU), else fp32; dropout 0.0, the vectorised `data_collators.T5DataCollator`, `T5Trainer`.
- **ours, other precision / + --torch_compile**: the rest of the precision x compile grid (nanoT5's table): ours
  with `--bf16 True|False` and with `--torch_compile` (its first step compiles, outside the timed window).
- **plain**: `Seq2SeqTrainer` with its defaults (fp32, AdamW, no tuning), the model built with T5Config's default
  dropout 0.1, fed by `PerExampleSpanCorruptionCollator` (bench/plain_collator.py): the usual port of the Flax T5
  example, a Python loop over examples that draws a numpy `random_spans_noise_mask` per example and builds inputs /
  labels per example.
- **plain + bf16**: the same with `bf16=True` (autocast).

bf16 variants run where bf16 matmuls are fast (measured bf16 peak >= half the fp32 one) or with `--bf16 on`.
Elsewhere bf16 is emulated (~1 GFLOP/s on an AVX2-only CPU, a step would take minutes), so the table shows plain +
bf16's lower bound FLOPs / measured bf16 peak instead.

Timing method: each variant trains `warmup_steps + steps` optimizer steps (more if steps are discarded, below) in
this process. A `common.StepTimer` callback records `time.perf_counter()` at the end of every step; a step's time is
the interval between the ends of consecutive steps, so it covers the whole step (batch fetch + collation, forward,
backward, optimizer) while model construction, corpus packing, the first `warmup_steps` steps (allocator and kernel
warm-up) and the saving after training stay outside. For `ours` the callback is attached by wrapping the script's
`T5Trainer` class for the duration of the call (the script itself is unchanged). Nothing is logged inside the
window for either variant (ours logs at its last step only; plain's default logging_steps is 500).
This machine is shared, and with 2 cores one busy neighbour makes a 2-thread step several times slower, so each
timed step also records the CPU share other processes took during it (/proc/stat minus our own CPU time); a step
above `--max_contention` is discarded and training continues until `--steps` clean steps are in (at most
`--max_discarded` extra steps, `--max_seconds_per_variant` of timed steps); after the warm-up and after a discarded
step, training pauses (outside any timed step) until the CPU is free, for at most `--wait_idle_s` per variant.
The report says how many steps were discarded and flags the run when any kept measurement was contended.
The speed of this machine also drifts over minutes, by more than a variant takes, so the headline pair (ours on its
default path and plain fp32) runs `--rounds` times (default 3), plain first in every other round; their rows pool
the steps of all rounds, and the report lists each round's ratio.

Throughput is input (encoder) tokens per second: kept steps x batch x input_length / their summed seconds (packed
blocks: no padding). FLOPs are counted analytically (`common.t5_matmul_flops_per_example`: every matmul of the
encoder, decoder, cross-attention and LM head at the real input / target lengths, training = 3x forward). The usual
6 x params x tokens shortcut is printed for reference only: with input tokens it overcounts an encoder-decoder
(the decoder and LM head see only the ~114 target tokens). MFU = achieved analytic FLOP/s over the `torch.mm` peak
measured in the same run (n = 2048, best of repeats) in the variant's precision.

Tokenizer: the first run lets `pre_train_t5.main` train it (`--vocab_size 32000`, the T5 size, SentencePiece
unigram). The 10.8 MB corpus cannot support 32000 pieces; SentencePiece then names the largest size it can build and
the run is repeated at that size (8000 as a last resort). The tokenizer is cached under bench/out/ and later runs
pass it with `--tokenizer_name_or_path`. The plain recipe gets the very tokenizer and packed blocks ours trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import time
from pathlib import Path

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

import torch  # noqa: E402
from t5kit.args import bf16_supported  # noqa: E402
from t5kit.tokenizer import NUM_SENTINELS  # noqa: E402
from bench.plain_collator import PerExampleSpanCorruptionCollator, check_span_corruption  # noqa: E402
from transformers import (  # noqa: E402
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    T5Config,
    T5ForConditionalGeneration,
    TrainerCallback,
)

DEFAULT_PRECISION = "bf16" if bf16_supported() else "fp32"  # what pre_train_t5.py picks here without --bf16
DEFAULT_CORPUS = "corpus"  # every .txt under <shared data>/corpus (~10.8 MB)
FALLBACK_VOCAB = 8000


# ---------------------------------------------------------------------------------------------------------------
# Corpus and tokenizer


def corpus_files(args) -> list[str]:
    if args.train_files:
        return [str(Path(f).resolve()) for f in args.train_files]
    files = sorted(str(p) for p in (common.SHARED_DATA / DEFAULT_CORPUS).rglob("*.txt"))
    if not files:
        raise SystemExit(f"no corpus under {common.SHARED_DATA / DEFAULT_CORPUS} (set T5_SHARED_DATA)")
    return files


def tokenizer_cache_dir(files: list[str], vocab_size: int, work_dir: Path) -> Path:
    stamp = json.dumps([vocab_size, [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]])
    return work_dir / "tokenizers" / hashlib.sha256(stamp.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------
# Variants


def run_ours(
    args,
    files: list[str],
    work_dir: Path,
    precision: str,
    compile_model: bool = False,
    timer=None,
    on_trainer=None,
    extra_argv: tuple[str, ...] = (),
) -> dict:
    """pre_train_t5.main in `precision` (`--bf16 True|False`; the default path where it is the machine's default,
    DEFAULT_PRECISION), with `compile_model` plus --torch_compile. The first time, the tokenizer is trained by main
    itself (--vocab_size; retried smaller if the corpus cannot support the size) and then cached for later runs.
    `timer` replaces the StepTimer built from args, `on_trainer(trainer)` is called once the T5Trainer is built
    (its callbacks then follow the timer), `extra_argv` goes after the flags above (argparse: the last wins)."""
    import pre_train_t5
    from t5kit.args import UsageError

    key = ours_key(precision, compile_model)
    output_dir = work_dir / key
    total = args.warmup_steps + args.steps + args.max_discarded
    common_argv = [
        "--train_files", *files,
        "--model_config", args.model_config,
        "--output_dir", str(output_dir),
        "--max_steps", str(total),
        "--per_device_train_batch_size", str(args.batch_size),
        "--input_length", str(args.input_length),
        "--logging_steps", str(total),
        "--save_strategy", "no",
        "--validation_split_percentage", "0",
        "--report_to", "none",
        "--disable_tqdm", "True",
        "--seed", str(args.seed),
        "--bf16", str(precision == "bf16"),
        "--torch_compile", str(compile_model),  # explicit: pre_train_t5.py compiles by default on a GPU
        *extra_argv,
    ]  # fmt: skip
    cache = tokenizer_cache_dir(files, args.vocab_size, work_dir)
    info_file = cache / "bench_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else None
    timer = timer or common.StepTimer(
        args.warmup_steps,
        args.steps,
        args.max_discarded,
        args.max_contention,
        args.max_seconds_per_variant,
        args.wait_idle_s,
    )
    trainers = []

    class SeeTrainer(TrainerCallback):
        def on_trainer(self, trainer):
            if on_trainer is not None:
                on_trainer(trainer)
            trainers.append(trainer)

    size, attempts, started = args.vocab_size, [], time.perf_counter()
    while True:
        shutil.rmtree(output_dir, ignore_errors=True)
        tokenizer_argv = ["--tokenizer_name_or_path", str(cache)] if info else ["--vocab_size", str(size)]
        try:
            results = pre_train_t5.main(common_argv + tokenizer_argv, callbacks=[timer, SeeTrainer()])
            break
        except UsageError as err:
            limit = re.search(r"value <= (\d+)", str(err))
            if info or not limit:
                raise
            attempts.append(f"{size}: too large for the corpus")
            if len(attempts) >= 3:
                raise
            new_size = int(limit.group(1)) + NUM_SENTINELS  # SentencePiece counts pieces; sentinels come on top
            size = new_size if new_size < size else FALLBACK_VOCAB
    trainer = trainers[-1]
    tokenizer = trainer.processing_class
    if info is None:
        attempts.append(f"{size}: ok")
        shutil.rmtree(cache, ignore_errors=True)
        tokenizer.save_pretrained(str(cache))
        info = {
            "requested_vocab_size": args.vocab_size,
            "vocab_size": len(tokenizer),
            "attempts": attempts,
            "first_run_seconds_incl_training": round(time.perf_counter() - started, 1),
        }
        info_file.write_text(json.dumps(info, indent=2))
    return {
        "key": key,
        "name": ours_name(precision, compile_model),
        "compiled": compile_model,
        "precision": results["precision"],
        "dropout": trainer.model.config.dropout_rate,
        "collator": type(trainer.data_collator).__name__ + " (vectorised)",
        **timer.summary(),
        "parameters": results["model_parameters"],
        "config": trainer.model.config,
        "target_length": results["target_length"],
        "raw_length": results["raw_length"],
        "collator_obj": trainer.data_collator,
        # Handed to the plain recipe so both train on exactly the same tokenizer and packed blocks.
        "tokenizer": tokenizer,
        "tokenizer_info": info,
        "blocks": trainer.train_dataset.blocks.with_format(None),
    }


def ours_key(precision: str, compiled: bool) -> str:
    """ "ours" is the default path on this machine; other variants say how they differ from it."""
    return "ours" + ("" if precision == DEFAULT_PRECISION else f"_{precision}") + ("_compile" if compiled else "")


def ours_name(precision: str, compiled: bool) -> str:
    if precision == DEFAULT_PRECISION:
        name = "ours (pre_train_t5.main, default path)"
    else:
        name = f"ours, --bf16 {precision == 'bf16'}"
    return name + (" + --torch_compile" if compiled else "")


def run_plain(
    args, blocks, tokenizer, target_length: int, work_dir: Path, bf16: bool, timer=None, callbacks=()
) -> dict:
    """Seq2SeqTrainer with its defaults; `timer` replaces the StepTimer built from args, `callbacks` follow it."""
    from t5kit.modeling import build_config

    output_dir = work_dir / ("plain_bf16" if bf16 else "plain")
    shutil.rmtree(output_dir, ignore_errors=True)
    plain_dropout = T5Config().dropout_rate  # 0.1: what a from-scratch T5Config gets unless told otherwise
    config = build_config(args.model_config, tokenizer, dropout_rate=plain_dropout)
    torch.manual_seed(args.seed)
    model = T5ForConditionalGeneration(config)
    collator = PerExampleSpanCorruptionCollator(tokenizer, 0.15, 3.0, args.input_length, target_length, seed=args.seed)
    timed_steps = args.bf16_steps if bf16 else args.steps
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + timed_steps + args.max_discarded,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # transformers refuses bf16 on a GPU-less machine otherwise
    )
    timer = timer or common.StepTimer(
        args.warmup_steps,
        timed_steps,
        args.max_discarded,
        args.max_contention,
        args.max_seconds_per_variant,
        args.wait_idle_s,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=blocks,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[timer, *callbacks],
    )
    trainer.train()
    return {
        "key": "plain_bf16" if bf16 else "plain",
        "name": "plain Seq2SeqTrainer" + (" + bf16" if bf16 else ""),
        "precision": "bf16" if bf16 else "fp32",
        "dropout": config.dropout_rate,
        "collator": "per-example numpy loop",
        **timer.summary(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": config,
        "collator_obj": collator,
    }


def mean_step(run: dict) -> float:
    return sum(run["step_seconds"]) / len(run["step_seconds"])


def pool(rounds: list[dict]) -> dict:
    """One variant's rounds as one run: every round's kept steps (the first round's warm-up, collator and config)."""
    run = dict(rounds[0])
    run["step_seconds"] = [t for r in rounds for t in r["step_seconds"]]
    run["discarded_steps"] = sum(r["discarded_steps"] for r in rounds)
    run["all_contended"] = all(r["all_contended"] for r in rounds)
    shares = [r["contention"] for r in rounds if r["contention"] is not None]
    run["contention"] = max(shares) if shares else None
    run["waited_seconds"] = sum(r["waited_seconds"] for r in rounds)
    run["rounds"] = len(rounds)
    return run


def collate_ms(collator, examples: list[dict], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        collator(examples)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model_config", default="mini", help="T5 v1.1 preset (tiny, mini, small, base, large)")
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per variant")
    p.add_argument("--warmup_steps", type=int, default=2, help="untimed steps before the timed window (>= 1)")
    p.add_argument("--batch_size", type=int, default=8, help="global batch (1 process)")
    p.add_argument("--input_length", type=int, default=512, help="encoder input length (target length follows)")
    p.add_argument("--vocab_size", type=int, default=32000, help="tokenizer size asked for (see the docstring)")
    p.add_argument("--train_files", nargs="+", help="corpus files (default: every .txt under shared/data/corpus)")
    p.add_argument(
        "--bf16", choices=["auto", "on", "off"], default="auto",
        help="the bf16 variants (plain + bf16, ours in bf16). auto: run them only where the measured bf16 matmul peak "
        "is at least half the fp32 one (AVX-512 BF16 / AMX / GPU); elsewhere report plain + bf16's lower-bound step "
        "time from that peak. off: everything in fp32",
    )  # fmt: skip
    p.add_argument("--bf16_steps", type=int, help="timed steps for plain + bf16 (default: --steps)")
    p.add_argument(
        "--rounds", type=int, default=3,
        help="rounds of the headline pair (ours on its default path, plain fp32), alternating which runs first: the "
        "machine's speed drifts over minutes, so the ratio pools all rounds' steps and each round's ratio is shown",
    )  # fmt: skip
    p.add_argument(
        "--compile", choices=["on", "default", "off"], default="on",
        help="also time ours + --torch_compile (its first step compiles: minutes on CPU, outside the timed window); "
        "in both precisions (on) or only in the default one (default)",
    )  # fmt: skip
    p.add_argument(
        "--max_contention", type=float, default=0.10,
        help="discard a timed step when other processes took more than this share of the CPUs during it",
    )  # fmt: skip
    p.add_argument("--max_discarded", type=int, default=4, help="at most this many extra steps per variant")
    p.add_argument(
        "--max_seconds_per_variant",
        type=float,
        default=60.0,
        help="stop adding steps to a variant's timed window once its steps add up to this (bounds the run time)",
    )
    p.add_argument(
        "--wait_idle_s", type=float, default=30.0,
        help="per variant (and before the matmul peaks): pause at most this long, between steps, for other "
        "processes to leave the CPU (0: never wait)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=str(common.RESULTS_DIR / "pretrain_throughput.md"), help="markdown written here")
    p.add_argument("--work_dir", default=str(common.WORK_DIR / "pretrain_throughput"), help="run folders, caches")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    args.bf16_steps = args.steps if args.bf16_steps is None else args.bf16_steps
    if args.warmup_steps < 1 or args.steps < 1 or args.bf16_steps < 1 or args.max_discarded < 0:
        p.error("--warmup_steps, --steps and --bf16_steps must be >= 1, --max_discarded >= 0")
    return args


def grid_rest(precisions: list[str], first: str, compile_choice: str) -> list[tuple[str, bool]]:
    """The (precision, compiled) variants of ours still to run after the headline (`first`, eager) one: eager in
    every precision, compiled in every precision (--compile on), in `first` only (default) or none (off)."""
    compiled_too = {"on": set(precisions), "default": {first}, "off": set()}[compile_choice]
    grid = [(p, c) for p in precisions for c in ((False, True) if p in compiled_too else (False,))]
    return [variant for variant in grid if variant != (first, False)]


def measure_peaks(max_contention: float) -> dict[str, dict]:
    """fp32 and bf16 `torch.mm` peaks at `common.peak_matrix_size()` (2048 on a CPU, 8192 on a GPU). Where bf16 is
    emulated (an n = 2048 bf16 mm would take over 2 s), the bf16 peak is taken at n = 512, which is faster per FLOP
    there than n = 2048 (so MFU is not flattered)."""
    n = common.peak_matrix_size()
    peaks = {}
    gflops, share = common.matmul_peak_gflops(torch.float32, n=n, max_contention=max_contention)
    peaks["fp32"] = {"n": n, "gflops": gflops, "contention": share}
    probe, share = common.matmul_peak_gflops(torch.bfloat16, n=512, min_seconds=0.3, min_repeats=2)
    if 2 * 2048**3 / (probe * 1e9) > 2.0:
        peaks["bf16"] = {"n": 512, "gflops": probe, "contention": share}
    else:
        gflops, share = common.matmul_peak_gflops(torch.bfloat16, n=n, max_contention=max_contention)
        peaks["bf16"] = {"n": n, "gflops": gflops, "contention": share}
    return peaks


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    machine = common.machine_info()
    common.wait_for_idle(args.wait_idle_s, args.max_contention)
    peaks = measure_peaks(args.max_contention)
    print(
        "matmul peak: " + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s (n={v['n']})" for k, v in peaks.items()),
        flush=True,
    )
    run_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and peaks["bf16"]["gflops"] >= 0.5 * peaks["fp32"]["gflops"])

    files = corpus_files(args)
    # The headline run first: the default path, in the default precision unless --bf16 rules it out.
    precisions = ["fp32", "bf16"] if run_bf16 else ["fp32"]
    first = DEFAULT_PRECISION if DEFAULT_PRECISION in precisions else "fp32"
    ours = run_ours(args, files, work_dir, first)
    tokenizer, blocks, tokenizer_info = ours.pop("tokenizer"), ours.pop("blocks"), ours.pop("tokenizer_info")
    raw_length, target_length = ours["raw_length"], ours["target_length"]

    def ours_again(precision: str, compiled: bool = False) -> dict:
        run = run_ours(args, files, work_dir, precision, compile_model=compiled)
        for unused in ("tokenizer", "blocks", "tokenizer_info"):  # the first run's are the ones everything uses
            run.pop(unused)
        return run

    def plain(bf16: bool = False) -> dict:
        return run_plain(args, blocks, tokenizer, target_length, work_dir, bf16=bf16)

    pairs = [(ours, plain())]
    for round_index in range(1, args.rounds):  # the headline pair again, plain first in every other round
        if round_index % 2:
            plain_run = plain()
            pairs.append((ours_again(first), plain_run))
        else:
            pairs.append((ours_again(first), plain()))
    round_ratios = [mean_step(p) / mean_step(o) for o, p in pairs]
    runs = [pool([o for o, _ in pairs]), pool([p for _, p in pairs])]
    runs[0]["round_ratios"] = round_ratios
    if run_bf16:
        runs.append(plain(bf16=True))
    for precision, compiled in grid_rest(precisions, first, args.compile):
        runs.append(ours_again(precision, compiled))

    # Collation cost alone, on the same batch of blocks (best of 5); also checks each collator's output.
    sample = [dict(blocks[i], idx=i, epoch=0) for i in range(min(args.batch_size, len(blocks)))]
    for run in runs:
        collator = run.pop("collator_obj")
        run["collate_ms"] = collate_ms(collator, sample)
        check_span_corruption(collator(sample), [s["input_ids"] for s in sample], tokenizer, args.input_length)

    config = runs[1]["config"]
    for run in runs:
        run_config = run.pop("config")
        seconds = sum(run["step_seconds"])
        n = len(run["step_seconds"])
        run["timed_steps"] = n
        run["seconds_per_step"] = seconds / n
        run["tokens_per_second"] = n * args.batch_size * args.input_length / seconds
        run["train_flops_per_step"] = common.t5_train_flops_per_step(
            run_config, args.batch_size, args.input_length, target_length
        )
        run["flops_6nd_per_step"] = 6.0 * run["parameters"] * args.batch_size * args.input_length
        run["achieved_gflops"] = run["train_flops_per_step"] / run["seconds_per_step"] / 1e9
        run["mfu"] = run["achieved_gflops"] / peaks[run["precision"]]["gflops"]
        run["vocab_size"] = run_config.vocab_size
    if runs[0]["parameters"] != runs[1]["parameters"]:
        raise AssertionError(f"ours and plain differ in size: {runs[0]['parameters']} vs {runs[1]['parameters']}")
    for run in runs:
        run["speedup_vs_plain_fp32"] = run["tokens_per_second"] / runs[1]["tokens_per_second"]
    skipped_bf16 = None
    if not run_bf16 and args.bf16 == "auto":
        flops = common.t5_train_flops_per_step(config, args.batch_size, args.input_length, target_length)
        skipped_bf16 = {"min_seconds_per_step": flops / (peaks["bf16"]["gflops"] * 1e9)}

    command = " ".join([".venv/bin/python -m bench.pretrain_throughput", *(sys.argv[1:] if argv is None else argv)])
    markdown = render(args, command, machine, peaks, tokenizer_info, raw_length, target_length, runs, skipped_bf16)
    print("\n" + markdown, flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n", encoding="utf-8")
    print(f"\nwritten to {out}  ({time.perf_counter() - started:.0f} s in all)")
    return {
        "runs": runs,
        "ratio_ours_vs_plain": runs[0]["speedup_vs_plain_fp32"],
        "round_ratios": runs[0]["round_ratios"],
        "peaks": peaks,
        "bf16_skipped": skipped_bf16,
        "machine": machine,
        "tokenizer": tokenizer_info,
        "markdown": markdown,
        "output": str(out),
    }


def precision_compile_table(args, runs, skipped_bf16) -> list[str]:
    """nanoT5-style precision x torch.compile table of our script's variants (markdown lines, then a blank line)."""
    ours_runs = {(r["precision"], r["compiled"]): r for r in runs if r["key"].startswith("ours")}
    base = ours_runs[("fp32", False)] if ("fp32", False) in ours_runs else runs[0]
    rows = []
    for precision in ("fp32", "bf16"):
        for compiled in (False, True):
            run = ours_runs.get((precision, compiled))
            cells = [precision, "yes" if compiled else "no"]
            if run:
                cells += [
                    f"{run['seconds_per_step']:.3g}",
                    f"{run['tokens_per_second']:,.0f}",
                    f"{run['tokens_per_second'] / base['tokens_per_second']:.2f}x",
                    f"{run['warmup_step_seconds'][0]:.1f}" if run.get("warmup_step_seconds") else "",
                    "measured",
                ]
            elif precision == "bf16" and skipped_bf16:
                low = skipped_bf16["min_seconds_per_step"]
                cells += [f">= {low:.3g} (est.)", f"<= {args.batch_size * args.input_length / low:,.0f}", "", "",
                          "not run: bf16 is emulated on this CPU (see below)"]  # fmt: skip
            elif compiled and args.compile != "on":
                cells += ["", "", "", "", f"not run (--compile {args.compile})"]
            else:
                cells += ["", "", "", "", "not run here"]
            rows.append(cells)
    return [
        "Precision x compile, `pre_train_t5.py` on the same model and batch (time per optimizer step; ratio to the "
        "fp32 eager row; first step = the untimed first warm-up step, which holds the compilation). Compilation "
        "changes no result: tests/test_pretrain.py::TorchCompileTest checks a 6-step loss trace against eager mode "
        "(1e-4 in fp32, 5e-3 in bf16):",
        "",
        common.markdown_table(
            ["precision", "torch.compile", "s/step", "input tokens/s", "vs fp32 eager", "first step s", "status"],
            rows,
            ["---", "---", "---:", "---:", "---:", "---:", "---"],
        ),
        "",
    ]


def findings(runs: list[dict]) -> list[str]:
    """The bullets with the speed-up ratios (bold: the summary table picks them up)."""
    by_key = {r["key"]: r for r in runs}
    ours, plain, plain_bf16 = runs[0], by_key["plain"], by_key.get("plain_bf16")
    ratios = ours.get("round_ratios", [])
    rounds = (
        f" Over {len(ratios)} rounds, alternating which runs first, each round gave "
        + ", ".join(f"{r:.2f}x" for r in ratios)
        + "; the ratio pools their steps."
        if len(ratios) > 1
        else ""
    )
    lines = [
        f"- **ours / plain = {ours['tokens_per_second'] / plain['tokens_per_second']:.2f}x** input tokens/s (target "
        f">= 2.5x), each on its default path: ours {ours['precision']}, dropout {ours['dropout']:g}, "
        f"{ours['collate_ms']:.1f} ms collation per batch; plain {plain['precision']}, dropout {plain['dropout']:g}, "
        f"{plain['collate_ms']:.1f} ms (collation measured alone). Same blocks, same model shape.{rounds}"
    ]
    same = next((r for r in runs if r["key"] in ("ours", "ours_bf16") and r["precision"] == "bf16"), None)
    if plain_bf16 and same:
        lines.append(
            f"- **ours bf16 / plain bf16 = {same['tokens_per_second'] / plain_bf16['tokens_per_second']:.2f}x** "
            f"(target >= 1.3x). MFU of the bf16 peak: **ours {100 * same['mfu']:.0f}%**, plain "
            f"{100 * plain_bf16['mfu']:.0f}% (target: ours >= 50%)."
        )
    for run in runs:
        eager = by_key.get(run["key"].replace("_compile", "")) if run.get("compiled") else None
        if eager:
            lines.append(
                f"- **{run['name']} / plain = {run['speedup_vs_plain_fp32']:.2f}x** input tokens/s "
                f"({run['tokens_per_second'] / eager['tokens_per_second']:.2f}x the same run eager, "
                f"{100 * run['mfu']:.0f}% of the {run['precision']} peak; its first step, which compiles, took "
                f"{run['warmup_step_seconds'][0]:.0f} s)."
            )
    return lines


def render(args, command, machine, peaks, tokenizer_info, raw_length, target_length, runs, skipped_bf16) -> str:
    rows = []
    for run in runs:
        rows.append([
            run["name"],
            run["precision"],
            f"{run['dropout']:g}",
            run["collator"],
            f"{run['collate_ms']:.1f}",
            f"{run['timed_steps']}"
            + (" (all contended)" if run["all_contended"] else "")
            + (f" (+{run['discarded_steps']} discarded)" if run["discarded_steps"] else ""),
            f"{run['seconds_per_step']:.3g}",
            f"{run['tokens_per_second']:,.0f}",
            (f"**{run['speedup_vs_plain_fp32']:.2f}x**" if run["key"] == "ours" else
             f"{run['speedup_vs_plain_fp32']:.2f}x"),
            f"{run['achieved_gflops']:.3g}",
            f"{100 * run['mfu']:.0f}% of {run['precision']}",
        ])  # fmt: skip
    if skipped_bf16:
        low = skipped_bf16["min_seconds_per_step"]
        rows.append([
            "plain Seq2SeqTrainer + bf16", "bf16", f"{T5Config().dropout_rate:g}", "per-example numpy loop", "",
            "not run", f">= {low:.3g} (est.)", f"<= {args.batch_size * args.input_length / low:,.0f}",
            f"<= {args.batch_size * args.input_length / low / runs[1]['tokens_per_second']:.2f}x", "", "",
        ])  # fmt: skip
    table = common.markdown_table(
        ["variant", "precision", "dropout", "collator", "collate ms/batch", "timed steps", "s/step",
         "input tokens/s", "vs plain fp32", "GFLOP/s", "MFU"],
        rows,
        ["---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"],
    )  # fmt: skip
    ours = runs[0]
    keys = {r["key"] for r in runs}
    grid = precision_compile_table(args, runs, skipped_bf16)
    corpus = (
        f"{len(args.train_files)} --train_files" if args.train_files else "every .txt under shared/data/corpus, 10.8 MB"
    )
    lines = [
        "## Pre-training throughput: ours vs the plain Seq2SeqTrainer recipe",
        "",
        f"Command: `{command}`",
        "",
        f"Model `{args.model_config}` (T5 v1.1 shape, gated-GELU), **{ours['parameters']:,} parameters**, vocabulary "
        f"{ours['vocab_size']:,} (a {tokenizer_info['vocab_size']:,}-token SentencePiece unigram tokenizer trained by "
        f"`pre_train_t5.py --vocab_size` on the corpus, padded to a multiple of 128; asked "
        f"{tokenizer_info['requested_vocab_size']:,}: {'; '.join(tokenizer_info['attempts'])}). "
        f"Global batch {args.batch_size} x {args.input_length} input / {target_length} target tokens (packed raw "
        f"blocks of {raw_length} from {corpus}), one process. "
        f"Timed: {args.steps} steps after {args.warmup_steps} untimed warm-up steps"
        + (f" ({args.bf16_steps} for plain + bf16)" if args.bf16_steps != args.steps and "plain_bf16" in keys else "")
        + (f", in each of {args.rounds} rounds for ours and plain (fp32)" if args.rounds > 1 else "")
        + ".",
        "",
        table,
        "",
        *grid,
        *findings(runs),
        "- Matmul peak measured in this run (`torch.mm`, best of repeats): "
        + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s (n = {v['n']})" for k, v in peaks.items())
        + ". MFU = analytic GFLOP/s / the peak of the variant's precision.",
        f"- FLOPs: analytic matmul count (encoder, decoder, cross-attention, LM head at the real lengths; training = "
        f"3x forward): {ours['train_flops_per_step'] / 1e9:.3g} GFLOP per step. 6 x params x input tokens would say "
        f"{ours['flops_6nd_per_step'] / 1e9:.3g}: an overcount for an encoder-decoder, whose decoder and LM head see "
        f"only the {target_length} target tokens.",
    ]
    if skipped_bf16:
        lines.append(
            f"- plain + bf16 was not run: this machine's bf16 matmul runs at {peaks['bf16']['gflops']:.1f} GFLOP/s "
            f"({peaks['fp32']['gflops'] / peaks['bf16']['gflops']:.0f}x below fp32; no AVX-512 BF16 / AMX, so bf16 "
            "is emulated). Its step cannot be faster than FLOPs / that peak (the estimate shown); the toolkit "
            "therefore defaults to fp32 here. `--bf16 on` runs it anyway."
        )
    limit = f"{100 * args.max_contention:.0f}%"
    discarded = ", ".join(f"{run['key']} {run['discarded_steps']}" for run in runs)
    measured = [(f"{k} peak", v["contention"]) for k, v in peaks.items()] + [(r["key"], r["contention"]) for r in runs]
    known = [(name, share) for name, share in measured if share is not None]
    lines.append(
        f"- Shared machine: a timed step during which other processes took more than {limit} of the CPUs is "
        f"discarded and training goes on (at most {args.max_discarded} extra steps or "
        f"{args.max_seconds_per_variant:.0f} s of timed steps per variant; between steps it waits up to "
        f"{args.wait_idle_s:.0f} s per variant for the CPU to be free). Discarded: {discarded}. "
        + ("Worst contention kept: " + ", ".join(f"{n} {100 * s:.0f}%" for n, s in known) + "." if known else "")
    )
    if any(run["all_contended"] for run in runs) or any(share > args.max_contention for _, share in known):
        lines.append(
            "- **Other processes competed for the CPU during these measurements: the numbers are not reliable; "
            "rerun on an idle machine.**"
        )
    lines += [
        "- Step time = end of step k to end of step k+1 (`StepTimer` callback): batch fetch and collation, forward, "
        "backward, optimizer; model building, corpus packing and saving are outside the window. Run folders are "
        "in bench/out/ (git-ignored).",
        "",
        "Machine:",
        "",
        common.machine_markdown(machine),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
