"""Pre-training collator speed: the vectorised `data_collators.T5DataCollator` against the per-example recipe, and
each pre-training objective (--objective span_corruption, ul2, prefix_lm) against span corruption.

    .venv/bin/python -m bench.collator                        # batch 64 x 568 raw tokens (512 inputs), ~40 s
    .venv/bin/python -m bench.collator --quick --output /tmp/c.md

Both collators get the very same examples (dicts with a 568-token `input_ids` numpy row, `idx`, `epoch`, as
`EpochIndexedBlocks` yields them) and the same settings (noise density 0.15, mean span length 3, inputs 512,
targets 114). The baseline is `plain_collator.PerExampleSpanCorruptionCollator` (the same class the pre-training
benchmark's plain recipe uses): a Python loop over examples that draws a numpy `random_spans_noise_mask` (a shuffle
per segmentation) and builds inputs / labels per example, as in the Flax T5 example.

Blocks: the real corpus (tinyshakespeare) as UTF-8 bytes mapped to ids 3..258, cut into full blocks; the vocabulary
is a stand-in with T5's layout (32,128 ids, pad 0, EOS 1, unk 2, `<extra_id_0>` the highest id). Collation cost does
not depend on which token ids the rows hold, so no tokenizer needs training. Both outputs are checked: inputs plus
labels must rebuild every raw block exactly.

Timing: for each batch size, `--repeats` rounds; each round calls each collator once on the same batch (the order
alternates between rounds so neither always runs second), timed with `time.perf_counter()`. Reported: examples/s
from the median and the best call, and the ratio of the medians. The report also gives the CPU share other
processes took during a batch size's rounds (`common.CpuContention`, /proc/stat: too coarse for a single call).

Objectives: `data_collators.make_pretraining_collator` for each objective at the headline batch size, on blocks of that
objective's raw length (568 for span corruption, 511 for ul2, 512 for prefix_lm at 512 inputs), timed the same way
(one call of each per round, the order rotating). Reported: examples/s, the ratio to span corruption, and the batches'
padding: ul2 and prefix_lm pad each batch to its own longest input and target (span corruption's are fixed), so the
report gives the mean padded widths and the share of input and target positions that are padding, over 16 batches.
Every objective's output is checked: inputs plus labels (mode token and sentinels removed) rebuild every block.

PMI masking (--objective pmi) needs real tokens: its n-grams are matched against a tokenizer's pieces. So it is timed
on its own setup, against span corruption with the same tokenizer and blocks: a SentencePiece tokenizer
(`--pmi_tokenizer_size` pieces) and a PMI vocabulary (n-grams seen at least 10 times) both built from the corpus
file, the corpus tokenized and packed into raw blocks, both collators called on the same batch in alternating order,
both outputs checked. Reported: examples/s, the ratio, and the n-gram spans and fallbacks of the PMI batches.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

import numpy as np  # noqa: E402
from bench.plain_collator import PerExampleSpanCorruptionCollator, check_span_corruption  # noqa: E402

import data_collators as dc  # noqa: E402

CORPUS = common.SHARED_DATA / "corpus" / "tinyshakespeare" / "part-000.txt"


class T5LayoutVocabulary:
    """The few tokenizer attributes the collators read, in T5's layout (`<extra_id_0>` is the last id), with UL2's mode
    tokens just below the 100 sentinels."""

    pad_token_id, eos_token_id, unk_token_id = 0, 1, 2

    def __init__(self, size: int = 32128):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            if tokens in MODE_TOKENS:
                return self.size - 101 - MODE_TOKENS.index(tokens)
            if not tokens.startswith("<extra_id_"):
                return self.unk_token_id
            return self.size - 1 - int(tokens[len("<extra_id_") : -1])
        return [self.convert_tokens_to_ids(token) for token in tokens]


MODE_TOKENS = dc.objective_special_tokens(dc.UL2)
# Objectives timed on the stand-in vocabulary (pmi needs real tokens: time_pmi times it apart).
OBJECTIVES = (dc.SPAN_CORRUPTION, dc.UL2, dc.PREFIX_LM)
SAMPLE_BATCHES = 16  # batches whose padding is measured, per objective
T5_BASE_GPU_EXAMPLES_PER_S = 230  # about what a T5-base training step consumes on one GPU (docs/objectives.md)


def corpus_blocks(raw_length: int, count: int) -> np.ndarray:
    """(count, raw_length) ids from the corpus bytes (3 + byte, ByT5-style), repeating the text if it is short."""
    data = np.frombuffer(CORPUS.read_bytes(), dtype=np.uint8).astype(np.int64) + 3
    needed = raw_length * count
    if len(data) < needed:
        data = np.tile(data, -(-needed // len(data)))
    return data[:needed].reshape(count, raw_length)


def time_pair(ours, plain, examples, repeats: int) -> dict:
    timings = {"ours": [], "plain": []}
    meter = common.CpuContention().start()  # over all rounds: /proc/stat ticks are too coarse for one call
    for round_ in range(repeats):
        order = (("ours", ours), ("plain", plain)) if round_ % 2 == 0 else (("plain", plain), ("ours", ours))
        for name, collator in order:
            t0 = time.perf_counter()
            collator(examples)
            timings[name].append(time.perf_counter() - t0)
    result = {"contention": meter.stop()}
    batch = len(examples)
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        result[name] = {
            "median_ms": median * 1e3,
            "best_ms": min(seconds) * 1e3,
            "examples_per_s": batch / median,
            "best_examples_per_s": batch / min(seconds),
        }
    result["ratio"] = result["plain"]["median_ms"] / result["ours"]["median_ms"]
    result["ratio_best"] = result["plain"]["best_ms"] / result["ours"]["best_ms"]
    return result


def check_rebuilds(batch, blocks: np.ndarray, vocab: T5LayoutVocabulary) -> None:
    """Inputs plus labels of any objective rebuild every block: each target span goes back at its sentinel in the
    input (span denoisers), or the target follows the input (prefix LM); the mode token and EOS are dropped."""
    mode_ids = {vocab.convert_tokens_to_ids(token) for token in MODE_TOKENS}
    first_sentinel = vocab.convert_tokens_to_ids("<extra_id_0>")
    for row, block in enumerate(blocks):
        inputs = [t for t in batch["input_ids"][row].tolist() if t not in mode_ids and t != vocab.pad_token_id]
        labels = [t for t in batch["labels"][row].tolist() if t != dc.LABEL_PAD_ID]
        assert inputs[-1] == labels[-1] == vocab.eos_token_id, row
        inputs, labels = inputs[:-1], labels[:-1]
        if not any(t > first_sentinel - 100 for t in labels):  # no sentinel: the prefix LM
            rebuilt = inputs + labels
        else:
            spans, current = {}, None
            for t in labels:
                if t > first_sentinel - 100:
                    current = spans.setdefault(t, [])
                else:
                    current.append(t)
            rebuilt = [u for t in inputs for u in (spans.pop(t) if t in spans else [t])]
        if rebuilt != block.tolist():
            raise AssertionError(f"example {row}: inputs and labels do not rebuild the block")


def time_objectives(args, vocab) -> dict:
    """Examples/s of each objective's collator at the headline batch size, and its batches' padding."""
    collators = {
        name: dc.make_pretraining_collator(name, vocab, input_length=args.input_length, seed=0)
        for name in args.objectives
    }
    batch = args.batch_size
    examples, samples = {}, {}
    for name, collator in collators.items():
        blocks = corpus_blocks(collator.raw_length, batch * (SAMPLE_BATCHES + 1))
        examples[name] = [{"input_ids": blocks[i], "idx": i, "epoch": 0} for i in range(batch)]
        check_rebuilds(collator(examples[name]), blocks[:batch], vocab)  # and an untimed warm-up call
        samples[name] = [
            collator([{"input_ids": blocks[i], "idx": i, "epoch": 0} for i in range(start, start + batch)])
            for start in range(batch, batch * (SAMPLE_BATCHES + 1), batch)
        ]
    timings = {name: [] for name in collators}
    meter = common.CpuContention().start()
    names = list(collators)
    for round_ in range(args.repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            collators[name](examples[name])
            timings[name].append(time.perf_counter() - t0)
    contention = meter.stop()
    baseline = statistics.median(timings[names[0]])
    results = {}
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        batches = samples[name]
        input_slots = sum(b["input_ids"].numel() for b in batches)
        target_slots = sum(b["labels"].numel() for b in batches)
        results[name] = {
            "raw_length": collators[name].raw_length,
            "target_length": collators[name].target_length,
            "median_ms": median * 1e3,
            "examples_per_s": batch / median,
            "best_examples_per_s": batch / min(seconds),
            "ratio_to_first": baseline / median,
            "mean_input_width": statistics.mean(b["input_ids"].shape[1] for b in batches),
            "mean_target_width": statistics.mean(b["labels"].shape[1] for b in batches),
            "input_padding": 1 - sum(int(b["attention_mask"].sum()) for b in batches) / input_slots,
            "target_padding": sum(int((b["labels"] == dc.LABEL_PAD_ID).sum()) for b in batches) / target_slots,
        }
    return {"batch_size": batch, "contention": contention, "results": results}


def time_pmi(args) -> dict:
    """PMI masking against span corruption with a tokenizer and a PMI vocabulary built from the corpus file."""
    from t5kit.pmi import build_vocabulary
    from t5kit.tokenizer import train_tokenizer

    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(lines, args.pmi_tokenizer_size, Path(tmp) / "tokenizer")
    vocabulary, _ = build_vocabulary([str(CORPUS)], size=50_000, progress=False, log=None)
    setup_s = time.perf_counter() - started
    settings = dict(input_length=args.input_length, seed=0, noise_density=args.noise_density,
                    mean_noise_span_length=args.mean_noise_span_length)  # fmt: skip
    span = dc.make_pretraining_collator(dc.SPAN_CORRUPTION, tokenizer, **settings)
    pmi = dc.make_pretraining_collator(dc.PMI, tokenizer, pmi_vocabulary=vocabulary, **settings)
    batch, raw_length = args.batch_size, span.raw_length
    ids: list[int] = []
    for row in tokenizer(lines, add_special_tokens=False)["input_ids"]:
        ids += [*row, tokenizer.eos_token_id]
        if len(ids) >= batch * raw_length:
            break
    if len(ids) < batch * raw_length:
        raise SystemExit(f"{CORPUS}: {len(ids)} tokens, fewer than {batch} blocks of {raw_length}")
    blocks = np.asarray(ids[: batch * raw_length], dtype=np.int64).reshape(batch, raw_length)
    examples = [{"input_ids": blocks[i], "idx": i, "epoch": 0} for i in range(batch)]
    for collator in (pmi, span):  # correctness, and one untimed warm-up call each
        check_span_corruption(collator(examples), list(blocks), tokenizer, args.input_length)
    before = dict(pmi.stats)  # the checks above counted too: report the timed calls only
    timed = time_pair(pmi, span, examples, args.repeats)  # "ours" is PMI, "plain" span corruption
    examples_seen = pmi.stats["examples"] - before["examples"]
    return {
        "batch_size": batch,
        "tokenizer_size": len(tokenizer),
        "vocabulary_ngrams": len(vocabulary),
        "setup_s": setup_s,
        "contention": timed["contention"],
        "pmi": timed["ours"],
        "span_corruption": timed["plain"],
        "ratio": timed["ratio"],  # span corruption's time over PMI's: PMI's examples/s over span corruption's
        "ngram_spans_per_example": (pmi.stats["ngram_spans"] - before["ngram_spans"]) / examples_seen,
        "fallbacks": pmi.stats["fallbacks"] - before["fallbacks"],
        "examples": examples_seen,
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=64, help="the headline batch size")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 64, 256], help="all batch sizes timed")
    p.add_argument("--input_length", type=int, default=512, help="encoder input length (raw block length follows)")
    p.add_argument("--noise_density", type=float, default=0.15)
    p.add_argument("--mean_noise_span_length", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=100, help="timed calls per collator and batch size")
    p.add_argument(
        "--objectives",
        nargs="+",
        default=list(OBJECTIVES),
        choices=OBJECTIVES,
        help="objectives timed at the headline batch size (the first is the baseline of the ratios)",
    )
    p.add_argument("--pmi_tokenizer_size", type=int, default=8000, help="pieces of the tokenizer PMI is timed with")
    p.add_argument("--quick", action="store_true", help="smoke test: 3 repeats, batch sizes 2 and 8, inputs 64")
    p.add_argument("--output", default=str(common.RESULTS_DIR / "collator.md"), help="markdown written here")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.batch_sizes, args.batch_size, args.input_length = 3, [2, 8], 8, 64
        args.pmi_tokenizer_size = 1000
    if args.batch_size not in args.batch_sizes:
        args.batch_sizes = sorted({*args.batch_sizes, args.batch_size})
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    machine = common.machine_info()
    vocab = T5LayoutVocabulary()
    raw_length, target_length = dc.compute_input_and_target_lengths(
        args.input_length, args.noise_density, args.mean_noise_span_length
    )
    settings = dict(
        noise_density=args.noise_density,
        mean_noise_span_length=args.mean_noise_span_length,
        input_length=args.input_length,
        target_length=target_length,
    )
    ours = dc.T5DataCollator(tokenizer=vocab, seed=0, **settings)
    plain = PerExampleSpanCorruptionCollator(vocab, seed=0, **settings)
    blocks = corpus_blocks(raw_length, max(args.batch_sizes))
    results = {}
    for batch in args.batch_sizes:
        examples = [{"input_ids": blocks[i], "idx": i, "epoch": 0} for i in range(batch)]
        for collator in (ours, plain):  # correctness, and one untimed warm-up call each
            check_span_corruption(collator(examples), list(blocks[:batch]), vocab, args.input_length)
        results[batch] = time_pair(ours, plain, examples, args.repeats)
        r = results[batch]
        print(
            f"batch {batch}: ours {r['ours']['examples_per_s']:,.0f} ex/s, plain {r['plain']['examples_per_s']:,.0f} "
            f"ex/s: {r['ratio']:.2f}x",
            flush=True,
        )
    objectives = time_objectives(args, vocab)
    for name, r in objectives["results"].items():
        speed = f"{r['examples_per_s']:,.0f} ex/s ({r['ratio_to_first']:.2f}x {args.objectives[0]})"
        print(f"{name}: {speed}, padding {r['input_padding']:.0%} of inputs, {r['target_padding']:.0%} of targets")
    pmi = time_pmi(args)
    speeds = pmi["pmi"]["examples_per_s"], pmi["span_corruption"]["examples_per_s"]
    print(f"pmi: {speeds[0]:,.0f} ex/s, span corruption {speeds[1]:,.0f} ex/s (same tokens): {pmi['ratio']:.2f}x")
    summary = {
        "raw_length": raw_length,
        "target_length": target_length,
        "results": results,
        "headline": results[args.batch_size],
        "objectives": objectives,
        "pmi": pmi,
        "seconds": time.perf_counter() - started,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(render(args, summary, machine), encoding="utf-8")
    print(f"written to {args.output}")
    return summary


def _share(value) -> str:
    return "?" if value is None else f"{value:.0%}"


def render(args, summary: dict, machine: dict) -> str:
    raw, results = summary["raw_length"], summary["results"]
    head = summary["headline"]
    command = "`.venv/bin/python -m bench.collator" + (" --quick`" if args.quick else "`")
    lines = [
        "## Span-corruption collator: vectorised T5DataCollator vs the per-example recipe",
        "",
        f"Command: {command}" + (" (quick mode: a smoke test, not numbers to quote)" if args.quick else ""),
        "",
        f"Blocks of {raw} raw tokens -> {args.input_length} inputs / {summary['target_length']} targets, noise "
        f"density {args.noise_density:g}, mean span length {args.mean_noise_span_length:g}; the same examples for "
        f"both; {args.repeats} timed calls per collator and batch size, interleaved; outputs checked (inputs + labels "
        "rebuild every block).",
        "",
        "| batch | ours examples/s (median / best) | per-example examples/s (median / best) | ours / per-example "
        "(median / best) | ms per batch ours / per-example (median) | CPU taken by others |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch, r in results.items():
        o, p = r["ours"], r["plain"]
        ratio = f"{r['ratio']:.2f}x / {r['ratio_best']:.2f}x"
        lines.append(
            f"| {batch} | {o['examples_per_s']:,.0f} / {o['best_examples_per_s']:,.0f} | "
            f"{p['examples_per_s']:,.0f} / {p['best_examples_per_s']:,.0f} | "
            f"{'**' + ratio + '**' if batch == args.batch_size else ratio} | "
            f"{o['median_ms']:.2f} / {p['median_ms']:.2f} | {_share(r['contention'])} |"
        )
    slower = [batch for batch, r in results.items() if r["ratio"] < 1.0]
    lines += [
        "",
        f"- **Batch {args.batch_size}: ours {head['ours']['examples_per_s']:,.0f} examples/s, the per-example recipe "
        f"{head['plain']['examples_per_s']:,.0f}: {head['ratio']:.2f}x** (median calls).",
        "- "
        + (
            f"Ours is slower than the per-example recipe at batch size(s) {', '.join(map(str, slower))}: a fixed "
            "per-call cost (about 40 numpy calls for the keys, hashes and sorts) that one or two examples do not "
            "amortise."
            if slower
            else "Ours is faster at every batch size timed."
        ),
        "- Ours is a pure function of (seed, epoch, idx) per example; the per-example recipe draws from one "
        "sequential RNG, so its masks depend on batch composition and worker count.",
    ]
    lines += render_objectives(args, summary["objectives"])
    lines += render_pmi(args, summary["pmi"])
    lines += ["", f"- Run time: {summary['seconds']:.0f} s."]
    worst = max((r["contention"] or 0.0 for r in results.values()), default=0.0)
    lines += common.report_tail(
        worst,
        "while a batch size was timed; both collators ran interleaved under it, so the ratios hold better than the "
        "absolute rates.",
        machine,
    )
    return "\n".join(lines) + "\n"


def render_objectives(args, objectives: dict) -> list[str]:
    results, first = objectives["results"], args.objectives[0]
    lines = [
        "",
        f"### Pre-training objectives (batch {objectives['batch_size']}, {args.input_length} inputs)",
        "",
        f"`data_collators.make_pretraining_collator` per objective; {args.repeats} timed calls each, interleaved; "
        f"padding over {SAMPLE_BATCHES} batches. CPU taken by others: {_share(objectives['contention'])}.",
        "",
        f"| objective | raw block | longest target | examples/s (median / best) | vs {first} | mean padded input / "
        "target width | padding: inputs / targets |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['raw_length']} | {r['target_length']} | {r['examples_per_s']:,.0f} / "
            f"{r['best_examples_per_s']:,.0f} | {r['ratio_to_first']:.2f}x | {r['mean_input_width']:.0f} / "
            f"{r['mean_target_width']:.0f} | {r['input_padding']:.0%} / {r['target_padding']:.0%} |"
        )
    lines += [
        "",
        "- ul2 and prefix_lm pad each batch to its own longest input and target (dynamic padding); span corruption's "
        "lengths are fixed, so its only padding is the few positions its inputs and targets leave free.",
    ]
    return lines


def render_pmi(args, pmi: dict) -> list[str]:
    p, s = pmi["pmi"], pmi["span_corruption"]
    return [
        "",
        f"### PMI masking (batch {pmi['batch_size']}, {args.input_length} inputs, real tokens)",
        "",
        f"A tokenizer of {pmi['tokenizer_size']:,} pieces and a PMI vocabulary of {pmi['vocabulary_ngrams']:,} "
        f"n-grams built from {CORPUS.name} of {CORPUS.parent.name} ({pmi['setup_s']:.1f} s), the corpus packed into "
        f"blocks; {args.repeats} timed calls each, interleaved. CPU taken by others: {_share(pmi['contention'])}.",
        "",
        "| collator | examples/s (median / best) | ms per batch (median) |",
        "|---|---:|---:|",
        f"| pmi | {p['examples_per_s']:,.0f} / {p['best_examples_per_s']:,.0f} | {p['median_ms']:.2f} |",
        f"| span_corruption | {s['examples_per_s']:,.0f} / {s['best_examples_per_s']:,.0f} | {s['median_ms']:.2f} |",
        "",
        f"- **PMI masking runs at {pmi['ratio']:.2f}x span corruption's speed**; "
        f"{pmi['ngram_spans_per_example']:.1f} n-gram spans per example, {pmi['fallbacks']} of {pmi['examples']} "
        "examples fell back to T5's mask.",
        f"- A T5-base training step on one GPU consumes about {T5_BASE_GPU_EXAMPLES_PER_S} examples/s: PMI's collator "
        f"does {p['examples_per_s'] / T5_BASE_GPU_EXAMPLES_PER_S:.1f}x that on one core.",
    ]


if __name__ == "__main__":
    main()
