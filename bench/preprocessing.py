"""Pre-training preprocessing: tokenize and pack 1, 3 and 10 MB of the real corpus with 1 and 2 processes.

    .venv/bin/python -m bench.preprocessing                     # 1, 3, 10 MB x 1, 2 processes, ~2-3 min
    .venv/bin/python -m bench.preprocessing --quick --output /tmp/p.md

The pipeline is the one `pre_train_t5.py` runs, called through the same functions: `t5kit.corpus.load_documents`
(one document per line, written to an Arrow cache by `datasets`), `drop_empty_documents`, `pack_corpus` (batched
`datasets.map` tokenization with the fast T5 tokenizer, then packing into 568-token blocks: the raw length of 512
inputs at noise 0.15 / span 3), with `num_proc` = `--preprocessing_num_workers`. The tokenizer is a SentencePiece
unigram model of 8,000 ids trained once by `t5kit.tokenizer.train_tokenizer` on the first 10 MB of the corpus and
cached under bench/out/ (its training is not timed).

Corpus: every .txt under <shared data>/corpus (10.8 MB: Gutenberg books, tiny Shakespeare, WikiText-2 valid/test),
concatenated in sorted path order; the N MB input is the first N x 10^6 bytes of that, cut at a line end (the 10 MB
input needs no repetition). Larger inputs therefore mix in more kinds of text.

Each (size, processes) run is a fresh Python process (`--_worker`) with its own empty `HF_DATASETS_CACHE`, so no
run reuses another's Arrow files or pays for its imports. Timed: from reading the text to the packed dataset
(imports and tokenizer loading excluded). MB/s counts input bytes; tokens/s counts tokens (EOS joins included).
Memory: this process polls the worker and all its descendants (the `datasets` pool workers) every 20 ms with psutil
and records the peaks of their summed RSS, summed PSS (shared pages split among the processes sharing them: forked
pool workers share most of their parent's pages, which summed RSS counts once per process) and summed anonymous
memory (RSS minus file-backed and shared pages: the Arrow files `datasets` memory-maps count in RSS but are page
cache the kernel can drop). The worker also
reports its own `getrusage` ru_maxrss (self, and its largest reaped child) and its RSS just before the timed part.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

MB = 10**6
RAW_LENGTH = 568  # compute_input_and_target_lengths(512, 0.15, 3.0)[0]: the default pre-training block


def corpus_files() -> list[Path]:
    files = sorted((common.SHARED_DATA / "corpus").rglob("*.txt"))
    if not files:
        raise SystemExit(f"no corpus under {common.SHARED_DATA / 'corpus'} (set T5_SHARED_DATA)")
    return files


def write_prefix(files: list[Path], size: int, path: Path) -> dict:
    """Writes the first `size` bytes of the concatenated files (whole lines) to `path`; repeats them if short."""
    if path.is_file() and path.stat().st_size > 0:
        return json.loads(path.with_suffix(".json").read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    written, used, passes = 0, [], 0
    with path.open("wb") as out:
        while written < size:
            passes += 1
            for name in files:
                with name.open("rb") as handle:
                    for line in handle:
                        if not line.endswith(b"\n"):
                            line += b"\n"
                        out.write(line)
                        written += len(line)
                        if written >= size:
                            break
                used.append(str(name.relative_to(common.SHARED_DATA)))
                if written >= size:
                    break
    info = {"bytes": written, "files": used, "passes": passes}
    path.with_suffix(".json").write_text(json.dumps(info))
    return info


def cached_tokenizer(files: list[Path], vocab_size: int, train_bytes: int, work_dir: Path) -> Path:
    folder = work_dir / f"tokenizer-{vocab_size}-{train_bytes}"
    if (folder / "tokenizer_config.json").is_file():
        return folder
    from t5kit.tokenizer import train_tokenizer

    sample = work_dir / "corpus" / f"tokenizer-sample-{train_bytes}.txt"
    write_prefix(files, train_bytes, sample)
    texts = (line for line in sample.read_text(encoding="utf-8").splitlines() if line.strip())
    train_tokenizer(texts, vocab_size, folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# One run, in a fresh process


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def worker(args) -> None:
    from t5kit.corpus import CorpusReport, PretrainDataArguments, drop_empty_documents, load_documents, pack_corpus
    from t5kit.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    data_args = PretrainDataArguments(train_files=[args.file], preprocessing_num_workers=args.num_proc)
    report = CorpusReport()
    baseline = _rss_bytes()
    meter = common.CpuContention().start()
    t0 = time.perf_counter()
    docs = drop_empty_documents(load_documents(data_args), report, data_args.preprocessing_num_workers)
    packed = pack_corpus(docs, tokenizer, RAW_LENGTH, data_args.preprocessing_num_workers, report)
    blocks = len(packed)
    seconds = time.perf_counter() - t0
    contention = meter.stop()
    result = {
        "seconds": seconds,
        "contention": contention,
        "blocks": blocks,
        "baseline_rss": baseline,
        "self_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "children_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        **report.as_dict(),
    }
    Path(args.result).write_text(json.dumps(result))


def _tree_memory(proc) -> tuple[int, int, int]:
    """(summed RSS, summed PSS, summed anonymous RSS) of a process and all its descendants (vanished ones count 0).

    RSS double-counts pages that forked pool workers share with their parent; PSS splits each shared page among
    its sharers, so summed PSS is the memory the tree really holds.
    """
    import psutil

    rss = pss = anon = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        anon += info.rss - getattr(info, "shared", 0)
    return rss, pss, anon


def run_one(file: Path, num_proc: int, tokenizer: Path, work_dir: Path) -> dict:
    import psutil

    cache = Path(tempfile.mkdtemp(prefix="hf-cache-", dir=work_dir))
    result_file = cache / "result.json"
    env = dict(
        os.environ,
        HF_DATASETS_CACHE=str(cache / "datasets"),
        HF_HOME=str(cache / "hf_home"),
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
    )
    command = [
        sys.executable, "-m", "bench.preprocessing", "--_worker", "--file", str(file), "--num_proc", str(num_proc),
        "--tokenizer", str(tokenizer), "--result", str(result_file),
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=common.REPO)
    watched = psutil.Process(child.pid)
    peak_rss = peak_pss = peak_anon = 0
    while child.poll() is None:
        rss, pss, anon = _tree_memory(watched)
        peak_rss, peak_pss, peak_anon = max(peak_rss, rss), max(peak_pss, pss), max(peak_anon, anon)
        time.sleep(0.02)
    wall = time.perf_counter() - started
    if child.returncode != 0 or not result_file.is_file():
        shutil.rmtree(cache, ignore_errors=True)
        raise RuntimeError(f"worker failed (exit status {child.returncode}): {' '.join(command)}")
    result = json.loads(result_file.read_text())
    shutil.rmtree(cache, ignore_errors=True)
    size = file.stat().st_size
    result.update(
        bytes=size,
        num_proc=num_proc,
        wall=wall,
        peak_tree_rss=peak_rss,
        peak_tree_pss=peak_pss,
        peak_tree_anon=peak_anon,
        mb_per_s=size / MB / result["seconds"],
        tokens_per_s=result["corpus_tokens"] / result["seconds"],
    )
    return result


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes_mb", type=float, nargs="+", default=[1, 3, 10], help="input sizes, 10^6 bytes")
    p.add_argument("--num_procs", type=int, nargs="+", default=[1, 2], help="--preprocessing_num_workers values")
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--tokenizer_train_mb", type=float, default=10.0, help="tokenizer trained on this corpus prefix")
    p.add_argument("--quick", action="store_true", help="smoke test: one 0.05 MB run, 1 process, vocab 1000")
    p.add_argument("--output", default=str(common.RESULTS_DIR / "preprocessing.md"), help="markdown written here")
    p.add_argument("--work_dir", default=str(common.WORK_DIR / "preprocessing"), help="corpus slices, tokenizer")
    # Internal: one timed run in this (fresh) process.
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--num_proc", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes_mb, args.num_procs, args.vocab_size, args.tokenizer_train_mb = [0.05], [1], 1000, 0.1
    return args


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args._worker:
        worker(args)
        return None
    started = time.perf_counter()
    machine = common.machine_info()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    files = corpus_files()
    tokenizer = cached_tokenizer(files, args.vocab_size, int(args.tokenizer_train_mb * MB), work_dir)
    inputs = {}
    for size in args.sizes_mb:
        path = work_dir / "corpus" / f"corpus-{size:g}MB.txt"
        inputs[size] = (path, write_prefix(files, int(size * MB), path))
    runs = []
    for size in args.sizes_mb:
        for num_proc in args.num_procs:
            result = run_one(inputs[size][0], num_proc, tokenizer, work_dir)
            result["size_mb"] = size
            runs.append(result)
            print(
                f"{size:g} MB, {num_proc} process(es): {result['seconds']:.1f} s, {result['mb_per_s']:.2f} MB/s, "
                f"{result['tokens_per_s']:,.0f} tokens/s, peak RSS {result['peak_tree_rss'] / 2**20:,.0f} MiB "
                f"(PSS {result['peak_tree_pss'] / 2**20:,.0f} MiB)",
                flush=True,
            )
    summary = {"runs": runs, "inputs": {k: v[1] for k, v in inputs.items()}, "seconds": time.perf_counter() - started}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(render(args, summary, machine), encoding="utf-8")
    print(f"written to {args.output}")
    return summary


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def render(args, summary: dict, machine: dict) -> str:
    runs = summary["runs"]
    command = "`.venv/bin/python -m bench.preprocessing" + (" --quick`" if args.quick else "`")
    lines = [
        "## Pre-training preprocessing: tokenize and pack the corpus (t5kit.corpus)",
        "",
        f"Command: {command}" + (" (quick mode: a smoke test, not numbers to quote)" if args.quick else ""),
        "",
        f"Pipeline: `load_documents` -> `drop_empty_documents` -> `pack_corpus` ({RAW_LENGTH}-token blocks), "
        f"SentencePiece unigram tokenizer of {args.vocab_size:,} ids (trained once on the first "
        f"{args.tokenizer_train_mb:g} MB, not timed); each run a fresh process with an empty datasets cache.",
        "",
        "| input | processes | seconds | MB/s | tokens/s | tokens | blocks | peak RSS, MiB (sum) | peak PSS, MiB (sum) "
        "| peak anonymous, MiB (sum) | RSS before the timed part, MiB | CPU taken by others |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        share = "?" if r["contention"] is None else f"{r['contention']:.0%}"
        lines.append(
            f"| {r['size_mb']:g} MB | {r['num_proc']} | {r['seconds']:.1f} | {r['mb_per_s']:.2f} | "
            f"{r['tokens_per_s']:,.0f} | {r['corpus_tokens']:,} | {r['blocks']:,} | {_mib(r['peak_tree_rss'])} | "
            f"{_mib(r['peak_tree_pss'])} | {_mib(r['peak_tree_anon'])} | {_mib(r['baseline_rss'])} | {share} |"
        )
    lines.append("")
    small, large = min(args.sizes_mb), max(args.sizes_mb)
    for num_proc in args.num_procs:
        by_size = {r["size_mb"]: r for r in runs if r["num_proc"] == num_proc}
        if small == large or small not in by_size or large not in by_size:
            continue
        a, b = by_size[small], by_size[large]
        rss_ratio = b["peak_tree_rss"] / a["peak_tree_rss"]
        pss_ratio = b["peak_tree_pss"] / a["peak_tree_pss"]
        verdict = "flat (target < 1.5x: met)" if rss_ratio < 1.5 else "NOT flat (target < 1.5x: not met)"
        lines.append(
            f"- {num_proc} process(es): **peak RSS {large:g} MB / {small:g} MB = {rss_ratio:.2f}x** "
            f"({verdict}); PSS {pss_ratio:.2f}x; speed {a['mb_per_s']:.2f} -> {b['mb_per_s']:.2f} MB/s."
        )
    for size in args.sizes_mb:
        by_proc = {r["num_proc"]: r for r in runs if r["size_mb"] == size}
        if 1 in by_proc and 2 in by_proc:
            lines.append(
                f"- {size:g} MB: 2 processes {by_proc[1]['seconds'] / by_proc[2]['seconds']:.2f}x the speed of 1."
            )
    repeated = [f"{k:g} MB" for k, v in summary["inputs"].items() if v["passes"] > 1]
    lines += [
        "- Inputs: prefixes of the concatenated corpus files (sorted paths; "
        + ("no file repeated" if not repeated else f"the corpus repeated for {', '.join(repeated)}")
        + "): "
        + ", ".join(f"{k:g} MB = {len(v['files'])} file(s)" for k, v in summary["inputs"].items())
        + ".",
        "- Memory: peaks of sums over the worker and its `datasets` pool processes, polled every 20 ms. RSS counts "
        "pages forked workers share with their parent once per process (so 2 processes look ~3x bigger); PSS splits "
        "shared pages among sharers (the real total); anonymous = RSS minus file-backed and shared pages (the "
        "memory-mapped Arrow cache counts in RSS but is reclaimable page cache).",
        f"- Run time: {summary['seconds']:.0f} s (each run's process start and imports included).",
    ]
    worst = max((r["contention"] or 0.0 for r in runs), default=0.0)
    consequence = "during a timed run: speeds (and the 2-process gain above all) are lower than on an idle machine."
    lines += common.report_tail(worst, consequence, machine)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
