"""Pre-train T5 with span corruption (or UL2's mixture of denoisers, or a prefix LM), from scratch or continued.

    python pre_train_t5.py --train_files corpus.txt --model_config small --vocab_size 32000 \\
        --output_dir runs/pt --max_steps 10000
    accelerate launch pre_train_t5.py ...        # or: deepspeed pre_train_t5.py --deepspeed zero_stage2_config.json ...
    python pre_train_t5.py ... --objective ul2   # or prefix_lm, pmi; default span_corruption (data_collators)

Every flag: `python pre_train_t5.py --help`. The run folder holds the final model and tokenizer (Hugging Face
format, safetensors), checkpoints, all_results.json, trainer_state.json (the loss trace) and loss.png.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from data_collators import DenoisingCollator, make_pretraining_collator, objective_special_tokens
from t5kit.args import ModelArguments, T5TrainingArguments, UsageError, is_main_process, parse_args
from t5kit.corpus import (
    CorpusReport,
    EpochIndexedBlocks,
    PretrainDataArguments,
    StreamIndexedBlocks,
    drop_empty_documents,
    format_mixture,
    iter_texts,
    load_documents,
    pack_corpus,
    split_blocks,
)
from t5kit.modeling import PRETRAIN_DROPOUT, format_parameter_summary, load_model
from t5kit.tokenizer import resolve_tokenizer
from t5kit.training import (
    T5Trainer,
    run_main,
    start_run,
    token_accuracy_metrics,
    train_evaluate_save,
)

logger = logging.getLogger("pre_train_t5")

TOKENIZER_TRAINING_DOCS = 500_000  # documents sampled for --vocab_size training


@dataclass
class PretrainingArguments(T5TrainingArguments):
    """Training flags with pre-training defaults (AdamW at 1e-3 with cosine decay, as small T5s from scratch want)."""

    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "linear, cosine, constant, inverse_sqrt, ..."})
    warmup_steps: float = field(default=0.02, metadata={"help": "Warm-up steps (an int), or a fraction (< 1)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the collator's idx/epoch keys."})
    include_num_input_tokens_seen: str = field(default="all", metadata={"help": "Count input tokens for tokens/s."})
    torch_compile: bool | None = field(
        default=None,
        metadata={
            "help": "Compile the model with torch.compile. Default: on when training on a GPU (T5-base on an H200: "
            "1.56x per step after a first step of about 77 s), off on CPU, where it gains little."
        },
    )

    def __post_init__(self):
        if self.torch_compile is None:
            self.torch_compile = compiles_by_default(self.use_cpu)
        super().__post_init__()


def compiles_by_default(use_cpu: bool) -> bool:
    """--torch_compile's default: on when training on a GPU, where it pays (docs/efficiency.md), off on CPU."""
    return torch.cuda.is_available() and not use_cpu


def main(argv: list[str] | None = None, callbacks: list[TrainerCallback] = ()) -> dict:
    """Runs one pre-training job; `callbacks` are added to the Trainer's (see T5Trainer for the on_trainer hook)."""
    model_args, data_args, train_args = parse_args((ModelArguments, PretrainDataArguments, PretrainingArguments), argv)
    if data_args.streaming and train_args.max_steps <= 0:
        raise UsageError("--streaming needs --max_steps: a stream has no length to count epochs by")
    if data_args.streaming and train_args.dataloader_num_workers > 1:
        raise UsageError(
            f"--streaming with --dataloader_num_workers {train_args.dataloader_num_workers}: each worker would read "
            "its own share of the stream and number its blocks from 0, giving different blocks the same span "
            "masks and a resume skip per worker. Use --dataloader_num_workers 0 or 1."
        )
    if data_args.streaming and data_args.mixture_groups() and train_args.dataloader_num_workers > 0:
        raise UsageError(
            f"--streaming with a corpus mixture and --dataloader_num_workers {train_args.dataloader_num_workers}: a "
            "worker process draws the mixture with other random choices than the held-out eval blocks were drawn "
            "with, and keeps the realised shares to itself. Use --dataloader_num_workers 0."
        )
    resume = start_run(
        train_args,
        run_name=f"pretrain-{Path(train_args.output_dir).name}",
        group="pretrain",
        flag_groups=(model_args, data_args),
    )
    report = CorpusReport()
    with train_args.main_process_first(desc="reading the corpus"):
        docs = drop_empty_documents(
            load_documents(data_args, report, seed=train_args.seed), report, data_args.preprocessing_num_workers
        )
    tokenizer = resolve_tokenizer(
        model_args,
        train_args,
        lambda: iter_texts(docs, TOKENIZER_TRAINING_DOCS),
        needs_sentinels=True,
        special_tokens=objective_special_tokens(data_args.objective),  # ul2: its mode tokens
    )
    # The collator owns the objective's lengths (the flags were checked by it before any data was read): packing cuts
    # blocks of its raw length.
    collator = make_pretraining_collator(
        data_args.objective,
        tokenizer,
        input_length=data_args.input_length,
        seed=train_args.seed,
        noise_density=data_args.noise_density,
        mean_noise_span_length=data_args.mean_noise_span_length,
        ul2_rates=data_args.ul2_rates,
        ul2_s_target_fraction=data_args.ul2_s_target_fraction,
        pmi_vocabulary=data_args.pmi_vocabulary,
    )
    raw_length, target_length = collator.raw_length, collator.target_length
    if not isinstance(collator, DenoisingCollator):  # span_corruption, pmi: fixed lengths
        logger.info("%s: %d raw tokens -> %d input / %d target tokens", data_args.objective, raw_length,
                    collator.input_length, target_length)  # fmt: skip
    else:
        logger.info("%s: %d raw tokens -> at most %d input / %d target tokens, each batch padded to its own longest",
                    data_args.objective, raw_length, collator.input_length, target_length)  # fmt: skip
    model = load_model(model_args, tokenizer, default_dropout=PRETRAIN_DROPOUT)
    if is_main_process():
        logger.info("model:\n%s", format_parameter_summary(model))

    with train_args.main_process_first(desc="tokenizing and packing"):
        packed = pack_corpus(docs, tokenizer, raw_length, data_args.preprocessing_num_workers, report)
    train_blocks, eval_blocks = split_blocks(packed, data_args, train_args.seed, report)
    if not data_args.streaming:
        logger.info(
            "corpus: %d documents (%d empty skipped), %d tokens -> %d train / %d eval blocks of %d "
            "(%d tokens dropped at packing-batch ends)",
            report.documents,
            report.empty_documents_skipped,
            report.tokens,
            report.train_blocks,
            report.eval_blocks,
            raw_length,
            report.tokens_dropped_by_packing,
        )
    wrap = StreamIndexedBlocks if data_args.streaming else EpochIndexedBlocks
    preprocess_logits, compute_metrics = token_accuracy_metrics()
    trainer = T5Trainer(
        model=model,
        args=train_args,
        train_dataset=wrap(train_blocks),
        eval_dataset=EpochIndexedBlocks(eval_blocks) if eval_blocks is not None else None,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits,
        callbacks=list(callbacks),
    )
    extra = {
        **report.as_dict(),
        "objective": data_args.objective,
        "raw_length": raw_length,
        "input_length": data_args.input_length,
        "target_length": target_length,
        "model_parameters": sum(p.numel() for p in model.parameters()),
    }
    results = train_evaluate_save(trainer, tokenizer, resume, extra_results=extra)
    if trainer.is_world_process_zero():
        summary = ", ".join(
            f"{k}={results[k]:.4g}" for k in ("train_loss", "eval_loss", "eval_span_accuracy") if k in results
        )
        print(f"\nrun folder: {Path(train_args.output_dir).resolve()}\n{summary}")
        if report.mixture:  # a stream's counts are complete only now
            print(format_mixture(report))
    return results


if __name__ == "__main__":
    run_main(main)
