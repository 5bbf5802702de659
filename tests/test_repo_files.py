"""The shipped configuration files agree with the code: pins, DeepSpeed JSON, sweep YAMLs; and tests and
benchmarks find the shared data from a fresh clone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import yaml
from absl.testing import absltest, parameterized

import fine_tune_t5
import pre_train_t5
from t5kit.args import ModelArguments, parse_args
from t5kit.corpus import PretrainDataArguments
from t5kit.finetune_data import FineTuneDataArguments
from t5kit.parameter_efficient import ParameterEfficientArguments
from tests.helpers import REPO, find_shared_data

PROGRAM_GROUPS = {
    "pre_train_t5.py": (ModelArguments, PretrainDataArguments, pre_train_t5.PretrainingArguments),
    "fine_tune_t5.py": (
        ModelArguments,
        FineTuneDataArguments,
        fine_tune_t5.FineTuneArguments,
        ParameterEfficientArguments,
    ),
}
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.match(r"^\s*(?:-\s*)?([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


# configs/*.yaml: each recipe and the script it is for.
RECIPES = (
    ("t5_adafactor.yaml", "pre_train_t5.py"),
    ("t5_finetune_adafactor.yaml", "fine_tune_t5.py"),
    ("pretrain_cpu.yaml", "pre_train_t5.py"),
    ("finetune_cpu.yaml", "fine_tune_t5.py"),
    ("pretrain_gpu_base.yaml", "pre_train_t5.py"),
    ("finetune_gpu.yaml", "fine_tune_t5.py"),
)


class RepoFilesTest(parameterized.TestCase):
    def test_conda_environment_has_the_same_pins(self):
        requirements = pins((REPO / "requirements.txt").read_text().splitlines())
        conda = yaml.safe_load((REPO / "conda_environment_slurm.yml").read_text())
        pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
        self.assertEqual(pins(pip_section), requirements)
        self.assertEqual(requirements["torch"], "2.13.0")

    def test_sweep_engine_pins_are_installed_without_its_numpy_pin(self):
        from importlib.metadata import version

        sweep_pins = pins((REPO / "requirements-sweeps.txt").read_text().splitlines())
        self.assertIn("sweeps", sweep_pins)
        for name, pinned in sweep_pins.items():
            self.assertEqual(version(name), pinned, name)
        # --no-deps: sweeps declares numpy<2, which pip would otherwise install over requirements.txt's numpy 2.
        self.assertIn("pip install -q --no-deps -r requirements-sweeps.txt", (REPO / "Makefile").read_text())
        self.assertIn(
            "pip install --no-deps -r requirements-sweeps.txt", (REPO / "conda_environment_slurm.yml").read_text()
        )
        self.assertTrue(set(sweep_pins).isdisjoint(pins((REPO / "requirements.txt").read_text().splitlines())))

    def test_deepspeed_config_defers_to_the_script(self):
        config = json.loads((REPO / "zero_stage2_config.json").read_text())
        self.assertEqual(config["zero_optimization"]["stage"], 2)
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                    "gradient_clipping"):  # fmt: skip
            self.assertEqual(config[key], "auto", key)
        self.assertEqual(config["bf16"]["enabled"], "auto")
        self.assertFalse(config["fp16"]["enabled"])
        self.assertNotIn("optimizer", config)  # --optim / --learning_rate stay the single source of truth

    @parameterized.named_parameters((path.stem, path) for path in SWEEPS)
    def test_sweep_parameters_are_real_flags(self, path):
        sweep = yaml.safe_load(path.read_text())
        self.assertIn(sweep["program"], PROGRAM_GROUPS)
        self.assertTrue((REPO / sweep["program"]).is_file())
        self.assertEqual(sweep["command"], ["accelerate", "launch", "${program}", "${args}"])
        self.assertIn(sweep["method"], ("grid", "random", "bayes"))
        self.assertIn(sweep["metric"]["goal"], ("minimize", "maximize"))
        # Each parameter becomes --name=value; the program's parser must accept every one.
        argv = []
        for name, spec in sweep["parameters"].items():
            value = spec["value"] if "value" in spec else (spec.get("values") or [spec.get("min")])[0]
            argv.append(f"--{name}={value}")
        groups = parse_args(PROGRAM_GROUPS[sweep["program"]], argv)
        self.assertLen(groups, len(PROGRAM_GROUPS[sweep["program"]]))

    @parameterized.parameters(*RECIPES)
    def test_shipped_configs_parse(self, name, program):
        """Every recipe parses with its script, and each of its keys reaches the parsed flags unchanged."""
        config = yaml.safe_load((REPO / "configs" / name).read_text())
        argv = ["--config", str(REPO / "configs" / name), "--output_dir", "unused"]
        if program == "fine_tune_t5.py":
            argv += ["--dataset_name", "sst2", "--do_train"]
        elif "dataset_name" not in config:
            argv += ["--train_files", "x.txt"]  # the corpus is the user's
        groups = parse_args(PROGRAM_GROUPS[program], argv)  # model, data, training, (PEFT)
        for key, expected in config.items():
            owner = next(g for g in groups if hasattr(g, key))
            value = getattr(owner, key)
            self.assertEqual(getattr(value, "value", value), expected, key)  # enums (optim, schedules) by value

    def test_every_recipe_is_checked(self):
        recipes = {p.name for p in (REPO / "configs").glob("*.yaml")}
        checked = {name for name, _ in RECIPES}
        self.assertEqual(recipes, checked)

    def test_glue_sweep_metric_is_the_logged_task_metric(self):
        from t5kit.tasks import get_task

        sweep = yaml.safe_load((REPO / "sweeps" / "glue_sst2.yaml").read_text())
        task = get_task("glue", sweep["parameters"]["dataset_name"]["value"])
        # fine_tune_t5 logs eval_<metric>; the W&B integration logs that as eval/<metric>.
        self.assertEqual(sweep["metric"]["name"], f"eval/{task.metric_to_optimize}")
        self.assertEqual(sweep["metric"]["goal"], "maximize" if task.greater_is_better else "minimize")


class PackageTest(absltest.TestCase):
    """The core is an installed package (`make setup`: pip install -e .): nothing edits sys.path to find it."""

    def test_the_package_and_scripts_import_from_anywhere_without_path_manipulation(self):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        modules = "t5kit.training, t5kit.evaluation, t5kit.outputs, constants, data_collators, metrics, fine_tune_t5"
        code = f"import sys; import {modules}, pre_train_t5; print(pre_train_t5.__file__)"
        with self.subTest("a directory outside the repository"):
            done = subprocess.run([sys.executable, "-I", "-c", code], cwd="/", env=env, capture_output=True, text=True)
            self.assertEqual(done.returncode, 0, done.stderr[-2000:])  # -I: no cwd, no PYTHONPATH, no user site
            self.assertEqual(Path(done.stdout.strip()), REPO / "pre_train_t5.py")

    def test_no_file_edits_sys_path(self):
        edits = [
            f"{path.relative_to(REPO)}:{number}"
            for path in REPO.rglob("*.py")
            if not ({".venv", "build"} & set(path.relative_to(REPO).parts))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"sys\.path\.(insert|append)", line)
        ]
        self.assertEqual(edits, [])

    def test_the_core_never_imports_an_entry_script(self):
        scripts = {"pre_train_t5", "fine_tune_t5", "demo", "sweep", "finetune_suite"}
        found = [
            f"{path.name}: {line.strip()}"
            for path in (REPO / "t5kit").glob("*.py")
            for line in path.read_text(encoding="utf-8").splitlines()
            if re.match(r"\s*(import|from) (\w+)", line) and re.match(r"\s*(?:import|from) (\w+)", line)[1] in scripts
        ]
        self.assertEqual(found, [])


class SharedDataTest(absltest.TestCase):
    def test_found_beside_the_checkout_or_beside_the_repository_it_was_cloned_from(self):
        root = Path(self.create_tempdir().full_path)
        (root / "shared" / "data").mkdir(parents=True)
        original = root / "main"
        subprocess.run(["git", "init", "-q", str(original)], check=True)
        subprocess.run(["git", "-C", str(original), "commit", "-q", "--allow-empty", "-m", "x", "--no-gpg-sign"],
                       check=True, env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})  # fmt: skip
        elsewhere = Path(self.create_tempdir().full_path) / "fresh"
        subprocess.run(["git", "clone", "-q", str(original), str(elsewhere)], check=True)
        with mock.patch.dict(os.environ, {"T5_SHARED_DATA": ""}):
            self.assertEqual(find_shared_data(original), root / "shared" / "data")
            self.assertEqual(find_shared_data(elsewhere).resolve(), (root / "shared" / "data").resolve())
            lone = Path(self.create_tempdir().full_path) / "lone"  # no git, no data: the expected place is named
            lone.mkdir()
            self.assertEqual(find_shared_data(lone), lone.parent / "shared" / "data")
        with mock.patch.dict(os.environ, {"T5_SHARED_DATA": "/somewhere/data"}):
            self.assertEqual(find_shared_data(elsewhere), Path("/somewhere/data"))


if __name__ == "__main__":
    absltest.main()
