"""Pre-training throughput: this toolkit's default path against the plain Seq2SeqTrainer recipe, in one process.

    .venv/bin/python bench/pretrain_throughput.py                      # defaults: mini, batch 8, 512/114, ~4 min
    .venv/bin/python bench/pretrain_throughput.py --model_config tiny --input_length 64 --steps 3 --warmup_steps 1 \\
        --vocab_size 1000 --train_files ../shared/data/corpus/tinyshakespeare/part-000.txt --output /tmp/t.md

Variants, all on the same model shape (`--model_config`, T5 v1.1 preset), the same tokenizer, the same packed blocks
of the same corpus, the same global batch and the same input / target lengths:

- **ours**: `pre_train_t5.main([...])` on its default path: fp32 on a CPU without AVX-512 BF16 (bf16 where the
  hardware has it), dropout 0.0, the vectorised `data_collators.T5DataCollator`, `T5Trainer`.
- **plain**: `Seq2SeqTrainer` with its defaults (fp32, AdamW, no tuning), the model built with T5Config's default
  dropout 0.1, fed by `PerExampleSpanCorruptionCollator` below: the usual port of the Flax T5 example, a Python
  loop over examples that draws a numpy `random_spans_noise_mask` per example and builds inputs / labels per example.
- **plain bf16**: the same with `bf16=True` (autocast). On a CPU without AVX-512 BF16 / AMX this is emulated and
  slow; it is reported as measured.

Timing method: each variant trains `warmup_steps + steps` optimizer steps in this process. A `StepTimer` callback
records `time.perf_counter()` at the end of every step; the timed window runs from the end of step `warmup_steps` to
the end of step `warmup_steps + steps`, so it holds exactly `steps` whole steps (batch fetch + collation, forward,
backward, optimizer) and excludes model construction, corpus packing, the first steps (allocator and kernel warm-up)
and the saving that follows training. For `ours` the callback is attached by wrapping the script's `T5Trainer` class
for the duration of the call (the script itself is unchanged). Nothing is logged inside the window for either
variant (ours logs once at the last step, after the window; plain's default logging_steps is 500).

Throughput is input (encoder) tokens per second: steps x batch x input_length / window seconds (packed blocks: no
padding). FLOPs are counted analytically (`common.t5_matmul_flops_per_example`: every matmul of the encoder,
decoder, cross-attention and LM head at the real input / target lengths, training = 3x forward). The usual
6 x params x tokens shortcut is printed for reference only: with input tokens it overcounts an encoder-decoder
(the decoder and LM head see only the ~114 target tokens). MFU = achieved analytic FLOP/s over the `torch.mm`
peak measured in the same run (n = 2048, best of repeats) in the variant's precision.

Tokenizer: the script trains one SentencePiece tokenizer with the toolkit's own pipeline
(`t5kit.tokenizer.train_tokenizer` on `load_documents` / `iter_texts`, as `pre_train_t5.py --vocab_size` does)
and caches it under bench/out/. It asks for `--vocab_size` (32000, the T5 size); when the corpus is too small for
that, it retrains at the largest size SentencePiece reports it can build, then falls back to 8000.
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
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets the offline switches and puts the repo on sys.path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, T5Config, T5ForConditionalGeneration  # noqa: E402

DEFAULT_CORPUS = "corpus"  # every .txt under <shared data>/corpus (~10.8 MB)
FALLBACK_VOCAB = 8000
LABEL_PAD_ID = -100


# ---------------------------------------------------------------------------------------------------------------
# The plain recipe's collator


class PerExampleSpanCorruptionCollator:
    """T5 span corruption the way it is usually ported from the Flax example: one example at a time.

    For each example: draw a noise mask with `random_spans_noise_mask` (numpy, a shuffle per segmentation), replace
    each noise span by a sentinel for the input and each non-noise span by a sentinel for the target, append EOS.
    Sentinels count down from the last vocabulary id (`<extra_id_0>` is the highest id in T5 vocabularies).
    """

    def __init__(self, tokenizer, noise_density, mean_noise_span_length, input_length, target_length, seed=0):
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length
        self.input_length = input_length
        self.target_length = target_length
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self.first_sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
        if self.first_sentinel != len(tokenizer) - 1:
            raise ValueError("expected <extra_id_0> at the last id of the tokenizer")
        self.rng = np.random.default_rng(seed)

    def random_spans_noise_mask(self, length: int) -> np.ndarray:
        num_noise_tokens = int(np.round(length * self.noise_density))
        num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
        num_noise_spans = max(int(np.round(num_noise_tokens / self.mean_noise_span_length)), 1)
        num_nonnoise_tokens = length - num_noise_tokens

        def random_segmentation(num_items: int, num_segments: int) -> np.ndarray:
            boundaries = np.arange(num_items - 1) < (num_segments - 1)
            self.rng.shuffle(boundaries)
            segment_id = np.cumsum(np.concatenate([[0], boundaries]))
            return np.bincount(segment_id, minlength=num_segments)

        noise_lengths = random_segmentation(num_noise_tokens, num_noise_spans)
        nonnoise_lengths = random_segmentation(num_nonnoise_tokens, num_noise_spans)
        interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
        span_starts = np.cumsum(interleaved)[:-1]
        indicator = np.zeros(length, dtype=np.int64)
        indicator[span_starts] = 1
        return np.cumsum(indicator) % 2 == 1

    def _spans_to_sentinels(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        previous = np.concatenate([[False], mask[:-1]])
        starts = mask & ~previous
        sentinels = self.first_sentinel + 1 - np.cumsum(starts)
        kept = np.where(starts, sentinels, ids)[~(mask & previous)]
        return np.concatenate([kept, [self.eos_id]])

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = len(examples)
        input_ids = np.full((batch, self.input_length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((batch, self.input_length), dtype=np.int64)
        labels = np.full((batch, self.target_length), LABEL_PAD_ID, dtype=np.int64)
        for row, example in enumerate(examples):
            ids = np.asarray(example["input_ids"], dtype=np.int64)
            mask = self.random_spans_noise_mask(len(ids))
            inputs = self._spans_to_sentinels(ids, mask)
            targets = self._spans_to_sentinels(ids, ~mask)
            input_ids[row, : len(inputs)] = inputs
            attention_mask[row, : len(inputs)] = 1
            labels[row, : len(targets)] = targets
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(labels),
        }


def check_span_corruption(batch: dict, raw_blocks: list[np.ndarray], tokenizer, input_length: int) -> None:
    """Asserts a collated batch is full-length and that inputs + labels rebuild the raw blocks exactly."""
    first = tokenizer.convert_tokens_to_ids("<extra_id_0>")
    is_sentinel = lambda t: first - 99 <= t <= first  # noqa: E731
    if tuple(batch["input_ids"].shape) != (len(raw_blocks), input_length) or not bool(batch["attention_mask"].all()):
        raise AssertionError(f"inputs are not full {input_length}-token rows: {tuple(batch['input_ids'].shape)}")
    for inputs, labels, raw in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), raw_blocks):
        labels = [t for t in labels if t != LABEL_PAD_ID]
        if inputs[-1] != tokenizer.eos_token_id or labels[-1] != tokenizer.eos_token_id:
            raise AssertionError("inputs and labels must end with EOS")
        spans, current = {}, None
        for token in labels[:-1]:
            if is_sentinel(token):
                current = spans.setdefault(token, [])
            else:
                current.append(token)
        rebuilt = []
        for token in inputs[:-1]:
            rebuilt.extend(spans[token] if is_sentinel(token) else [token])
        if rebuilt != [int(t) for t in raw]:
            raise AssertionError("span corruption does not rebuild the raw block")


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer and corpus


def corpus_files(args) -> list[str]:
    if args.train_files:
        return [str(Path(f).resolve()) for f in args.train_files]
    files = sorted(str(p) for p in (common.SHARED_DATA / DEFAULT_CORPUS).rglob("*.txt"))
    if not files:
        raise SystemExit(f"no corpus under {common.SHARED_DATA / DEFAULT_CORPUS} (set T5_SHARED_DATA)")
    return files


def cached_tokenizer(files: list[str], vocab_size: int, work_dir: Path, seed: int) -> tuple[str, dict]:
    """Trains (once; then cached) a tokenizer with the toolkit's pipeline; returns (folder, info)."""
    from pre_train_t5 import TOKENIZER_TRAINING_DOCS
    from t5kit.args import UsageError
    from t5kit.corpus import PretrainDataArguments, iter_texts, load_documents
    from t5kit.tokenizer import NUM_SENTINELS, load_tokenizer, train_tokenizer

    stamp = json.dumps([vocab_size, seed, [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]])
    folder = work_dir / "tokenizers" / hashlib.sha256(stamp.encode()).hexdigest()[:16]
    info_file = folder / "bench_info.json"
    if info_file.is_file():
        return str(folder), json.loads(info_file.read_text())
    docs = load_documents(PretrainDataArguments(train_files=files))
    attempts, size, started = [], vocab_size, time.perf_counter()
    while True:
        try:
            tokenizer = train_tokenizer(iter_texts(docs, TOKENIZER_TRAINING_DOCS), size, folder, seed=seed)
            attempts.append(f"{size}: ok")
            break
        except UsageError as err:
            limit = re.search(r"value <= (\d+)", str(err))
            attempts.append(f"{size}: too large for the corpus")
            if limit and int(limit.group(1)) + NUM_SENTINELS < size:
                size = int(limit.group(1)) + NUM_SENTINELS  # SentencePiece's limit counts pieces, not sentinels
            elif size != FALLBACK_VOCAB and FALLBACK_VOCAB < vocab_size:
                size = FALLBACK_VOCAB
            else:
                raise
    info = {
        "requested_vocab_size": vocab_size,
        "vocab_size": len(tokenizer),
        "attempts": attempts,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    load_tokenizer(str(folder))  # it must load the way pre_train_t5 loads it
    info_file.write_text(json.dumps(info, indent=2))
    return str(folder), info


def packed_blocks(files: list[str], tokenizer, raw_length: int, seed: int):
    """The training blocks pre_train_t5 builds for the same flags (same loader, packer and split)."""
    from t5kit.corpus import CorpusReport, PretrainDataArguments, load_documents, pack_corpus, split_blocks

    data_args = PretrainDataArguments(train_files=files, validation_split_percentage=0.0)
    report = CorpusReport()
    packed = pack_corpus(load_documents(data_args), tokenizer, raw_length, None, report)
    train, _ = split_blocks(packed, data_args, seed, report)
    return train


# ---------------------------------------------------------------------------------------------------------------
# Variants


def run_ours(args, files, tokenizer_dir, work_dir: Path) -> dict:
    import pre_train_t5

    output_dir = work_dir / "ours"
    shutil.rmtree(output_dir, ignore_errors=True)
    total = args.warmup_steps + args.steps
    argv = [
        "--train_files", *files,
        "--tokenizer_name_or_path", tokenizer_dir,
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
    ]  # fmt: skip
    timer = common.StepTimer()
    base = pre_train_t5.T5Trainer

    class TimedT5Trainer(base):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.add_callback(timer)
            TimedT5Trainer.instance = self

    with mock.patch.object(pre_train_t5, "T5Trainer", TimedT5Trainer):
        results = pre_train_t5.main(argv)
    trainer = TimedT5Trainer.instance
    return {
        "key": "ours",
        "name": "ours (pre_train_t5.main, default path)",
        "precision": results["precision"],
        "dropout": trainer.model.config.dropout_rate,
        "collator": type(trainer.data_collator).__name__ + " (vectorised)",
        "optimizer": trainer.args.optim.value if hasattr(trainer.args.optim, "value") else str(trainer.args.optim),
        "step_seconds": timer.timed(args.warmup_steps, args.steps),
        "parameters": results["model_parameters"],
        "config": trainer.model.config,
        "target_length": results["target_length"],
        "raw_length": results["raw_length"],
        "tokens_seen": results.get("num_input_tokens_seen"),
        "collator_obj": trainer.data_collator,
    }


def run_plain(args, blocks, tokenizer, target_length: int, work_dir: Path, bf16: bool) -> dict:
    from t5kit.modeling import build_config

    output_dir = work_dir / ("plain_bf16" if bf16 else "plain")
    shutil.rmtree(output_dir, ignore_errors=True)
    plain_dropout = T5Config().dropout_rate  # 0.1: what a from-scratch T5Config gets unless told otherwise
    config = build_config(args.model_config, tokenizer, dropout_rate=plain_dropout)
    torch.manual_seed(args.seed)
    model = T5ForConditionalGeneration(config)
    collator = PerExampleSpanCorruptionCollator(
        tokenizer, 0.15, 3.0, args.input_length, target_length, seed=args.seed
    )
    timed_steps = args.bf16_steps if bf16 else args.steps
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + timed_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # transformers refuses bf16 on a GPU-less machine otherwise
    )
    timer = common.StepTimer()
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=blocks,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    return {
        "key": "plain_bf16" if bf16 else "plain",
        "name": "plain Seq2SeqTrainer" + (" + bf16" if bf16 else ""),
        "precision": "bf16" if bf16 else "fp32",
        "dropout": config.dropout_rate,
        "collator": "per-example numpy loop",
        "optimizer": training_args.optim.value if hasattr(training_args.optim, "value") else str(training_args.optim),
        "step_seconds": timer.timed(args.warmup_steps, timed_steps),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": config,
        "collator_obj": collator,
    }


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
        "--variants", default="ours,plain,plain_bf16", help="comma list of: ours, plain, plain_bf16 (ours and plain "
        "are needed for the ratio)"
    )
    p.add_argument("--bf16_steps", type=int, default=3, help="timed steps for plain_bf16 (slow without AVX-512 BF16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=str(common.RESULTS_DIR / "pretrain_throughput.md"), help="markdown written here")
    p.add_argument("--work_dir", default=str(common.WORK_DIR / "pretrain_throughput"), help="run folders, caches")
    args = p.parse_args(argv)
    if args.warmup_steps < 1 or args.steps < 1 or args.bf16_steps < 1:
        p.error("--warmup_steps, --steps and --bf16_steps must be >= 1")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - {"ours", "plain", "plain_bf16"}
    if unknown:
        p.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from data_collators import compute_input_and_target_lengths
    from t5kit.tokenizer import load_tokenizer

    started = time.perf_counter()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    machine = common.machine_info()
    peaks = {"fp32": common.matmul_peak_gflops(torch.float32)}
    peaks["bf16"] = common.matmul_peak_gflops(torch.bfloat16)
    print(f"matmul peak (n=2048): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)

    files = corpus_files(args)
    tokenizer_dir, tokenizer_info = cached_tokenizer(files, args.vocab_size, work_dir, args.seed)
    tokenizer = load_tokenizer(tokenizer_dir)
    raw_length, target_length = compute_input_and_target_lengths(args.input_length, 0.15, 3.0)
    print(f"tokenizer: {len(tokenizer)} tokens ({tokenizer_info['attempts']}); raw {raw_length} -> "
          f"{args.input_length} / {target_length}", flush=True)  # fmt: skip

    blocks = packed_blocks(files, tokenizer, raw_length, args.seed)
    sample = [dict(blocks[i], idx=i, epoch=0) for i in range(min(args.batch_size, len(blocks)))]
    plain_collator = PerExampleSpanCorruptionCollator(tokenizer, 0.15, 3.0, args.input_length, target_length)
    check_span_corruption(plain_collator(sample), [s["input_ids"] for s in sample], tokenizer, args.input_length)

    runs = []
    if "ours" in args.variants:
        runs.append(run_ours(args, files, tokenizer_dir, work_dir))
    if "plain" in args.variants:
        runs.append(run_plain(args, blocks, tokenizer, target_length, work_dir, bf16=False))
    if "plain_bf16" in args.variants:
        runs.append(run_plain(args, blocks, tokenizer, target_length, work_dir, bf16=True))

    # Collation cost alone, on the same batch of blocks (best of 5); also checks each collator's output.
    for run in runs:
        collator = run.pop("collator_obj")
        run["collate_ms"] = collate_ms(collator, sample)
        check_span_corruption(collator(sample), [s["input_ids"] for s in sample], tokenizer, args.input_length)

    for run in runs:
        config = run.pop("config")
        seconds = sum(run["step_seconds"])
        n = len(run["step_seconds"])
        run["timed_steps"] = n
        run["seconds_per_step"] = seconds / n
        run["tokens_per_second"] = n * args.batch_size * args.input_length / seconds
        run["train_flops_per_step"] = common.t5_train_flops_per_step(
            config, args.batch_size, args.input_length, target_length
        )
        run["flops_6nd_per_step"] = 6.0 * run["parameters"] * args.batch_size * args.input_length
        run["achieved_gflops"] = run["train_flops_per_step"] / run["seconds_per_step"] / 1e9
        run["mfu"] = run["achieved_gflops"] / peaks[run["precision"]]
        run["vocab_size"] = config.vocab_size
    reference = next((r for r in runs if r["key"] == "plain"), None)
    for run in runs:
        run["speedup_vs_plain_fp32"] = run["tokens_per_second"] / reference["tokens_per_second"] if reference else None

    command = " ".join([".venv/bin/python bench/pretrain_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    markdown = render(args, command, machine, peaks, tokenizer_info, raw_length, target_length, runs)
    print("\n" + markdown, flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n", encoding="utf-8")
    print(f"\nwritten to {out}  ({time.perf_counter() - started:.0f} s in all)")
    return {"runs": runs, "peaks_gflops": peaks, "machine": machine, "tokenizer": tokenizer_info, "markdown": markdown}


def render(args, command, machine, peaks, tokenizer_info, raw_length, target_length, runs) -> str:
    rows = []
    for run in runs:
        ratio = run["speedup_vs_plain_fp32"]
        rows.append([
            run["name"],
            run["precision"],
            f"{run['dropout']:g}",
            run["collator"],
            f"{run['collate_ms']:.1f}",
            f"{run['timed_steps']}",
            f"{run['seconds_per_step']:.2f}",
            f"{run['tokens_per_second']:,.0f}",
            f"{ratio:.2f}x" if ratio is not None else "n/a",
            f"{run['achieved_gflops']:.0f}",
            f"{100 * run['mfu']:.0f}% of {run['precision']}",
        ])  # fmt: skip
    table = common.markdown_table(
        ["variant", "precision", "dropout", "collator", "collate ms/batch", "timed steps", "s/step",
         "input tokens/s", "vs plain fp32", "GFLOP/s", "MFU"],
        rows,
        ["---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"],
    )  # fmt: skip
    ours, plain = (next((r for r in runs if r["key"] == key), None) for key in ("ours", "plain"))
    any_run = runs[0] if runs else None
    lines = [
        "## Pre-training throughput: ours vs the plain Seq2SeqTrainer recipe",
        "",
        f"Command: `{command}`",
        "",
    ]
    if any_run:
        lines += [
            f"Model `{args.model_config}` (T5 v1.1 shape), {any_run['parameters']:,} parameters "
            f"(vocabulary {any_run['vocab_size']:,} padded from a {tokenizer_info['vocab_size']:,}-token SentencePiece "
            f"tokenizer trained on the corpus; asked {tokenizer_info['requested_vocab_size']:,}: "
            f"{'; '.join(tokenizer_info['attempts'])}). "
            f"Batch {args.batch_size} x {args.input_length} input / {target_length} target tokens "
            f"(packed raw blocks of {raw_length}), one process. "
            f"Timed: {args.steps} steps after {args.warmup_steps} warm-up steps"
            + (f" ({args.bf16_steps} for bf16)" if "plain_bf16" in args.variants else "") + ".",
            "",
            table,
            "",
            f"- Matmul peak measured in this run (`torch.mm`, n = 2048): fp32 {peaks['fp32']:.0f} GFLOP/s, "
            f"bf16 {peaks['bf16']:.0f} GFLOP/s.",
            f"- FLOPs: analytic matmul count, {any_run['train_flops_per_step'] / 1e9:.0f} GFLOP per training step "
            f"(3x forward; 6 x params x input tokens would say {any_run['flops_6nd_per_step'] / 1e9:.0f}, an "
            "overcount for an encoder-decoder whose decoder sees only the targets).",
        ]
    if ours and plain:
        lines.append(
            f"- **ours / plain = {ours['tokens_per_second'] / plain['tokens_per_second']:.2f}x** input tokens/s "
            f"({ours['precision']} vs {plain['precision']}; the difference: dropout {ours['dropout']:g} vs "
            f"{plain['dropout']:g}, and collation {ours['collate_ms']:.0f} vs {plain['collate_ms']:.0f} ms per batch)."
        )
    if "plain_bf16" in args.variants and "avx512_bf16" not in machine["cpu_flags"] and "amx" not in machine["cpu_flags"]:
        lines.append(
            "- This CPU has no AVX-512 BF16 / AMX: bf16 matmuls and autocast casts are emulated, which is why the "
            "toolkit defaults to fp32 here."
        )
    lines += [
        "- Step time = end of step k to end of step k+1 (`StepTimer` callback): batch fetch and collation, forward, "
        "backward, optimizer. Run folders are in bench/out/ (git-ignored).",
        "",
        "Machine:",
        "",
        common.machine_markdown(machine),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
