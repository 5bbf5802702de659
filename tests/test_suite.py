"""The fine-tuning suite (finetune_suite.py / t5kit.suite) and the random-init control (`random_init:NAME`).

End to end: a tiny model pre-trained here, against its random init, on the real GLUE RTE and SuperGLUE CB files, two
seeds each (8 `fine_tune_t5.py` runs; RTE with a step budget of its own, `--task_set`), interrupted by a SIGTERM in
the first run and resumed; a third start runs nothing again, the tables are recomputed from the runs' all_results.json
files, and a checkpoint added as a third model runs only its own 4 runs. The statistics are checked against values
worked out by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from absl.testing import absltest, parameterized

import pre_train_t5
from t5kit import suite
from t5kit.args import ModelArguments, UsageError
from t5kit.exit_codes import EXIT_PREEMPTED
from t5kit.modeling import load_model
from t5kit.sweep import STATE_FILE, SweepError, build_command
from t5kit.tokenizer import load_tokenizer
from t5kit.tracking import read_wandb_run
from tests.helpers import REPO, SHARED_DATA, ModuleScratch, corpus_slice, run_script_here

SCRATCH = ModuleScratch("test_suite_")
setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down

RTE, CB = "glue/rte", "superglue/cb"
# Hand-made results: (model, task, seed) -> eval metrics. CB scores the mean of macro-F1 and accuracy.
PRETRAINED, CONTROL = "runA", "random_init:runA"
RESULTS = {
    (PRETRAINED, RTE): [{"accuracy": 60.0}, {"accuracy": 62.0}, {"accuracy": 64.0}],
    (CONTROL, RTE): [{"accuracy": 50.0}, {"accuracy": 53.0}, {"accuracy": 56.0}],
    (PRETRAINED, CB): [{"macro_f1": 50.0, "accuracy": 70.0}, {"macro_f1": 60.0, "accuracy": 80.0},
                       {"macro_f1": 40.0, "accuracy": 60.0}],
    (CONTROL, CB): [{"macro_f1": 30.0, "accuracy": 50.0}, {"macro_f1": 40.0, "accuracy": 60.0},
                    {"macro_f1": 35.0, "accuracy": 55.0}],
}  # fmt: skip
T_975_2DF = 4.302652729911275  # Student t quantile 0.975 at 2 degrees of freedom (scipy.stats.t.ppf; tables: 4.303)


def write_fake_suite(folder: Path, failed: tuple = (), sweep_dirs: dict | None = None) -> None:
    """sweep_state.json and trials/*/all_results.json as the runner leaves them; `failed`: (model, task, seed);
    `sweep_dirs`: task -> the folder of its own sweep (a task with --task_set flags), else the suite folder."""
    trials: dict[Path, list] = {}
    for (model, task), per_seed in RESULTS.items():
        sweep = folder / (sweep_dirs or {}).get(task, ".")
        for seed, metrics in enumerate(per_seed):
            name = f"trial-{len(trials.setdefault(sweep, [])) + 1:03d}"
            run = sweep / "trials" / name
            run.mkdir(parents=True)
            (run / "all_results.json").write_text(json.dumps({f"eval_{k}": v for k, v in metrics.items()}))
            state = "failed" if (model, task, seed) in failed else "finished"
            params = {"model_name_or_path": model, "dataset_name": task, "seed": seed}
            trials[sweep].append({"name": name, "state": state, "params": params})
    for sweep, held in trials.items():
        (sweep / STATE_FILE).write_text(json.dumps({"trials": held}))


class SummaryTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = Path(self.create_tempdir().full_path)
        self.spec = suite.SuiteSpec((PRETRAINED, CONTROL), (RTE, CB), (0, 1, 2), CONTROL, {})

    def test_means_averages_and_paired_intervals(self):
        write_fake_suite(self.dir)
        summary = suite.summarize(self.spec, suite.collect_runs(self.dir, self.spec))
        model, control = summary["per_model"][PRETRAINED], summary["per_model"][CONTROL]
        # RTE 60/62/64 -> 62 ± 2; CB scores (50+70)/2, (60+80)/2, (40+60)/2 = 60, 70, 50 -> 60 ± 10.
        self.assertEqual(model["tasks"][RTE]["score"], {"mean": 62.0, "std": 2.0, "n": 3})
        self.assertEqual(model["tasks"][CB]["score"], {"mean": 60.0, "std": 10.0, "n": 3})
        self.assertEqual(model["tasks"][CB]["metrics"]["macro_f1"], {"mean": 50.0, "std": 10.0, "n": 3})
        # Averages per seed: (60+60)/2, (62+70)/2, (64+50)/2 = 60, 66, 57 -> 61 ± sqrt(21); control 45, 51.5, 50.5.
        self.assertEqual(model["average"]["per_seed"], {0: 60.0, 1: 66.0, 2: 57.0})
        self.assertAlmostEqual(model["average"]["std"], np.sqrt(21.0))
        self.assertAlmostEqual(control["average"]["mean"], 49.0)
        self.assertAlmostEqual(control["average"]["std"], 3.5)
        versus = summary["versus_baseline"][PRETRAINED]
        # RTE differences 10, 9, 8: mean 9, sd 1, half-width t * 1 / sqrt(3).
        self.assertAlmostEqual(versus[RTE]["mean"], 9.0)
        self.assertAlmostEqual(versus[RTE]["ci_low"], 9.0 - T_975_2DF / np.sqrt(3))
        # CB differences 20, 20, 5: sd sqrt(75), half-width t * 5: the interval includes 0.
        self.assertAlmostEqual(versus[CB]["ci_high"], 15.0 + 5 * T_975_2DF)
        self.assertLess(versus[CB]["ci_low"], 0)
        # Average differences 15, 14.5, 6.5: mean 12, sd sqrt(22.75).
        self.assertAlmostEqual(versus["average"]["mean"], 12.0)
        self.assertAlmostEqual(versus["average"]["ci_low"], 12.0 - T_975_2DF * np.sqrt(22.75 / 3))
        table = suite.format_markdown(summary)
        self.assertIn(f"| {PRETRAINED} | ? | 62.0 ± 2.0 | 60.0 ± 10.0 | **61.0 ± 4.6** |", table)
        self.assertIn(f"| {CONTROL} | 0 | 53.0 ± 3.0 | 45.0 ± 5.0 | **49.0 ± 3.5** |", table)
        self.assertIn("+9.0 [+6.5, +11.5] *", table)  # excludes 0
        self.assertIn("+15.0 [-6.5, +36.5] |", table)  # includes 0: no mark

    def test_a_task_with_flags_of_its_own_is_read_from_its_sweep(self):
        spec = suite.SuiteSpec((PRETRAINED, CONTROL), (RTE, CB), (0, 1, 2), CONTROL, {}, {CB: {"max_steps": "9"}})
        self.assertEqual(spec.groups(), [(".", (RTE,)), ("task_flags/superglue-cb", (CB,))])
        write_fake_suite(self.dir, sweep_dirs={CB: "task_flags/superglue-cb"})
        runs = suite.collect_runs(self.dir, spec)
        self.assertLen(runs, 12)
        self.assertEqual({Path(r["output_dir"]).parent.parent.name for r in runs if r["task"] == CB}, {"superglue-cb"})
        summary = suite.summarize(spec, runs)
        self.assertEqual(summary["per_model"][PRETRAINED]["average"]["per_seed"], {0: 60.0, 1: 66.0, 2: 57.0})
        self.assertAlmostEqual(summary["versus_baseline"][PRETRAINED]["average"]["mean"], 12.0)
        self.assertIn("12 of 12 runs finished. superglue/cb runs with max_steps=9.", suite.format_markdown(summary))

    def test_a_failed_run_leaves_its_seed_out_of_the_average(self):
        write_fake_suite(self.dir, failed={(CONTROL, CB, 2)})
        summary = suite.summarize(self.spec, suite.collect_runs(self.dir, self.spec))
        control = summary["per_model"][CONTROL]
        self.assertEqual(control["tasks"][CB]["score"]["n"], 2)
        self.assertEqual(control["tasks"][RTE]["score"]["n"], 3)
        self.assertEqual(control["average"]["per_seed"], {0: 45.0, 1: 51.5})
        self.assertEqual(summary["versus_baseline"][PRETRAINED]["average"]["n"], 2)
        self.assertEqual(summary["runs_finished"], 11)
        self.assertIn("11 of 12 runs finished", suite.format_markdown(summary))

    def test_pretraining_tokens_and_the_curve(self):
        run = self.dir / "runA"
        (run / "checkpoint-5").mkdir(parents=True)
        (run / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": 8_200_000}))
        (run / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": 4_100}))
        self.assertEqual(suite.pretraining_tokens(str(run)), 8_200_000)
        self.assertEqual(suite.pretraining_tokens(str(run / "checkpoint-5")), 4_100)
        self.assertEqual(suite.pretraining_tokens(f"random_init:{run}"), 0)
        self.assertIsNone(suite.pretraining_tokens("t5-small"))  # a hub name: unknown
        # Continued pre-training (args.yaml names the model it started from) counts that model's tokens too.
        cont = self.dir / "runA_indomain"
        (cont / "checkpoint-2").mkdir(parents=True)
        (cont / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": 300}))
        (cont / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": 200}))
        (cont / "args.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(run), "random_init": False}))
        self.assertEqual(suite.pretraining_tokens(str(cont)), 8_200_300)
        self.assertEqual(suite.pretraining_tokens(str(cont / "checkpoint-2")), 8_200_200)
        (cont / "args.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(run), "random_init": True}))
        self.assertEqual(suite.pretraining_tokens(str(cont)), 300)  # from scratch in the base's architecture
        for base in ("t5-small", str(cont)):  # a base whose tokens are unknown, and a loop
            (cont / "args.yaml").write_text(yaml.safe_dump({"model_name_or_path": base}))
            self.assertIsNone(suite.pretraining_tokens(str(cont)))
        self.assertEqual([suite.format_tokens(n) for n in (8_200_000, 4_100, 0)], ["8.2M", "4.1k", "0"])
        summary = {"per_model": {
            "a": {"pretraining_tokens": 0, "average": {"mean": 50.0, "std": 1.0}},
            "b": {"pretraining_tokens": 4_100, "average": {"mean": 52.0, "std": 1.0}},
            "c": {"pretraining_tokens": None, "average": {"mean": 60.0, "std": 1.0}},
        }}  # fmt: skip
        self.assertTrue(suite.plot_curve(summary, self.dir / "curve.png"))
        self.assertGreater((self.dir / "curve.png").stat().st_size, 0)
        # One line per pre-training run; two runs at the same token count are two points, not a crash.
        avg = {"mean": 50.0, "std": 1.0}
        runs = {f"random_init:{run}": 0, str(run / "checkpoint-5"): 4_100, str(run): 8_200_000, "runB": 4_100}
        two_runs = {"per_model": {m: {"pretraining_tokens": n, "average": avg} for m, n in runs.items()}}
        series = suite.curve_series(two_runs)
        self.assertEqual(
            {k: [p[3] for p in v] for k, v in series.items()},
            {str(run): [f"random_init:{run}", str(run / "checkpoint-5"), str(run)], "runB": ["runB"]},
        )
        self.assertTrue(suite.plot_curve(two_runs, self.dir / "two_runs.png"))
        # One random-init control shared by two runs of the same architecture and tokenizer starts both lines; a
        # run of another architecture, or one that continued another run, does not start there.
        for folder, config in ((run, "a"), (self.dir / "runB", "a"), (self.dir / "runC", "b"), (cont, "a")):
            folder.mkdir(exist_ok=True)
            (folder / "config.json").write_text(config)
            (folder / "tokenizer.json").write_text("t")
        (cont / "args.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(run)}))
        runs = {f"random_init:{run}": 0, str(self.dir / "runB"): 4_100, str(self.dir / "runC"): 4_100, str(cont): 9}
        shared = {"per_model": {m: {"pretraining_tokens": n, "average": avg} for m, n in runs.items()}}
        self.assertEqual(
            {k: [p[3] for p in v] for k, v in suite.curve_series(shared).items()},
            {
                str(run): [f"random_init:{run}"],
                str(self.dir / "runB"): [f"random_init:{run}", str(self.dir / "runB")],
                str(self.dir / "runC"): [str(self.dir / "runC")],
                str(cont): [str(cont)],
            },
        )
        del summary["per_model"]["b"]
        self.assertFalse(suite.plot_curve(summary, self.dir / "none.png"))  # one point is no curve


class SpecTest(parameterized.TestCase):
    def opts(self, **overrides) -> argparse.Namespace:
        values = dict(models=["t5-small", "random_init:t5-small"], tasks=[RTE], seeds=[0, 1], baseline=None,
                      config=None, set=[], task_set=[])  # fmt: skip
        return argparse.Namespace(**{**values, **overrides})

    def test_defaults(self):
        spec = suite.build_spec(self.opts(config=str(REPO / "configs" / "finetune_cpu.yaml"), set=["max_steps=5"]))
        self.assertEqual(spec.baseline, "random_init:t5-small")  # the first random init
        self.assertEqual(spec.flags["max_steps"], "5")  # --set overrides the config file
        self.assertEqual(spec.flags["eval_mode"], "rank")
        sweep = suite.sweep_config(spec, spec.tasks)
        self.assertEqual(sweep["method"], "grid")
        self.assertEqual(sweep["parameters"]["dataset_name"], {"values": [RTE]})
        self.assertEqual(sweep["parameters"]["seed"], {"values": [0, 1]})

    @parameterized.named_parameters(
        ("task_without_benchmark", dict(tasks=["rte"]), "write benchmark/task"),
        ("unknown_task", dict(tasks=["glue/nope"]), "glue/nope"),
        ("missing_folder", dict(models=["./no/such/run"]), "no such folder"),
        ("empty_random_init", dict(models=["random_init:"]), "needs a model after it"),
        ("baseline_not_a_model", dict(baseline="t5-base"), "not one of --models"),
        ("owned_flag", dict(set=["seed=3"]), "set by the suite per run"),
        ("bad_set", dict(set=["max_steps"]), "expected NAME=VALUE"),
        ("missing_config", dict(config="nope.yaml"), "no such file"),
        ("task_set_without_task", dict(task_set=["max_steps=3"]), "expected TASK:NAME=VALUE"),
        ("task_set_of_another_task", dict(task_set=["glue/cola:max_steps=3"]), "glue/cola is not one of --tasks"),
        ("task_set_owned_flag", dict(task_set=["glue/rte:seed=3"]), "set by the suite per run"),
        ("task_set_without_value", dict(task_set=["glue/rte:max_steps"]), "expected NAME=VALUE"),
    )
    def test_mistakes(self, overrides, pattern):
        with self.assertRaisesRegex(SweepError, pattern):
            suite.build_spec(self.opts(**overrides))

    def test_task_flags_make_a_sweep_of_their_own(self):
        folder = Path(self.create_tempdir().full_path)
        opts = self.opts(
            tasks=[RTE, CB, "glue/cola"],
            set=["max_steps=5"],
            task_set=["superglue/cb:max_steps=9", "glue/rte:learning_rate=1e-3", "superglue/cb:seed=x"],
        )
        with self.assertRaisesRegex(SweepError, "set by the suite per run"):
            suite.build_spec(opts)
        opts.task_set.pop()
        spec = suite.build_spec(opts)
        self.assertEqual(spec.task_flags, {RTE: {"learning_rate": "1e-3"}, CB: {"max_steps": "9"}})  # --tasks order
        paths = suite.prepare_dir(folder, spec)
        self.assertEqual([p.relative_to(folder).parent.as_posix() for p in paths],
                         [".", "task_flags/glue-rte", "task_flags/superglue-cb"])  # fmt: skip
        sweeps = [yaml.safe_load(p.read_text())["parameters"] for p in paths]
        self.assertEqual([p["dataset_name"]["values"] for p in sweeps], [["glue/cola"], [RTE], [CB]])
        self.assertEqual([p["max_steps"]["value"] for p in sweeps], ["5", "5", "9"])  # --task_set over --set
        self.assertEqual(sweeps[1]["learning_rate"], {"value": "1e-3"})
        self.assertNotIn("learning_rate", sweeps[0])
        self.assertEqual(json.loads((folder / suite.SPEC_FILE).read_text())["task_flags"], spec.task_flags)
        other = suite.build_spec(self.opts(tasks=[RTE, CB, "glue/cola"], set=["max_steps=5"]))
        with self.assertRaisesRegex(SweepError, "holds a suite with other"):
            suite.prepare_dir(folder, other)  # the same tasks without their own flags: another suite

    def test_launchers(self):
        """The suite's runs go through the sweep runner's launchers (their runs are tested in test_sweep.py)."""
        spec = suite.build_spec(self.opts())
        sweep = suite.sweep_config(spec, spec.tasks)
        args = ["--seed=0"]
        command = build_command(sweep, "accelerate launch", suite.PROGRAM, args)
        self.assertEqual(Path(command[0]).name, "accelerate")
        self.assertEqual(command[1:], ["launch", str(suite.PROGRAM), *args])
        self.assertEqual(
            build_command(sweep, "python", suite.PROGRAM, args), [sys.executable, str(suite.PROGRAM), *args]
        )

    def test_a_folder_without_config_is_refused(self):
        folder = self.create_tempdir().full_path
        with self.assertRaisesRegex(SweepError, "holds no config.json"):
            suite.build_spec(self.opts(models=[folder]))

    def test_list_values_are_refused(self):
        config = Path(self.create_tempdir().full_path) / "c.yaml"
        config.write_text("freeze: [encoder, embeddings]\n")
        with self.assertRaisesRegex(SweepError, "freeze.*single value"):
            suite.build_spec(self.opts(config=str(config)))

    def test_a_folder_holding_another_suite_is_refused(self):
        folder = Path(self.create_tempdir().full_path)
        spec = suite.build_spec(self.opts())
        suite.prepare_dir(folder, spec)
        suite.prepare_dir(folder, spec)  # the same suite again: fine
        other = suite.build_spec(self.opts(seeds=[0, 1, 2]))
        with self.assertRaisesRegex(SweepError, "holds a suite with other tasks, seeds"):
            suite.prepare_dir(folder, other)
        fewer = suite.build_spec(self.opts(models=["t5-small", "random_init:t5-small"][1:]))
        with self.assertRaisesRegex(SweepError, "holds a suite with other"):
            suite.prepare_dir(folder, fewer)
        more = suite.build_spec(self.opts(models=["t5-small", "random_init:t5-small", "t5-base"]))
        suite.prepare_dir(folder, more)  # adding a model is fine
        self.assertLen(json.loads((folder / suite.SPEC_FILE).read_text())["models"], 3)


class RandomInitTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pretrained = SCRATCH.path() / "pt"
        code, output = run_script_here(pre_train_t5.main, [
            "--train_files", str(corpus_slice(SCRATCH.path(), lines=2000)), "--vocab_size", "500",
            "--model_config", "tiny", "--input_length", "64", "--per_device_train_batch_size", "8",
            "--max_steps", "6", "--save_steps", "3", "--eval_strategy", "no", "--disable_tqdm", "True",
            "--report_to", "none", "--output_dir", str(cls.pretrained),
        ])  # fmt: skip
        assert code == 0, output

    def test_the_prefix_means_random_init(self):
        args = ModelArguments(model_name_or_path=f"random_init:{self.pretrained}")
        self.assertEqual((args.model_name_or_path, args.random_init), (str(self.pretrained), True))
        with self.assertRaisesRegex(UsageError, "--random_init takes the architecture"):
            ModelArguments(random_init=True)
        with self.assertRaisesRegex(UsageError, "drop --vocab_size to use its own tokenizer"):
            ModelArguments(model_name_or_path=f"random_init:{self.pretrained}", vocab_size=500)

    def test_same_architecture_fresh_weights_seeded(self):
        tokenizer = load_tokenizer(str(self.pretrained))
        trained = load_model(ModelArguments(model_name_or_path=str(self.pretrained)), tokenizer, default_dropout=None)

        def fresh(seed: int):
            torch.manual_seed(seed)
            return load_model(ModelArguments(model_name_or_path=f"random_init:{self.pretrained}"), tokenizer, 0.1)

        a, b, c = fresh(0), fresh(0), fresh(1)
        self.assertEqual(a.config.d_model, trained.config.d_model)
        self.assertEqual(a.config.vocab_size, trained.config.vocab_size)
        self.assertEqual(a.config.dropout_rate, 0.1)
        weights = {name: p for name, p in trained.named_parameters()}
        for name, p in a.named_parameters():
            self.assertEqual(p.shape, weights[name].shape, name)
        key = "encoder.block.0.layer.0.SelfAttention.q.weight"
        self.assertFalse(torch.equal(a.state_dict()[key], trained.state_dict()[key]))
        self.assertTrue(torch.equal(a.state_dict()[key], b.state_dict()[key]))  # the seed decides the init
        self.assertFalse(torch.equal(a.state_dict()[key], c.state_dict()[key]))

    def test_suite_end_to_end_interrupted_and_resumed(self):
        out = SCRATCH.path() / "suite"
        base = [
            sys.executable,
            str(REPO / "finetune_suite.py"),
            "--models",
            str(self.pretrained),
            f"random_init:{self.pretrained}",
            "--tasks",
            CB,  # a task with two metrics: its score is their mean
            RTE,
            "--task_set",
            f"{RTE}:max_steps=4",  # a budget of its own: a sweep of its own, run after CB's
            "--seeds",
            "0",
            "1",
            "--config",
            str(REPO / "configs" / "finetune_cpu.yaml"),
            "--suite_dir",
            str(out),
            "--poll_s",
            "0.2",
        ]
        for item in (
            f"data_dir={SHARED_DATA}",
            "max_steps=6",
            "save_steps=3",
            "max_train_samples=64",
            "max_eval_samples=16",
            "per_device_train_batch_size=8",
            "disable_tqdm=True",
            "report_to=wandb",
        ):
            base += ["--set", item]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline")
        env.pop("WANDB_RUN_GROUP", None)
        # First start: every run gets a SIGTERM after its 4th micro-batch (as SLURM does before a time limit): the
        # first run checkpoints and exits 75, and the suite stops with 75 so a requeue resumes it.
        fault = f"{sys.executable} {REPO / 'tests' / 'fault_injection.py'} sigterm_micro:4"
        first = subprocess.run(base + ["--launcher", fault], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=300)  # fmt: skip
        self.assertEqual(first.returncode, EXIT_PREEMPTED, first.stdout + first.stderr)
        trials = json.loads((out / STATE_FILE).read_text())["trials"]
        self.assertEqual([t["state"] for t in trials], ["running"])
        self.assertNotEmpty(list((out / "trials" / "trial-001").glob("checkpoint-*")))

        rte = out / "task_flags" / "glue-rte"
        self.assertFalse((rte / STATE_FILE).exists())  # the suite stopped before RTE's sweep

        second = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(second.returncode, 0, second.stdout + second.stderr)
        self.assertIn("trial-001 was interrupted", second.stdout)
        trials = json.loads((out / STATE_FILE).read_text())["trials"]
        self.assertEqual([t["state"] for t in trials], ["finished"] * 4)
        self.assertEqual([t["attempts"] for t in trials], [2] + [1] * 3)
        self.assertIn("--resume_from_checkpoint=latest", (out / "logs" / "trial-001.log").read_text())
        rte_trials = json.loads((rte / STATE_FILE).read_text())["trials"]
        self.assertEqual([t["state"] for t in rte_trials], ["finished"] * 4)
        steps = {folder: json.loads((folder / "trials" / t["name"] / "trainer_state.json").read_text())["global_step"]
                 for folder, held in ((out, trials), (rte, rte_trials)) for t in held}  # fmt: skip
        self.assertEqual(steps, {out: 6, rte: 4})  # every model and seed trains CB 6 steps, RTE its own 4
        trials = trials + rte_trials
        grid = {(t["params"]["model_name_or_path"], t["params"]["dataset_name"], t["params"]["seed"]) for t in trials}
        self.assertLen(grid, 8)
        logs = {p: p.read_text() for p in [*(out / "logs").iterdir(), *(rte / "logs").iterdir()]}

        third = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(third.returncode, 0, third.stdout + third.stderr)
        self.assertEqual(third.stdout.count("4 trial(s) done, not run again"), 2)
        self.assertEqual({p: p.read_text() for p in [*(out / "logs").iterdir(), *(rte / "logs").iterdir()]}, logs)
        trial_dir = {
            (t["params"]["model_name_or_path"], t["params"]["dataset_name"], t["params"]["seed"]): (
                rte if t["params"]["dataset_name"] == RTE else out) / "trials" / t["name"]
            for t in trials
        }  # fmt: skip

        # The report, recomputed here from the runs' own all_results.json files.
        summary = json.loads((out / suite.RESULTS_JSON).read_text())
        self.assertEqual((summary["runs_finished"], summary["runs_expected"]), (8, 8))
        for model in (str(self.pretrained), f"random_init:{self.pretrained}"):
            averages = []
            for seed in (0, 1):
                scores = []
                for task, metrics in ((CB, ["macro_f1", "accuracy"]), (RTE, ["accuracy"])):
                    results = json.loads((trial_dir[model, task, seed] / "all_results.json").read_text())
                    scores.append(np.mean([results[f"eval_{m}"] for m in metrics]))
                averages.append(np.mean(scores))
            self.assertAlmostEqual(summary["per_model"][model]["average"]["mean"], np.mean(averages), places=9)
        self.assertEqual(summary["per_model"][f"random_init:{self.pretrained}"]["pretraining_tokens"], 0)
        self.assertGreater(summary["per_model"][str(self.pretrained)]["pretraining_tokens"], 0)
        self.assertIn(str(self.pretrained), summary["versus_baseline"])
        table = (out / suite.RESULTS_MD).read_text()
        self.assertIn("| random_init:", table)
        self.assertIn(f"{RTE} runs with max_steps=4.", table)
        self.assertGreater((out / suite.RESULTS_PNG).stat().st_size, 0)
        self.assertGreater((out / suite.CURVE_PNG).stat().st_size, 0)  # random init (0 tokens) and the run

        # --report_only reads the files again: a changed result shows in the tables.
        edited = out / "trials" / "trial-001" / "all_results.json"
        results = json.loads(edited.read_text())
        results["eval_accuracy"] = 100.0
        edited.write_text(json.dumps(results))
        report = subprocess.run([sys.executable, str(REPO / "finetune_suite.py"), "--report_only", "--suite_dir",
                                 str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        self.assertEqual(report.returncode, 0, report.stdout + report.stderr)
        again = json.loads((out / suite.RESULTS_JSON).read_text())
        first_trial = trials[0]["params"]
        cell = again["per_model"][first_trial["model_name_or_path"]]["tasks"][first_trial["dataset_name"]]
        self.assertIn(100.0, [r["metrics"].get("eval_accuracy") for r in again["runs"]])
        self.assertNotEqual(cell, summary["per_model"][first_trial["model_name_or_path"]]["tasks"][
            first_trial["dataset_name"]])  # fmt: skip

        # One more model, a checkpoint of the same pre-training run: only its 4 runs are added, and the curve of the
        # average against pre-training tokens has three points (random init, the checkpoint, the final model).
        checkpoint = str(self.pretrained / "checkpoint-3")
        extended = [*base[:5], checkpoint, *base[5:]]  # --models RUN random_init:RUN CHECKPOINT --tasks ...
        fourth = subprocess.run(extended, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(fourth.returncode, 0, fourth.stdout + fourth.stderr)
        trials = json.loads((out / STATE_FILE).read_text())["trials"]
        rte_trials = json.loads((rte / STATE_FILE).read_text())["trials"]
        self.assertEqual((len(trials), len(rte_trials)), (6, 6))
        self.assertEqual({t["params"]["model_name_or_path"] for t in trials[4:] + rte_trials[4:]}, {checkpoint})
        summary = json.loads((out / suite.RESULTS_JSON).read_text())
        tokens = [summary["per_model"][m]["pretraining_tokens"] for m in summary["models"]]
        self.assertEqual(tokens[1], 0)
        self.assertLess(tokens[2], tokens[0])  # checkpoint-3 saw half of the final model's tokens

        # Every run logged to W&B (offline here) in the suite's group.
        groups = set()
        for trial in [*(out / "trials").iterdir(), *(rte / "trials").iterdir()]:
            for run_dir in (trial / "wandb").glob("offline-run-*"):
                groups.add(read_wandb_run(run_dir, wait_s=60)["group"])
        self.assertEqual(groups, {f"suite-{out.name}"})


if __name__ == "__main__":
    absltest.main()
