"""The pre-training corpus: documents from files, a saved dataset or the hub, tokenized and packed into blocks.

Documents are tokenized without special tokens, joined with EOS and cut into blocks of exactly the collator's
raw length (packing), so no compute is spent on padding and the collator never sees a short block. The tail of
each packing batch that does not fill a block is dropped; that count is reported, as are skipped empty documents.

Files are read by t5kit.readers, as the fine-tuning task files are (the same encodings, quoting and errors). A blank
line is an empty document, skipped and counted (CorpusReport.empty_documents_skipped). The objective's settings
(--objective, --input_length, --noise_density, --mean_noise_span_length, --ul2_rates, --ul2_s_target_fraction) are the
collator's: data_collators owns their defaults, checks and the raw length they give.
"""

from __future__ import annotations

import logging
import math
import re
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
    DEFAULT_UL2_RATES,
    DEFAULT_UL2_S_TARGET_FRACTION,
    OBJECTIVES,
    PMI,
    PREFIX_LM,
    UL2,
    check_objective_settings,
)
from t5kit import readers
from t5kit.args import UsageError
from t5kit.hub import load_hub_dataset

logger = logging.getLogger(__name__)

PACKING_BATCH_DOCS = 1000  # documents per packing batch; each batch's tail (< one block) is dropped and counted
TOKENIZE_BATCH_DOCS = 1000
FILES_FLAG = "--train_files"
COLUMN_FLAG = "--text_column"
GROUPS_FLAG = "--corpus_groups"
PROBABILITIES_FLAG = "--corpus_probabilities"
STOPPING_FLAG = "--corpus_stopping_strategy"
STOPPING_STRATEGIES = ("all_exhausted", "first_exhausted")
PROBABILITY_TOLERANCE = 1e-3  # |sum - 1| allowed in --corpus_probabilities (0.333 0.333 0.333 passes); then rescaled
GROUP_COLUMN = "corpus_group"  # a mixture's documents: index of the group each one came from
GROUP_DOCUMENTS = "group_documents"  # a mixture's blocks: documents starting in the block, per group
GROUP_TOKENS = "group_tokens"  # a mixture's blocks: tokens of the block (EOS included), per group


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
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset name, e.g. allenai/c4. A comma list (allenai/c4,bookcorpus) mixes several hub "
            "corpora, one corpus group each, with --corpus_probabilities."
        },
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset config, e.g. en. With a comma list in --dataset_name: one value for all, or a comma "
            "list with one entry per dataset, empty for none (en, = en for the first, none for the second)."
        },
    )
    dataset_split: str = field(
        default="train",
        metadata={"help": "Split of the hub dataset to read (several datasets: one for all, or a comma list)."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the corpus (no full download or cache; needs --max_steps). Use for C4-sized data."},
    )
    corpus_groups: list[str] | None = field(
        default=None,
        metadata={
            "help": "Several local corpora mixed with --corpus_probabilities, one NAME=PATH[,PATH...] per group "
            "(paths as for --train_files, read one after the other; no commas inside a path), e.g. --corpus_groups "
            "wiki=wiki-0.txt,wiki-1.txt books=books.jsonl --corpus_probabilities 0.7 0.3. Replaces --train_files; "
            "hub corpora are mixed with a comma list in --dataset_name instead. --text_column and --document_split "
            "apply to every group."
        },
    )
    corpus_probabilities: list[float] | None = field(
        default=None,
        metadata={
            "help": "Probability that the next document comes from each corpus group, in the order of "
            "--corpus_groups (or of the --dataset_name list): one per group, each > 0, summing to 1 (within 0.001). "
            "Documents are drawn with datasets.interleave_datasets and the run's --seed, after empty documents are "
            "dropped and before tokenizing and packing, so every block comes from the mixture. The realised shares "
            "are printed and saved in all_results.json (corpus_mixture)."
        },
    )
    corpus_stopping_strategy: str = field(
        default="all_exhausted",
        metadata={
            "help": "When the mixture ends. all_exhausted (default): once every group has had each of its documents "
            "drawn; a group that runs out starts over, so small or heavily weighted groups repeat (as T5 repeats "
            "every mixed dataset) and no document is left unused. first_exhausted: as soon as one group runs out; "
            "nothing repeats, but the rest of the other groups is never read. Either keeps the probabilities."
        },
    )
    # The pre-training objective: defaults and checks are data_collators' (the collator owns these settings).
    objective: str = field(
        default=OBJECTIVES[0],
        metadata={
            "choices": OBJECTIVES,
            "help": "span_corruption: T5's (--noise_density, --mean_noise_span_length). ul2: UL2's mixture of "
            "denoisers (R, X and S, each input led by its mode token [NLU] [NLG] [S2S], added to the tokenizer; "
            "--ul2_rates, --ul2_s_target_fraction). prefix_lm: a random split point per block, input the prefix, "
            "target the rest. ul2 and prefix_lm pad each batch to its own longest input and target. pmi: span "
            "corruption masking the n-grams of --pmi_vocabulary whole (PMI-Masking, t5kit/pmi.py).",
        },
    )
    input_length: int = field(
        default=DEFAULT_INPUT_LENGTH,
        metadata={"help": "Encoder input length after corruption (ul2, prefix_lm: the longest input; blocks fit it)."},
    )
    noise_density: float = field(
        default=DEFAULT_NOISE_DENSITY, metadata={"help": "span_corruption: fraction of tokens corrupted (T5: 0.15)."}
    )
    mean_noise_span_length: float = field(
        default=DEFAULT_MEAN_NOISE_SPAN_LENGTH,
        metadata={"help": "span_corruption: mean corrupted span length (T5: 3)."},
    )
    ul2_rates: list[float] = field(
        default_factory=lambda: list(DEFAULT_UL2_RATES),
        metadata={
            "help": "ul2: relative weights of the R, X and S denoisers (each split equally among the family's "
            "2, 4 and 1 denoisers). Default 2 4 1: all seven equally often, as UL2's released ul2_objective."
        },
    )
    ul2_s_target_fraction: float = field(
        default=DEFAULT_UL2_S_TARGET_FRACTION,
        metadata={"help": "ul2: mean share of a block the S-denoiser (prefix LM) puts in the target, in (0, 0.5]."},
    )
    pmi_vocabulary: str | None = field(
        default=None,
        metadata={
            "help": "pmi: the n-gram vocabulary file, one n-gram of 2 to 5 words per line (build one with "
            "python -m t5kit.pmi build)."
        },
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
        given = [flag for flag, value in ((FILES_FLAG, self.train_files), (GROUPS_FLAG, self.corpus_groups),
                                          ("--dataset_name", self.dataset_name)) if value]  # fmt: skip
        if not given:
            raise UsageError(
                "give the corpus with --train_files FILE [FILE ...], --corpus_groups NAME=FILE[,FILE...] ... "
                "or --dataset_name NAME"
            )
        if len(given) > 1:
            raise UsageError(f"{' and '.join(given)} are exclusive: pick one corpus source")
        if self.document_split not in ("line", "blank_line"):
            raise UsageError(f"--document_split must be line or blank_line, got {self.document_split!r}")
        try:  # the collator's checks, before the corpus is read and the model built
            check_objective_settings(
                self.objective,
                self.input_length,
                self.noise_density,
                self.mean_noise_span_length,
                self.ul2_rates,
                self.ul2_s_target_fraction,
                prefix="--",
            )
        except ValueError as err:
            raise UsageError(str(err)) from None
        self._check_objective_flags()
        if not 0 <= self.validation_split_percentage < 100:
            raise UsageError(
                f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}"
            )
        self.mixture_probabilities()  # the mixture flags, checked before any data is read

    def _check_objective_flags(self) -> None:
        """A flag of one objective set away from its default under another objective is refused, not ignored."""
        denoising = self.objective in (UL2, PREFIX_LM)  # span corruption's flags do not apply
        refused = [flag for flag, value, default, applies in (
            ("--noise_density", self.noise_density, DEFAULT_NOISE_DENSITY, not denoising),
            ("--mean_noise_span_length", self.mean_noise_span_length, DEFAULT_MEAN_NOISE_SPAN_LENGTH, not denoising),
            ("--ul2_rates", list(self.ul2_rates), list(DEFAULT_UL2_RATES), self.objective == UL2),
            ("--ul2_s_target_fraction", self.ul2_s_target_fraction, DEFAULT_UL2_S_TARGET_FRACTION,
             self.objective == UL2),
            ("--pmi_vocabulary", self.pmi_vocabulary, None, self.objective == PMI),
        ) if value != default and not applies]  # fmt: skip
        if refused:
            verb = "does" if len(refused) == 1 else "do"
            raise UsageError(f"{' and '.join(refused)} {verb} not apply to --objective {self.objective}")
        if self.objective == PMI:
            if not self.pmi_vocabulary:
                raise UsageError(
                    "--objective pmi needs --pmi_vocabulary FILE (build one with python -m t5kit.pmi build)"
                )
            readers.check_file(self.pmi_vocabulary, "--pmi_vocabulary")

    def mixture_groups(self) -> list[CorpusGroup]:
        """The groups of a mixture (--corpus_groups, or a comma list in --dataset_name); [] for a single corpus."""
        if self.corpus_groups:
            return _file_groups(self.corpus_groups)
        if self.dataset_name and "," in self.dataset_name:
            return _hub_groups(self.dataset_name, self.dataset_config_name, self.dataset_split)
        return []

    def mixture_probabilities(self) -> list[float]:
        """--corpus_probabilities checked against the groups and rescaled to sum to exactly 1 ([] for one corpus);
        a UsageError naming the flag for a wrong count, a value <= 0 or a sum off 1 by more than the tolerance."""
        if self.corpus_stopping_strategy not in STOPPING_STRATEGIES:
            raise UsageError(
                f"{STOPPING_FLAG} must be {' or '.join(STOPPING_STRATEGIES)}, got {self.corpus_stopping_strategy!r}"
            )
        groups, given = self.mixture_groups(), self.corpus_probabilities
        names = ", ".join(group.name for group in groups)
        if not groups:
            if given:
                raise UsageError(
                    f"{PROBABILITIES_FLAG} weighs the groups of a mixture: give them with {GROUPS_FLAG} "
                    "NAME=FILE[,FILE...] NAME=FILE[,FILE...] or a comma list in --dataset_name"
                )
            return []
        if not given:
            if len(groups) == 1:
                return [1.0]
            raise UsageError(
                f"{len(groups)} corpus groups ({names}): give {PROBABILITIES_FLAG} with one probability per group, "
                "summing to 1"
            )
        if len(given) != len(groups):
            raise UsageError(
                f"{PROBABILITIES_FLAG} has {len(given)} value{'s' if len(given) != 1 else ''} for {len(groups)} "
                f"corpus groups ({names}): "
                "give one per group, in the same order"
            )
        for group, probability in zip(groups, given):
            if not probability > 0:  # also refuses NaN
                raise UsageError(
                    f"{PROBABILITIES_FLAG}: {probability:g} for group {group.name}; each must be > 0 "
                    "(a group never drawn from has no place in the mixture)"
                )
        total = math.fsum(given)
        if not abs(total - 1.0) <= PROBABILITY_TOLERANCE:
            raise UsageError(
                f"{PROBABILITIES_FLAG} {' '.join(f'{p:g}' for p in given)} sum to {total:.6g}, not 1 "
                f"(tolerance {PROBABILITY_TOLERANCE:g})"
            )
        return [probability / total for probability in given]


@dataclass(frozen=True)
class CorpusGroup:
    """One corpus of a mixture: local paths (a --corpus_groups entry) or a hub dataset (a --dataset_name entry)."""

    name: str
    paths: tuple[str, ...] = ()
    dataset: str | None = None
    config: str | None = None
    split: str = "train"


def _file_groups(entries: list[str]) -> list[CorpusGroup]:
    groups: list[CorpusGroup] = []
    for entry in entries:
        name, sep, paths = entry.partition("=")
        if not sep or not paths:
            raise UsageError(f"{GROUPS_FLAG}: {entry!r} is not NAME=PATH[,PATH...]")
        if not re.fullmatch(r"[\w.\-]+", name):
            raise UsageError(f"{GROUPS_FLAG}: group name {name!r} in {entry!r}: use letters, digits, _ . -")
        if any(group.name == name for group in groups):
            raise UsageError(f"{GROUPS_FLAG}: group {name} is given twice; list all its paths in one entry")
        files = tuple(path.strip() for path in paths.split(","))
        if not all(files):
            raise UsageError(f"{GROUPS_FLAG}: {entry!r} has an empty path (paths are separated by single commas)")
        groups.append(CorpusGroup(name=name, paths=files))
    return groups


def _comma_list(value: str | None, count: int, flag: str, empty_ok: bool) -> list[str | None]:
    """One entry per dataset of a --dataset_name list: a single value applies to all; "" is None where empty_ok."""
    items = [item.strip() for item in value.split(",")] if value is not None else [None]
    if len(items) == 1:
        items = items * count
    if len(items) != count:
        raise UsageError(
            f"{flag} {value}: {len(items)} entries for {count} datasets in --dataset_name "
            "(give one value for all, or one per dataset)"
        )
    if not empty_ok and not all(items):
        raise UsageError(f"{flag} {value}: an entry is empty")
    return [item or None for item in items]


def _hub_groups(names: str, configs: str | None, splits: str) -> list[CorpusGroup]:
    datasets_ = [name.strip() for name in names.split(",")]
    if not all(datasets_):
        raise UsageError(f"--dataset_name {names}: an entry is empty")
    groups: list[CorpusGroup] = []
    per_config = _comma_list(configs, len(datasets_), "--dataset_config_name", empty_ok=True)
    per_split = _comma_list(splits, len(datasets_), "--dataset_split", empty_ok=False)
    for dataset, config, split in zip(datasets_, per_config, per_split):
        name = f"{dataset}:{config}" if config else dataset
        if any(group.name == name for group in groups):
            raise UsageError(f"--dataset_name {names}: {name} is given twice")
        groups.append(CorpusGroup(name=name, dataset=dataset, config=config, split=split))
    return groups


@dataclass
class CorpusReport:
    """What happened to the text on its way to blocks; printed and saved in all_results.json."""

    documents: int = 0
    empty_documents_skipped: int = 0
    tokens: int = 0
    tokens_dropped_by_packing: int = 0
    train_blocks: int = 0
    eval_blocks: int = 0
    # A mixture only (left out of as_dict otherwise): per group, its probability and the documents and tokens of the
    # training blocks drawn from it (count_mixture). The same dict object goes into the results: a stream's counts
    # keep growing in place while the run reads its blocks.
    mixture: dict[str, dict] | None = None
    mixture_counted: str | None = None  # what the counts cover

    def as_dict(self) -> dict:
        return {f"corpus_{key}": value for key, value in self.__dict__.items() if value is not None}


# ---------------------------------------------------------------------------------------------------------------
# Reading documents


def _text_documents(path: str, document_split: str, flag: str = FILES_FLAG) -> Iterator[str]:
    """A .txt file's documents: one per line ("" for a blank line), or (blank_line) paragraphs joined by spaces."""
    lines = readers.read_lines(path, flag)
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


def _record_documents(path: str, text_column: str, flag: str = FILES_FLAG) -> Iterator[str]:
    """The `text_column` of each record of a .jsonl/.json/.csv/.tsv file (null: ""), then "" per blank line."""
    counts = readers.ReadCounts()
    for row in readers.read_records(path, flag, counts, columns=[text_column], columns_flag=COLUMN_FLAG):
        yield readers.text_value(row, text_column, COLUMN_FLAG, null_ok=True).strip()
    # Blank lines are empty documents, as in .txt files: skipped and counted by drop_empty_documents (which
    # counts rows of the dataset: a side counter would not survive the datasets cache).
    yield from [""] * counts.blank_lines


def _file_documents(paths: list[str], text_column: str, document_split: str, flag: str = FILES_FLAG) -> Iterator[dict]:
    for path in paths:
        if Path(path).suffix.lower() in readers.RECORD_SUFFIXES:
            docs = _record_documents(path, text_column, flag)
        else:
            docs = _text_documents(path, document_split, flag)
        for text in docs:
            yield {"text": text}


def _check_files(paths: list[str], flag: str = FILES_FLAG) -> list[str]:
    for name in paths:
        readers.check_file(name, flag, folders=True)
    return [str(Path(name).resolve()) for name in paths]


def load_documents(
    args: PretrainDataArguments, report: CorpusReport | None = None, seed: int = 42
) -> datasets.Dataset | datasets.IterableDataset:
    """Returns a dataset with one `text` column, one row per document (empty documents not yet removed).

    A mixture (--corpus_groups, or a comma list in --dataset_name) is returned already mixed: each group's empty
    documents are dropped (counted in `report`) and its rows tagged with GROUP_COLUMN, then the groups are
    interleaved with --corpus_probabilities, `seed` (the run's --seed) and --corpus_stopping_strategy.
    """
    groups = args.mixture_groups()
    if groups:
        return _load_mixture(args, groups, report if report is not None else CorpusReport(), seed)
    if args.dataset_name:
        ds = load_hub_dataset(args.dataset_name, args.dataset_config_name, args.dataset_split,
                              "give the corpus as files with --train_files", streaming=args.streaming)  # fmt: skip
        return _select_text_column(ds, args.text_column, f"--dataset_name {args.dataset_name}")
    return _load_files(args.train_files, args, FILES_FLAG)


def _load_files(names: list[str], args: PretrainDataArguments, flag: str):
    """Local files, or folders saved with save_to_disk, as one dataset of documents."""
    files = _check_files(names, flag)
    saved = [f for f in files if Path(f).is_dir()]
    if saved:
        if len(saved) != len(files):
            raise UsageError(f"{flag}: mix of saved-dataset folders and files; give one kind")
        parts = [_select_text_column(datasets.load_from_disk(f), args.text_column, f) for f in saved]
        ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        return ds.to_iterable_dataset() if args.streaming else ds
    gen_kwargs = {"paths": files, "text_column": args.text_column, "document_split": args.document_split}
    if flag != FILES_FLAG:
        gen_kwargs["flag"] = flag  # errors name the flag that gave the file
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


def _load_mixture(args: PretrainDataArguments, groups: list[CorpusGroup], report: CorpusReport, seed: int):
    """The groups' non-empty documents, interleaved: documents are mixed before tokenizing, so blocks are too.

    Empty documents are dropped per group first, so the probabilities weigh real documents (blank lines would
    otherwise take part of a group's share).
    """
    probabilities = args.mixture_probabilities()
    label = datasets.ClassLabel(names=[group.name for group in groups])
    entries = _mixture_entries(report, groups, probabilities)
    parts = []
    for index, group in enumerate(groups):
        if group.dataset:
            docs = load_hub_dataset(group.dataset, group.config, group.split,
                                    f"give local corpora with {GROUPS_FLAG}", streaming=args.streaming)  # fmt: skip
            docs = _select_text_column(docs, args.text_column, f"--dataset_name {group.dataset}")
            where = f"--dataset_name {group.dataset}"
        else:
            docs = _load_files(list(group.paths), args, GROUPS_FLAG)
            where = f"{GROUPS_FLAG} {group.name}"
        if isinstance(docs, datasets.IterableDataset):
            features = datasets.Features({"text": datasets.Value("string"), GROUP_COLUMN: label})
            tagged = docs.map(_tag_group, batched=True, fn_kwargs={"index": index}, features=features)
            part = tagged.filter(_nonempty, batched=True)
            if next(iter(part.take(1)), None) is None:  # reads the group's first non-empty document
                raise UsageError(f"{where}: the corpus group has no non-empty documents")
        else:
            tagged = docs.add_column(GROUP_COLUMN, np.full(len(docs), index, dtype=np.int64), feature=label)
            part = tagged.filter(_nonempty, batched=True, **_proc(docs, args.preprocessing_num_workers))
            if len(part) == 0:
                raise UsageError(f"{where}: the corpus group has no non-empty documents")
            report.documents += len(docs)
            report.empty_documents_skipped += len(docs) - len(part)
            entries[group.name]["source_documents"] = len(part)
        parts.append(part)
    mixture = datasets.interleave_datasets(
        parts, probabilities=probabilities, seed=seed, stopping_strategy=args.corpus_stopping_strategy
    )
    if isinstance(mixture, datasets.Dataset):
        drawn = np.bincount(np.asarray(mixture.with_format("arrow")[GROUP_COLUMN]), minlength=len(groups))
        for group, count in zip(groups, drawn):
            entries[group.name]["mixture_documents"] = int(count)
    return mixture


def _tag_group(batch, index: int):
    return {GROUP_COLUMN: [index] * len(batch["text"])}


def _mixture_entries(report: CorpusReport, groups: list[CorpusGroup], probabilities: list[float]) -> dict:
    """report.mixture, created with one entry per group if missing (the per-group results in all_results.json)."""
    if report.mixture is None:
        report.mixture = {
            group.name: {"probability": probability, "documents": 0, "share": 0.0, "tokens": 0, "token_share": 0.0}
            for group, probability in zip(groups, probabilities)
        }
    return report.mixture


def _usage_error_inside(err: BaseException) -> BaseException:
    """The UsageError that `datasets` wrapped while running our generator, else the original error."""
    cause = err
    while cause is not None:
        if isinstance(cause, UsageError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return err


def _stamped_documents(paths, text_column, document_split, _stamp, flag=FILES_FLAG):
    yield from _file_documents(paths, text_column, document_split, flag)


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


def _pack_batch(batch, raw_length: int, eos_id: int, num_groups: int = 0):
    """Joins a batch of tokenized documents with EOS and cuts it into full blocks of `raw_length`.

    >>> _pack_batch({"ids": [[5, 6], [7]]}, raw_length=2, eos_id=1)
    {'input_ids': [[5, 6], [1, 7]]}

    A mixture's blocks also count, per group, the documents that start in them and their tokens:

    >>> _pack_batch({"ids": [[5, 6], [7]], GROUP_COLUMN: [1, 0]}, raw_length=2, eos_id=1, num_groups=2)
    {'input_ids': [[5, 6], [1, 7]], 'group_documents': [[0, 1], [1, 0]], 'group_tokens': [[0, 2], [1, 1]]}
    """
    pieces = [np.asarray(ids + [eos_id], dtype=np.int32) for ids in batch["ids"]]
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    usable = (len(flat) // raw_length) * raw_length
    packed = {"input_ids": flat[:usable].reshape(-1, raw_length).tolist()}
    if num_groups:
        packed.update(_block_group_counts(batch, raw_length, usable, num_groups))
    return packed


def _block_group_counts(batch, raw_length: int, usable: int, num_groups: int) -> dict:
    """Per block of a packing batch: documents starting in it and tokens in it (EOS included), per group."""
    lengths = np.asarray([len(ids) + 1 for ids in batch["ids"]], dtype=np.int64)
    groups = np.asarray(batch[GROUP_COLUMN], dtype=np.int64)
    n_blocks = usable // raw_length
    starts = np.cumsum(lengths) - lengths
    kept = starts < usable  # a document starting in the dropped tail is not trained on
    documents = np.bincount((starts[kept] // raw_length) * num_groups + groups[kept], minlength=n_blocks * num_groups)
    token_groups = np.repeat(groups, lengths)[:usable]
    tokens = np.bincount((np.arange(usable) // raw_length) * num_groups + token_groups, minlength=n_blocks * num_groups)
    return {
        GROUP_DOCUMENTS: documents.reshape(n_blocks, num_groups).tolist(),
        GROUP_TOKENS: tokens.reshape(n_blocks, num_groups).tolist(),
    }


def _nonempty(batch):
    return [bool(text and text.strip()) for text in batch["text"]]


def drop_empty_documents(docs, report: CorpusReport, num_proc: int | None = None):
    """Removes empty documents, counting them in `report` (streamed corpora are filtered lazily, uncounted).

    A mixture is returned as it is: load_documents dropped (and counted) each group's empty documents before mixing.
    """
    if _num_groups(docs):
        return docs
    nonempty = docs.filter(_nonempty, batched=True, **_proc(docs, num_proc))
    if not isinstance(docs, datasets.IterableDataset):
        report.documents = len(docs)
        report.empty_documents_skipped = len(docs) - len(nonempty)
        if len(nonempty) == 0:
            raise UsageError("the corpus has no non-empty documents (--train_files / --dataset_name)")
    return nonempty


def pack_corpus(docs, tokenizer, raw_length: int, num_proc: int | None, report: CorpusReport):
    """Tokenizes non-empty documents and packs them into blocks of `raw_length` ids (an `input_ids` column).

    A mixture's blocks also get GROUP_DOCUMENTS and GROUP_TOKENS (per group counts; see _pack_batch)."""
    streaming = isinstance(docs, datasets.IterableDataset)
    num_groups = _num_groups(docs)
    pack_kwargs = {"raw_length": raw_length, "eos_id": tokenizer.eos_token_id}
    if num_groups:
        pack_kwargs["num_groups"] = num_groups
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
        fn_kwargs=pack_kwargs,
        remove_columns=["ids", "num_tokens", *([GROUP_COLUMN] if num_groups else [])],
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


def _num_groups(docs) -> int:
    """The number of corpus groups of a mixture's documents (GROUP_COLUMN is a ClassLabel of group names); 0 else."""
    feature = (docs.features or {}).get(GROUP_COLUMN)
    return feature.num_classes if feature is not None else 0


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
    """Holds out a seeded random subset of blocks for eval; returns (train, eval or None).

    A mixture's realised shares are counted over the training blocks (report.mixture): all at once and exactly for
    a dataset; for a stream, block by block as the run reads them (the counts grow in place while it trains).
    """
    train, evaluation = _split_blocks(packed, args, seed, report)
    groups = args.mixture_groups()
    if not groups:
        return train, evaluation
    entries = _mixture_entries(report, groups, args.mixture_probabilities())
    counts = [GROUP_DOCUMENTS, GROUP_TOKENS]
    if evaluation is not None:
        evaluation = evaluation.remove_columns(counts)
    if isinstance(train, datasets.IterableDataset):
        report.mixture_counted = (
            "documents starting in, and tokens of, the training blocks read from the stream, counted as the run "
            "read them (the trained blocks plus the data loader's look-ahead of about one batch; blocks a resumed "
            "run skipped included)"
        )
        return train.map(_StreamTally(entries, len(groups)), remove_columns=counts), evaluation
    report.mixture_counted = (
        f"documents starting in, and tokens of, the {len(train)} training blocks (exact, per epoch)"
    )
    _fill_counts(entries, _list_column_totals(train, GROUP_DOCUMENTS), _list_column_totals(train, GROUP_TOKENS))
    logger.info("%s", format_mixture(report))
    return train.remove_columns(counts), evaluation


def _split_blocks(packed, args: PretrainDataArguments, seed: int, report: CorpusReport):
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


def _list_column_totals(blocks: datasets.Dataset, column: str) -> np.ndarray:
    """Column sums of a column of equal-length int lists (one Arrow read; select/shuffle mappings included)."""
    values = blocks.with_format("arrow")[column]
    rows = np.asarray(pyarrow.compute.list_flatten(values), dtype=np.int64)
    width = len(values[0]) if len(values) else 0
    return rows.reshape(-1, width).sum(axis=0) if width else np.zeros(0, dtype=np.int64)


def _fill_counts(entries: dict, documents, tokens) -> None:
    """Writes per-group documents, tokens and their shares into report.mixture's entries (in place)."""
    doc_total, token_total = int(np.sum(documents)), int(np.sum(tokens))
    for entry, docs, toks in zip(entries.values(), documents, tokens):
        entry["documents"], entry["tokens"] = int(docs), int(toks)
        entry["share"] = round(int(docs) / doc_total, 6) if doc_total else 0.0
        entry["token_share"] = round(int(toks) / token_total, 6) if token_total else 0.0


class _StreamTally:
    """The per-group counts of the blocks a stream yields, added up as they are read (a per-row map function).

    datasets copies a stream's pipeline on the way to iterating it (skip, take, set_epoch); a tally is shared, not
    copied, so the counts reach report.mixture. Each process counts the blocks it reads itself: with the stream
    read in a data loader worker process they would stay there (pre_train_t5 refuses that combination).
    """

    def __init__(self, entries: dict, num_groups: int):
        self.entries = entries
        self.documents = np.zeros(num_groups, dtype=np.int64)
        self.tokens = np.zeros(num_groups, dtype=np.int64)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __call__(self, row: dict) -> dict:
        self.documents += np.asarray(row[GROUP_DOCUMENTS], dtype=np.int64)
        self.tokens += np.asarray(row[GROUP_TOKENS], dtype=np.int64)
        _fill_counts(self.entries, self.documents, self.tokens)
        return {}


def format_mixture(report: CorpusReport) -> str:
    """The mixture's realised shares as a Markdown table (empty string for a single corpus)."""
    if not report.mixture:
        return ""
    lines = [
        f"corpus mixture: {report.mixture_counted or 'not counted yet'}",
        "| group | probability | documents | share | tokens | token share | documents in the group | drawn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report.mixture.items():
        source, drawn = entry.get("source_documents"), entry.get("mixture_documents")
        lines.append(
            f"| {name} | {entry['probability']:.4f} | {entry['documents']} | {entry['share']:.4f} | "
            f"{entry['tokens']} | {entry['token_share']:.4f} | {'-' if source is None else source} | "
            f"{'-' if drawn is None else drawn} |"
        )
    return "\n".join(lines)


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
