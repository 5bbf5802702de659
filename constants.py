"""The task table: one frozen ``TaskSpec`` record per task, gathered in ``DATASET_VALS[benchmark][name]``.

This module is data only. The record type, its checks and everything computed from a record (text formats,
postprocessing, metrics, ``get_task``, ``register``) live in t5kit/tasks.py. Adding a task is one more ``TaskSpec``
in a tuple below (or, from your own code, one ``t5kit.tasks.register`` call); nothing else names a task.

Benchmarks in the table:

- ``glue``: the GLUE tasks (hub ``nyu-mll/glue``, or the GLUE download as TSV).
- ``superglue``: boolq, cb, copa, multirc, record, rte, wic, wsc, axb, axg (hub
  ``aps/super_glue``, or the SuperGLUE download as jsonl: ``<Task>/{train,val,
  test}.jsonl``). Formats follow T5 (``glue_utils.get_glue_text_preprocessor``:
  ``preprocessors.glue`` with sorted feature names, ``wsc``, ``record``).
  MultiRC and ReCoRD files are nested; t5kit.task_files flattens them
  (``local_flatten``) into the hub's rows: one per (question, answer option)
  for MultiRC, one per query for ReCoRD, with the struct ``idx`` kept so that
  metrics can group (``group_by``) and leaderboard files can nest.
- ``summarization`` (xsum, cnn_dailymail), ``translation`` (wmt16_en_ro),
  ``qa`` (squad): free-text targets scored with ROUGE, BLEU/chrF or SQuAD EM/F1.
- ``custom``: your own files (``--train_file``...; source/target columns).
  ``--dataset_name`` picks the metric set: ``custom`` (the default:
  exact-match accuracy), ``summarization`` (ROUGE), ``translation`` (BLEU,
  chrF) or ``qa`` (SQuAD EM/F1 against every gold answer: the target may be
  a JSON list of answers); ``--prefix`` is put before every input.

Records also carry facts that tuning reads: ``small_train_set`` (under 10,000 training examples) and
``long_inputs`` (passages); t5kit/sweep_configs.py turns them into epochs, hyperband and batch sizes.
"""

from __future__ import annotations

from t5kit.tasks import Regression, TaskSpec, task_table, tasks_from_dict

__all__ = ["DATASET_VALS", "PASTED_TASKS", "CUSTOM", "GLUE_TASKS", "SUPERGLUE_TASKS", "TEXT_TASKS", "CUSTOM_TASKS"]

# The benchmark of your own files (--benchmark custom); its records only choose a metric set.
CUSTOM = "custom"


# --------------------------------------------------------------------------
# GLUE (hub: nyu-mll/glue; files: the official GLUE download, download_glue_data.py)

GLUE_HUB_PATH = "nyu-mll/glue"
# The common GLUE split -> file layout; MNLI and ax differ.
_GLUE_FILES = (("train", "train"), ("validation", "dev"), ("test", "test"))

GLUE_TASKS = (
    # Label words are tfds GLUE label_classes, which T5 uses as targets.
    TaskSpec(
        benchmark="glue",
        name="cola",
        prefix="cola",
        input_fields=(("sentence", "sentence"),),
        label_words=("unacceptable", "acceptable"),
        metrics=("mcc",),
        metric_to_optimize="mcc",
        hub_path=GLUE_HUB_PATH,
        hub_config="cola",
        small_train_set=True,  # 8,551 training examples
        local_dir="CoLA",
        local_files=_GLUE_FILES,
        local_columns=(("sentence", "sentence"), ("label", "label")),
        # train/dev: no header; fields: source code, label, original mark, sentence.
        local_headerless_splits=("train", "validation"),
        local_headerless_columns=("source", "label", "mark", "sentence"),
        submission_files=(("test", "CoLA.tsv"),),
    ),
    TaskSpec(
        benchmark="glue",
        name="sst2",
        prefix="sst2",
        input_fields=(("sentence", "sentence"),),
        label_words=("negative", "positive"),
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=GLUE_HUB_PATH,
        hub_config="sst2",
        local_dir="SST-2",
        local_files=_GLUE_FILES,
        local_columns=(("sentence", "sentence"), ("label", "label")),
        submission_files=(("test", "SST-2.tsv"),),
    ),
    TaskSpec(
        benchmark="glue",
        name="mrpc",
        prefix="mrpc",
        input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
        label_words=("not_equivalent", "equivalent"),
        # T5 glue_utils: f1_score_with_invalid, accuracy.
        metrics=("f1", "accuracy"),
        metric_to_optimize="f1",
        hub_path=GLUE_HUB_PATH,
        hub_config="mrpc",
        small_train_set=True,  # 3,668 training examples
        local_dir="MRPC",
        local_files=_GLUE_FILES,
        local_columns=(("sentence1", "#1 String"), ("sentence2", "#2 String"), ("label", "Quality")),
        submission_files=(("test", "MRPC.tsv"),),
    ),
    TaskSpec(
        benchmark="glue",
        name="qqp",
        prefix="qqp",
        input_fields=(("question1", "question1"), ("question2", "question2")),
        label_words=("not_duplicate", "duplicate"),
        metrics=("f1", "accuracy"),
        metric_to_optimize="f1",
        hub_path=GLUE_HUB_PATH,
        hub_config="qqp",
        local_dir="QQP",
        local_files=_GLUE_FILES,
        local_columns=(("question1", "question1"), ("question2", "question2"), ("label", "is_duplicate")),
        submission_files=(("test", "QQP.tsv"),),
    ),
    TaskSpec(
        benchmark="glue",
        name="stsb",
        prefix="stsb",
        input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
        regression=Regression(low=0.0, high=5.0, steps_per_unit=5, decimals=1),
        metrics=("pearson", "spearman"),
        metric_to_optimize="pearson",
        hub_path=GLUE_HUB_PATH,
        hub_config="stsb",
        small_train_set=True,  # 5,749 training examples
        local_dir="STS-B",
        local_files=_GLUE_FILES,
        local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("label", "score")),
        submission_files=(("test", "STS-B.tsv"),),
    ),
    TaskSpec(
        benchmark="glue",
        name="mnli",
        prefix="mnli",
        input_fields=(("hypothesis", "hypothesis"), ("premise", "premise")),
        label_words=("entailment", "neutral", "contradiction"),
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=GLUE_HUB_PATH,
        hub_config="mnli",
        validation_splits=("validation_matched", "validation_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
        local_dir="MNLI",
        local_files=(
            ("train", "train"),
            ("validation_matched", "dev_matched"),
            ("validation_mismatched", "dev_mismatched"),
            ("test_matched", "test_matched"),
            ("test_mismatched", "test_mismatched"),
        ),
        # The label is the last column, gold_label (label1..label5 are annotators).
        local_columns=(("premise", "sentence1"), ("hypothesis", "sentence2"), ("label", "gold_label")),
        submission_files=(("test_matched", "MNLI-m.tsv"), ("test_mismatched", "MNLI-mm.tsv")),
        submission_label_words=True,
    ),
    TaskSpec(
        benchmark="glue",
        name="qnli",
        prefix="qnli",
        input_fields=(("question", "question"), ("sentence", "sentence")),
        label_words=("entailment", "not_entailment"),
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=GLUE_HUB_PATH,
        hub_config="qnli",
        local_dir="QNLI",
        local_files=_GLUE_FILES,
        local_columns=(("question", "question"), ("sentence", "sentence"), ("label", "label")),
        submission_files=(("test", "QNLI.tsv"),),
        submission_label_words=True,
    ),
    TaskSpec(
        benchmark="glue",
        name="rte",
        prefix="rte",
        input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
        label_words=("entailment", "not_entailment"),
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=GLUE_HUB_PATH,
        hub_config="rte",
        small_train_set=True,  # 2,490 training examples
        local_dir="RTE",
        local_files=_GLUE_FILES,
        local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("label", "label")),
        submission_files=(("test", "RTE.tsv"),),
        submission_label_words=True,
    ),
    TaskSpec(
        benchmark="glue",
        name="wnli",
        prefix="wnli",
        input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2")),
        label_words=("not_entailment", "entailment"),
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=GLUE_HUB_PATH,
        hub_config="wnli",
        small_train_set=True,  # 635 training examples
        local_dir="WNLI",
        local_files=_GLUE_FILES,
        local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("label", "label")),
        submission_files=(("test", "WNLI.tsv"),),
    ),
    TaskSpec(
        # The diagnostic set is scored with an MNLI model, so it reads like MNLI
        # (T5 glue_utils.get_glue_text_preprocessor casts ax as "mnli"). Its test
        # set has no labels, so there is nothing to score locally (T5: no metrics).
        benchmark="glue",
        name="ax",
        prefix="mnli",
        input_fields=(("hypothesis", "hypothesis"), ("premise", "premise")),
        label_words=("entailment", "neutral", "contradiction"),
        metrics=(),
        metric_to_optimize=None,
        hub_path=GLUE_HUB_PATH,
        hub_config="ax",
        train_split=None,
        validation_splits=(),
        test_splits=("test",),
        local_dir="diagnostic",
        local_files=(("test", "diagnostic"),),
        local_columns=(("premise", "sentence1"), ("hypothesis", "sentence2"), ("label", "label")),
        submission_files=(("test", "AX.tsv"),),
        submission_label_words=True,
    ),
)


# --------------------------------------------------------------------------
# SuperGLUE (hub: aps/super_glue; files: the official SuperGLUE download, jsonl)
# Formats: T5 glue_utils.get_glue_text_preprocessor -> preprocessors.glue (feature
# names sorted, unless given for multirc and wic), preprocessors.wsc, preprocessors.record;
# label words are the tfds super_glue label_classes. Leaderboard files follow the
# SuperGLUE submission format as jiant (nyu-mll/jiant v1, jiant/evaluate.py, strict format)
# writes it: <Task>.jsonl lines {"idx": ..., "label": ...}.

SUPERGLUE_HUB_PATH = "aps/super_glue"
_SUPERGLUE_FILES = (("train", "train"), ("validation", "val"), ("test", "test"))
_JSONL = ".jsonl"
_FALSE_TRUE = ("False", "True")  # tfds label_classes of the yes/no tasks
_FILE_FALSE_TRUE = ("false", "true")  # in the files (JSON booleans read the same)
_NLI_2 = ("entailment", "not_entailment")


SUPERGLUE_TASKS = (
    TaskSpec(
        benchmark="superglue",
        name="boolq",
        prefix="boolq",
        input_fields=(("passage", "passage"), ("question", "question")),
        label_words=_FALSE_TRUE,
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="boolq",
        long_inputs=True,  # passages
        local_dir="BoolQ",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        local_columns=(("passage", "passage"), ("question", "question"), ("label", "label")),
        local_label_values=_FILE_FALSE_TRUE,
        submission_files=(("test", "BoolQ.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=_FILE_FALSE_TRUE,
    ),
    TaskSpec(
        benchmark="superglue",
        name="cb",
        prefix="cb",
        input_fields=(("hypothesis", "hypothesis"), ("premise", "premise")),
        label_words=("entailment", "contradiction", "neutral"),
        # T5 SUPERGLUE_METRICS: mean_multiclass_f1(num_classes=3), accuracy.
        metrics=("macro_f1", "accuracy"),
        metric_to_optimize="macro_f1",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="cb",
        small_train_set=True,  # 250 training examples
        local_dir="CB",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        local_columns=(("hypothesis", "hypothesis"), ("premise", "premise"), ("label", "label")),
        submission_files=(("test", "CB.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=("entailment", "contradiction", "neutral"),
    ),
    TaskSpec(
        benchmark="superglue",
        name="copa",
        prefix="copa",
        input_fields=(("choice1", "choice1"), ("choice2", "choice2"), ("premise", "premise"), ("question", "question")),
        label_words=("choice1", "choice2"),
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="copa",
        small_train_set=True,  # 400 training examples
        local_dir="COPA",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        local_columns=(
            ("choice1", "choice1"),
            ("choice2", "choice2"),
            ("premise", "premise"),
            ("question", "question"),
            ("label", "label"),
        ),
        local_label_values=("0", "1"),
        submission_files=(("test", "COPA.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=(0, 1),
    ),
    TaskSpec(
        benchmark="superglue",
        name="multirc",
        prefix="multirc",
        # glue_utils: feature_names=("question", "answer", "paragraph"); preprocessors.glue
        # removes the HTML markup: "<br>" -> " ", "<b>"/"</b>" -> "".
        input_fields=(("question", "question"), ("answer", "answer"), ("paragraph", "paragraph")),
        input_substitutions=(("<br>", " "), ("<(/)?b>", "")),
        label_words=_FALSE_TRUE,
        # T5: multirc_f1_over_all_answers (F1a), mean_group_metric(all_match) over questions (EM).
        metrics=("f1a", "group_em"),
        metric_to_optimize="f1a",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="multirc",
        long_inputs=True,  # passages
        idx_fields=("paragraph", "question", "answer"),
        group_by="question",
        local_dir="MultiRC",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        local_columns=(("question", "question"), ("answer", "answer"), ("paragraph", "paragraph"), ("label", "label")),
        local_label_values=("0", "1"),
        local_flatten="superglue_multirc",
        submission_files=(("test", "MultiRC.jsonl"),),
        submission_format="superglue_multirc_jsonl",
    ),
    TaskSpec(
        benchmark="superglue",
        name="record",
        prefix="record",
        # preprocessors.record: "record query: <q> entities: <e1>, <e2> passage: <p>", with
        # "@highlight" lines of the passage turned into sentences; one training example per
        # gold answer; eval takes the best answer (deduplicate_metric(squad)).
        input_fields=(("query", "query"), ("entities", "entities"), ("passage", "passage")),
        list_input_columns=("entities",),
        input_substitutions=((r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 "), (r"\n@highlight\n", ". ")),
        label_column="answers",
        multiple_answers=True,
        train_on_each_answer=True,
        metrics=("squad_f1", "squad_em"),
        metric_to_optimize="squad_f1",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="record",
        long_inputs=True,  # passages
        idx_fields=("passage", "query"),
        local_dir="ReCoRD",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        local_columns=(("query", "query"), ("entities", "entities"), ("passage", "passage"), ("answers", "answers")),
        local_flatten="superglue_record",
        submission_files=(("test", "ReCoRD.jsonl"),),
        submission_format="superglue_jsonl",
        submission_idx="query",
    ),
    TaskSpec(
        benchmark="superglue",
        name="rte",
        prefix="rte",
        input_fields=(("hypothesis", "hypothesis"), ("premise", "premise")),
        label_words=_NLI_2,
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="rte",
        small_train_set=True,  # 2,490 training examples
        local_dir="RTE",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        local_columns=(("hypothesis", "hypothesis"), ("premise", "premise"), ("label", "label")),
        submission_files=(("test", "RTE.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=_NLI_2,
    ),
    TaskSpec(
        benchmark="superglue",
        name="wic",
        prefix="wic",
        # glue_utils: feature_names=("sentence1", "sentence2", "word"); start/end offsets unused.
        input_fields=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("word", "word")),
        label_words=_FALSE_TRUE,
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="wic",
        small_train_set=True,  # 5,428 training examples
        local_dir="WiC",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("word", "word"), ("label", "label")),
        local_label_values=_FILE_FALSE_TRUE,
        submission_files=(("test", "WiC.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=_FILE_FALSE_TRUE,
    ),
    TaskSpec(
        benchmark="superglue",
        name="wsc",
        prefix="wsc",
        # preprocessors.wsc (glue_utils uses it for wsc.fixed): "wsc text: <text>" with
        # " * " around the noun (span1) and " # " around the pronoun (span2).
        input_fields=(("text", "text"),),
        example_transform="wsc_mark_spans",
        label_words=_FALSE_TRUE,
        metrics=("accuracy",),
        metric_to_optimize="accuracy",
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="wsc.fixed",
        small_train_set=True,  # 554 training examples
        local_dir="WSC",
        local_suffix=_JSONL,
        local_files=_SUPERGLUE_FILES,
        # The download nests the spans under "target".
        local_columns=(
            ("text", "text"),
            ("span1_index", "target.span1_index"),
            ("span2_index", "target.span2_index"),
            ("span1_text", "target.span1_text"),
            ("span2_text", "target.span2_text"),
            ("label", "label"),
        ),
        local_label_values=_FILE_FALSE_TRUE,
        # jiant's _write_winograd_preds writes "False"/"True" (BoolQ and WiC: "false"/"true").
        submission_files=(("test", "WSC.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=_FALSE_TRUE,
    ),
    TaskSpec(
        # The diagnostics are scored with an RTE model, so they read like RTE: glue_utils
        # casts axb/axg as "rte" and rekeys axb's sentence1/sentence2 to premise/hypothesis.
        benchmark="superglue",
        name="axb",
        prefix="rte",
        input_fields=(("hypothesis", "sentence2"), ("premise", "sentence1")),
        label_words=_NLI_2,
        metrics=(),
        metric_to_optimize=None,
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="axb",
        train_split=None,
        validation_splits=(),
        test_splits=("test",),
        local_dir="AX-b",
        local_suffix=_JSONL,
        local_files=(("test", "AX-b"),),
        local_columns=(("sentence1", "sentence1"), ("sentence2", "sentence2"), ("label", "label")),
        submission_files=(("test", "AX-b.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=_NLI_2,
    ),
    TaskSpec(
        benchmark="superglue",
        name="axg",
        prefix="rte",
        input_fields=(("hypothesis", "hypothesis"), ("premise", "premise")),
        label_words=_NLI_2,
        metrics=(),
        metric_to_optimize=None,
        hub_path=SUPERGLUE_HUB_PATH,
        hub_config="axg",
        train_split=None,
        validation_splits=(),
        test_splits=("test",),
        local_dir="AX-g",
        local_suffix=_JSONL,
        local_files=(("test", "AX-g"),),
        local_columns=(("hypothesis", "hypothesis"), ("premise", "premise"), ("label", "label")),
        submission_files=(("test", "AX-g.jsonl"),),
        submission_format="superglue_jsonl",
        submission_labels=_NLI_2,
    ),
)


# --------------------------------------------------------------------------
# Text-to-text tasks: free-text targets. Formats: T5 preprocessors.summarize
# ("summarize: <article>"), translate ("translate English to Romanian: <en>"), squad
# ("question: <q> context: <c>"; T5 also pads punctuation with spaces, which is not done
# here: SQuAD normalisation drops punctuation before scoring anyway).

ROUGE = ("rouge1", "rouge2", "rougeL", "rougeLsum")
TRANSLATION_METRICS = ("bleu", "chrf")
SQUAD_METRICS = ("squad_em", "squad_f1")

TEXT_TASKS = (
    TaskSpec(
        benchmark="summarization",
        name="xsum",
        prefix="summarize:",
        input_fields=(("", "document"),),
        label_column="summary",
        metrics=ROUGE,
        metric_to_optimize="rougeL",
        hub_path="EdinburghNLP/xsum",
    ),
    TaskSpec(
        benchmark="summarization",
        name="cnn_dailymail",
        prefix="summarize:",
        input_fields=(("", "article"),),
        label_column="highlights",
        metrics=ROUGE,
        metric_to_optimize="rougeL",
        hub_path="abisee/cnn_dailymail",
        hub_config="3.0.0",
    ),
    TaskSpec(
        benchmark="translation",
        name="wmt16_en_ro",
        prefix="translate English to Romanian:",
        input_fields=(("", "translation.en"),),
        label_column="translation.ro",
        metrics=TRANSLATION_METRICS,
        metric_to_optimize="bleu",
        hub_path="wmt/wmt16",
        hub_config="ro-en",
    ),
    TaskSpec(
        benchmark="translation",
        name="wmt16_ro_en",
        prefix="translate Romanian to English:",
        input_fields=(("", "translation.ro"),),
        label_column="translation.en",
        metrics=TRANSLATION_METRICS,
        metric_to_optimize="bleu",
        hub_path="wmt/wmt16",
        hub_config="ro-en",
    ),
    TaskSpec(
        benchmark="qa",
        name="squad",
        prefix="",
        input_fields=(("question", "question"), ("context", "context")),
        label_column="answers.text",
        multiple_answers=True,
        metrics=SQUAD_METRICS,
        metric_to_optimize="squad_f1",
        hub_path="rajpurkar/squad",
        test_splits=(),
    ),
)


# --------------------------------------------------------------------------
# --benchmark custom: --dataset_name picks the metric set; the prefix comes from --prefix
# (t5kit.tasks.custom_task).

CUSTOM_TASKS = (
    TaskSpec(
        benchmark=CUSTOM,
        name=CUSTOM,
        prefix="",
        input_fields=(("", "source"),),
        label_column="target",
        metrics=("accuracy",),
        metric_to_optimize="accuracy",  # exact match of the whole text
        hub_path=None,
        validation_splits=("validation",),
        test_splits=("test",),
    ),
    TaskSpec(
        benchmark=CUSTOM,
        name="summarization",
        prefix="",
        input_fields=(("", "source"),),
        label_column="target",
        metrics=ROUGE,
        metric_to_optimize="rougeL",
        hub_path=None,
        validation_splits=("validation",),
        test_splits=("test",),
    ),
    TaskSpec(
        benchmark=CUSTOM,
        name="translation",
        prefix="",
        input_fields=(("", "source"),),
        label_column="target",
        metrics=TRANSLATION_METRICS,
        metric_to_optimize="bleu",
        hub_path=None,
        validation_splits=("validation",),
        test_splits=("test",),
    ),
    TaskSpec(
        benchmark=CUSTOM,
        name="qa",
        prefix="",
        input_fields=(("", "source"),),
        label_column="target",
        # The target may list several gold answers (a JSON list); the first is trained on.
        multiple_answers=True,
        metrics=SQUAD_METRICS,
        metric_to_optimize="squad_f1",
        hub_path=None,
        validation_splits=("validation",),
        test_splits=("test",),
    ),
)


# --------------------------------------------------------------------------
# The table: DATASET_VALS[benchmark][name], benchmarks and tasks in the order above.

# Tasks in the dict shape other T5 scripts document, pasted as they are; t5kit.tasks.register's docstring lists the
# keys: {"my_bench": {"my_task": {"prefix": ..., "text_column_name": ..., "label_column_name": ...,
#        "metric_names": [...], "metric_to_optimize": ..., "labels": {0: ..., 1: ...}}}}
PASTED_TASKS: dict[str, dict[str, dict]] = {}

DATASET_VALS: dict[str, dict[str, TaskSpec]] = task_table(
    GLUE_TASKS + SUPERGLUE_TASKS + TEXT_TASKS + CUSTOM_TASKS + tuple(tasks_from_dict(PASTED_TASKS))
)
