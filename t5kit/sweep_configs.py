"""The per-task sweep YAMLs in sweeps/, generated from the task table (constants.DATASET_VALS).

    python -m t5kit.sweep_configs --write    # (re)writes sweeps/<benchmark>_<task>.yaml for every GLUE/SuperGLUE task
    python -m t5kit.sweep_configs --check    # exit 1 if a committed file differs from what the table gives

Each file is a W&B sweep (`wandb sweep sweeps/glue_sst2.yaml`) that the offline runner (`python sweep.py`) reads
too. It names its W&B project (`project:`, the project runs outside sweeps log to as well) and the sweep (`name:`,
e.g. glue-sst2-lr-schedule), and searches the learning rate and the schedule (`lr_scheduler_type`, among
LR_SCHEDULES), with batch size and warmup. `metric.name` is the key fine_tune_t5.py logs for the task's metric to
optimise: the Trainer logs `eval_<metric>` and its W&B callback renames it `eval/<metric>`; `goal` follows the
record's `greater_is_better`.
Records marked `small_train_set` get more epochs and a later hyperband cut, `long_inputs` smaller batches.
A task added to the table gets its sweep by rerunning `--write`. sweeps/pretrain.yaml is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from constants import DATASET_VALS
from t5kit.tasks import TaskSpec, get_task
from t5kit.tracking import DEFAULT_PROJECT

REPO = Path(__file__).resolve().parent.parent
SWEEP_DIR = REPO / "sweeps"
SWEEP_BENCHMARKS = ("glue", "superglue")  # one file per task of these benchmarks that has a metric to optimise
PROGRAM = "fine_tune_t5.py"
PROJECT = DEFAULT_PROJECT  # `wandb sweep` creates the sweep here unless --project or WANDB_PROJECT says otherwise
# The schedules searched, under the Trainer's names (each once: the scripts also take the aliases warmuplinear and
# warmupconstant, which would only make the search try linear and constant_with_warmup twice). Together with the
# searched warmup_steps, constant_with_warmup covers the constant schedule (warmup_steps 0).
LR_SCHEDULES = ["linear", "cosine", "constant_with_warmup"]
COMMAND = ["accelerate", "launch", "${program}", "${args}"]
# The DeepSpeed ZeRO-2 variant of COMMAND, written into every file as a comment.
DEEPSPEED_COMMAND = ["accelerate", "launch", "--config_file", "configs/accelerate/deepspeed_zero2.yaml",
                     "${program}", "${args}"]  # fmt: skip
DEEPSPEED_LAUNCHER_COMMAND = ["deepspeed", "${program}", "--deepspeed", "zero_stage2_config.json", "${args}"]

TRAIN_KEYS = ("train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "train/tokens_per_second")


def sweep_tasks() -> list[TaskSpec]:
    return [
        spec
        for benchmark in SWEEP_BENCHMARKS
        for spec in DATASET_VALS.get(benchmark, {}).values()
        if spec.metric_to_optimize is not None and spec.train_split is not None
    ]


def file_name(spec: TaskSpec) -> str:
    return f"{spec.benchmark}_{spec.name}.yaml"


def metric_name(spec: TaskSpec) -> str:
    """The W&B key of the task's metric to optimise: fine_tune_t5 logs eval_<metric>, W&B shows eval/<metric>."""
    return f"eval/{spec.metric_to_optimize}"


def logged_keys(spec: TaskSpec) -> set[str]:
    """The W&B history keys a fine-tuning run with evaluation logs for this task (derived from the record)."""
    return {*TRAIN_KEYS, "eval/loss", "eval/invalid_rate", *(f"eval/{name}" for name in spec.metrics)}


def program_logged_keys(sweep: dict) -> set[str]:
    """The W&B keys the sweep's program logs for the sweep's task (fine-tuning) or for pre-training."""
    if sweep["program"] == "pre_train_t5.py":
        return {*TRAIN_KEYS, "eval/loss", "eval/span_accuracy"}
    params = sweep["parameters"]
    return logged_keys(get_task(params["benchmark"]["value"], params["dataset_name"]["value"]))


def sweep_name(spec: TaskSpec) -> str:
    """The sweep's name in W&B: glue-sst2-lr-schedule."""
    return f"{spec.benchmark}-{spec.name}-lr-schedule"


def sweep_config(spec: TaskSpec) -> dict:
    small = spec.small_train_set  # more epochs; hyperband decides later
    batches = [8, 16, 32] if spec.long_inputs else [16, 32, 64]
    return {
        "program": PROGRAM,
        "project": PROJECT,
        "name": sweep_name(spec),
        "command": list(COMMAND),
        "method": "bayes",
        "metric": {"name": metric_name(spec), "goal": "maximize" if spec.greater_is_better else "minimize"},
        # Hyperband counts evaluations (one per epoch): a trial below the median of the others at an evaluation
        # of a band (min_iter, min_iter * eta, ...) is stopped.
        "early_terminate": {"type": "hyperband", "min_iter": 2 if small else 1, "eta": 2},
        "parameters": {
            "model_name_or_path": {"value": "t5-small"},
            "benchmark": {"value": spec.benchmark},
            "dataset_name": {"value": spec.name},
            "do_train": {"value": True},
            "do_eval": {"value": True},
            "output_dir": {"value": f"runs/sweep-{spec.benchmark}-{spec.name}/$WANDB_RUN_ID"},
            "report_to": {"value": "wandb"},
            "num_train_epochs": {"value": 10 if small else 3},
            "learning_rate": {"distribution": "log_uniform_values", "min": 3e-5, "max": 3e-3},
            "lr_scheduler_type": {"values": list(LR_SCHEDULES)},
            "per_device_train_batch_size": {"values": batches},
            "warmup_steps": {"values": [0, 100, 500]},
        },
    }


def _block(items: list[str], indent: str) -> list[str]:
    return [f"{indent}- {item}" for item in items]


def render(spec: TaskSpec) -> str:
    """The file text: a header (how to run it, the DeepSpeed variant) and the config in block style."""
    name = file_name(spec)
    config = sweep_config(spec)
    header = [
        f"# W&B sweep for {spec.full_name}: {metric_name(spec)} ({config['metric']['goal']}) on the validation set.",
        "# Generated from the task table by `python -m t5kit.sweep_configs --write`; edit the generator, not this file",
        "# (tests/test_sweep_configs.py checks that they agree).",
        "#",
        f"# W&B:      wandb sweep sweeps/{name}    then    wandb agent ENTITY/{PROJECT}/SWEEP_ID",
        f"# SLURM:    SWEEP_ID=ENTITY/{PROJECT}/SWEEP_ID sbatch slurm/sweep_agents.sbatch         (one agent per GPU)",
        f"#           SWEEP_ID=ENTITY/{PROJECT}/SWEEP_ID sbatch slurm/sweep_agent_per_node.sbatch (all GPUs per trial)",
        f"# Offline:  python sweep.py sweeps/{name} --count 20   (no server; add --launcher python without accelerate)",
        "#",
        "# DeepSpeed ZeRO-2 variant: replace `command` below with",
        "#   command:",
        *_block(DEEPSPEED_COMMAND, "#     "),
        '# or run the offline runner with --launcher "' + " ".join(DEEPSPEED_COMMAND[:-2]) + '"',
        "# (the DeepSpeed launcher works too: " + " ".join(DEEPSPEED_LAUNCHER_COMMAND) + ").",
    ]
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(header) + "\n" + body


def expected_files() -> dict[str, str]:
    return {file_name(spec): render(spec) for spec in sweep_tasks()}


def generated_names_in(folder: Path) -> set[str]:
    """Files in `folder` that the generator owns: <benchmark>_<task>.yaml for a benchmark it writes."""
    return {p.name for p in folder.glob("*.yaml") if p.name.split("_", 1)[0] in SWEEP_BENCHMARKS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the files (and remove stale generated ones)")
    mode.add_argument("--check", action="store_true", help="exit 1 if the files differ from the task table")
    parser.add_argument("--dir", type=Path, default=SWEEP_DIR)
    args = parser.parse_args(argv)
    expected = expected_files()
    stale = sorted(generated_names_in(args.dir) - set(expected))
    changed = sorted(
        n for n, text in expected.items() if not (args.dir / n).is_file() or (args.dir / n).read_text() != text
    )
    if args.check:
        for name in changed:
            print(f"{args.dir / name}: differs from the task table (run python -m t5kit.sweep_configs --write)")
        for name in stale:
            print(f"{args.dir / name}: no such task in the table any more")
        return 1 if changed or stale else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name in changed:
        (args.dir / name).write_text(expected[name], encoding="utf-8")
        print(f"wrote {args.dir / name}")
    for name in stale:
        (args.dir / name).unlink()
        print(f"removed {args.dir / name}")
    print(f"{len(expected)} sweep files, {len(changed)} written, {len(stale)} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
