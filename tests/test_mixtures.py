"""Multi-task mixtures (--dataset_name a,b,c or all): T5's mixing rates, the one training set drawn with them,
per-task evaluation and the benchmark average.

The rate formula is T5's (paper section 3.5.2; t5/data/utils.py ``rate_num_examples``, which calls seqio
``mixing_rate_num_examples``): ``rate_i = min(n_i, K) ** (1/T) / sum_j min(n_j, K) ** (1/T)``, the cap K applied
before the temperature T; no cap when K is None (T5's code default). Every expected value here is computed by hand
or written out, not with t5kit.mixtures.

End to end: one tiny model trained on a GLUE mixture of SST-2, CoLA and RTE cut from the real files
(../shared/data/glue) to 400, 200 and 100 training rows, so that a cap of K = 150 binds for two tasks.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import shutil
from pathlib import Path

import datasets
import transformers
from absl.testing import absltest, parameterized
from sklearn.metrics import accuracy_score, matthews_corrcoef

import fine_tune_t5
from t5kit import mixtures
from t5kit.args import UsageError
from t5kit.finetune_data import FineTuneDataArguments, load_splits, resolve_tasks
from tests.helpers import SHARED_DATA, ModuleScratch, run_script_here, shared_file

SCRATCH = ModuleScratch("test_mixtures_")
setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down

# Training rows per task in the cut-down data folder, and the T5 prefix each task's inputs start with.
TRAIN_ROWS = {"glue/sst2": 400, "glue/cola": 200, "glue/rte": 100}
PREFIX = {"glue/sst2": "sst2 sentence: ", "glue/cola": "cola sentence: ", "glue/rte": "rte sentence1: "}
FOLDER = {"glue/sst2": "SST-2", "glue/cola": "CoLA", "glue/rte": "RTE"}
HEADER = {"glue/sst2": True, "glue/cola": False, "glue/rte": True}  # CoLA's files have no header line
LABEL_WORDS = {"glue/sst2": ("negative", "positive"), "glue/cola": ("unacceptable", "acceptable"),
               "glue/rte": ("entailment", "not_entailment")}  # fmt: skip
CAP = 150
EVAL_SAMPLES = 16
TINY = [
    "--model_config", "tiny", "--vocab_size", "400", "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "32", "--logging_steps", "1", "--learning_rate", "3e-3", "--seed", "0",
    "--report_to", "none", "--disable_tqdm", "True", "--max_source_length", "128",
]  # fmt: skip


def t5_rates(sizes, cap=None, temperature=1.0):
    """The T5 formula, written out: min(n, K) ** (1/T), normalised."""
    raw = [(min(n, cap) if cap else n) ** (1.0 / temperature) for n in sizes]
    return [r / sum(raw) for r in raw]


class RateFunctionTest(parameterized.TestCase):
    """Hand-computed values of T5's rate_num_examples and of the normalised rates."""

    def test_rate_num_examples_is_t5s(self):
        self.assertEqual(mixtures.rate_num_examples(67349), 67349.0)  # SST-2 train: examples-proportional
        self.assertEqual(mixtures.rate_num_examples(67349, maximum=2**19), 67349.0)  # the cap does not bind
        self.assertEqual(mixtures.rate_num_examples(392702, maximum=2**16), 65536.0)  # MNLI capped at K = 2^16
        self.assertEqual(mixtures.rate_num_examples(400, temperature=2.0), 20.0)  # 400 ** (1/2)
        self.assertEqual(mixtures.rate_num_examples(1000, maximum=400, temperature=2.0), 20.0)  # cap, then T
        self.assertAlmostEqual(mixtures.rate_num_examples(1000, temperature=3.0), 10.0, places=12)
        self.assertEqual(mixtures.rate_num_examples(1000, maximum=0), 1000.0)  # 0 / None: no cap (T5's default)
        self.assertEqual(mixtures.rate_num_examples(1000, maximum=None), 1000.0)

    def test_proportional_rates(self):
        # GLUE SST-2, CoLA and RTE training sets: 67,349 + 8,551 + 2,490 = 78,390 examples.
        rates = mixtures.mixing_rates([67349, 8551, 2490], maximum=2**19)
        for got, want in zip(rates, [67349 / 78390, 8551 / 78390, 2490 / 78390]):
            self.assertAlmostEqual(got, want, places=15)
        # K = 8,000 binds for SST-2 and CoLA: 8,000 + 8,000 + 2,490 = 18,490.
        rates = mixtures.mixing_rates([67349, 8551, 2490], maximum=8000)
        for got, want in zip(rates, [8000 / 18490, 8000 / 18490, 2490 / 18490]):
            self.assertAlmostEqual(got, want, places=15)
        self.assertEqual(mixtures.mixing_rates([400, 200, 100], maximum=CAP), [0.375, 0.375, 0.25])

    def test_temperature_rates(self):
        # T = 2: square roots, 20 : 10 : 10 after the cap of 400 -> 20 / 40 = 0.5.
        self.assertEqual(mixtures.mixing_rates([1600, 100, 100], maximum=400, temperature=2.0), [0.5, 0.25, 0.25])
        rates = mixtures.mixing_rates([400, 200, 100], maximum=CAP, temperature=2.0)
        root = math.sqrt(150)
        for got, want in zip(rates, [root / (2 * root + 10), root / (2 * root + 10), 10 / (2 * root + 10)]):
            self.assertAlmostEqual(got, want, places=15)
        # A very high temperature is nearly equal mixing.
        for rate in mixtures.mixing_rates([10**6, 10], temperature=1e6):
            self.assertAlmostEqual(rate, 0.5, places=4)

    def test_counts_split_the_epoch_by_largest_remainder(self):
        # L = 700; 0.375 * 700 = 262.5 twice and 175: one leftover row goes to the earlier tie.
        self.assertEqual(mixtures.mixture_counts([400, 200, 100], [0.375, 0.375, 0.25]), [263, 262, 175])
        self.assertEqual(mixtures.mixture_counts([300, 300], [0.5, 0.5]), [300, 300])
        self.assertEqual(mixtures.mixture_counts([5], [1.0]), [5])

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "temperature must be > 0"):
            mixtures.rate_num_examples(10, temperature=0)
        with self.assertRaisesRegex(ValueError, "at least one task with training examples"):
            mixtures.mixing_rates([0, 0])


class MixtureSetTest(absltest.TestCase):
    def test_single_task_is_the_dataset_unchanged(self):
        ds = datasets.Dataset.from_dict({"source": list("abcde"), "length": [5, 1, 4, 2, 3], "idx": range(5)})
        mixed = mixtures.build_mixture([ds], ["t"], [5], seed=0, columns=["source", "length"])
        self.assertEqual(mixed["source"], list("abcde"))
        self.assertEqual(mixed["length"], [5, 1, 4, 2, 3])

    def test_rows_are_repeated_or_subsampled_deterministically(self):
        big = datasets.Dataset.from_dict({"source": [f"b{i}" for i in range(10)]})
        small = datasets.Dataset.from_dict({"source": [f"s{i}" for i in range(3)]})
        mixed = mixtures.build_mixture([big, small], ["big", "small"], [6, 7], seed=1, columns=["source"])
        again = mixtures.build_mixture([big, small], ["big", "small"], [6, 7], seed=1, columns=["source"])
        self.assertEqual(mixed["source"], again["source"])
        small_rows = [s for s in mixed["source"] if s.startswith("s")]
        self.assertLen(small_rows, 7)
        self.assertGreaterEqual(min(small_rows.count(f"s{i}") for i in range(3)), 2)  # every row twice, one thrice
        big_rows = [s for s in mixed["source"] if s.startswith("b")]
        self.assertLen(set(big_rows), 6)  # a subset of 6 distinct rows
        self.assertEqual(mixed["task"].count("small"), 7)

    def test_order_spreads_each_task_evenly(self):
        counts = [263, 262, 175]
        tasks, _ = mixtures.mixture_order(counts)
        total = sum(counts)
        for prefix in range(1, total + 1, 7):
            for i, c in enumerate(counts):
                self.assertLessEqual(abs(int((tasks[:prefix] == i).sum()) - prefix * c / total), 2.0)


def data_args(**kwargs) -> FineTuneDataArguments:
    return FineTuneDataArguments(**kwargs)


class TaskListTest(absltest.TestCase):
    def test_all_is_every_glue_task_with_training_data_and_a_metric(self):
        names = [t.name for t in resolve_tasks(data_args(benchmark="glue", dataset_name="all"))]
        self.assertCountEqual(names, ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"])

    def test_lists_across_benchmarks(self):
        tasks = resolve_tasks(data_args(benchmark="glue", dataset_name="sst2, superglue/rte,glue/cola"))
        self.assertEqual([t.full_name for t in tasks], ["glue/sst2", "superglue/rte", "glue/cola"])

    def test_one_data_dir_serves_every_benchmark_of_a_mixture(self):
        """--data_dir DIR reads DIR/glue/SST-2 for glue tasks and DIR/superglue/RTE for superglue tasks."""
        args = data_args(benchmark="glue", dataset_name="sst2,superglue/rte", data_dir=str(SHARED_DATA),
                         max_train_samples=3)  # fmt: skip
        loaded = {t.full_name: load_splits(t, args, train=True, evaluate=False, predict=False)
                  for t in resolve_tasks(args, train=True)}  # fmt: skip
        self.assertEqual(
            loaded["glue/sst2"].train["sentence"][0],
            shared_file("glue/SST-2/train.tsv").read_text().splitlines()[1].split("\t")[0],
        )
        first_rte = json.loads(shared_file("superglue/RTE/train.jsonl").read_text().splitlines()[0])
        self.assertEqual(loaded["superglue/rte"].train["premise"][0], first_rte["premise"])

    def test_mistakes(self):
        with self.assertRaisesRegex(UsageError, r"'nope' is not a glue task; choose one of: .*cola.*sst2"):
            resolve_tasks(data_args(benchmark="glue", dataset_name="sst2,nope"))
        with self.assertRaisesRegex(UsageError, "--benchmark 'glu' is unknown"):
            resolve_tasks(data_args(benchmark="glue", dataset_name="glu/sst2,cola"))
        with self.assertRaisesRegex(UsageError, "glue/ax has no training split"):
            resolve_tasks(data_args(benchmark="glue", dataset_name="sst2,ax"), train=True)
        self.assertLen(resolve_tasks(data_args(benchmark="glue", dataset_name="sst2,ax")), 2)  # eval only: fine
        with self.assertRaisesRegex(UsageError, "glue/sst2 more than once"):
            resolve_tasks(data_args(benchmark="glue", dataset_name="sst2,glue/sst2"))
        with self.assertRaisesRegex(UsageError, "custom takes one set of files"):
            resolve_tasks(data_args(benchmark="custom", dataset_name="custom,qa", train_file="x.jsonl"))
        with self.assertRaisesRegex(UsageError, "custom data cannot be part of a mixture"):
            resolve_tasks(data_args(benchmark="glue", dataset_name="sst2,custom/qa"))
        with self.assertRaisesRegex(UsageError, "--mixing_temperature must be > 0"):
            data_args(benchmark="glue", dataset_name="sst2,cola", mixing_temperature=0.0)
        with self.assertRaisesRegex(UsageError, "--mixing_rate_cap must be >= 0"):
            data_args(benchmark="glue", dataset_name="sst2,cola", mixing_rate_cap=-1)

    def test_mistakes_through_the_command_line(self):
        """One error line and exit status 2, before any data is read."""
        base = ["--benchmark", "glue", "--data_dir", str(SCRATCH.path() / "nowhere"), "--model_config", "tiny",
                "--report_to", "none", "--output_dir", str(SCRATCH.path() / "mistakes")]  # fmt: skip
        cases = [
            (
                ["--dataset_name", "sst2,nope", "--do_train"],
                r"in --dataset_name sst2,nope: --dataset_name 'nope' is "
                r"not a glue task; choose one of: ax, cola, mnli",
            ),
            (["--dataset_name", "sst2,ax", "--do_train"], "glue/ax has no training split"),
            (
                ["--dataset_name", "sst2,cola", "--do_train", "--metric_for_best_model", "accuracy"],
                "--metric_for_best_model accuracy: a mixture logs eval_average, eval_loss, eval_glue_sst2_accuracy",
            ),
            (["--dataset_name", "sst2,cola", "--do_train", "--mixing_temperature", "-1"], "must be > 0"),
        ]
        for extra, message in cases:
            code, output = run_script_here(fine_tune_t5.main, [*base, *extra])
            self.assertEqual(code, 2, output[-2000:])
            self.assertRegex(output, f"error: .*{message}")
            self.assertNotIn("Traceback", output)


# ---------------------------------------------------------------------------------------------------------------
# End to end


def glue_dir() -> Path:
    """TRAIN_ROWS training rows of each task (real files, first rows), and the real dev files."""
    root = SCRATCH.path() / "glue"
    if root.exists():
        return root
    for task, rows in TRAIN_ROWS.items():
        folder = root / FOLDER[task]
        folder.mkdir(parents=True)
        lines = shared_file(f"glue/{FOLDER[task]}/train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / "train.tsv").write_text("".join(lines[: rows + HEADER[task]]), encoding="utf-8")
        dev = shared_file(f"glue/{FOLDER[task]}/dev.tsv").read_text(encoding="utf-8")
        (folder / "dev.tsv").write_text(dev, encoding="utf-8")
    return root


@functools.cache
def mixture_argv(temperature: float, run_dir: Path) -> list[str]:
    argv = [
        "--benchmark", "glue", "--dataset_name", "sst2,cola,rte", "--data_dir", str(glue_dir()), *TINY,
        "--mixing_rate_cap", str(CAP), "--mixing_temperature", str(temperature), "--do_train",
        "--output_dir", str(run_dir),
    ]  # fmt: skip
    if temperature == 1.0:
        argv += ["--do_eval", "--max_eval_samples", str(EVAL_SAMPLES), "--eval_mode", "rank", "--max_steps", "6",
                 "--eval_strategy", "steps", "--eval_steps", "3"]  # fmt: skip
    else:
        argv += ["--eval_strategy", "no", "--max_steps", "1"]
    return argv


@functools.cache
def mixture_run(temperature: float) -> tuple[Path, dict, str, datasets.Dataset]:
    """(run folder, all_results, printed output, the training set the Trainer got). T = 1 trains 6 steps and
    evaluates (and checkpoints) every 3 (rank eval, best model by eval_average); T = 2 trains 1 step, no eval."""
    run_dir = SCRATCH.path() / f"mixture-T{temperature:g}"
    argv = mixture_argv(temperature, run_dir)
    seen = []

    class Capturing(transformers.TrainerCallback):
        def on_trainer(self, trainer):
            seen.append(trainer.train_dataset)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        fine_tune_t5.main(argv, callbacks=[Capturing()])
    results = json.loads((run_dir / "all_results.json").read_text())
    return run_dir, results, printed.getvalue(), seen[0]


class MixtureEndToEndTest(parameterized.TestCase):
    @parameterized.parameters(1.0, 2.0)
    def test_recorded_and_printed_rates_follow_the_formula(self, temperature):
        _, results, printed, _ = mixture_run(temperature)
        sizes = list(TRAIN_ROWS.values())
        expected = dict(zip(TRAIN_ROWS, t5_rates(sizes, CAP, temperature)))
        self.assertEqual(results["mixing_train_examples"], TRAIN_ROWS)
        self.assertEqual(results["mixing_rate_cap"], CAP)
        self.assertEqual(results["mixing_temperature"], temperature)
        self.assertCountEqual(results["mixing_rates"], TRAIN_ROWS)  # all_results.json sorts keys
        for task, rate in expected.items():
            self.assertAlmostEqual(results["mixing_rates"][task], rate, places=12)
            # The printed table: | task | n_i | rate | rows per epoch | epochs of the task |
            row = next(line for line in printed.splitlines() if line.startswith(f"| {task} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            self.assertEqual(int(cells[1]), TRAIN_ROWS[task])
            self.assertAlmostEqual(float(cells[2]), rate, delta=5e-5)
            self.assertEqual(int(cells[3]), results["mixture_rows_per_epoch"][task])
        # One epoch holds as many rows as the tasks together (700), split by the rates.
        self.assertEqual(sum(results["mixture_rows_per_epoch"].values()), sum(sizes))
        for task, rate in expected.items():
            self.assertLessEqual(abs(results["mixture_rows_per_epoch"][task] - rate * sum(sizes)), 1.0)

    @parameterized.parameters(1.0, 2.0)
    def test_training_set_draws_from_every_task_at_its_rate(self, temperature):
        _, results, _, train = mixture_run(temperature)
        sources = train["source"]
        self.assertLen(sources, sum(TRAIN_ROWS.values()))
        expected = t5_rates(list(TRAIN_ROWS.values()), CAP, temperature)
        for task, rate in zip(TRAIN_ROWS, expected):
            rows = [s for s in sources if s.startswith(PREFIX[task])]
            self.assertEqual(len(rows), results["mixture_rows_per_epoch"][task])
            self.assertAlmostEqual(len(rows) / len(sources), rate, delta=0.002)
            # Mixed through the epoch: the first 100 rows already hold each task at about its rate.
            head = sum(s.startswith(PREFIX[task]) for s in sources[:100])
            self.assertLessEqual(abs(head - 100 * rate), 2)
        self.assertEqual(sorted(set(train["task"])), sorted(TRAIN_ROWS))

    def test_max_mixture_samples_caps_the_epoch_and_keeps_the_rates(self):
        run_dir = SCRATCH.path() / "mixture-capped"
        argv = [a if a != str(SCRATCH.path() / "mixture-T2") else str(run_dir) for a in
                mixture_argv(2.0, SCRATCH.path() / "mixture-T2")]  # fmt: skip
        fine_tune_t5.main([*argv, "--mixing_temperature", "1", "--mixing_rate_cap", "0", "--max_mixture_samples", "70"])
        results = json.loads((run_dir / "all_results.json").read_text())
        # 700 rows at examples-proportional rates 4:2:1, scaled down to 70: 40, 20, 10
        self.assertEqual(results["mixture_rows_per_epoch"], {"glue/sst2": 40, "glue/cola": 20, "glue/rte": 10})
        self.assertEqual(results["max_mixture_samples"], 70)
        # --max_train_samples 10 instead caps each task first: the mixture becomes uniform
        uniform = SCRATCH.path() / "mixture-per-task-cap"
        argv = [a if a != str(run_dir) else str(uniform) for a in argv]
        fine_tune_t5.main([*argv, "--mixing_temperature", "1", "--mixing_rate_cap", "0", "--max_train_samples", "10"])
        results = json.loads((uniform / "all_results.json").read_text())
        self.assertEqual(results["mixture_rows_per_epoch"], {"glue/sst2": 10, "glue/cola": 10, "glue/rte": 10})

    def test_per_task_metrics_and_the_average(self):
        run_dir, results, printed, _ = mixture_run(1.0)
        self.assertEqual(results["task"], "glue/sst2,glue/cola,glue/rte")
        scores = []
        for task, metric in (("glue/sst2", "accuracy"), ("glue/cola", "mcc"), ("glue/rte", "accuracy")):
            key = f"eval_{task.replace('/', '_')}_{metric}"
            self.assertIn(key, results)
            self.assertEqual(results[f"eval_{task.replace('/', '_')}_invalid_rate"], 0.0)  # rank eval
            rows = [
                json.loads(line)
                for line in (run_dir / "predictions" / f"{task.replace('/', '_')}_validation.jsonl")
                .read_text()
                .splitlines()
            ]
            self.assertLen(rows, EVAL_SAMPLES)
            self.assertTrue(all(r["input"].startswith(PREFIX[task]) for r in rows))
            words = LABEL_WORDS[task]
            self.assertTrue(all(r["prediction"] in words for r in rows))  # each task ranks its own label words
            gold = [words.index(r["target"]) for r in rows]
            predicted = [words.index(r["prediction"]) for r in rows]
            scorer = accuracy_score if metric == "accuracy" else matthews_corrcoef
            score = 100 * scorer(gold, predicted)
            self.assertAlmostEqual(results[key], score, places=9)
            scores.append(score)
        self.assertAlmostEqual(results["eval_average"], sum(scores) / 3, places=9)
        self.assertIn("average", (run_dir / "results.md").read_text())
        self.assertIn(f"**{results['eval_average']:.2f}**", printed)

    def test_best_model_is_chosen_by_the_average(self):
        run_dir, _, _, _ = mixture_run(1.0)
        state = json.loads((run_dir / "trainer_state.json").read_text())
        evals = [row for row in state["log_history"] if "eval_average" in row]
        self.assertEqual([row["step"] for row in evals], [3, 6])
        # the best average; of equal averages the lower eval loss (T5Trainer's tie-break), then the earlier
        best = min(evals, key=lambda row: (-row["eval_average"], row["eval_loss"], row["step"]))
        self.assertEqual(state["best_metric"], best["eval_average"])
        self.assertEqual(Path(state["best_model_checkpoint"]).name, f"checkpoint-{best['step']}")
        for row in evals:  # one log row per evaluation, every task in it
            self.assertIn("eval_glue_cola_mcc", row)
            self.assertIn("eval_loss", row)

    def test_resume_from_a_checkpoint_gives_the_same_trace(self):
        """The mixture is rebuilt from the seed and the epoch-seeded sampler replays the order: a run resumed from
        checkpoint-3 logs the same losses and eval_average at steps 4-6 as the uninterrupted run."""
        run_dir, _, _, _ = mixture_run(1.0)
        resumed = SCRATCH.path() / "mixture-resumed"
        shutil.copytree(run_dir / "checkpoint-3", resumed / "checkpoint-3")
        with contextlib.redirect_stdout(io.StringIO()):
            fine_tune_t5.main([*mixture_argv(1.0, resumed), "--resume_from_checkpoint", "latest"])

        def rows(folder):
            state = json.loads((folder / "trainer_state.json").read_text())
            return {(row["step"], key): row[key] for row in state["log_history"] for key in ("loss", "eval_average")
                    if key in row}  # fmt: skip

        reference, again = rows(run_dir), rows(resumed)
        self.assertEqual({k for k in again if k[0] > 3}, {(4, "loss"), (5, "loss"), (6, "loss"), (6, "eval_average")})
        for key, value in again.items():
            self.assertEqual(value, reference[key], key)


if __name__ == "__main__":
    absltest.main()
