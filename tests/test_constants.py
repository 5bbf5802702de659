"""Tests for the task table (constants.py) and the functions generated from a record (t5kit/tasks.py): golden
formats per GLUE task, label words, postprocessing, STS-B rounding, registry errors, the task dict `register` takes."""

import dataclasses

from absl.testing import absltest, parameterized
from transformers import ByT5Tokenizer

import constants
from metrics import INVALID, METRICS
from t5kit import tasks
from tests.helpers import REPO

GLUE_TASKS = sorted(constants.DATASET_VALS["glue"])
TOKENIZER = ByT5Tokenizer()  # byte-level: needs no vocabulary file

# One golden example per GLUE task: (hub-schema example, inputs, targets).
# Format: t5/data/preprocessors.py glue() joins [prefix, "key:", value, ...]
# with single spaces over the sorted feature names; label names are the tfds
# GLUE label_classes (t5/data/glue_utils.py). Texts are modelled on the T5
# paper, appendix D, or taken from the GLUE files named.
GOLDEN = {
    "cola": (  # T5 paper D.1
        {"sentence": "John made Bill master of himself.", "label": 1, "idx": 0},
        "cola sentence: John made Bill master of himself.",
        "acceptable",
    ),
    "sst2": (  # GLUE SST-2 dev.tsv line 2; the value's trailing space is kept, as in T5
        {"sentence": "it 's a charming and often affecting journey . ", "label": 1, "idx": 0},
        "sst2 sentence: it 's a charming and often affecting journey . ",
        "positive",
    ),
    "mrpc": (  # T5 paper D.4 (shortened)
        {
            "sentence1": "We acted because we saw the existing evidence in a new light .",
            "sentence2": 'Rather , the US acted because it saw " existing evidence " .',
            "label": 1,
            "idx": 0,
        },
        "mrpc sentence1: We acted because we saw the existing evidence in a new light . "
        'sentence2: Rather , the US acted because it saw " existing evidence " .',
        "equivalent",
    ),
    "qqp": (  # T5 paper D.6
        {
            "question1": "What attributes would have made you highly desirable in ancient Rome?",
            "question2": "How I GET OPPERTINUTY TO JOIN IT COMPANY AS A FRESHER?",
            "label": 0,
            "idx": 0,
        },
        "qqp question1: What attributes would have made you highly desirable in ancient Rome? "
        "question2: How I GET OPPERTINUTY TO JOIN IT COMPANY AS A FRESHER?",
        "not_duplicate",
    ),
    "stsb": (  # t5/data/preprocessors.py stsb() docstring
        {
            "sentence1": "Three more US soldiers killed in Afghanistan",
            "sentence2": "NATO Soldier Killed in Afghanistan",
            "label": 1.8,
            "idx": 0,
        },
        "stsb sentence1: Three more US soldiers killed in Afghanistan sentence2: NATO Soldier Killed in Afghanistan",
        "1.8",
    ),
    "mnli": (  # T5 paper D.3: hypothesis comes before premise (sorted keys)
        {
            "premise": "yeah well losing is i mean i'm i'm originally from Saint Louis",
            "hypothesis": "The St. Louis Cardinals have always won.",
            "label": 2,
            "idx": 0,
        },
        "mnli hypothesis: The St. Louis Cardinals have always won. "
        "premise: yeah well losing is i mean i'm i'm originally from Saint Louis",
        "contradiction",
    ),
    "qnli": (  # T5 paper D.5
        {
            "question": "Where did Jebe die?",
            "sentence": "Genghis Khan recalled Subutai back to Mongolia soon afterwards, "
            "and Jebe died on the road back to Samarkand.",
            "label": 0,
            "idx": 0,
        },
        "qnli question: Where did Jebe die? sentence: Genghis Khan recalled Subutai back to "
        "Mongolia soon afterwards, and Jebe died on the road back to Samarkand.",
        "entailment",
    ),
    "rte": (  # GLUE RTE dev.tsv line 2
        {
            "sentence1": "Dana Reeve, the widow of the actor Christopher Reeve, has died.",
            "sentence2": "Christopher Reeve had an accident.",
            "label": 1,
            "idx": 0,
        },
        "rte sentence1: Dana Reeve, the widow of the actor Christopher Reeve, has died. "
        "sentence2: Christopher Reeve had an accident.",
        "not_entailment",
    ),
    "wnli": (  # GLUE WNLI dev.tsv line 2; WNLI label 0 is not_entailment (tfds)
        {
            "sentence1": "The drain is clogged with hair. It has to be cleaned.",
            "sentence2": "The hair has to be cleaned.",
            "label": 0,
            "idx": 0,
        },
        "wnli sentence1: The drain is clogged with hair. It has to be cleaned. sentence2: The hair has to be cleaned.",
        "not_entailment",
    ),
    "ax": (  # glue_utils.get_glue_text_preprocessor casts ax as "mnli"
        {"premise": "The cat sat on the mat.", "hypothesis": "The cat did not sit.", "label": 2, "idx": 0},
        "mnli hypothesis: The cat did not sit. premise: The cat sat on the mat.",
        "contradiction",
    ),
}

# tfds GLUE label_classes, index = hub integer label.
LABEL_WORDS = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "stsb": None,
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
    "ax": ("entailment", "neutral", "contradiction"),
}

EVERY_TASK = [(name, name) for name in GLUE_TASKS]


class TaskTableTest(parameterized.TestCase):
    def test_glue_has_every_task(self):
        self.assertEqual(set(GLUE_TASKS), set(GOLDEN))
        self.assertEqual(set(GLUE_TASKS), set(LABEL_WORDS))

    @parameterized.named_parameters(*EVERY_TASK)
    def test_golden_format(self, name):
        spec = tasks.get_task("glue", name)
        example, inputs, targets = GOLDEN[name]
        self.assertEqual(tasks.format_source(spec, example), inputs)
        self.assertEqual(tasks.format_target(spec, example), targets)

    @parameterized.named_parameters(*EVERY_TASK)
    def test_label_words(self, name):
        spec = tasks.get_task("glue", name)
        self.assertEqual(spec.label_words, LABEL_WORDS[name])
        self.assertEqual(tasks.label_candidates(spec), None if LABEL_WORDS[name] is None else list(LABEL_WORDS[name]))

    @parameterized.named_parameters(*EVERY_TASK)
    def test_targets_survive_tokenizer_round_trip(self, name):
        spec = tasks.get_task("glue", name)
        for text in tasks.target_candidates(spec):
            ids = TOKENIZER(text)["input_ids"]
            self.assertEqual(TOKENIZER.decode(ids, skip_special_tokens=True), text)

    @parameterized.named_parameters(*EVERY_TASK)
    def test_postprocess_inverts_format_target(self, name):
        spec = tasks.get_task("glue", name)
        if spec.label_words is not None:
            for index, word in enumerate(spec.label_words):
                target = tasks.format_target(spec, {"label": index})
                self.assertEqual(target, word)
                self.assertEqual(tasks.postprocess(spec, target), index)
                self.assertEqual(tasks.postprocess(spec, f" {word}\n"), index)
        else:
            for text in tasks.target_candidates(spec):
                self.assertAlmostEqual(tasks.postprocess(spec, text), float(text))

    @parameterized.named_parameters(*EVERY_TASK)
    def test_postprocess_invalid_text(self, name):
        spec = tasks.get_task("glue", name)
        bad = ["", "maybe", "positive positive", "entailment entailment", "7.0", "-1", "nan"]
        for text in bad:
            if spec.label_words is not None and text.strip() in spec.label_words:
                continue
            self.assertEqual(tasks.postprocess(spec, text), INVALID, msg=repr(text))

    @parameterized.named_parameters(*EVERY_TASK)
    def test_record_is_consistent(self, name):
        spec = tasks.get_task("glue", name)
        self.assertEqual((spec.benchmark, spec.name), ("glue", name))
        self.assertEqual(spec.hub_path, "nyu-mll/glue")
        self.assertEqual(spec.hub_config, name)
        self.assertEqual(spec.prefix, "mnli" if name == "ax" else name)
        for metric in spec.metrics:
            self.assertIn(metric, METRICS)
        if spec.metrics:
            self.assertIn(spec.metric_to_optimize, spec.metrics)
        for split in spec.splits:
            self.assertTrue(spec.local_path(split).endswith(".tsv"))
        for split in spec.test_splits:
            self.assertTrue(spec.submission_file(split).endswith(".tsv"))
        with self.assertRaises(dataclasses.FrozenInstanceError):
            spec.prefix = "x"

    def test_mnli_and_ax_splits(self):
        mnli = tasks.get_task("glue", "mnli")
        self.assertEqual(mnli.validation_splits, ("validation_matched", "validation_mismatched"))
        self.assertEqual(mnli.local_path("validation_matched"), "MNLI/dev_matched.tsv")
        self.assertEqual(mnli.local_path("validation_mismatched"), "MNLI/dev_mismatched.tsv")
        self.assertEqual(mnli.submission_file("test_mismatched"), "MNLI-mm.tsv")
        ax = tasks.get_task("glue", "ax")
        self.assertEqual(ax.splits, ("test",))
        self.assertEqual(ax.local_path("test"), "diagnostic/diagnostic.tsv")

    def test_max_target_length_with_byt5(self):
        # ByT5: one token per byte plus EOS.
        lengths = {
            name: tasks.max_target_length(tasks.get_task("glue", name), TOKENIZER)
            for name in ("sst2", "mnli", "stsb", "mrpc")
        }
        self.assertEqual(
            lengths,
            {
                "sst2": len("positive") + 1,
                "mnli": len("contradiction") + 1,
                "stsb": len("0.0") + 1,
                "mrpc": len("not_equivalent") + 1,
            },
        )
        self.assertIsNone(tasks.max_target_length(tasks.custom_task(), TOKENIZER))

    def test_custom_task_format(self):
        spec = tasks.custom_task("summarize:")
        example = {"source": "a long text", "target": "short"}
        self.assertEqual(tasks.format_source(spec, example), "summarize: a long text")
        self.assertEqual(tasks.format_target(spec, example), "short")
        self.assertEqual(tasks.postprocess(spec, " short "), " short ")


class StsbRoundingTest(parameterized.TestCase):
    # T5 preprocessors.stsb: tf.as_string(tf.round(label * 5) / 5, precision=1).
    # tf.round rounds half to even ("banker's rounding", TF docs), so exact
    # halves such as 2.5 * 5 = 12.5 go to the even neighbour: 12 -> "2.4",
    # where round-half-up (floor(x * 5 + 0.5)) would give "2.6".
    @parameterized.parameters(
        (3.79, "3.8"),
        (1.8, "1.8"),
        (0.0, "0.0"),
        (5.0, "5.0"),
        (0.1, "0.0"),
        (0.5, "0.4"),
        (1.5, "1.6"),
        (2.5, "2.4"),
        (3.5, "3.6"),
        (4.5, "4.4"),
        (3.799999952316284, "3.8"),  # the hub stores STS-B scores as float32
        (4, "4.0"),
        # T5 multiplies the float32 label in float32: 0.1 * 5 and 3.1 * 5 are exactly 0.5 and 15.5 there, and round
        # half to even; the float64 product of the float32 scores (0.50000001, 15.4999995) would round away.
        (0.10000000149011612, "0.0"),
        (3.0999999046325684, "3.2"),
        (3.1, "3.2"),
    )
    def test_rounding(self, score, expected):
        spec = tasks.get_task("glue", "stsb")
        self.assertEqual(tasks.format_target(spec, {"label": score}), expected)

    def test_every_three_decimal_score_as_t5_computes_it(self):
        """T5's formula on the float32 label, written out with numpy, against format_target on the score as the hub
        gives it (float32) and as a GLUE file gives it (text -> float64), for every score 0.000 ... 5.000 (STS-B
        scores have at most 3 decimals). float64 arithmetic differs on 0.1, 3.1 and others."""
        import numpy as np

        spec = tasks.get_task("glue", "stsb")
        for k in range(5001):
            text = f"{k / 1000:.3f}"
            label = np.float32(float(text))
            expected = f"{float(np.round(label * np.float32(5)) / np.float32(5)):.1f}"
            self.assertEqual(tasks.format_target(spec, {"label": float(label)}), expected, text)
            self.assertEqual(tasks.format_target(spec, {"label": float(text)}), expected, text)

    def test_candidates(self):
        candidates = tasks.target_candidates(tasks.get_task("glue", "stsb"))
        self.assertLen(candidates, 26)
        self.assertEqual(candidates[:3], ["0.0", "0.2", "0.4"])
        self.assertEqual(candidates[-1], "5.0")

    @parameterized.parameters(7.0, -0.1, float("nan"), "3.8", True)
    def test_score_outside_range_raises(self, score):
        with self.assertRaisesRegex(ValueError, "stsb"):
            tasks.format_target(tasks.get_task("glue", "stsb"), {"label": score})


class ErrorTest(parameterized.TestCase):
    @parameterized.parameters(-1, 2, 1.0, "1", True, None)
    def test_label_outside_label_set_raises(self, label):
        with self.assertRaisesRegex(ValueError, "outside the label set"):
            tasks.format_target(tasks.get_task("glue", "sst2"), {"label": label})

    def test_missing_column_raises(self):
        with self.assertRaisesRegex(ValueError, "no column 'sentence2'"):
            tasks.format_source(tasks.get_task("glue", "rte"), {"sentence1": "a"})

    def test_duplicate_registration_raises(self):
        registry = {}
        spec = tasks.get_task("glue", "sst2")
        tasks.register(spec, registry)
        with self.assertRaisesRegex(ValueError, "already registered"):
            tasks.register(spec, registry)
        with self.assertRaisesRegex(ValueError, "glue/cola is already registered"):
            tasks.register(tasks.get_task("glue", "cola"))

    def test_unknown_task_lists_choices(self):
        with self.assertRaisesRegex(
            ValueError, "--dataset_name 'sst' .* ax, cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli"
        ):
            tasks.get_task("glue", "sst")
        with self.assertRaisesRegex(
            ValueError, "--benchmark 'superglu' .* glue, qa, summarization, superglue, translation"
        ):
            tasks.get_task("superglu", "rte")

    @parameterized.named_parameters(
        ("optimize_not_in_metrics", dict(metric_to_optimize="f1"), "metric_to_optimize"),
        ("unknown_metric", dict(metrics=("bogus",), metric_to_optimize="bogus"), "unknown metrics"),
        (
            "f1_needs_two_labels",
            dict(label_words=("a", "b", "c"), metrics=("f1",), metric_to_optimize="f1"),
            "two label words",
        ),
        ("pearson_needs_regression", dict(metrics=("pearson",), metric_to_optimize="pearson"), "regression"),
        ("both_label_kinds", dict(regression=tasks.Regression(0.0, 5.0, 5, 1)), "not both"),
        ("padded_label_word", dict(label_words=("negative", " positive")), "whitespace"),
        ("repeated_label_word", dict(label_words=("yes", "yes")), "repeat"),
        ("unknown_local_split", dict(local_files=(("dev", "dev"),)), "local_files"),
        ("unmapped_column", dict(local_columns=(("label", "label"),)), "sentence"),
        ("padded_prefix", dict(prefix="sst2 "), "whitespace"),
    )
    def test_invalid_record_raises(self, changes, message):
        with self.assertRaisesRegex(ValueError, message):
            dataclasses.replace(tasks.get_task("glue", "sst2"), **changes)


# --------------------------------------------------------------------------
# SuperGLUE and text-to-text records

SUPERGLUE_TASKS = sorted(constants.DATASET_VALS["superglue"])

# One golden example per SuperGLUE task: (hub-schema example, inputs, targets), each
# with the T5 source that defines it (google-research/text-to-text-transfer-transformer).
# glue_utils.get_glue_text_preprocessor sends every task but wsc.fixed and record to
# preprocessors.glue, which writes "<task> key: value ..." over the sorted feature names
# (multirc and wic pass feature_names); targets are the tfds super_glue label_classes.
SUPERGLUE_GOLDEN = {
    "boolq": (  # preprocessors.glue, sorted keys: passage, question (BoolQ val.jsonl line 1, shortened)
        {
            "question": "does ethanol take more energy make that produces",
            "passage": "Ethanol fuel -- All biomass goes through at least some of these steps.",
            "label": 0,
            "idx": 0,
        },
        "boolq passage: Ethanol fuel -- All biomass goes through at least some of these steps. "
        "question: does ethanol take more energy make that produces",
        "False",
    ),
    "cb": (  # preprocessors.glue, sorted keys: hypothesis, premise (CB val.jsonl line 1)
        {
            "premise": "Valence the void-brain, Valence the virtuous valet. Why couldn't the figger "
            "choose his own portion of titanic anatomy to shaft? Did he think he was helping?",
            "hypothesis": "Valence was helping",
            "label": 1,
            "idx": 0,
        },
        "cb hypothesis: Valence was helping premise: Valence the void-brain, Valence the virtuous "
        "valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft? Did he "
        "think he was helping?",
        "contradiction",
    ),
    "copa": (  # preprocessors.glue, sorted keys: choice1, choice2, premise, question (COPA val line 1)
        {
            "premise": "The man turned on the faucet.",
            "choice1": "The toilet filled with water.",
            "choice2": "Water flowed from the spout.",
            "question": "effect",
            "label": 1,
            "idx": 0,
        },
        "copa choice1: The toilet filled with water. choice2: Water flowed from the spout. "
        "premise: The man turned on the faucet. question: effect",
        "choice2",
    ),
    "multirc": (  # glue_utils feature_names=("question", "answer", "paragraph"); glue() drops <br>, <b>
        {
            "paragraph": "<b>Sent 1: </b>Tom ran home.<br><b>Sent 2: </b>He ate.<br>",
            "question": "Who ate?",
            "answer": "Tom",
            "label": 1,
            "idx": {"paragraph": 0, "question": 0, "answer": 0},
        },
        "multirc question: Who ate? answer: Tom paragraph: Sent 1: Tom ran home. Sent 2: He ate. ",
        "True",
    ),
    "record": (  # preprocessors.record docstring example, with two @highlight lines
        {
            "passage": "This is the passage.\n@highlight\nPenguins swim\n@highlight\nPigeons fly!",
            "query": "A @placeholder is a bird.",
            "entities": ["penguin", "potato", "pigeon"],
            "answers": ["penguin", "pigeon"],
            "idx": {"passage": 0, "query": 0},
        },
        "record query: A @placeholder is a bird. entities: penguin, potato, pigeon passage: "
        "This is the passage. Penguins swim. Pigeons fly!",
        "penguin",
    ),
    "rte": (  # preprocessors.glue, sorted keys: hypothesis, premise (SuperGLUE RTE val line 1, shortened)
        {
            "premise": "Dana Reeve, the widow of the actor Christopher Reeve, has died.",
            "hypothesis": "Christopher Reeve had an accident.",
            "label": 1,
            "idx": 0,
        },
        "rte hypothesis: Christopher Reeve had an accident. "
        "premise: Dana Reeve, the widow of the actor Christopher Reeve, has died.",
        "not_entailment",
    ),
    "wic": (  # glue_utils feature_names=("sentence1", "sentence2", "word") (WiC val line 1)
        {
            "word": "class",
            "sentence1": "An emerging professional class.",
            "sentence2": "Apologizing for losing your temper, even though you were badly provoked, showed real class.",
            "label": 0,
            "idx": 0,
        },
        "wic sentence1: An emerging professional class. sentence2: Apologizing for losing your "
        "temper, even though you were badly provoked, showed real class. word: class",
        "False",
    ),
    "wsc": (  # preprocessors.wsc docstring example: '* noun *', '# pronoun #'
        {
            "text": "This is a test sentence .",
            "span1_text": "test",
            "span1_index": 3,
            "span2_text": "This",
            "span2_index": 0,
            "label": 0,
            "idx": 0,
        },
        "wsc text: # This # is a * test * sentence .",
        "False",
    ),
    "axb": (  # glue_utils.register_super_glue rekeys axb sentence1/2 -> premise/hypothesis, cast as "rte"
        {"sentence1": "The cat sat on the mat.", "sentence2": "The cat did not sit on the mat.", "label": 1, "idx": 0},
        "rte hypothesis: The cat did not sit on the mat. premise: The cat sat on the mat.",
        "not_entailment",
    ),
    "axg": (  # get_glue_text_preprocessor casts axg as "rte"
        {
            "premise": "The nurse called the doctor because she was late.",
            "hypothesis": "The nurse was late.",
            "label": 0,
            "idx": 0,
        },
        "rte hypothesis: The nurse was late. premise: The nurse called the doctor because she was late.",
        "entailment",
    ),
}

# tfds super_glue label_classes; None: free text (ReCoRD answers).
SUPERGLUE_LABEL_WORDS = {
    "boolq": ("False", "True"),
    "cb": ("entailment", "contradiction", "neutral"),
    "copa": ("choice1", "choice2"),
    "multirc": ("False", "True"),
    "record": None,
    "rte": ("entailment", "not_entailment"),
    "wic": ("False", "True"),
    "wsc": ("False", "True"),
    "axb": ("entailment", "not_entailment"),
    "axg": ("entailment", "not_entailment"),
}

# T5 glue_utils.SUPERGLUE_METRICS, by our names.
SUPERGLUE_METRIC_NAMES = {
    "boolq": ("accuracy",),
    "cb": ("macro_f1", "accuracy"),
    "copa": ("accuracy",),
    "multirc": ("f1a", "group_em"),
    "record": ("squad_f1", "squad_em"),
    "rte": ("accuracy",),
    "wic": ("accuracy",),
    "wsc": ("accuracy",),
    "axb": (),
    "axg": (),
}

# Text-to-text golden examples: (benchmark, task, example, inputs, targets), with their T5 source.
TEXT_GOLDEN = (
    (
        "xsum",
        "summarization",
        "xsum",  # preprocessors.summarize: "summarize: <article>"
        {"document": "The council said the road would reopen on Friday.", "summary": "Road to reopen.", "id": "1"},
        "summarize: The council said the road would reopen on Friday.",
        "Road to reopen.",
    ),
    (
        "cnn_dailymail",
        "summarization",
        "cnn_dailymail",  # preprocessors.summarize(article, highlights)
        {"article": "(CNN) A storm hit.", "highlights": "Storm hits.\nNo one hurt.", "id": "a"},
        "summarize: (CNN) A storm hit.",
        "Storm hits.\nNo one hurt.",
    ),
    (
        "wmt16_en_ro",
        "translation",
        "wmt16_en_ro",  # preprocessors.translate docstring layout
        {"translation": {"en": "That is good.", "ro": "Este bine."}},
        "translate English to Romanian: That is good.",
        "Este bine.",
    ),
    (
        "wmt16_ro_en",
        "translation",
        "wmt16_ro_en",
        {"translation": {"en": "That is good.", "ro": "Este bine."}},
        "translate Romanian to English: Este bine.",
        "That is good.",
    ),
    (
        "squad",
        "qa",
        "squad",  # preprocessors.squad: "question: <q> context: <c>", target answers[0]
        {
            "id": "5",
            "title": "T",
            "question": "Where did Jebe die?",
            "context": "Jebe died on the road back to Samarkand.",
            "answers": {"text": ["on the road back to Samarkand", "Samarkand"], "answer_start": [10, 30]},
        },
        "question: Where did Jebe die? context: Jebe died on the road back to Samarkand.",
        "on the road back to Samarkand",
    ),
)

EVERY_SUPERGLUE_TASK = [(name, name) for name in SUPERGLUE_TASKS]


class SuperGlueTableTest(parameterized.TestCase):
    def test_superglue_has_every_task(self):
        self.assertEqual(
            set(SUPERGLUE_TASKS), {"boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc", "axb", "axg"}
        )
        self.assertEqual(set(SUPERGLUE_TASKS), set(SUPERGLUE_GOLDEN))

    @parameterized.named_parameters(*EVERY_SUPERGLUE_TASK)
    def test_golden_format(self, name):
        spec = tasks.get_task("superglue", name)
        example, inputs, targets = SUPERGLUE_GOLDEN[name]
        self.assertEqual(tasks.format_source(spec, example), inputs)
        self.assertEqual(tasks.format_target(spec, example), targets)

    @parameterized.named_parameters(*EVERY_SUPERGLUE_TASK)
    def test_label_words_and_metrics(self, name):
        spec = tasks.get_task("superglue", name)
        self.assertEqual(spec.label_words, SUPERGLUE_LABEL_WORDS[name])
        self.assertEqual(spec.metrics, SUPERGLUE_METRIC_NAMES[name])
        self.assertEqual((spec.hub_path, spec.hub_config), ("aps/super_glue", "wsc.fixed" if name == "wsc" else name))
        for split in spec.splits:
            self.assertTrue(spec.local_path(split).endswith(".jsonl"))
        for split in spec.test_splits:
            self.assertTrue(spec.submission_file(split).endswith(".jsonl"))

    @parameterized.named_parameters(*EVERY_SUPERGLUE_TASK)
    def test_label_words_round_trip(self, name):
        spec = tasks.get_task("superglue", name)
        if spec.label_words is None:
            self.skipTest("free text")
        for index, word in enumerate(spec.label_words):
            target = tasks.format_target(spec, {"label": index})
            self.assertEqual(target, word)
            self.assertEqual(tasks.postprocess(spec, f" {target}\n"), index)
            ids = TOKENIZER(target)["input_ids"]
            self.assertEqual(TOKENIZER.decode(ids, skip_special_tokens=True), target)
        self.assertEqual(tasks.label_candidates(spec), list(spec.label_words))
        for bad in ("", "true", "maybe", f"{spec.label_words[0]} {spec.label_words[0]}"):
            self.assertEqual(tasks.postprocess(spec, bad), INVALID, msg=repr(bad))

    def test_record_is_free_text_with_every_answer(self):
        spec = tasks.get_task("superglue", "record")
        example = SUPERGLUE_GOLDEN["record"][0]
        self.assertEqual(tasks.references_of(spec, example), ["penguin", "pigeon"])
        self.assertEqual(tasks.postprocess(spec, " pigeon "), " pigeon ")  # scored after SQuAD normalisation
        self.assertIsNone(tasks.target_candidates(spec))
        with self.assertRaisesRegex(ValueError, "no gold answer"):
            tasks.format_target(spec, dict(example, answers=[]))

    def test_multirc_groups_by_question(self):
        spec = tasks.get_task("superglue", "multirc")
        example = dict(SUPERGLUE_GOLDEN["multirc"][0], idx={"paragraph": 3, "question": 17, "answer": 40})
        self.assertEqual(tasks.group_of(spec, example), "17")

    def test_wsc_marks_span2_after_span1(self):
        # span1 before span2: marking span1 adds two words, so span2's index moves by 2.
        spec = tasks.get_task("superglue", "wsc")
        example = {
            "text": "Mark told Pete he was late .",
            "span1_text": "Pete",
            "span1_index": 2,
            "span2_text": "he",
            "span2_index": 3,
            "label": 1,
            "idx": 0,
        }
        self.assertEqual(tasks.format_source(spec, example), "wsc text: Mark told * Pete * # he # was late .")
        # The span text must start the word at its index; elsewhere nothing is marked.
        example.update(span2_text="she")
        self.assertEqual(tasks.format_source(spec, example), "wsc text: Mark told * Pete * he was late .")

    @parameterized.named_parameters(*[(t[0], *t[1:]) for t in TEXT_GOLDEN])
    def test_text_golden_format(self, benchmark, name, example, inputs, targets):
        spec = tasks.get_task(benchmark, name)
        self.assertEqual(tasks.format_source(spec, example), inputs)
        self.assertEqual(tasks.format_target(spec, example), targets)
        self.assertIsNone(spec.label_words)
        self.assertEqual(tasks.postprocess(spec, targets), targets)  # free text is kept as generated
        self.assertIsNone(tasks.max_target_length(spec, TOKENIZER))

    def test_squad_references_are_every_gold_answer(self):
        spec = tasks.get_task("qa", "squad")
        example = TEXT_GOLDEN[-1][3]
        self.assertEqual(tasks.references_of(spec, example), ["on the road back to Samarkand", "Samarkand"])
        self.assertEqual(spec.metrics, ("squad_em", "squad_f1"))

    @parameterized.named_parameters(
        ("custom", "custom", ("accuracy",)),
        ("summarization", "summarization", ("rouge1", "rouge2", "rougeL", "rougeLsum")),
        ("translation", "translation", ("bleu", "chrf")),
        ("qa", "qa", ("squad_em", "squad_f1")),
    )
    def test_custom_metric_sets(self, name, expected):
        spec = tasks.custom_task("summarize:", name)
        self.assertEqual((spec.benchmark, spec.name, spec.metrics), ("custom", name, expected))
        self.assertEqual(tasks.format_source(spec, {"source": "x", "target": "y"}), "summarize: x")
        self.assertEqual(tasks.get_task("custom", name).prefix, "")  # the table's record is unchanged

    def test_dotted_column_missing_part_names_it(self):
        spec = tasks.get_task("translation", "wmt16_en_ro")
        with self.assertRaisesRegex(ValueError, r"no column 'translation\.en'; it has \['de'\]"):
            tasks.format_source(spec, {"translation": {"de": "x"}})

    @parameterized.named_parameters(
        ("text_metric_on_labels", "glue", "sst2", dict(metrics=("rouge1",), metric_to_optimize="rouge1"), "free-text"),
        (
            "group_metric_without_group",
            "glue",
            "sst2",
            dict(metrics=("group_em",), metric_to_optimize="group_em"),
            "needs group_by",
        ),
        ("group_by_not_in_idx", "superglue", "multirc", dict(group_by="nope"), "group_by"),
        ("unknown_transform", "superglue", "wsc", dict(example_transform="nope"), "example_transform"),
        ("unknown_flatten", "superglue", "record", dict(local_flatten="nope"), "local_flatten"),
        ("bad_substitution", "superglue", "multirc", dict(input_substitutions=(("(", ""),)), "compile"),
        ("list_column_not_input", "superglue", "record", dict(list_input_columns=("nope",)), "list_input_columns"),
        ("submission_labels_count", "superglue", "cb", dict(submission_labels=("a", "b")), "submission_labels"),
        ("local_label_values_count", "superglue", "boolq", dict(local_label_values=("x",)), "local_label_values"),
        ("multiple_answers_with_labels", "superglue", "rte", dict(multiple_answers=True), "free-text"),
        ("each_answer_without_list", "summarization", "xsum", dict(train_on_each_answer=True), "multiple_answers"),
        ("unknown_submission_format", "superglue", "rte", dict(submission_format="csv"), "submission_format"),
        ("empty_path_part", "translation", "wmt16_en_ro", dict(input_fields=(("", "translation."),)), "empty part"),
        ("small_without_training_set", "glue", "ax", dict(small_train_set=True), "train_split"),
    )
    def test_invalid_new_fields_raise(self, benchmark, name, changes, message):
        with self.assertRaisesRegex(ValueError, message):
            dataclasses.replace(tasks.get_task(benchmark, name), **changes)


# --------------------------------------------------------------------------
# register's dict shape: the DATASET_VALS layout documented by the original T5 scripts (keys prefix,
# text_column_name, label_column_name, metric_to_optimize, metric_names, labels). The values are made up here.


def seed_table(**changes):
    fields = {
        "prefix": "polarity",
        "text_column_name": "review",
        "label_column_name": "stars",
        "metric_to_optimize": "f1",
        "metric_names": ["f1", "accuracy"],
        "labels": {0: "negative", 1: "positive"},
    }
    fields.update(changes)
    return {"reviews": {"polarity": {k: v for k, v in fields.items() if v is not DROP}}}


DROP = object()  # seed_table(key=DROP) leaves the key out


class RegisterDictTest(parameterized.TestCase):
    def register_globally(self, table):
        """register into the table get_task reads (constants.DATASET_VALS), taken out again after the test."""
        specs = tasks.register(table)

        def unregister():
            for spec in specs:
                del constants.DATASET_VALS[spec.benchmark][spec.name]
                if not constants.DATASET_VALS[spec.benchmark]:
                    del constants.DATASET_VALS[spec.benchmark]

        self.addCleanup(unregister)
        return specs

    def test_pasted_task_formats_postprocesses_and_scores(self):
        [spec] = self.register_globally(seed_table())
        self.assertIs(tasks.get_task("reviews", "polarity"), spec)
        self.assertEqual(
            (spec.prefix, spec.input_fields, spec.label_column, spec.label_words),
            ("polarity", (("review", "review"),), "stars", ("negative", "positive")),
        )
        self.assertEqual((spec.metrics, spec.metric_to_optimize), (("f1", "accuracy"), "f1"))
        # Without hub_path/hub_config the data is load_dataset(benchmark, task name), as the original scripts load it.
        self.assertEqual((spec.hub_path, spec.hub_config), ("reviews", "polarity"))
        example = {"review": "a warm, funny film", "stars": 1}
        self.assertEqual(tasks.format_source(spec, example), "polarity review: a warm, funny film")
        self.assertEqual(tasks.format_target(spec, example), "positive")
        self.assertEqual(tasks.postprocess(spec, " negative\n"), 0)
        self.assertEqual(tasks.postprocess(spec, "so-so"), INVALID)
        # targets [1, 1, 0]; predictions [1, 0, INVALID -> 1]: TP 1, FP 1, FN 1 -> F1 50; accuracy 1/3.
        results = tasks.compute_task_metrics(
            spec, ["positive", "negative", "so-so"], ["positive", "positive", "negative"]
        )
        self.assertAlmostEqual(results["f1"], 50.0)
        self.assertAlmostEqual(results["accuracy"], 100 / 3)
        self.assertAlmostEqual(results["invalid_rate"], 100 / 3)
        self.assertEqual(tasks.max_target_length(spec, TOKENIZER), len("negative") + 1)
        self.doCleanups()
        with self.assertRaisesRegex(ValueError, "--benchmark 'reviews' is unknown"):
            tasks.get_task("reviews", "polarity")

    def test_a_dict_pasted_into_constants_py_joins_the_table(self):
        source = (REPO / "constants.py").read_text(encoding="utf-8")
        empty = "PASTED_TASKS: dict[str, dict[str, dict]] = {}"
        self.assertIn(empty, source)
        namespace = {}
        exec(compile(source.replace(empty, f"PASTED_TASKS = {seed_table()!r}"), "constants.py", "exec"), namespace)
        spec = namespace["DATASET_VALS"]["reviews"]["polarity"]
        self.assertEqual(spec, tasks.tasks_from_dict(seed_table())[0])
        self.assertEqual(list(namespace["DATASET_VALS"])[:2], ["glue", "superglue"])  # the records stay first

    def test_several_columns_label_list_hub_and_free_text(self):
        registry = {}
        pair, summary = tasks.register(
            {
                "mine": {
                    "pair": dict(
                        seed_table(
                            text_column_name=["premise", "claim"],
                            labels=["yes", "no"],
                            metric_names=["accuracy"],
                            metric_to_optimize="accuracy",
                            hub_path="user/pairs",
                            hub_config=None,
                        )["reviews"]["polarity"]
                    ),
                    "summary": {
                        "prefix": "summarize:",
                        "text_column_name": "document",
                        "label_column_name": "summary",
                        "metric_to_optimize": "rougeL",
                        "metric_names": ["rouge1", "rougeL"],
                    },
                }
            },
            registry,
        )
        self.assertEqual(list(registry["mine"]), ["pair", "summary"])
        self.assertEqual(
            tasks.format_source(pair, {"premise": "p.", "claim": "c.", "stars": 0}), "polarity premise: p. claim: c."
        )
        self.assertEqual(tasks.format_target(pair, {"premise": "p.", "claim": "c.", "stars": 1}), "no")
        self.assertEqual((pair.hub_path, pair.hub_config), ("user/pairs", None))
        self.assertIsNone(summary.label_words)
        self.assertEqual(tasks.format_target(summary, {"document": "d", "summary": "s"}), "s")
        self.assertEqual(tasks.compute_task_metrics(summary, ["a b"], ["a b"])["rougeL"], 100.0)

    @parameterized.named_parameters(
        ("unknown_key", dict(label_names=["a", "b"]), r"unknown key\(s\) \['label_names'\]"),
        ("missing_key", dict(metric_names=DROP), r"missing key\(s\) \['metric_names'\]"),
        ("metric_names_text", dict(metric_names="accuracy"), "key 'metric_names' must be a list of texts"),
        ("prefix_number", dict(prefix=3), "key 'prefix' must be text"),
        ("no_columns", dict(text_column_name=[]), "key 'text_column_name' must be"),
        ("label_gap", dict(labels={0: "negative", 2: "positive"}), "key 'labels' must be a dict from the integer"),
        ("label_text_keys", dict(labels={"0": "negative", "1": "positive"}), "key 'labels'"),
        ("label_not_text", dict(labels=[0, 1]), "key 'labels' must be label words that are text"),
        ("label_column_list", dict(label_column_name=["stars"]), "key 'label_column_name' must be text"),
        # The record's own checks name the TaskSpec field; the message says which key sets it.
        (
            "unknown_metric",
            dict(metric_names=["acc"], metric_to_optimize="acc"),
            "unknown metrics.*metric_names -> metrics",
        ),
        ("optimize_not_listed", dict(metric_to_optimize="mcc"), "metric_to_optimize 'mcc' is not one of"),
    )
    def test_bad_dict_names_the_task_and_key(self, changes, message):
        registry = {}
        with self.assertRaisesRegex(ValueError, message) as caught:
            tasks.register(seed_table(**changes), registry)
        self.assertIn("reviews/polarity", str(caught.exception))
        self.assertEqual(registry, {})

    @parameterized.named_parameters(
        ("not_nested", {"prefix": "x"}),
        ("task_not_a_dict", {"reviews": {"polarity": ["prefix"]}}),
        ("empty", {}),
    )
    def test_bad_shape_names_the_shape(self, table):
        with self.assertRaisesRegex(ValueError, r"\{benchmark: \{task name:"):
            tasks.register(table, {})

    def test_nothing_is_registered_when_one_task_is_taken(self):
        registry = {}
        tasks.register(seed_table(), registry)
        table = seed_table()
        table["reviews"] = {"first": table["reviews"]["polarity"], "polarity": table["reviews"]["polarity"]}
        with self.assertRaisesRegex(ValueError, "reviews/polarity is already registered"):
            tasks.register(table, registry)
        self.assertEqual(list(registry["reviews"]), ["polarity"])

    def test_register_rejects_other_types(self):
        with self.assertRaisesRegex(TypeError, "TaskSpec or a task dict"):
            tasks.register([seed_table()], {})


if __name__ == "__main__":
    absltest.main()
