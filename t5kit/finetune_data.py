"""Fine-tuning data: a task record + files or hub -> text pairs -> token ids, generated from the record.

Every task goes through the same three steps, with nothing task-specific here:
1. `load_splits`: raw rows with the hub schema (t5kit.task_files), per split.
2. `to_text`: `source`/`target` strings from the record (t5kit.tasks.format_source / format_target), plus, where the
   record asks for them, `references` (every gold text: ReCoRD, SQuAD) and `group` (MultiRC's question) for the
   metrics; `idx` is kept for leaderboard files. Training rows of a `train_on_each_answer` record are repeated once
   per gold answer (T5 preprocessors.record).
3. `tokenize`: ids, labels and a `length` column (for length-grouped batches); truncation is counted.

Tasks: `--benchmark glue|superglue|summarization|translation|qa --dataset_name <task>` (hub, or `--data_dir` for the
GLUE/SuperGLUE downloads), or `--benchmark custom` with your files, where `--dataset_name` picks the metric set:
custom (exact match, the default), summarization (ROUGE), translation (BLEU, chrF) or qa (SQuAD EM/F1).
`--dataset_name all` or `a,b,benchmark/c` names a mixture (`resolve_tasks`); each task goes through the same steps
and t5kit.mixtures draws the one training set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from constants import CUSTOM, DATASET_VALS
from t5kit.args import UsageError
from t5kit.corpus import column_sum
from t5kit.mixtures import T5_MIXING_RATE_CAP, build_mixture, format_rates_table, mixing_rates, mixture_counts
from t5kit.task_files import load_benchmark_split, load_custom_split
from t5kit.tasks import (
    TaskSpec,
    custom_task,
    format_source,
    format_target,
    get_task,
    group_of,
    max_target_length,
    references_of,
    target_candidates,
)

logger = logging.getLogger(__name__)


@dataclass
class FineTuneDataArguments:
    """Which task and data to fine-tune on."""

    benchmark: str = field(
        default="glue",
        metadata={"help": "Benchmark of --dataset_name: glue, superglue, summarization, translation, qa, or custom."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Task in the benchmark, e.g. sst2, cb, xsum; custom: the metric set "
            "(custom = exact match, summarization, translation, qa). A mixture (one model on several "
            "tasks): 'all' (every task of --benchmark with training data and a metric) or a "
            "comma-separated list, e.g. sst2,cola or glue/sst2,superglue/rte."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Local files in the official layout (GLUE: DIR/SST-2/{train,dev,test}.tsv; SuperGLUE: "
            "DIR/CB/{train,val,test}.jsonl), or DIR/<benchmark>/... (mixtures across benchmarks); "
            "default: hub."
        },
    )
    train_file: str | None = field(default=None, metadata={"help": "custom: training data (.jsonl/.json/.csv/.tsv)."})
    validation_file: str | None = field(default=None, metadata={"help": "custom: validation data."})
    test_file: str | None = field(default=None, metadata={"help": "custom: test data (targets optional)."})
    source_column: str = field(default="source", metadata={"help": "custom: the input text column."})
    target_column: str = field(default="target", metadata={"help": "custom: the target text column."})
    source_id: str = field(default="s", metadata={"help": 'custom, t2t-tuner lines {"translation": {s: .., t: ..}}.'})
    target_id: str = field(default="t", metadata={"help": "custom, t2t-tuner format: the target key."})
    prefix: str = field(default="", metadata={"help": "custom: a task prefix put before every input."})
    mode_token: str | None = field(
        default=None,
        metadata={"help": "A token put before every input: a UL2 mode token ([NLU], [NLG] or [S2S]) for a model "
                  "pre-trained with --objective ul2."},
    )  # fmt: skip
    max_source_length: int = field(default=512, metadata={"help": "Inputs longer than this are truncated (counted)."})
    max_target_length: int | None = field(
        default=None, metadata={"help": "Target truncation length. Default: the longest label word, or 128 for text."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Use the first N training examples of each task. In a mixture the rates are computed after "
            "this cap, so capping large tasks moves them towards uniform mixing; --max_mixture_samples "
            "keeps the rates."
        },
    )
    max_mixture_samples: int | None = field(
        default=None,
        metadata={
            "help": "Mixtures: at most N training rows per epoch in all, drawn at the mixing rates of the full "
            "tasks (examples-proportional stays proportional)."
        },
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use the first N examples of each eval split."}
    )
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use the first N test examples."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenizing."})
    mixing_rate_cap: int = field(
        default=T5_MIXING_RATE_CAP,
        metadata={
            "help": "Mixtures: the data-set size limit K of examples-proportional mixing, rate_i ~ min(n_i, K) "
            "(T5 paper 3.5.3: 2**19). 0: no cap (T5's code default)."
        },
    )
    mixing_temperature: float = field(
        default=1.0,
        metadata={"help": "Mixtures: temperature T, rate_i ~ min(n_i, K) ** (1/T); 1 = examples-proportional."},
    )

    def __post_init__(self):
        for name in ("max_train_samples", "max_mixture_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be >= 1, got {value}")
        if self.mixing_rate_cap < 0:
            raise UsageError(f"--mixing_rate_cap must be >= 0 (0: no cap), got {self.mixing_rate_cap}")
        if not self.mixing_temperature > 0:
            raise UsageError(f"--mixing_temperature must be > 0, got {self.mixing_temperature}")
        if self.benchmark == CUSTOM:
            if not (self.train_file or self.validation_file or self.test_file):
                raise UsageError("--benchmark custom needs --train_file, --validation_file and/or --test_file")
        elif self.dataset_name is None:
            raise UsageError(f"--benchmark {self.benchmark} needs --dataset_name (a task, e.g. sst2)")
        if self.max_source_length < 2:
            raise UsageError(f"--max_source_length must be >= 2, got {self.max_source_length}")


DEFAULT_TEXT_TARGET_LENGTH = 128  # free-text targets (custom tasks) are cut here unless --max_target_length


ALL_TASKS = "all"  # --dataset_name all: every task of --benchmark with training data and a metric


def resolve_task(args: FineTuneDataArguments) -> TaskSpec:
    """The one task of a single-task run (a UsageError for a mixture)."""
    tasks = resolve_tasks(args)
    if len(tasks) != 1:
        raise UsageError(f"--dataset_name {args.dataset_name} names {len(tasks)} tasks; this needs one")
    return tasks[0]


def resolve_tasks(args: FineTuneDataArguments, train: bool = False) -> list[TaskSpec]:
    """The task records of --dataset_name: one task, 'all' (of --benchmark), or a comma-separated list whose
    entries are `task` (in --benchmark) or `benchmark/task`. `train`: every task must have a training split."""
    if args.benchmark == CUSTOM:
        name = args.dataset_name or CUSTOM
        if name == ALL_TASKS or "," in name or "/" in name:
            raise UsageError(
                "--benchmark custom takes one set of files and one metric set; mixtures are of tasks in the table "
                f"({', '.join(b for b in sorted(DATASET_VALS) if b != CUSTOM)})"
            )
        try:
            return [custom_task(args.prefix.strip(), name)]
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.dataset_name == ALL_TASKS:
        if args.benchmark not in DATASET_VALS:
            known = ", ".join(sorted(DATASET_VALS))
            raise UsageError(f"--benchmark {args.benchmark!r} is unknown; choose one of: {known}")
        tasks = [spec for spec in DATASET_VALS[args.benchmark].values()
                 if spec.train_split is not None and spec.metric_to_optimize is not None]  # fmt: skip
    else:
        names = [name.strip() for name in args.dataset_name.split(",")]
        if not all(names):
            raise UsageError(f"--dataset_name {args.dataset_name!r} has an empty entry")
        tasks = []
        for name in names:
            benchmark, _, task = name.rpartition("/")
            benchmark = benchmark or args.benchmark
            if benchmark == CUSTOM:
                raise UsageError(f"--dataset_name {name}: custom data cannot be part of a mixture")
            try:
                tasks.append(get_task(benchmark, task))
            except ValueError as err:  # names the flag and lists the benchmark's tasks (or the benchmarks)
                where = "" if len(names) == 1 else f"in --dataset_name {args.dataset_name}: "
                raise UsageError(f"{where}{err}") from None
        repeated = sorted({t.full_name for t in tasks if tasks.count(t) > 1})
        if repeated:
            raise UsageError(f"--dataset_name names {', '.join(repeated)} more than once")
    if train and len(tasks) > 1:
        untrainable = [t.full_name for t in tasks if t.train_split is None]
        if untrainable:
            raise UsageError(
                f"--do_train on a mixture: {', '.join(untrainable)} has no training split "
                "(evaluation/test only); leave it out of --dataset_name"
            )
    return tasks


@dataclass
class Splits:
    """The splits a run uses, by role. `validation` maps split name -> dataset (MNLI has two)."""

    train: datasets.Dataset | None = None
    validation: dict[str, datasets.Dataset] = field(default_factory=dict)
    test: dict[str, datasets.Dataset] = field(default_factory=dict)
    reports: list = field(default_factory=list)  # one LoadReport per file read: rows, blank lines, empty fields

    def read_counts(self) -> dict[str, dict[str, int]]:
        """For all_results.json: per file read, its rows and what was skipped (blank lines) or empty (kept)."""
        return {r.source: {"rows": r.rows, "blank_lines_skipped": r.blank_lines, "empty_text_fields": r.num_empty}
                for r in self.reports}  # fmt: skip


def _first(ds: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def task_data_dir(spec: TaskSpec, data_dir: str | None) -> str | None:
    """--data_dir for one task: DIR/<benchmark> where that folder exists (one --data_dir for a mixture across
    benchmarks: DIR/glue/SST-2/train.tsv, DIR/superglue/RTE/train.jsonl), else DIR itself."""
    if data_dir is not None and (Path(data_dir) / spec.benchmark).is_dir():
        return str(Path(data_dir) / spec.benchmark)
    return data_dir


def check_custom_files(args: FineTuneDataArguments, train: bool, evaluate: bool, predict: bool) -> None:
    """--benchmark custom: each split the run uses has its file (checked before any work)."""
    if args.benchmark != CUSTOM:
        return
    for needed, path, flag, why in (
        (train, args.train_file, "--train_file", "--do_train"),
        (
            evaluate,
            args.validation_file,
            "--validation_file",
            "evaluation (--do_eval, or --eval_strategy steps/epoch during training; "
            "--eval_strategy no trains without it)",
        ),
        (predict, args.test_file, "--test_file", "--do_predict"),
    ):
        if needed and path is None:
            raise UsageError(f"{why} needs {flag}")


def load_splits(spec: TaskSpec, args: FineTuneDataArguments, train: bool, evaluate: bool, predict: bool) -> Splits:
    """Raw rows for each needed split; file problems become UsageErrors naming file, line and flag."""
    splits = Splits()
    try:
        if args.benchmark == CUSTOM:
            files = {
                "train": (args.train_file, "--train_file"),
                "validation": (args.validation_file, "--validation_file"),
                "test": (args.test_file, "--test_file"),
            }

            def load(role: str, require_target: bool = True):
                path, flag = files[role]
                if path is None:
                    raise UsageError(f"this run needs {flag}")
                ds, report = load_custom_split(
                    path, args.source_column, args.target_column, args.source_id, args.target_id,
                    flag=flag, require_target=require_target, answer_list=spec.multiple_answers,
                )  # fmt: skip
                logger.info("%s", report.summary())
                splits.reports.append(report)
                return ds

            if train:
                splits.train = load("train")
            if evaluate:
                splits.validation["validation"] = load("validation")
            if predict:
                splits.test["test"] = load("test", require_target=False)
        else:

            def load(split: str):
                ds, report = load_benchmark_split(spec, split, task_data_dir(spec, args.data_dir))
                logger.info("%s", report.summary())
                splits.reports.append(report)
                return ds

            if train:
                if spec.train_split is None:
                    raise UsageError(f"task {spec.full_name} has no training split (evaluation only)")
                splits.train = load(spec.train_split)
            if evaluate:
                splits.validation = {name: load(name) for name in spec.validation_splits}
            if predict:
                splits.test = {name: load(name) for name in spec.test_splits}
    except UsageError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    if splits.train is not None:
        splits.train = _first(splits.train, args.max_train_samples)
    splits.validation = {k: _first(v, args.max_eval_samples) for k, v in splits.validation.items()}
    splits.test = {k: _first(v, args.max_predict_samples) for k, v in splits.test.items()}
    return splits


def to_text(spec: TaskSpec, ds: datasets.Dataset, labeled: bool, each_answer: bool = False) -> datasets.Dataset:
    """Adds `source` and `target` text from the record (target "" for unlabeled test rows).

    sst2 row {"sentence": "a gem .", "label": 1, "idx": 0} -> source "sst2 sentence: a gem .", target "positive"
    multiple_answers records also get `references` (all gold texts; [] unlabeled), group_by records `group`.
    each_answer (training rows of a train_on_each_answer record): one row per gold answer as the target.
    """
    expand = each_answer and labeled and spec.train_on_each_answer

    def convert(batch, positions):
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        out = {"source": [], "target": [], "idx": []}
        if spec.multiple_answers:
            out["references"] = []
        if spec.group_by is not None:
            out["group"] = []
        for position, row in zip(positions, rows):
            source = format_source(spec, row)
            try:
                references = references_of(spec, row) if labeled else []
                targets = references if expand else [format_target(spec, row) if labeled else ""]
            except ValueError as err:
                raise UsageError(f"example idx {row.get('idx')}: {err}") from None
            for target in targets:
                out["source"].append(source)
                out["target"].append(target)
                out["idx"].append(row.get("idx", position))  # hub text sets without idx: the row number
                if "references" in out:
                    out["references"].append(references)
                if "group" in out:
                    out["group"].append(group_of(spec, row))
        return out

    return ds.map(convert, batched=True, with_indices=True, remove_columns=ds.column_names, desc="formatting")


@dataclass
class TruncationReport:
    sources_truncated: int = 0
    targets_truncated: int = 0

    def add(self, other: "TruncationReport") -> None:
        self.sources_truncated += other.sources_truncated
        self.targets_truncated += other.targets_truncated


def tokenize(
    ds: datasets.Dataset,
    tokenizer,
    max_source_length: int,
    max_target_length: int,
    labeled: bool,
    num_proc=None,
    lead_id: int | None = None,
) -> tuple[datasets.Dataset, TruncationReport]:
    """input_ids / attention_mask / labels / length, truncating (and counting) over-long texts. EOS is kept;
    `lead_id` (a mode token) goes before every input, within max_source_length."""
    eos = tokenizer.eos_token_id
    lead = [] if lead_id is None else [lead_id]

    def cut(ids: list[int], limit: int) -> tuple[list[int], bool]:
        if len(ids) <= limit:
            return ids, False
        return ids[: limit - 1] + [eos], True

    def encode(batch):
        out = {"input_ids": [], "labels": [], "length": [], "source_truncated": [], "target_truncated": []}
        sources = tokenizer(batch["source"])["input_ids"]
        targets = tokenizer(batch["target"])["input_ids"] if labeled else [[] for _ in sources]
        for src, tgt in zip(sources, targets):
            src, src_cut = cut(src, max_source_length - len(lead))
            src = lead + src
            tgt, tgt_cut = cut(tgt, max_target_length) if labeled else (tgt, False)
            out["input_ids"].append(src)
            out["labels"].append(tgt)
            out["length"].append(len(src))
            out["source_truncated"].append(src_cut)
            out["target_truncated"].append(tgt_cut)
        if not labeled:
            del out["labels"]
        return out

    tokenized = ds.map(
        encode, batched=True, num_proc=num_proc if num_proc and num_proc > 1 else None, desc="tokenizing"
    )
    report = TruncationReport(column_sum(tokenized, "source_truncated"), column_sum(tokenized, "target_truncated"))
    return tokenized.remove_columns(["source_truncated", "target_truncated"]), report


def mode_token_id(tokenizer, token: str | None) -> int | None:
    """The id of --mode_token, which must be one of the tokenizer's own tokens (not split into pieces)."""
    if token is None:
        return None
    if token not in tokenizer.get_vocab():
        raise UsageError(f"--mode_token {token}: the tokenizer has no such token (a model pre-trained with "
                         "--objective ul2 has [NLU], [NLG] and [S2S])")  # fmt: skip
    return tokenizer.convert_tokens_to_ids(token)


def prepare_text_splits(spec, splits, tokenizer, data_args):
    """Text and token ids for every split in `splits`, with truncation counted over all of them."""
    candidates = target_candidates(spec)
    target_len = data_args.max_target_length or (
        max_target_length(spec, tokenizer) if candidates is not None else DEFAULT_TEXT_TARGET_LENGTH
    )
    report = TruncationReport()
    lead_id = mode_token_id(tokenizer, data_args.mode_token)

    def prepare(ds, labeled, each_answer=False):
        ds = to_text(spec, ds, labeled, each_answer=each_answer)
        ds, truncation = tokenize(
            ds,
            tokenizer,
            data_args.max_source_length,
            target_len,
            labeled,
            data_args.preprocessing_num_workers,
            lead_id,
        )
        report.add(truncation)
        return ds

    train = prepare(splits.train, True, each_answer=True) if splits.train is not None else None
    validation = {name: prepare(ds, True) for name, ds in splits.validation.items()}
    test = {name: prepare(ds, False) for name, ds in splits.test.items()}
    return train, validation, test, target_len, report


TRAIN_COLUMNS = ("source", "target", "input_ids", "labels", "length")  # what the mixture keeps of each task


def build_training_mixture(tasks, train_sets, data_args, train_args):
    """The one training set (t5kit.mixtures) and what to record of it."""
    names = [t.full_name for t in tasks]
    sizes = [len(ds) for ds in train_sets]
    try:
        rates = mixing_rates(sizes, data_args.mixing_rate_cap, data_args.mixing_temperature)
    except ValueError as err:
        raise UsageError(f"{err} (--max_train_samples?)") from None
    counts = mixture_counts(sizes, rates, data_args.max_mixture_samples)
    seed = train_args.data_seed if train_args.data_seed is not None else train_args.seed
    train = build_mixture(train_sets, names, counts, seed, TRAIN_COLUMNS)
    table = format_rates_table(names, sizes, rates, counts, data_args.mixing_rate_cap, data_args.mixing_temperature)
    record = {
        "mixing_rates": dict(zip(names, rates)),
        "mixing_train_examples": dict(zip(names, sizes)),
        "mixture_rows_per_epoch": dict(zip(names, counts)),
        "mixing_rate_cap": data_args.mixing_rate_cap,
        "mixing_temperature": data_args.mixing_temperature,
        "max_mixture_samples": data_args.max_mixture_samples,
    }
    return train, table, record
