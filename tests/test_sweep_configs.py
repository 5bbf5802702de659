"""The sweep YAMLs in sweeps/: generated from the task table, runnable, and scored by a key the program logs.

Each file parses with the runner's own checks, names an existing program, its W&B project and its sweep name, and
its metric.name is among the W&B keys that program logs for its task (derived from the task record; test_tracking
checks the derivation against a real offline W&B run). Every sweep searches the learning rate and the schedule, and
every value of a categorical parameter parses as its flag. That every parameter is a flag of the program is checked
in test_repo_files (parsed in-process).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml
from absl.testing import absltest, parameterized

from t5kit import sweep_configs
from t5kit.args import LR_SCHEDULER_ALIASES, parse_args
from t5kit.sweep import format_arg, load_sweep, propose, resolve_program
from t5kit.tasks import get_task
from tests.helpers import REPO
from tests.test_repo_files import PROGRAM_GROUPS

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
# Written out here, not read from the table, so that a change to the table cannot silently drop a file.
GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
SUPERGLUE = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")


def trial_argv(params: dict, **chosen) -> list[str]:
    """--name=value for every parameter: a fixed value, a categorical's first value or a range's min, or `chosen`."""
    values = {name: spec["value"] if "value" in spec else (spec.get("values") or [spec.get("min")])[0]
              for name, spec in params.items()}  # fmt: skip
    return [format_arg(name, value) for name, value in {**values, **chosen}.items()]


def deepspeed_variant(text: str) -> list[str]:
    """The commented `command:` block of the DeepSpeed variant in a sweep file's header."""
    lines = text.splitlines()
    start = lines.index("#   command:")
    items = []
    for line in lines[start + 1 :]:
        if not line.startswith("#     - "):
            break
        items.append(line[len("#     - ") :])
    return items


class SweepConfigsTest(parameterized.TestCase):
    def test_committed_files_are_the_generated_ones(self):
        expected = sweep_configs.expected_files()
        self.assertEqual(sweep_configs.generated_names_in(REPO / "sweeps"), set(expected))
        for name, text in expected.items():
            hint = f"{name}: run python -m t5kit.sweep_configs --write"
            self.assertEqual((REPO / "sweeps" / name).read_text(), text, hint)
        self.assertEqual(sweep_configs.main(["--check"]), 0)

    def test_every_glue_and_superglue_task_has_a_sweep(self):
        names = {p.name for p in SWEEPS}
        for task in GLUE:
            self.assertIn(f"glue_{task}.yaml", names)
        for task in SUPERGLUE:
            self.assertIn(f"superglue_{task}.yaml", names)
        self.assertIn("pretrain.yaml", names)

    def test_check_reports_a_stale_or_edited_file(self):
        tmp = Path(self.create_tempdir().full_path)
        self.assertEqual(sweep_configs.main(["--write", "--dir", str(tmp)]), 0)
        (tmp / "glue_sst2.yaml").write_text("edited\n")
        (tmp / "glue_nosuchtask.yaml").write_text("program: x\n")
        self.assertEqual(sweep_configs.main(["--check", "--dir", str(tmp)]), 1)
        sweep_configs.main(["--write", "--dir", str(tmp)])
        self.assertFalse((tmp / "glue_nosuchtask.yaml").exists())
        self.assertEqual(sweep_configs.main(["--check", "--dir", str(tmp)]), 0)

    def test_size_facts_come_from_the_task_records(self):
        # Written out here, not read from the table: the tasks whose sweeps train longer or on smaller batches.
        small = {"glue/rte", "glue/wnli", "glue/mrpc", "glue/stsb", "glue/cola", "superglue/cb", "superglue/copa",
                 "superglue/rte", "superglue/wsc", "superglue/wic"}  # fmt: skip
        long_inputs = {"superglue/boolq", "superglue/multirc", "superglue/record"}
        specs = sweep_configs.sweep_tasks()
        self.assertEqual({s.full_name for s in specs if s.small_train_set}, small)
        self.assertEqual({s.full_name for s in specs if s.long_inputs}, long_inputs)
        sst2 = get_task("glue", "sst2")
        plain = sweep_configs.sweep_config(sst2)
        self.assertEqual(plain["parameters"]["num_train_epochs"], {"value": 3})
        self.assertEqual(plain["early_terminate"]["min_iter"], 1)
        self.assertEqual(plain["parameters"]["per_device_train_batch_size"], {"values": [16, 32, 64]})
        marked = sweep_configs.sweep_config(dataclasses.replace(sst2, small_train_set=True, long_inputs=True))
        self.assertEqual(marked["parameters"]["num_train_epochs"], {"value": 10})
        self.assertEqual(marked["early_terminate"]["min_iter"], 2)
        self.assertEqual(marked["parameters"]["per_device_train_batch_size"], {"values": [8, 16, 32]})

    @parameterized.named_parameters((path.stem, path) for path in SWEEPS)
    def test_project_name_and_searched_schedule(self, path):
        """`wandb sweep` puts every sweep in the toolkit's project under a name that says what it searches."""
        sweep = load_sweep(path)
        self.assertEqual(sweep["project"], sweep_configs.PROJECT)
        self.assertEqual(sweep["project"], "t5-toolkit")
        self.assertRegex(sweep["name"], r"^[a-z0-9][a-z0-9-]*-lr-schedule$")
        params = sweep["parameters"]
        self.assertIn("distribution", params["learning_rate"])
        schedules = params["lr_scheduler_type"]["values"]
        self.assertGreaterEqual(len(schedules), 3)
        # Each schedule once, whatever name it is given (an alias and its target would be one schedule twice).
        resolved = [LR_SCHEDULER_ALIASES.get(v, v) for v in schedules]
        self.assertLen(set(resolved), len(schedules))
        if sweep["program"] == "fine_tune_t5.py":
            self.assertEqual(schedules, sweep_configs.LR_SCHEDULES)
            self.assertEqual(
                sweep["name"], f"{params['benchmark']['value']}-{params['dataset_name']['value']}-lr-schedule"
            )
        names = [load_sweep(p)["name"] for p in SWEEPS]
        self.assertLen(set(names), len(names))

    @parameterized.named_parameters((path.stem, path) for path in SWEEPS)
    def test_every_categorical_value_parses(self, path):
        """Each value of each `values:` parameter, as the agent passes it (--name=value), is accepted by the program's
        parser and reaches the flag (a schedule alias as the schedule it names)."""
        sweep = load_sweep(path)
        groups_of = PROGRAM_GROUPS[sweep["program"]]
        for name, spec in sweep["parameters"].items():
            for value in spec.get("values", []):
                groups = parse_args(groups_of, trial_argv(sweep["parameters"], **{name: value}))
                parsed = getattr(next(g for g in groups if hasattr(g, name)), name)
                expected = LR_SCHEDULER_ALIASES.get(value, value) if name == "lr_scheduler_type" else value
                self.assertEqual(getattr(parsed, "value", parsed), expected, f"{path.name}: {name}={value}")

    @parameterized.named_parameters((path.stem, path) for path in SWEEPS)
    def test_sweep_file(self, path):
        sweep = load_sweep(path)  # the offline runner's checks
        self.assertTrue(resolve_program(sweep, path).is_file())
        self.assertEqual(sweep["command"], sweep_configs.COMMAND)
        self.assertIn(sweep["method"], ("grid", "random", "bayes"))
        self.assertIn(sweep["metric"]["name"], sweep_configs.program_logged_keys(sweep))
        if sweep["program"] == "fine_tune_t5.py":
            params = sweep["parameters"]
            task = get_task(params["benchmark"]["value"], params["dataset_name"]["value"])
            self.assertEqual(sweep["metric"]["name"], f"eval/{task.metric_to_optimize}")
            self.assertEqual(sweep["metric"]["goal"], "maximize" if task.greater_is_better else "minimize")
            self.assertIn("$WANDB_RUN_ID", params["output_dir"]["value"])  # one folder per W&B run
        self.assertEqual(sweep["early_terminate"]["type"], "hyperband")
        # The documented DeepSpeed variant is a valid command whose config files exist.
        variant = deepspeed_variant(path.read_text())
        self.assertEqual(variant, sweep_configs.DEEPSPEED_COMMAND)
        self.assertEqual(yaml.safe_load("command:\n" + "\n".join(f"  - {x}" for x in variant))["command"], variant)
        self.assertTrue((REPO / variant[variant.index("--config_file") + 1]).is_file())
        self.assertTrue((REPO / "zero_stage2_config.json").is_file())
        # A trial the sweep engine proposes (sampled floats, ints, booleans as --name=value) parses.
        params = propose(sweep, [], seed=0)
        self.assertEqual(set(params), set(sweep["parameters"]))
        groups = parse_args(PROGRAM_GROUPS[sweep["program"]], [format_arg(k, v) for k, v in params.items()])
        self.assertEqual(groups[2].learning_rate, params["learning_rate"])


if __name__ == "__main__":
    absltest.main()
