"""Fine-tuning suite: does pre-training help? Several models x tasks x seeds, each an ordinary `fine_tune_t5.py` run,
and one comparison of the models.

    python finetune_suite.py --models runs/pt random_init:runs/pt \\
        --tasks glue/sst2 glue/cola glue/rte superglue/cb --seeds 0 1 2 \\
        --config configs/finetune_cpu.yaml --set data_dir=glue_and_superglue_data --suite_dir runs/suite

A model is a run folder or checkpoint (`runs/pt`, `runs/pt/checkpoint-500`), a hub name (`t5-small`), or
`random_init:NAME`: the architecture (config.json) and tokenizer of NAME with fresh random weights, the
no-pre-training control. The baseline that every other model is compared with is `--baseline`, by default the first
`random_init:` model. Rerunning with more `--models` (and nothing else changed) adds their runs to the suite.

How it runs: the suite is a grid sweep over (model_name_or_path, dataset_name, seed), written to
`<suite_dir>/suite_sweep.yaml` with every fixed flag of `--config` and `--set`, and run by the offline sweep runner
(t5kit/sweep.py): one run folder per trial under `<suite_dir>/trials/`, resumable (finished runs are not run again, an
interrupted one resumes from its checkpoint), `--launcher python` (default), `"accelerate launch"` or any prefix.
A task that needs another budget (`--task_set glue/cola:max_steps=1000`: every model gets it, so the comparison stays
fair) is a grid sweep of its own, in `<suite_dir>/task_flags/glue-cola/`, run after the others.
Every run logs to W&B (offline when there is no server) in the group `suite-<suite_dir name>` (`WANDB_RUN_GROUP`).

What it writes, recomputed from the runs' own `all_results.json` files each time it ends (`--report_only` does only
this):
- `suite_results.json`: every run's metrics; per model and task the mean and standard deviation over seeds; per model
  the benchmark-style average (the mean over tasks of each task's score, a task's score being the mean of its metrics,
  as GLUE counts MRPC or CB); and the difference to the baseline with a 95% confidence interval **paired over seeds**:
  seed s of a model and seed s of the baseline see the same data order, the interval is the Student t interval of the
  per-seed differences (n - 1 degrees of freedom).
- `suite_results.md`: the same as tables; `suite_results.png`: one bar group per task (and the average) with the
  standard deviation as error bars; `suite_curve.png`: the average against pre-training tokens, for models whose
  folder records them, one line per pre-training run (its checkpoints; its random init counts as 0 tokens, or a
  random init of another run folder with the same architecture and tokenizer). A run that continued pre-training
  from another run folder counts that folder's tokens too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from t5kit.args import RANDOM_INIT_PREFIX
from t5kit.exit_codes import EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USAGE
from t5kit.outputs import pyplot, save_figure
from t5kit.sweep import (
    STATE_FILE,
    Runner,
    SweepError,
    fingerprint_of,
    load_sweep,
    run_runner,
)
from t5kit.tasks import get_task, task_score

PROGRAM = Path(__file__).resolve().parent.parent / "fine_tune_t5.py"
SPEC_FILE = "suite.json"
SWEEP_FILE = "suite_sweep.yaml"
RESULTS_JSON = "suite_results.json"
RESULTS_MD = "suite_results.md"
RESULTS_PNG = "suite_results.png"
CURVE_PNG = "suite_curve.png"
AVERAGE = "average"
CONFIDENCE = 0.95
# The suite chooses these per trial; a --config or --set value for them would be silently overridden.
GRID_FLAGS = ("model_name_or_path", "dataset_name", "seed")
OWNED_FLAGS = (*GRID_FLAGS, "output_dir", "benchmark")
# Every trial needs a final metric for the runner to call it finished; every fine-tuning evaluation logs the loss.
RUNNER_METRIC = {"name": "eval/loss", "goal": "minimize"}
DEFAULT_FLAGS = {"do_train": True, "do_eval": True}
# A task with flags of its own (--task_set) is a sweep of its own in <suite_dir>/task_flags/<benchmark>-<task>/.
TASK_FLAGS_DIR = "task_flags"


@dataclass(frozen=True)
class SuiteSpec:
    models: tuple[str, ...]
    tasks: tuple[str, ...]  # benchmark/task
    seeds: tuple[int, ...]
    baseline: str | None
    flags: dict[str, Any]
    task_flags: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> flags over `flags` for its runs

    def as_dict(self) -> dict[str, Any]:
        held = {"models": list(self.models), "tasks": list(self.tasks), "seeds": list(self.seeds),
                "baseline": self.baseline, "flags": self.flags}  # fmt: skip
        return held | {"task_flags": self.task_flags} if self.task_flags else held

    def flags_of(self, task: str) -> dict[str, Any]:
        return {**self.flags, **self.task_flags.get(task, {})}

    def groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """(folder under the suite folder, tasks) per sweep: the tasks without flags of their own in the suite folder
        itself, each task with some in task_flags/<benchmark>-<task>."""
        plain = tuple(t for t in self.tasks if t not in self.task_flags)
        own = [(f"{TASK_FLAGS_DIR}/{t.replace('/', '-')}", (t,)) for t in self.tasks if t in self.task_flags]
        return ([(".", plain)] if plain else []) + own


def _task_spec(name: str):
    benchmark, sep, task = name.partition("/")
    if not sep:
        raise SweepError(f"--tasks {name}: write benchmark/task, e.g. glue/sst2 or superglue/cb")
    try:
        return get_task(benchmark, task)
    except ValueError as err:
        raise SweepError(f"--tasks {name}: {err}") from None


def check_model(name: str) -> None:
    """A local folder must hold a config.json. A name that does not exist is a hub name (`org/name` at most), unless
    it is spelled as a path (`./x`, `/x`, `~/x`, `a/b/c`)."""
    path = name[len(RANDOM_INIT_PREFIX) :] if name.startswith(RANDOM_INIT_PREFIX) else name
    if not path:
        raise SweepError(f"--models {name}: {RANDOM_INIT_PREFIX} needs a model after it ({RANDOM_INIT_PREFIX}runs/pt)")
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise SweepError(f"--models {name}: {local} holds no config.json (give a run folder or checkpoint)")
    elif path.startswith((".", "/", "~")) or path.strip("/").count("/") > 1:
        raise SweepError(f"--models {name}: no such folder {local}")


def read_flags(config: str | None, sets: list[str]) -> dict[str, Any]:
    """Fixed fine-tuning flags: the --config YAML (safe_load), then --set NAME=VALUE on top."""
    flags: dict[str, Any] = dict(DEFAULT_FLAGS)
    if config:
        path = Path(config)
        if not path.is_file():
            raise SweepError(f"--config {config}: no such file")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{config}:{mark.line + 1}" if mark is not None else config
            raise SweepError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
        if not isinstance(values, dict):
            raise SweepError(f"--config {config}: expected a mapping of fine_tune_t5.py flags to values")
        flags.update(values)
    flags.update(_name_value(item, "--set") for item in sets)
    for name, value in flags.items():
        _check_flag(name, value)
    return flags


def _name_value(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise SweepError(f"{option} {item!r}: expected NAME=VALUE")
    return name.lstrip("-"), value


def _check_flag(name: str, value: Any) -> None:
    if name in OWNED_FLAGS:
        raise SweepError(f"flag {name} is set by the suite per run (--models, --tasks, --seeds, --suite_dir); "
                         f"remove it from --config/--set/--task_set")  # fmt: skip
    if value is None or isinstance(value, (list, dict)):
        raise SweepError(f"flag {name}: {value!r} cannot be passed as --{name}=VALUE; give a single value")


def read_task_flags(items: list[str], tasks: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """--task_set TASK:NAME=VALUE: a fine-tuning flag for one task's runs, over --config and --set."""
    task_flags: dict[str, dict[str, Any]] = {}
    for item in items:
        task, sep, setting = item.partition(":")
        if not sep:
            raise SweepError(f"--task_set {item!r}: expected TASK:NAME=VALUE, e.g. glue/cola:max_steps=1000")
        if task not in tasks:
            raise SweepError(f"--task_set {item!r}: {task} is not one of --tasks ({' '.join(tasks)})")
        name, value = _name_value(setting, "--task_set")
        _check_flag(name, value)
        task_flags.setdefault(task, {})[name] = value
    return {task: task_flags[task] for task in tasks if task in task_flags}  # in --tasks order


def build_spec(opts: argparse.Namespace) -> SuiteSpec:
    models = tuple(dict.fromkeys(opts.models))
    tasks = tuple(dict.fromkeys(opts.tasks))
    seeds = tuple(dict.fromkeys(opts.seeds))
    for model in models:
        check_model(model)
    for task in tasks:
        _task_spec(task)
    baseline = opts.baseline
    if baseline is None:
        baseline = next((m for m in models if m.startswith(RANDOM_INIT_PREFIX)), None)
    elif baseline not in models:
        raise SweepError(f"--baseline {baseline} is not one of --models")
    return SuiteSpec(models, tasks, seeds, baseline, read_flags(opts.config, opts.set),
                     read_task_flags(opts.task_set, tasks))  # fmt: skip


def sweep_config(spec: SuiteSpec, tasks: tuple[str, ...]) -> dict[str, Any]:
    """The grid sweep of one group of the suite's tasks (SuiteSpec.groups: they share their flags), in W&B's sweep
    format (also valid for `wandb sweep`)."""
    parameters: dict[str, Any] = {
        "model_name_or_path": {"values": list(spec.models)},
        "dataset_name": {"values": list(tasks)},
        "seed": {"values": list(spec.seeds)},
    }
    parameters.update({name: {"value": value} for name, value in spec.flags_of(tasks[0]).items()})
    return {
        "program": str(PROGRAM),
        "method": "grid",
        "metric": dict(RUNNER_METRIC),
        "parameters": parameters,
        "command": ["${env}", "${interpreter}", "${program}", "${args}"],
    }


def prepare_dir(suite_dir: Path, spec: SuiteSpec) -> list[Path]:
    """Writes suite.json and a sweep file per group of tasks that share their flags (SuiteSpec.groups); returns the
    sweep files. A folder that holds another suite is refused, not mixed, except when the new one only adds models
    (the same tasks, seeds, flags, per-task flags and baseline): its finished runs are kept."""
    suite_dir.mkdir(parents=True, exist_ok=True)
    spec_path = suite_dir / SPEC_FILE
    new = json.loads(json.dumps(spec.as_dict()))
    extends = False
    if spec_path.is_file():
        held = json.loads(spec_path.read_text(encoding="utf-8"))
        extends = held != new and set(held["models"]) <= set(new["models"]) and all(
            held.get(key) == new.get(key) for key in ("tasks", "seeds", "flags", "baseline", "task_flags"))  # fmt: skip
        if held != new and not extends:
            raise SweepError(
                f"{suite_dir} holds a suite with other tasks, seeds, flags or baseline ({spec_path}); rerun it with "
                "the same ones to resume (adding --models is fine), or pass another --suite_dir"
            )
    sweep_paths = []
    for folder, tasks in spec.groups():
        sweep_path = suite_dir / folder / SWEEP_FILE
        sweep_path.parent.mkdir(parents=True, exist_ok=True)
        sweep_path.write_text(yaml.safe_dump(sweep_config(spec, tasks), sort_keys=False), encoding="utf-8")
        state_path = sweep_path.parent / STATE_FILE
        if extends and state_path.is_file():  # the runner resumes a sweep only with its own grid: the larger one
            state = json.loads(state_path.read_text(encoding="utf-8"))
            state["fingerprint"] = fingerprint_of(load_sweep(sweep_path), {})
            state_path.write_text(json.dumps(state, indent=1), encoding="utf-8")
        sweep_paths.append(sweep_path)
    spec_path.write_text(json.dumps(new, indent=1) + "\n", encoding="utf-8")
    return sweep_paths


# --------------------------------------------------------------------------------------------------------------
# The comparison, from the run folders


def pretraining_tokens(model: str, _seen: frozenset[Path] = frozenset()) -> int | None:
    """Input tokens the model was pre-trained on, from its folder's trainer_state.json; 0 for a random init. A run
    that continued another model's pre-training (`model_name_or_path` in its args.yaml) adds that model's tokens;
    None (unknown) when they are not known, e.g. a hub model or a folder that is gone."""
    if model.startswith(RANDOM_INIT_PREFIX):
        return 0
    folder = Path(model).expanduser()
    state = folder / "trainer_state.json"
    if not state.is_file() or folder.resolve() in _seen:
        return None
    tokens = json.loads(state.read_text(encoding="utf-8")).get("num_input_tokens_seen")
    if not (isinstance(tokens, (int, float)) and tokens > 0):
        return None
    base = continued_from(model)
    if base is None:
        return int(tokens)  # pre-trained from scratch
    before = pretraining_tokens(str(base), _seen | {folder.resolve()})
    return None if before is None else before + int(tokens)


def continued_from(model: str) -> str | None:
    """The model whose pre-training a run folder (or its checkpoint) continued: `model_name_or_path` of the run's
    args.yaml; None for a run that started from random weights, or without args.yaml."""
    args = Path(run_of(model)).expanduser() / "args.yaml"
    flags = yaml.safe_load(args.read_text(encoding="utf-8")) if args.is_file() else None
    base = flags.get("model_name_or_path") if isinstance(flags, dict) else None
    if not base or flags.get("random_init") or str(base).startswith(RANDOM_INIT_PREFIX):
        return None
    return str(base)


def same_architecture_and_tokenizer(a: str, b: str) -> bool:
    """Whether two run folders hold byte-identical config.json and tokenizer.json files."""
    names = ("config.json", "tokenizer.json")
    files = [[Path(folder).expanduser() / name for name in names] for folder in (a, b)]
    if not all(path.is_file() for paths in files for path in paths):
        return False
    return all(x.read_bytes() == y.read_bytes() for x, y in zip(*files))


def collect_runs(suite_dir: Path, spec: SuiteSpec) -> list[dict[str, Any]]:
    """One row per trial of every sweep of the suite: model, task, seed, state, folder, and the metrics of its
    all_results.json."""
    trials = []
    for folder, _ in spec.groups():
        state_path = suite_dir / folder / STATE_FILE
        if state_path.is_file():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            trials += [(suite_dir / folder / "trials" / t["name"], t) for t in state["trials"]]  # the runner's layout
    rows = []
    for folder, trial in trials:
        params = trial["params"]
        results_path = folder / "all_results.json"
        results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
        rows.append({
            "model": params["model_name_or_path"], "task": params["dataset_name"], "seed": int(params["seed"]),
            "state": trial["state"], "output_dir": str(folder), "results": results,
        })  # fmt: skip
    return rows


def _mean_std(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}  # fmt: skip


def paired_difference(model: dict[int, float], baseline: dict[int, float]) -> dict[str, Any] | None:
    """Mean difference over the seeds both have, with the two-sided Student t interval of the per-seed differences.

    >>> paired_difference({0: 70.0, 1: 72.0, 2: 71.0}, {0: 68.0, 1: 69.0, 2: 70.0})["mean"]
    2.0
    """
    seeds = sorted(set(model) & set(baseline))
    if not seeds:
        return None
    diffs = [model[s] - baseline[s] for s in seeds]
    out = {"mean": float(np.mean(diffs)), "n": len(diffs), "per_seed": dict(zip(seeds, diffs))}
    if len(diffs) > 1:
        from scipy import stats

        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(diffs) - 1) * np.std(diffs, ddof=1) / math.sqrt(len(diffs)))
        out.update(ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    else:
        out.update(ci_low=None, ci_high=None)
    return out


def summarize(spec: SuiteSpec, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything in suite_results.json: per-run metrics, per (model, task) mean/std, averages, baseline deltas."""
    task_specs = {name: _task_spec(name) for name in spec.tasks}
    scores: dict[str, dict[str, dict[int, float]]] = {m: {t: {} for t in spec.tasks} for m in spec.models}
    per_model: dict[str, Any] = {}
    for model in spec.models:
        tasks_out = {}
        for task in spec.tasks:
            ts = task_specs[task]
            metric_values: dict[str, list[float]] = {name: [] for name in ts.metrics}
            for run in runs:
                if run["model"] != model or run["task"] != task or run["state"] != "finished":
                    continue
                found = {name: run["results"].get(f"eval_{name}") for name in ts.metrics}
                if any(not isinstance(v, (int, float)) for v in found.values()):
                    continue
                for name, value in found.items():
                    metric_values[name].append(float(value))
                scores[model][task][run["seed"]] = task_score(ts, found)
            if scores[model][task]:
                tasks_out[task] = {
                    "metrics": {name: _mean_std(v) for name, v in metric_values.items()},
                    "score": _mean_std(list(scores[model][task].values())),
                    "seeds": sorted(scores[model][task]),
                }
        complete_seeds = [s for s in spec.seeds if all(s in scores[model][t] for t in spec.tasks)]
        averages = {s: float(np.mean([scores[model][t][s] for t in spec.tasks])) for s in complete_seeds}
        per_model[model] = {
            "tasks": tasks_out,
            "average": {**_mean_std(list(averages.values())), "per_seed": averages} if averages else None,
            "pretraining_tokens": pretraining_tokens(model),
        }
    comparisons = {}
    if spec.baseline is not None:
        base = spec.baseline
        base_avg = (per_model[base]["average"] or {}).get("per_seed", {})
        for model in spec.models:
            if model == base:
                continue
            deltas = {t: paired_difference(scores[model][t], scores[base][t]) for t in spec.tasks}
            model_avg = (per_model[model]["average"] or {}).get("per_seed", {})
            deltas[AVERAGE] = paired_difference(model_avg, base_avg)
            comparisons[model] = deltas
    done = sum(r["state"] == "finished" for r in runs)
    return {
        "models": list(spec.models), "tasks": list(spec.tasks), "seeds": list(spec.seeds),
        "baseline": spec.baseline, "flags": spec.flags, "task_flags": spec.task_flags, "confidence": CONFIDENCE,
        "interval": "paired over seeds: Student t interval of the per-seed differences (n - 1 degrees of freedom)",
        "runs_expected": len(spec.models) * len(spec.tasks) * len(spec.seeds), "runs_finished": done,
        "per_model": per_model, "versus_baseline": comparisons,
        "runs": [{k: r[k] for k in ("model", "task", "seed", "state", "output_dir")}
                 | {"metrics": {k: v for k, v in r["results"].items() if k.startswith("eval_")}} for r in runs],
    }  # fmt: skip


def _cell(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "-"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if stat["n"] > 1 else f"{stat['mean']:.1f}"


def _delta(diff: dict[str, Any] | None) -> str:
    if not diff:
        return "-"
    if diff["ci_low"] is None:
        return f"{diff['mean']:+.1f} (1 seed)"
    mark = " *" if diff["ci_low"] > 0 or diff["ci_high"] < 0 else ""
    return f"{diff['mean']:+.1f} [{diff['ci_low']:+.1f}, {diff['ci_high']:+.1f}]{mark}"


def format_tokens(count: int) -> str:
    """8200000 -> '8.2M', 3400 -> '3.4k', 0 -> '0'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def _flag_list(flags: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in flags.items())


def task_header(task: str) -> str:
    return f"{task} ({'/'.join(_task_spec(task).metrics)})"


def format_markdown(summary: dict[str, Any]) -> str:
    tasks, per_model = summary["tasks"], summary["per_model"]
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [
        f"Mean ± standard deviation over seeds {seeds} (0-100; a task with two metrics scores their mean). "
        f"{summary['runs_finished']} of {summary['runs_expected']} runs finished."
        + "".join(f" {task} runs with {_flag_list(flags)}." for task, flags in summary.get("task_flags", {}).items()),
        "",
        "| model | pre-training tokens | " + " | ".join(task_header(t) for t in tasks) + " | average |",
        "|---|---:|" + "---:|" * (len(tasks) + 1),
    ]
    for model in summary["models"]:
        info = per_model[model]
        tokens = info["pretraining_tokens"]
        shown = "?" if tokens is None else format_tokens(tokens)
        cells = [_cell((info["tasks"].get(t) or {}).get("score")) for t in tasks]
        lines.append(f"| {model} | {shown} | " + " | ".join(cells) + f" | **{_cell(info['average'])}** |")
    if summary["versus_baseline"]:
        lines += [
            "",
            f"Difference to the baseline `{summary['baseline']}`: mean [95% interval], {summary['interval']}; "
            "`*` marks an interval that excludes 0.",
            "",
            "| model | " + " | ".join(tasks) + " | average |",
            "|---|" + "---:|" * (len(tasks) + 1),
        ]
        for model, deltas in summary["versus_baseline"].items():
            cells = [_delta(deltas.get(t)) for t in tasks]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | **{_delta(deltas.get(AVERAGE))}** |")
    detail = [t for t in tasks if len(_task_spec(t).metrics) > 1]
    for task in detail:
        names = _task_spec(task).metrics
        lines += ["", f"{task} metrics:", "", "| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for model in summary["models"]:
            metrics = (per_model[model]["tasks"].get(task) or {}).get("metrics", {})
            lines.append(f"| {model} | " + " | ".join(_cell(metrics.get(n)) for n in names) + " |")
    return "\n".join(lines) + "\n"


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    groups = [*summary["tasks"], AVERAGE]
    models = summary["models"]
    width = 0.8 / max(len(models), 1)
    fig, ax = pyplot().subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.2))
    for i, model in enumerate(models):
        info = summary["per_model"][model]
        stats = [(info["tasks"].get(g) or {}).get("score") if g != AVERAGE else info["average"] for g in groups]
        means = [s["mean"] if s else np.nan for s in stats]
        errors = [s["std"] if s else 0.0 for s in stats]
        xs = np.arange(len(groups)) + (i - (len(models) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=model)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(f"score (0-100), mean ± std over {len(summary['seeds'])} seeds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def run_of(model: str) -> str:
    """The pre-training run a model comes from: `runs/pt` for `runs/pt`, `runs/pt/checkpoint-500` and
    `random_init:runs/pt` (its step 0)."""
    path = Path(model[len(RANDOM_INIT_PREFIX) :] if model.startswith(RANDOM_INIT_PREFIX) else model)
    return str(path.parent if re.fullmatch(r"checkpoint-\d+", path.name) else path)


def curve_series(summary: dict[str, Any]) -> dict[str, list[tuple[int, float, float, str]]]:
    """Per pre-training run, its models' (tokens, average mean, average std, model), by tokens; models whose
    pre-training tokens are unknown are left out. A run from scratch without its own random init starts at a random
    init of another run folder with the same architecture and tokenizer (one control shared by several runs)."""
    series: dict[str, list[tuple[int, float, float, str]]] = {}
    for model, info in summary["per_model"].items():
        if info["pretraining_tokens"] is not None and info["average"]:
            point = (info["pretraining_tokens"], info["average"]["mean"], info["average"]["std"], model)
            series.setdefault(run_of(model), []).append(point)
    starts = [point for points in series.values() for point in points if point[3].startswith(RANDOM_INIT_PREFIX)]
    for run, points in series.items():
        if any(point[0] == 0 for point in points) or continued_from(run) is not None:
            continue
        shared = [point for point in starts if same_architecture_and_tokenizer(run_of(point[3]), run)]
        points.extend(shared[:1])
    return {run: sorted(points) for run, points in series.items()}


def plot_curve(summary: dict[str, Any], path: Path) -> bool:
    """The average against pre-training tokens, one line per pre-training run (its checkpoints, with its random
    init at 0 tokens); False (nothing written) with fewer than 2 points in all."""
    series = curve_series(summary)
    if sum(len(points) for points in series.values()) < 2:
        return False
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for run, points in series.items():
        ax.errorbar([p[0] / 1e6 for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                    marker="o", capsize=3, label=run)  # fmt: skip
    ax.set_xlabel("pre-training input tokens (millions; 0 = random init)")
    ax.set_ylabel("suite average (0-100)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
    return True


def write_report(suite_dir: Path, spec: SuiteSpec) -> dict[str, Any]:
    summary = summarize(spec, collect_runs(suite_dir, spec))
    (suite_dir / RESULTS_JSON).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    table = format_markdown(summary)
    (suite_dir / RESULTS_MD).write_text(table, encoding="utf-8")
    plot_summary(summary, suite_dir / RESULTS_PNG)
    plot_curve(summary, suite_dir / CURVE_PNG)
    return summary


# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune_suite.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+",
                        help="run folders, checkpoints, hub names, or random_init:NAME (the control)")  # fmt: skip
    parser.add_argument("--tasks", nargs="+", help="benchmark/task, e.g. glue/sst2 superglue/cb")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="fine-tuning seeds (0 1 2)")
    parser.add_argument("--baseline", help="the model the others are compared with (the first random_init: model)")
    parser.add_argument(
        "--config", help="a YAML of fine_tune_t5.py flags for every run, e.g. configs/finetune_cpu.yaml"
    )
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a fine_tune_t5.py flag for every run (overrides --config); repeatable")  # fmt: skip
    parser.add_argument("--task_set", action="append", default=[], metavar="TASK:NAME=VALUE",
                        help="a fine_tune_t5.py flag for one task's runs (over --config and --set), e.g. "
                        "glue/cola:max_steps=1000; repeatable")  # fmt: skip
    parser.add_argument("--suite_dir", default="runs/suite", help="where runs and results go (runs/suite)")
    parser.add_argument(
        "--launcher", default="python",
        help="python: this interpreter, one process per run; or a command prefix put before the program, e.g. "
        "\"accelerate launch\" or \"torchrun --nproc_per_node 2\"",
    )  # fmt: skip
    parser.add_argument("--report_only", action="store_true",
                        help="only recompute the results of --suite_dir from its run folders")  # fmt: skip
    parser.add_argument("--poll_s", type=float, default=5.0, help="seconds between looks at a running trial (5)")
    return parser


def load_spec(suite_dir: Path) -> SuiteSpec:
    path = suite_dir / SPEC_FILE
    if not path.is_file():
        raise SweepError(f"--report_only: {suite_dir} holds no suite ({SPEC_FILE})")
    held = json.loads(path.read_text(encoding="utf-8"))
    spec = SuiteSpec(tuple(held["models"]), tuple(held["tasks"]), tuple(held["seeds"]), held["baseline"],
                     held["flags"], held.get("task_flags", {}))  # fmt: skip
    if not any((suite_dir / folder / STATE_FILE).is_file() for folder, _ in spec.groups()):
        raise SweepError(f"--report_only: {suite_dir} holds no suite runs ({STATE_FILE})")
    return spec


def run_suite(spec: SuiteSpec, suite_dir: Path, opts: argparse.Namespace) -> int:
    """Runs the missing trials (resuming an interrupted one), one sweep after the other; the first exit status that
    stops the suite (a mistake, a pre-emption, Ctrl-C), else the last non-zero one."""
    os.environ.setdefault("WANDB_RUN_GROUP", f"suite-{suite_dir.resolve().name}")
    status = 0
    for sweep_path, (_, tasks) in zip(prepare_dir(suite_dir, spec), spec.groups()):
        runner = Runner(argparse.Namespace(
            sweep_file=str(sweep_path), count=len(spec.models) * len(tasks) * len(spec.seeds),
            sweep_dir=str(sweep_path.parent), launcher=opts.launcher, set=[], seed=0, poll_s=opts.poll_s,
        ))  # fmt: skip
        runner.rank_trials = False  # the trials are different tasks: none is "best"
        code = run_runner(runner)
        if code in (EXIT_USAGE, EXIT_PREEMPTED, EXIT_INTERRUPTED):
            return code
        status = code or status
    return status


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    suite_dir = Path(opts.suite_dir)
    try:
        if opts.report_only:
            spec = load_spec(suite_dir)
        else:
            if not opts.models or not opts.tasks:
                raise SweepError("--models and --tasks are required (or --report_only for an existing --suite_dir)")
            spec = build_spec(opts)
            status = run_suite(spec, suite_dir, opts)
            if status in (EXIT_USAGE, EXIT_PREEMPTED, EXIT_INTERRUPTED):
                return status
        summary = write_report(suite_dir, spec)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"\n{format_markdown(summary)}\nsuite results: {(suite_dir / RESULTS_MD).resolve()} (+ .json, .png)")
    return 0 if summary["runs_finished"] == summary["runs_expected"] else 1
