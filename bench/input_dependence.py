"""Does a pre-trained model read its input? A check of seconds per checkpoint, before a fine-tuning suite.

    .venv/bin/python -m bench.input_dependence runs/pt/checkpoint-900 runs/pt --text_file corpus.txt

For pairs of unrelated documents, each cut to `--length` tokens with a few tokens in the middle replaced by the
first sentinel, the model predicts the first target token after `<pad> <extra_id_0>`. If its decoder ignores the
encoder, both documents give the same distribution. The score is the L1 distance between the two distributions,
averaged over `--pairs` pairs: 0 when the input is ignored, 2 when the two predictions share no probability mass.
A span-corruption model that has learned only unigram statistics scores near 0
(docs/pretraining_payoff.md#why-the-pre-trained-decoder-ignores-the-encoder).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from bench import common  # noqa: F401  (sets the offline switches before transformers is imported)

import torch  # noqa: E402
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration  # noqa: E402

from t5kit.args import RANDOM_INIT_PREFIX  # noqa: E402
from t5kit.suite import pretraining_tokens  # noqa: E402

MIN_WORDS = 24  # documents shorter than this are skipped (counted)


def read_documents(path: Path, count: int, seed: int) -> tuple[list[str], int]:
    """`count` documents of at least MIN_WORDS words, drawn from the file's lines with `seed`; and how many lines
    were too short."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    long_enough = [line for line in lines if len(line.split()) >= MIN_WORDS]
    short = sum(1 for line in lines if line) - len(long_enough)
    if len(long_enough) < count:
        raise SystemExit(
            f"error: --text_file {path}: {len(long_enough)} lines of >= {MIN_WORDS} words, need {count} (2 x --pairs)"
        )
    return random.Random(seed).sample(long_enough, count), short


def corrupted_inputs(tokenizer, documents: list[str], length: int, span: int) -> torch.Tensor:
    """Each document's first `length` tokens, `span` of them in the middle replaced by <extra_id_0>, then </s>."""
    sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
    if sentinel is None or sentinel == tokenizer.unk_token_id:
        raise SystemExit("error: the model's tokenizer has no <extra_id_0>: not a span-corruption T5 tokenizer")
    rows = []
    for text in documents:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:length]
        middle = len(ids) // 2
        rows.append(ids[:middle] + [sentinel] + ids[middle + span :] + [tokenizer.eos_token_id])
    width = max(len(row) for row in rows)
    return torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])


@torch.no_grad()
def input_dependence(model_dir: str, documents: list[str], length: int = 64, span: int = 3) -> float:
    """Mean L1 distance between the first-target-token distributions of documents 2i and 2i+1."""
    random_init = model_dir.startswith(RANDOM_INIT_PREFIX)
    model_dir = model_dir.removeprefix(RANDOM_INIT_PREFIX)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if random_init:  # the control: the same architecture with fresh weights (seeded by main)
        model = T5ForConditionalGeneration(T5Config.from_pretrained(model_dir)).eval()
    else:
        model = T5ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    input_ids = corrupted_inputs(tokenizer, documents, length, span)
    sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id, sentinel]] * len(documents))
    mask = input_ids.ne(tokenizer.pad_token_id)
    logits = model(input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    probs = logits[:, -1].float().softmax(-1)
    return float((probs[0::2] - probs[1::2]).abs().sum(-1).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "models", nargs="+", help="run folders or checkpoint-N; random_init:FOLDER is its fresh-weight control"
    )
    parser.add_argument("--text_file", type=Path, required=True, help="one document per line")
    parser.add_argument("--pairs", type=int, default=64, help="document pairs to average over (64)")
    parser.add_argument("--length", type=int, default=64, help="input tokens per document (64)")
    parser.add_argument("--seed", type=int, default=0, help="which documents are drawn (0)")
    opts = parser.parse_args(argv)
    if not opts.text_file.is_file():
        raise SystemExit(f"error: --text_file {opts.text_file}: no such file")
    torch.manual_seed(opts.seed)
    documents, short = read_documents(opts.text_file, 2 * opts.pairs, opts.seed)
    print(f"{opts.pairs} pairs of documents from {opts.text_file} ({short} lines under {MIN_WORDS} words skipped)")
    print("| model | pre-training input tokens | input dependence (L1, 0-2) |\n|---|---:|---:|")
    for model_dir in opts.models:
        seen = pretraining_tokens(model_dir)
        score = input_dependence(model_dir, documents, opts.length)
        print(f"| {model_dir} | {'-' if seen is None else f'{seen:,}'} | {score:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
