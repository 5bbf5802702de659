"""`make demo`: pre-train a small T5 on text that ships with Python, then fine-tune it, all offline on CPU.

1. Corpus: the help topics of Python's own documentation (the stdlib module `pydoc_data.topics`, ~460 KB of
   English that every CPython install carries), one paragraph per line.
2. Pre-training: a SentencePiece tokenizer trained on that corpus, then `pre_train_t5.py` with span corruption.
3. Fine-tuning task "which module?": the input is a docstring of a public function or class in one of a few stdlib
   modules (math, statistics, random, logging, shutil, os.path, base64, itertools), the target is the module's
   name. Built from `inspect.getdoc` at run time, split 80/20 with a fixed seed, written as jsonl, and run through
   `fine_tune_t5.py --benchmark custom` (exact-match accuracy on generated text), twice: from the pre-trained model
   and from a random init of the same architecture and tokenizer (`random_init:`), so the gain is printed.

Nothing here is stored in the repository: the texts come from the Python install itself.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import sys
import time
from pathlib import Path

import fine_tune_t5
import pre_train_t5
from t5kit.args import RANDOM_INIT_PREFIX
from t5kit.training import RunComplete

DEMO_MODULES = ("math", "statistics", "random", "logging", "shutil", "os.path", "base64", "itertools")
MIN_DOC_CHARS = 40  # skip one-word docstrings
SPLIT_SEED = 0


def help_topic_paragraphs() -> list[str]:
    """Paragraphs of Python's help topics (pydoc_data.topics), whitespace-normalised, one per document."""
    from pydoc_data.topics import topics

    paragraphs = []
    for text in topics.values():
        for block in text.split("\n\n"):
            words = block.split()
            if words:
                paragraphs.append(" ".join(words))
    return paragraphs


def module_docstrings() -> list[dict[str, str]]:
    """{"source": first paragraph of a docstring, "target": module name}, deduplicated, in a stable order."""
    examples, seen = [], set()
    for module_name in DEMO_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(inspect.getmembers(module)):
            if name.startswith("_") or not callable(obj):
                continue
            doc = inspect.getdoc(obj) or ""
            first = " ".join(doc.split("\n\n")[0].split())
            if len(first) >= MIN_DOC_CHARS and first not in seen:
                seen.add(first)
                examples.append({"source": first, "target": module_name})
    return examples


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/demo", help="Where the demo writes everything.")
    parser.add_argument("--pretrain_steps", type=int, default=200, help="Pre-training steps (~3.5 min on 2 cores).")
    parser.add_argument("--finetune_epochs", type=int, default=10, help="Fine-tuning epochs (~1 min).")
    parser.add_argument("--model_config", default="mini", help="Model size preset.")
    parser.add_argument("--quick", action="store_true", help="A seconds-long smoke run (tests use it).")
    args = parser.parse_args(argv)
    if args.quick:
        args.pretrain_steps, args.finetune_epochs, args.model_config = 20, 1, "tiny"

    out = Path(args.output_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    paragraphs = help_topic_paragraphs()
    (data / "python_help_topics.txt").write_text("\n".join(paragraphs) + "\n", encoding="utf-8")
    examples = module_docstrings()
    random.Random(SPLIT_SEED).shuffle(examples)
    cut = int(len(examples) * 0.8)
    write_jsonl(data / "train.jsonl", examples[:cut])
    write_jsonl(data / "validation.jsonl", examples[cut:])
    print(
        f"demo data: {len(paragraphs)} help-topic paragraphs for pre-training; "
        f"{cut} train / {len(examples) - cut} validation docstrings over {len(DEMO_MODULES)} modules"
    )

    started = time.perf_counter()
    pt_dir = out / "pretrain"
    pretrain = run_or_reuse(pre_train_t5.main, pt_dir, [
        "--train_files", str(data / "python_help_topics.txt"), "--vocab_size", "2000",
        "--model_config", args.model_config, "--input_length", "128", "--per_device_train_batch_size", "16",
        "--max_steps", str(args.pretrain_steps), "--learning_rate", "2e-3", "--logging_steps", "25",
        "--save_strategy", "no", "--output_dir", str(pt_dir), "--resume_from_checkpoint", "latest",
    ])  # fmt: skip

    def finetune(model: str, folder: Path) -> dict:
        return run_or_reuse(fine_tune_t5.main, folder, [
            "--model_name_or_path", model, "--benchmark", "custom", "--prefix", "module:",
            "--train_file", str(data / "train.jsonl"), "--validation_file", str(data / "validation.jsonl"),
            "--do_train", "--do_eval", "--num_train_epochs", str(args.finetune_epochs), "--learning_rate", "1e-3",
            "--per_device_train_batch_size", "16", "--logging_steps", "10", "--save_total_limit", "1",
            "--max_target_length", "8",
            "--output_dir", str(folder), "--resume_from_checkpoint", "latest",
        ])  # fmt: skip

    # The same fine-tuning twice: from the pre-trained weights, and from a random init of the same architecture and
    # tokenizer (the control that shows what pre-training adds).
    ft_dir, control_dir = out / "finetune", out / "finetune_random_init"
    finetune_results = finetune(str(pt_dir), ft_dir)
    control = finetune(f"{RANDOM_INIT_PREFIX}{pt_dir}", control_dir)
    minutes = (time.perf_counter() - started) / 60
    chance = 100 * max(sum(e["target"] == m for e in examples[cut:]) for m in DEMO_MODULES) / (len(examples) - cut)
    nan = float("nan")
    print(
        f"\n== demo done in {minutes:.1f} min ==\n"
        f"pre-training  ({pt_dir}): eval loss {pretrain.get('eval_loss', nan):.3f}, "
        f"span-token accuracy {pretrain.get('eval_span_accuracy', nan):.1f}%\n"
        f"fine-tuning, which-module accuracy on {len(examples) - cut} docstrings "
        f"(majority-class baseline {chance:.1f}%):\n"
        f"  pre-trained  ({ft_dir}): {finetune_results.get('eval_accuracy', nan):.1f}% "
        f"(invalid {finetune_results.get('eval_invalid_rate', nan):.1f}%)\n"
        f"  random init  ({control_dir}): {control.get('eval_accuracy', nan):.1f}% "
        f"(invalid {control.get('eval_invalid_rate', nan):.1f}%)\n"
        f"predictions: {ft_dir / 'predictions'}"
    )
    return {"pretrain": pretrain, "finetune": finetune_results, "random_init": control}


def run_or_reuse(main, folder: Path, argv: list[str]) -> dict:
    """A stage's results: run it, or, when its folder holds the finished run already, read them from there."""
    try:
        return main(argv)
    except RunComplete as done:
        print(done)
        return json.loads((folder / "all_results.json").read_text(encoding="utf-8"))


if __name__ == "__main__":
    from t5kit.training import run_main

    run_main(main, sys.argv[1:])
