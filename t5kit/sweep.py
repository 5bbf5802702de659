"""Offline sweep runner: the W&B sweep YAMLs in sweeps/, run locally with no W&B server.

    python sweep.py sweeps/glue_sst2.yaml --count 20                       # the YAML's command (accelerate launch)
    python sweep.py sweeps/glue_sst2.yaml --count 3 --launcher python \\
        --set max_train_samples=2000 --sweep_dir runs/sweeps/sst2          # one plain process per trial
    python sweep.py sweeps/glue_sst2.yaml \
        --launcher "accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml"    # DeepSpeed ZeRO-2

What it does, per trial, one at a time:
1. Proposes the trial's parameters with the `sweeps` package (W&B's own grid/random/bayes code), from the trials so
   far and their metrics (`method`, `parameters`, `metric` of the YAML).
2. Runs the YAML's `command` (`${env}`, `${interpreter}`, `${program}`, `${args}` as the W&B agent expands them;
   `--launcher python` or `--launcher "PREFIX"` replaces what comes before `${program}`), with the parameters as
   `--name=value` and `--output_dir` set to `<sweep_dir>/trials/<trial>` (one folder per trial). Output goes to
   `<sweep_dir>/logs/<trial>.log`. A trial that reports to W&B logs to the YAML's `project:` (as `wandb sweep`
   does: WANDB_PROJECT, if set, wins); the YAML's `name:` and `description:` are for the W&B server only.
3. Follows `<output_dir>/metrics.jsonl` while the trial runs; with `early_terminate: {type: hyperband}` it asks
   `sweeps.stop_runs` after each new value of the metric and stops (SIGTERM) a trial that falls behind.
4. Reads the trial's metric: `metric.name` is a W&B key (`eval/accuracy`), the run folder has the Trainer's key
   (`eval_accuracy`): the final value from `all_results.json`, else the last logged one.
5. Writes `<sweep_dir>/results.md`, `results.csv` and `results.png` (metric against trial and each searched
   parameter), and `sweep_state.json`.

Resumable: rerun the same command after an interruption. Finished trials are kept; a trial that was running is
run again with the same parameters, resuming from its last checkpoint where the program has
`--resume_from_checkpoint` (`latest`), from scratch otherwise. `--count N` is the number of trials the sweep holds
in all (earlier ones included); a grid also ends when every point has run.
A trial that exits 75 (pre-empted after its checkpoint) stops the runner with 75 as well, and so does SIGTERM
to the runner (it stops the running trial first), so a SLURM requeue resumes both; Ctrl-C exits 130.
One runner per sweep folder (a lock file holds its pid).
Mistakes exit with status 2 and one line: invalid YAML (file:line), a parameter that is no flag of the program
(file:line), a missing program.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from t5kit.args import yaml_line_of
from t5kit.exit_codes import EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USAGE
from t5kit.outputs import pyplot, save_figure
from t5kit.tracking import METRICS_LOG, read_metrics_log

STATE_FILE = "sweep_state.json"
# A trial that exits EXIT_PREEMPTED was pre-empted after saving a checkpoint: the runner stops too, with the same
# status, so a SLURM requeue resumes the sweep and the trial.
LOCK_FILE = ".runner.lock"
METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
DONE_STATES = ("finished", "failed", "stopped")
STOP_GRACE_S = 30.0
FLAG_PATTERN = re.compile(r"(?<![\w-])--([A-Za-z0-9][\w-]*)")


class SweepError(Exception):
    """A user mistake in the sweep file or command line: printed as one line, exit status 2."""


class Interrupted(Exception):
    pass


class TrialPreempted(Exception):
    pass


# --------------------------------------------------------------------------------------------------------------
# The sweep file


def load_sweep(path: Path) -> dict:
    """The sweep YAML, checked: program, method, metric, parameters, command, early_terminate."""
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    text = path.read_text(encoding="utf-8")
    try:
        sweep = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise SweepError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(sweep, dict):
        kind = type(sweep).__name__
        raise SweepError(f"{path}:1: expected a mapping (program, method, metric, parameters), got {kind}")

    def fail(keys: tuple[str, ...], message: str):
        line = yaml_line_of(text, keys)
        raise SweepError(f"{path}:{line or 1}: {message}")

    if not isinstance(sweep.get("program"), str) or not sweep["program"]:
        fail(("program",), "needs `program: <script>` (e.g. fine_tune_t5.py)")
    if sweep.get("method") not in METHODS:
        fail(("method",), f"method must be one of {', '.join(METHODS)}, got {sweep.get('method')!r}")
    metric = sweep.get("metric")
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        fail(("metric",), "needs `metric: {name: <logged key, e.g. eval/accuracy>, goal: maximize|minimize}`")
    metric.setdefault("goal", "minimize")
    if metric["goal"] not in GOALS:
        fail(("metric", "goal"), f"metric.goal must be minimize or maximize, got {metric['goal']!r}")
    params = sweep.get("parameters")
    if not isinstance(params, dict) or not params:
        fail(("parameters",), "needs a `parameters` mapping of flag names to {value|values|distribution...}")
    for name, spec in params.items():
        if not isinstance(spec, dict) or not ({"value", "values", "min", "max", "distribution"} & set(spec)):
            fail(("parameters", str(name)), f"parameter {name!r}: expected a mapping with value, values or min/max")
    command = sweep.setdefault("command", list(DEFAULT_COMMAND))
    if not isinstance(command, list) or not all(isinstance(x, str) for x in command) or "${program}" not in command:
        fail(("command",), "command must be a list of strings with ${program} (one list item per word)")
    stop = sweep.get("early_terminate")
    if stop is not None:
        if not isinstance(stop, dict) or stop.get("type") != "hyperband":
            fail(("early_terminate",), "early_terminate: only {type: hyperband, min_iter|max_iter: N, eta: N}")
        if not ({"min_iter", "max_iter"} & set(stop)):
            fail(("early_terminate",), "early_terminate hyperband needs min_iter or max_iter")
    if sweep["method"] == "grid":
        for name, spec in params.items():
            if "value" not in spec and "values" not in spec:
                fail(("parameters", str(name)), f"method grid needs value/values for every parameter ({name!r})")
    # The schema the W&B server checks `wandb sweep` files against (it ships with the sweeps package).
    try:
        _sweeps().SweepConfig(sweep)
    except Exception as err:  # noqa: BLE001 - jsonschema.ValidationError and the package's own ValueErrors
        where = [str(k) for k in getattr(err, "absolute_path", [])]
        instance = getattr(err, "instance", None)
        if not where:  # parameters are checked one by one, without a path: find the one that failed
            where = next((["parameters", str(n)] for n, spec in params.items()
                          if spec == instance or repr(spec) in str(err)), [])  # fmt: skip
        line = yaml_line_of(text, tuple(where)) if where else None
        message = str(getattr(err, "message", None) or err).splitlines()[0]
        raise SweepError(f"{path}:{line or 1}: not a valid W&B sweep config ({message})") from None
    return sweep


def resolve_program(sweep: dict, sweep_file: Path) -> Path:
    """The program, relative to the current directory (as the W&B agent runs it), else to the YAML's repository."""
    program = Path(sweep["program"])
    if program.is_absolute():
        candidates = [program]
    else:
        candidates = [Path.cwd() / program, sweep_file.resolve().parent.parent / program]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = ", ".join(str(c.parent) for c in candidates)
    line = yaml_line_of(sweep_file.read_text(encoding="utf-8"), ("program",)) or 1
    raise SweepError(f"{sweep_file}:{line}: program {sweep['program']} not found (looked in {where})")


def program_flags(program: Path) -> set[str]:
    """The flags of the program's argument parser, read from `python PROGRAM --help`."""
    result = subprocess.run(
        [sys.executable, str(program), "--help"], capture_output=True, text=True, timeout=300, cwd=str(program.parent)
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise SweepError(f"{program} --help failed (exit {result.returncode}): {' / '.join(tail)}")
    flags = set()
    for line in result.stdout.splitlines():
        if re.match(r"^\s{1,8}-", line):  # argparse's option lines; help text is indented further
            invocation = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]  # the help text may follow 2+ spaces
            flags.update(FLAG_PATTERN.findall(invocation))
    return {flag for flag in flags if flag != "help"}


def check_parameters(sweep: dict, sweep_file: Path, flags: set[str], program: Path, extra: dict) -> None:
    text = sweep_file.read_text(encoding="utf-8")
    for name in sweep["parameters"]:
        if str(name) not in flags:
            line = yaml_line_of(text, ("parameters", str(name))) or 1
            raise SweepError(f"{sweep_file}:{line}: parameter {name!r} is not a flag of {program.name} "
                             f"(`python {program.name} --help` lists them)")  # fmt: skip
    searched = {name for name, spec in sweep["parameters"].items() if "value" not in spec}
    for name in extra:
        if name not in flags:
            raise SweepError(f"--set {name}=...: {name!r} is not a flag of {program.name}")
        if name in searched:
            raise SweepError(f"--set {name}=...: {name!r} is searched by {sweep_file}; drop it from --set or fix "
                             "its value in the YAML (`value:`)")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Trials


def trainer_key(metric_name: str) -> str:
    """W&B key -> the Trainer's key in all_results.json / log_history: eval/accuracy -> eval_accuracy."""
    head, _, rest = metric_name.partition("/")
    if not rest:
        return metric_name
    if head in ("eval", "test"):
        return f"{head}_{rest}"
    return rest if head == "train" else metric_name


def metric_history(output_dir: Path, metric_name: str) -> list[float]:
    key = trainer_key(metric_name)
    rows = read_metrics_log(output_dir / METRICS_LOG)
    return [float(row[key]) for row in rows if _is_number(row.get(key))]


def final_metric(output_dir: Path, metric_name: str, history: list[float]) -> float | None:
    results = output_dir / "all_results.json"
    if results.is_file():
        try:
            value = json.loads(results.read_text()).get(trainer_key(metric_name))
        except json.JSONDecodeError:
            value = None
        if _is_number(value):
            return float(value)
    return history[-1] if history else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value):
    """numpy scalars from the sweeps package -> Python values (for JSON and for the command line)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def format_arg(name: str, value) -> str:
    return f"--{name}={value}"


def sweep_engine_config(sweep: dict) -> dict:
    keys = ("method", "metric", "parameters", "early_terminate")
    return json.loads(json.dumps({k: sweep[k] for k in keys if k in sweep}))


# Flags whose value is a secret, and the environment variable that carries it to a trial instead of its command
# line (huggingface_hub reads HF_TOKEN, as `--hub_token` itself ends up doing): never in a log or a record.
SECRET_FLAGS = {"hub_token": "HF_TOKEN"}


def fingerprint_of(sweep: dict, extra: dict) -> dict:
    """What a sweep folder must keep to be resumed: the search, the command, the program and the --set values
    (a secret one as its SHA-256, so that sweep_state.json never holds it)."""
    import hashlib

    shown = {k: "sha256:" + hashlib.sha256(str(v).encode()).hexdigest() if k in SECRET_FLAGS else v
             for k, v in extra.items()}  # fmt: skip
    return {"sweep": sweep_engine_config(sweep), "command": sweep["command"], "program": sweep["program"],
            "set": shown}  # fmt: skip


def _sweeps():
    """The sweeps package, imported without the pydantic v1-style config warning it raises at import."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps
    return sweeps


def to_sweep_run(trial: dict, metric_name: str, running: bool = False):
    sweeps = _sweeps()

    state = (
        "running"
        if running
        else {"finished": "finished", "stopped": "finished", "failed": "failed"}.get(trial["state"], "running")
    )
    summary = {metric_name: trial["metric"]} if _is_number(trial.get("metric")) else {}
    return sweeps.SweepRun(
        name=trial["name"],
        state=state,
        config={k: {"value": v} for k, v in trial["params"].items()},
        summary_metrics=summary,
        history=[{metric_name: v} for v in trial.get("history", [])],
    )


def propose(sweep: dict, trials: list[dict], seed: int) -> dict | None:
    """The next trial's parameters from the sweeps package, or None when a grid is done."""
    import warnings

    import numpy as np

    sweeps = _sweeps()
    random.seed(seed * 1_000_003 + len(trials))
    np.random.seed((seed * 1_000_003 + len(trials)) % 2**32)
    runs = [to_sweep_run(t, sweep["metric"]["name"]) for t in trials]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic v1-style config warnings inside the sweeps package
        run = sweeps.next_run(sweep_engine_config(sweep), runs)
    if run is None:
        return None
    return {name: _plain(spec["value"]) for name, spec in run.config.items()}


def should_stop(sweep: dict, trials: list[dict], current: dict) -> bool:
    """Hyperband (sweeps.stop_runs) over the finished trials' metric histories and the running one's."""
    import warnings

    sweeps = _sweeps()
    metric_name = sweep["metric"]["name"]
    runs = [to_sweep_run(t, metric_name) for t in trials if t["name"] != current["name"] and t["state"] in DONE_STATES]
    runs.append(to_sweep_run(current, metric_name, running=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped = sweeps.stop_runs(sweep_engine_config(sweep), runs)
    return any(run.name == current["name"] for run in stopped)


def build_command(sweep: dict, launcher: str, program: Path, args: list[str]) -> list[str]:
    if launcher == "yaml":
        command: list[str] = []
        for item in sweep["command"]:
            if item == "${env}":
                if Path("/usr/bin/env").exists():
                    command.append("/usr/bin/env")
            elif item == "${interpreter}":
                command.append(sys.executable)
            elif item == "${program}":
                command.append(str(program))
            elif item == "${args}":
                command.extend(args)
            elif item == "${args_no_hyphens}":
                command.extend(a[2:] for a in args)
            elif item == "${args_no_boolean_flags}":
                for a in args:
                    if a.endswith("=True"):
                        command.append(a[: -len("=True")])
                    elif not a.endswith("=False"):
                        command.append(a)
            elif item == "${args_json}":
                command.append(json.dumps({a[2:].split("=", 1)[0]: a.split("=", 1)[1] for a in args}))
            else:
                command.append(item)
    elif launcher == "python":
        command = [sys.executable, str(program), *args]
    else:
        command = [*shlex.split(launcher), str(program), *args]
    # accelerate/deepspeed/torchrun of this environment when it is not activated (python -m venv without `activate`)
    if command and os.path.sep not in command[0] and shutil.which(command[0]) is None:
        beside = Path(sys.executable).parent / command[0]
        if beside.is_file():
            command[0] = str(beside)
    return command


class Runner:
    def __init__(self, opts: argparse.Namespace):
        self.opts = opts
        self.sweep_file = Path(opts.sweep_file)
        self.sweep = load_sweep(self.sweep_file)
        self.program = resolve_program(self.sweep, self.sweep_file)
        self.extra = parse_sets(opts.set)
        name = self.sweep_file.stem
        self.dir = Path(opts.sweep_dir or Path("runs") / "sweeps" / name)
        self.state_path = self.dir / STATE_FILE
        self.state = self.load_state()
        self.flags = self.cached_flags()
        check_parameters(self.sweep, self.sweep_file, self.flags, self.program, self.extra)
        self.metric_name = self.sweep["metric"]["name"]
        self.goal = self.sweep["metric"]["goal"]
        self.child: subprocess.Popen | None = None
        self.locked = False
        self.rank_trials = True  # False: trials are not comparable by the metric (a suite); no "best" is named

    # ---- state
    def load_state(self) -> dict:
        fingerprint = fingerprint_of(self.sweep, self.extra)
        if self.state_path.is_file():
            state = json.loads(self.state_path.read_text())
            if state.get("fingerprint") != fingerprint:
                raise SweepError(
                    f"{self.dir} holds a sweep started with another sweep file or --set; continue it with the same "
                    "ones, or pass another --sweep_dir"
                )
            return state
        return {"sweep_file": str(self.sweep_file), "fingerprint": fingerprint, "trials": []}

    def save_state(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, default=_plain))
        os.replace(tmp, self.state_path)

    def cached_flags(self) -> set[str]:
        stamp = [str(self.program.resolve()), self.program.stat().st_mtime]
        cached = self.state.get("program_flags")
        if cached and cached.get("stamp") == stamp:
            return set(cached["flags"])
        print(f"[sweep] reading the flags of {self.program.name} (--help) ...", flush=True)
        flags = program_flags(self.program)
        self.state["program_flags"] = {"stamp": stamp, "flags": sorted(flags)}
        return flags

    @property
    def trials(self) -> list[dict]:
        return self.state["trials"]

    # ---- main loop
    def lock(self) -> None:
        """One runner per sweep folder: a second one would run the same trials and overwrite the state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / LOCK_FILE
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pid = None  # a runner that died: its lock is stale
            except PermissionError:
                pass
            if pid is not None:
                raise SweepError(f"{self.dir}: another sweep runner (pid {pid}) is using this folder")
        path.write_text(str(os.getpid()))
        self.locked = True

    def unlock(self) -> None:
        (self.dir / LOCK_FILE).unlink(missing_ok=True)

    def run(self) -> int:
        self.lock()
        self.save_state()
        done = [t for t in self.trials if t["state"] in DONE_STATES]
        if done:
            print(f"[sweep] resuming {self.dir}: {len(done)} trial(s) done, not run again", flush=True)
        for trial in self.trials:
            if trial["state"] not in DONE_STATES:
                print(f"[sweep] {trial['name']} was interrupted: running it again with the same parameters", flush=True)
                self.run_trial(trial)
        while len(self.trials) < self.opts.count:
            params = propose(self.sweep, self.trials, self.opts.seed)
            if params is None:
                print("[sweep] the grid is done", flush=True)
                break
            trial = {"name": f"trial-{len(self.trials) + 1:03d}", "params": params, "state": "pending",
                     "metric": None, "history": [], "attempts": 0}  # fmt: skip
            self.trials.append(trial)
            self.save_state()
            self.run_trial(trial)
        self.write_results()
        print(f"[sweep] done: {len(self.trials)} trial(s); results in {self.dir / 'results.md'}", flush=True)
        if not self.rank_trials:
            return 0 if all(t["state"] == "finished" for t in self.trials) else 1
        best = best_trial(self.trials, self.goal)
        if best is None:
            print("[sweep] no trial logged the metric", flush=True)
            return 1
        params = describe(best["params"], self.searched())
        print(f"[sweep] best: {best['name']} {self.metric_name}={best['metric']:.4g} {params}", flush=True)
        return 0

    def write_results(self) -> None:
        write_results(self.dir, self.trials, self.sweep, self.metric_name, self.goal, rank=self.rank_trials)

    def searched(self) -> list[str]:
        return [n for n, spec in self.sweep["parameters"].items() if "value" not in spec]

    def run_trial(self, trial: dict) -> None:
        out = self.dir / "trials" / trial["name"]
        # The trial's flags: the YAML's values and the proposal, with --set over the YAML's fixed values (a searched
        # parameter cannot be --set: check_parameters).
        params = {**trial["params"], **self.extra, "output_dir": str(out)}
        if trial["attempts"] > 0:
            if "resume_from_checkpoint" in self.flags:
                params["resume_from_checkpoint"] = "latest"
            else:
                shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ)
        for name in [k for k in params if k in SECRET_FLAGS]:
            env[SECRET_FLAGS[name]] = str(params.pop(name))
        trial["attempts"] += 1
        args = [format_arg(k, v) for k, v in params.items()]
        command = build_command(self.sweep, self.opts.launcher, self.program, args)
        trial.update(state="running", output_dir=str(out), history=[], metric=None, flags=params,
                     command=shlex.join(command))  # fmt: skip
        self.save_state()
        log_path = self.dir / "logs" / f"{trial['name']}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        number = int(trial["name"].split("-")[-1])
        print(f"[sweep] {trial['name']} ({number}/{self.opts.count}) {describe(trial['params'], self.searched())}",
              flush=True)  # fmt: skip
        env.setdefault("WANDB_DIR", str(out))  # a W&B run folder per trial (offline runs stay with the trial)
        if self.sweep.get("project"):
            env.setdefault("WANDB_PROJECT", str(self.sweep["project"]))
        env["T5_SWEEP_TRIAL"] = trial["name"]
        start = time.time()
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            self.child = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group
            )
            stopped = self.follow(trial, out)
            returncode = self.child.wait()
            self.child = None
        trial["wall_s"] = round(time.time() - start, 1)
        trial["returncode"] = returncode
        if returncode == EXIT_PREEMPTED and not stopped:
            self.save_state()  # still "running": the next start resumes it from its checkpoint
            raise TrialPreempted(f"{trial['name']} was pre-empted (exit {EXIT_PREEMPTED}) after its checkpoint")
        trial["history"] = metric_history(out, self.metric_name)
        trial["metric"] = final_metric(out, self.metric_name, trial["history"]) if returncode == 0 or stopped else (
            trial["history"][-1] if trial["history"] else None)  # fmt: skip
        if stopped:
            trial["state"] = "stopped"
            note = "stopped by hyperband"
        elif returncode == 0 and trial["metric"] is not None:
            trial["state"] = "finished"
            note = "finished"
        else:
            trial["state"] = "failed"
            note = f"failed (exit {returncode})" if returncode else f"logged no {trainer_key(self.metric_name)}"
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            note += f"; last lines of {log_path}:\n    " + "\n    ".join(tail)
        self.save_state()
        self.write_results()
        value = f"{self.metric_name}={trial['metric']:.4g}" if trial["metric"] is not None else "no metric"
        best = best_trial(self.trials, self.goal) if self.rank_trials else None
        best_note = f"; best so far {best['name']} ({best['metric']:.4g})" if best else ""
        print(f"[sweep] {trial['name']} {note} in {trial['wall_s']:.0f} s: {value}{best_note}", flush=True)

    def follow(self, trial: dict, out: Path) -> bool:
        """Waits for the trial; with hyperband, stops it when it falls behind. True if it was stopped."""
        seen = 0
        while self.child.poll() is None:
            time.sleep(self.opts.poll_s)
            if "early_terminate" not in self.sweep:
                continue
            history = metric_history(out, self.metric_name)
            if len(history) == seen:
                continue
            seen = len(history)
            trial["history"] = history
            if should_stop(self.sweep, self.trials, trial):
                print(f"[sweep] {trial['name']}: {self.metric_name} history {[round(v, 4) for v in history]} is "
                      "behind the other trials at a hyperband band: stopping it", flush=True)  # fmt: skip
                self.stop_child()
                return True
        return False

    def stop_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        try:
            os.killpg(self.child.pid, signal.SIGTERM)
            self.child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()
        except ProcessLookupError:
            pass


def describe(params: dict, names: list[str]) -> str:
    return " ".join(f"{n}={_short(params.get(n))}" for n in names)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def parse_sets(items: list[str]) -> dict[str, Any]:
    values = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SweepError(f"--set {item!r}: expected NAME=VALUE")
        values[name.lstrip("-")] = value
    return values


# --------------------------------------------------------------------------------------------------------------
# Results


def best_trial(trials: list[dict], goal: str) -> dict | None:
    scored = [t for t in trials if t["state"] in ("finished", "stopped") and _is_number(t.get("metric"))]
    if not scored:
        return None
    pick = max if goal == "maximize" else min
    return pick(scored, key=lambda t: t["metric"])


def trial_flags(trial: dict) -> dict:
    """The flags a trial ran with (recorded when it started; its proposed parameters for a trial never started)."""
    return trial.get("flags") or trial["params"]


def write_results(
    folder: Path, trials: list[dict], sweep: dict, metric_name: str, goal: str, rank: bool = True
) -> None:
    """results.md, results.csv, results.png; `rank`: name the best trial (False when trials are not comparable)."""
    searched = [n for n, spec in sweep["parameters"].items() if "value" not in spec]
    best = best_trial(trials, goal) if rank else None
    header = ["trial", "state", metric_name, *searched, "wall_s", "output_dir"]
    rows = []
    for t in trials:
        metric = t.get("metric")
        values = [_short(t["params"].get(n)) for n in searched]
        shown = "" if metric is None else f"{metric:.4f}"
        rows.append([t["name"], t["state"], shown, *values, t.get("wall_s", ""), t.get("output_dir", "")])
    lines = [
        f"# Sweep {sweep.get('program')} ({sweep['method']}), {metric_name} ({goal})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for t, row in zip(trials, rows):
        cells = [str(c) for c in row]
        if best is not None and t["name"] == best["name"]:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if best is not None:
        lines.append(f"Best: **{best['name']}** with {metric_name} = {best['metric']:.4f} "
                     f"({describe(best['params'], searched)}), run folder {best.get('output_dir')}")  # fmt: skip
    elif rank:
        lines.append("Best: none yet (no trial logged the metric)")
    flags = [trial_flags(t) for t in trials]
    names = [n for n in dict.fromkeys(k for f in flags for k in f) if n not in (*searched, "output_dir")]
    same = {n: flags[0].get(n) for n in names if flags and all(n in f and f[n] == flags[0][n] for f in flags)}
    if same:
        lines += ["", "Flags of every trial (the YAML's fixed values and --set): "
                  + ", ".join(f"`--{n}={v}`" for n, v in same.items())]  # fmt: skip
    commands = [(t["name"], t["command"]) for t in trials if t.get("command")]
    if commands:
        lines += ["", "Commands:", ""] + [f"- {name}: `{command}`" for name, command in commands]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (folder / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, "best", *names, "command"])
        for t, row, f in zip(trials, rows, flags):
            is_best = best is not None and t["name"] == best["name"]
            writer.writerow([*row, is_best, *(f.get(n, "") for n in names), t.get("command", "")])
    plot_results(folder / "results.png", trials, sweep, searched, metric_name, best)


def plot_results(path: Path, trials, sweep, searched, metric_name, best) -> None:
    scored = [t for t in trials if _is_number(t.get("metric"))]
    panels = 1 + len(searched)
    fig, axes = pyplot().subplots(1, panels, figsize=(4 * panels, 3.5), squeeze=False)
    axes = axes[0]
    numbers = [int(t["name"].split("-")[-1]) for t in scored]
    values = [t["metric"] for t in scored]
    colors = ["tab:red" if best and t["name"] == best["name"] else "tab:blue" for t in scored]
    axes[0].scatter(numbers, values, c=colors)
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel(metric_name)
    for ax, name in zip(axes[1:], searched):
        xs = [t["params"].get(name) for t in scored]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            ax.scatter(xs, values, c=colors)
            if "log" in str(sweep["parameters"][name].get("distribution", "")) and all(x > 0 for x in xs):
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], values, c=colors)
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric_name} per trial (best in red)")
    save_figure(fig, path)


# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_file", help="a W&B sweep YAML, e.g. sweeps/glue_sst2.yaml")
    parser.add_argument("--count", type=int, default=10, help="trials in the sweep in all, earlier ones included (10)")
    parser.add_argument("--sweep_dir", help="where trials, state and results go (runs/sweeps/<yaml name>)")
    parser.add_argument(
        "--launcher", default="yaml",
        help="yaml: the YAML's command (accelerate launch); python: this interpreter, one process; or a command "
        "prefix put before the program, e.g. \"torchrun --nproc_per_node 2\"",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a flag value for every trial (overrides the YAML); repeatable")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random/bayes proposals (0)")
    parser.add_argument("--poll_s", type=float, default=5.0, help="seconds between looks at a running trial (5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.count < 1:
        print("error: --count must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        runner = Runner(opts)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return run_runner(runner)


def run_runner(runner: Runner) -> int:
    """Runs the trials with the exit statuses of the module docstring (75 pre-empted, 130 Ctrl-C, 2 a mistake)."""

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        return runner.run()
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except TrialPreempted as err:
        print(f"[sweep] {err}; rerun the same command (or let SLURM requeue) to resume", flush=True)
        return EXIT_PREEMPTED
    except (KeyboardInterrupt, Interrupted) as err:
        runner.stop_child()
        runner.save_state()
        print(f"\n[sweep] interrupted ({err or 'SIGINT'}); rerun the same command to resume", flush=True)
        # SIGTERM (SLURM pre-emption, scancel): 75 like the scripts, so a requeue resumes; Ctrl-C: 130.
        return EXIT_PREEMPTED if isinstance(err, Interrupted) else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        if runner.locked:
            runner.unlock()
