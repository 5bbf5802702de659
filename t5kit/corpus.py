"""The pre-training corpus: documents from files, a saved dataset or the hub, tokenized and packed into blocks.

Documents are tokenized without special tokens, joined with EOS and cut into blocks of exactly the collator's
raw length (packing), so no compute is spent on padding and the collator never sees a short block. The tail of
each packing batch that does not fill a block is dropped; that count is reported, as are skipped empty documents.

Files are read by t5kit.readers, as the fine-tuning task files are (the same encodings, quoting and errors). A blank
line is an empty document, skipped and counted (CorpusReport.empty_documents_skipped). The span-corruption settings
(--noise_density, --mean_noise_span_length, --input_length) are the collator's: data_collators owns their defaults,
checks and the raw length they give.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute
import torch

from data_collators import (
    DEFAULT_INPUT_LENGTH,
    DEFAULT_MEAN_NOISE_SPAN_LENGTH,
    DEFAULT_NOISE_DENSITY,
    check_span_corruption_settings,
)
from t5kit import readers
from t5kit.args import UsageError
from t5kit.hub import load_hub_dataset

logger = logging.getLogger(__name__)

PACKING_BATCH_DOCS = 1000  # documents per packing batch; each batch's tail (< one block) is dropped and counted
TOKENIZE_BATCH_DOCS = 1000
FILES_FLAG = "--train_files"
COLUMN_FLAG = "--text_column"


@dataclass
class PretrainDataArguments:
    """Where the pre-training text comes from and how it is corrupted."""

    train_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Text files (.txt: one document per line, or blank-line separated with --document_split "
            "blank_line), .jsonl/.json or .csv/.tsv files (with --text_column), or folders saved with save_to_disk."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text in jsonl/csv/saved data."})
    document_split: str = field(
        default="line", metadata={"help": "For .txt files: 'line' (one document per line) or 'blank_line'."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset name, e.g. allenai/c4."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset config, e.g. en."})
    dataset_split: str = field(default="train", metadata={"help": "Split of the hub dataset to read."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the corpus (no full download or cache; needs --max_steps). Use for C4-sized data."},
    )
    # Span corruption: defaults and checks are data_collators' (the collator owns these settings).
    input_length: int = field(
        default=DEFAULT_INPUT_LENGTH, metadata={"help": "Encoder input length after span corruption."}
    )
    noise_density: float = field(
        default=DEFAULT_NOISE_DENSITY, metadata={"help": "Fraction of tokens corrupted (T5: 0.15)."}
    )
    mean_noise_span_length: float = field(
        default=DEFAULT_MEAN_NOISE_SPAN_LENGTH, metadata={"help": "Mean corrupted span length (T5: 3)."}
    )
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Percent of packed blocks held out for eval (non-streaming corpora)."}
    )
    max_eval_samples: int | None = field(default=1000, metadata={"help": "At most this many eval blocks."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training blocks."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenizing and packing (datasets.map num_proc)."}
    )

    def __post_init__(self):
        if not self.train_files and not self.dataset_name:
            raise UsageError("give the corpus with --train_files FILE [FILE ...] or --dataset_name NAME")
        if self.train_files and self.dataset_name:
            raise UsageError("--train_files and --dataset_name are exclusive: pick one corpus source")
        if self.document_split not in ("line", "blank_line"):
            raise UsageError(f"--document_split must be line or blank_line, got {self.document_split!r}")
        try:  # the collator's checks, before the corpus is read and the model built
            check_span_corruption_settings(self.input_length, self.noise_density, self.mean_noise_span_length, "--")
        except ValueError as err:
            raise UsageError(str(err)) from None
        if not 0 <= self.validation_split_percentage < 100:
            raise UsageError(
                f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}"
            )


@dataclass
class CorpusReport:
    """What happened to the text on its way to blocks; printed and saved in all_results.json."""

    documents: int = 0
    empty_documents_skipped: int = 0
    tokens: int = 0
    tokens_dropped_by_packing: int = 0
    train_blocks: int = 0
    eval_blocks: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f"corpus_{key}": value for key, value in self.__dict__.items()}


# ---------------------------------------------------------------------------------------------------------------
# Reading documents


def _text_documents(path: str, document_split: str) -> Iterator[str]:
    """A .txt file's documents: one per line ("" for a blank line), or (blank_line) paragraphs joined by spaces."""
    lines = readers.read_lines(path, FILES_FLAG)
    if document_split == "line":
        for _, line in lines:
            yield line.strip()
        return
    paragraph: list[str] = []
    for _, line in lines:
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def _record_documents(path: str, text_column: str) -> Iterator[str]:
    """The `text_column` of each record of a .jsonl/.json/.csv/.tsv file (null: ""), then "" per blank line."""
    counts = readers.ReadCounts()
    for row in readers.read_records(path, FILES_FLAG, counts, columns=[text_column], columns_flag=COLUMN_FLAG):
        yield readers.text_value(row, text_column, COLUMN_FLAG, null_ok=True).strip()
    # Blank lines are empty documents, as in .txt files: skipped and counted by drop_empty_documents (which
    # counts rows of the dataset: a side counter would not survive the datasets cache).
    yield from [""] * counts.blank_lines


def _file_documents(paths: list[str], text_column: str, document_split: str) -> Iterator[dict]:
    for path in paths:
        if Path(path).suffix.lower() in readers.RECORD_SUFFIXES:
            docs = _record_documents(path, text_column)
        else:
            docs = _text_documents(path, document_split)
        for text in docs:
            yield {"text": text}


def _check_files(paths: list[str]) -> list[str]:
    for name in paths:
        readers.check_file(name, FILES_FLAG, folders=True)
    return [str(Path(name).resolve()) for name in paths]


def load_documents(args: PretrainDataArguments) -> datasets.Dataset | datasets.IterableDataset:
    """Returns a dataset with one `text` column, one row per document (empty documents not yet removed)."""
    if args.dataset_name:
        ds = load_hub_dataset(args.dataset_name, args.dataset_config_name, args.dataset_split,
                              "give the corpus as files with --train_files", streaming=args.streaming)  # fmt: skip
        return _select_text_column(ds, args.text_column, f"--dataset_name {args.dataset_name}")
    files = _check_files(args.train_files)
    saved = [f for f in files if Path(f).is_dir()]
    if saved:
        if len(saved) != len(files):
            raise UsageError("--train_files: mix of saved-dataset folders and files; give one kind")
        parts = [_select_text_column(datasets.load_from_disk(f), args.text_column, f) for f in saved]
        ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        return ds.to_iterable_dataset() if args.streaming else ds
    gen_kwargs = {"paths": files, "text_column": args.text_column, "document_split": args.document_split}
    features = datasets.Features({"text": datasets.Value("string")})
    if args.streaming:
        return datasets.IterableDataset.from_generator(_file_documents, features=features, gen_kwargs=gen_kwargs)
    # Cached by the datasets library, keyed on the generator and its arguments (file paths; contents are not
    # hashed, so the cache key also includes each file's size and mtime).
    gen_kwargs["_stamp"] = [(Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    try:
        return datasets.Dataset.from_generator(_stamped_documents, features=features, gen_kwargs=gen_kwargs)
    except datasets.exceptions.DatasetGenerationError as err:
        raise _usage_error_inside(err) from None


def _usage_error_inside(err: BaseException) -> BaseException:
    """The UsageError that `datasets` wrapped while running our generator, else the original error."""
    cause = err
    while cause is not None:
        if isinstance(cause, UsageError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return err


def _stamped_documents(paths, text_column, document_split, _stamp):
    yield from _file_documents(paths, text_column, document_split)


def _select_text_column(ds, text_column: str, where: str):
    columns = ds.column_names or []
    if columns and text_column not in columns:
        raise UsageError(f"{where}: no column {text_column!r} (--text_column); found: {', '.join(columns)}")
    if columns and columns != [text_column]:
        ds = ds.select_columns([text_column])
    return ds.rename_column(text_column, "text") if text_column != "text" else ds


def iter_texts(ds, limit: int | None = None) -> Iterator[str]:
    """Non-empty document texts (for tokenizer training), reading in batches."""
    count = 0
    for batch in ds.iter(batch_size=1000):
        for text in batch["text"]:
            if text and text.strip():
                yield text
                count += 1
                if limit is not None and count >= limit:
                    return


# ---------------------------------------------------------------------------------------------------------------
# Tokenizing and packing


def _tokenize_batch(batch, tokenizer):
    encoded = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return {"ids": encoded, "num_tokens": [len(ids) + 1 for ids in encoded]}  # +1: the EOS that joins documents


def _pack_batch(batch, raw_length: int, eos_id: int):
    """Joins a batch of tokenized documents with EOS and cuts it into full blocks of `raw_length`.

    >>> _pack_batch({"ids": [[5, 6], [7]]}, raw_length=2, eos_id=1)
    {'input_ids': [[5, 6], [1, 7]]}
    """
    pieces = [np.asarray(ids + [eos_id], dtype=np.int32) for ids in batch["ids"]]
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    usable = (len(flat) // raw_length) * raw_length
    return {"input_ids": flat[:usable].reshape(-1, raw_length).tolist()}


def _nonempty(batch):
    return [bool(text and text.strip()) for text in batch["text"]]


def drop_empty_documents(docs, report: CorpusReport, num_proc: int | None = None):
    """Removes empty documents, counting them in `report` (streamed corpora are filtered lazily, uncounted)."""
    nonempty = docs.filter(_nonempty, batched=True, **_proc(docs, num_proc))
    if not isinstance(docs, datasets.IterableDataset):
        report.documents = len(docs)
        report.empty_documents_skipped = len(docs) - len(nonempty)
        if len(nonempty) == 0:
            raise UsageError("the corpus has no non-empty documents (--train_files / --dataset_name)")
    return nonempty


def pack_corpus(docs, tokenizer, raw_length: int, num_proc: int | None, report: CorpusReport):
    """Tokenizes non-empty documents and packs them into blocks of `raw_length` ids (an `input_ids` column)."""
    streaming = isinstance(docs, datasets.IterableDataset)
    tokenized = docs.map(
        _tokenize_batch,
        batched=True,
        batch_size=TOKENIZE_BATCH_DOCS,
        fn_kwargs={"tokenizer": tokenizer},
        remove_columns=["text"],
        **_proc(docs, num_proc, "tokenizing"),
    )
    packed = tokenized.map(
        _pack_batch,
        batched=True,
        batch_size=PACKING_BATCH_DOCS,
        fn_kwargs={"raw_length": raw_length, "eos_id": tokenizer.eos_token_id},
        remove_columns=["ids", "num_tokens"],
        **_proc(docs, num_proc, "packing"),
    )
    if not streaming:
        report.tokens = column_sum(tokenized, "num_tokens")
        report.tokens_dropped_by_packing = report.tokens - len(packed) * raw_length
        if len(packed) == 0:
            raise UsageError(
                f"the corpus has {report.tokens} tokens, fewer than one block of {raw_length}: "
                "add text or lower --input_length"
            )
    return packed


def column_sum(dataset: datasets.Dataset, column: str) -> int:
    """Sum of a numeric or bool column, in one Arrow pass (select/shuffle mappings included).

    Not `np.sum(ds.with_format("numpy")[column])`: in datasets 5 a column is a lazy view, so numpy iterates it row
    by row through the formatter, with a progress-bar object per row (18 s for SST-2's two 67k-row flag columns).
    """
    total = pyarrow.compute.sum(dataset.with_format("arrow")[column]).as_py()
    return int(total or 0)  # None for an empty dataset


def _proc(ds, num_proc, desc: str | None = None) -> dict:
    if isinstance(ds, datasets.IterableDataset):
        return {}
    kwargs = {"num_proc": num_proc if num_proc and num_proc > 1 else None}
    if desc:
        kwargs["desc"] = desc
    return kwargs


def split_blocks(packed, args: PretrainDataArguments, seed: int, report: CorpusReport):
    """Holds out a seeded random subset of blocks for eval; returns (train, eval or None)."""
    if isinstance(packed, datasets.IterableDataset):
        # A stream has no length: the first --max_eval_samples blocks are held out and never trained on.
        n_eval = args.max_eval_samples or 0
        if n_eval == 0:
            return packed, None
        evaluation = datasets.Dataset.from_list(list(packed.take(n_eval)))
        report.eval_blocks = len(evaluation)
        return packed.skip(n_eval), evaluation
    n_eval = int(len(packed) * args.validation_split_percentage / 100)
    if args.max_eval_samples is not None:
        n_eval = min(n_eval, args.max_eval_samples)
    if args.validation_split_percentage > 0 and len(packed) > 1:
        n_eval = max(n_eval, 1)
    if n_eval:
        split = packed.train_test_split(test_size=n_eval, seed=seed, shuffle=True)
        train, evaluation = split["train"], split["test"]
    else:
        train, evaluation = packed, None
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    report.train_blocks, report.eval_blocks = len(train), (len(evaluation) if evaluation is not None else 0)
    return train, evaluation


class EpochIndexedBlocks(torch.utils.data.Dataset):
    """Blocks with their dataset position (`idx`) and the current epoch, so span-corruption masks are a pure
    function of (seed, epoch, idx): identical across dataloader workers, world sizes and resumes.

    accelerate's dataloader calls `set_epoch` on the dataset before each epoch's iterator is created.
    """

    def __init__(self, blocks: datasets.Dataset):
        self.blocks = blocks.with_format("numpy", columns=["input_ids"])
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, idx: int) -> dict:
        return {"input_ids": self.blocks[int(idx)]["input_ids"], "idx": int(idx), "epoch": self.epoch}

    def __getitems__(self, indices: list[int]) -> list[dict]:
        rows = self.blocks[[int(i) for i in indices]]["input_ids"]
        return [{"input_ids": row, "idx": int(i), "epoch": self.epoch} for i, row in zip(indices, rows)]


class StreamIndexedBlocks(torch.utils.data.IterableDataset):
    """A streamed corpus with running positions as `idx` (deterministic for a fixed stream order).

    `resume_at(epoch, position)` makes that epoch start at a stream position, skipping rows at the source (they are
    still read, tokenized and packed, but never batched or collated); idx keeps counting from `position`.
    """

    def __init__(self, blocks: datasets.IterableDataset):
        self.blocks = blocks
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.blocks.set_epoch(epoch)

    def resume_at(self, epoch: int, position: int) -> None:
        self._resume = (int(epoch), int(position))

    def __iter__(self):
        start = self._resume[1] if self._resume and self._resume[0] == self.epoch else 0
        rows = self.blocks.skip(start) if start else self.blocks
        for idx, row in enumerate(rows, start=start):
            yield {"input_ids": np.asarray(row["input_ids"]), "idx": idx, "epoch": self.epoch}
