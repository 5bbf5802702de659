"""Experiment trackers: W&B that never hangs or crashes a run, a local metrics log, and a reader for offline W&B runs.

Both scripts report to W&B and TensorBoard by default (`--report_to`: those of the two that are installed; `--report_to
none` turns tracking off). W&B is decided once per run before training starts, on the main process:
- `WANDB_MODE` set by you (online, offline, disabled) is respected, except that online with a server that cannot be
  reached goes offline.
- No API key (`WANDB_API_KEY` or a `~/.netrc` login): offline, saying so in one line, with wandb's own output
  silenced. Upload later with `wandb sync`.
- A key, but the server (`WANDB_BASE_URL`, default https://api.wandb.ai) does not answer an HTTP request within
  `WANDB_PROBE_TIMEOUT` seconds (default 5): offline, in one line as well, instead of wandb's ~90 s wait and error.
- The run is started here (`wandb.init`) with every flag of every argument group as its config, the project
  (`WANDB_PROJECT`, default t5-toolkit), the group (the task, e.g. glue/sst2, or pretrain; `WANDB_RUN_GROUP`
  overrides) and the run name. `WANDB_INIT_TIMEOUT` (default here 60 s) bounds the start; if it fails anyway
  the run restarts offline. If even that fails, training goes on without W&B.
- A run started by a sweep agent (`WANDB_SWEEP_ID` set) keeps the sweep's project and run id: no default project.
One W&B run per run folder: its id is kept in `<output_dir>/wandb_run.json`. A resumed run (`--resume_from_checkpoint`,
a requeued job) continues that W&B run (`resume="allow"`) with one history (`follow_wandb_history`): rows it logs again
from its checkpoint that the W&B run holds already are not logged twice, and rows the W&B run lost (a killed process
loses what wandb had not written yet) are logged again from metrics.jsonl. Offline, each attempt is a local folder
with the same run id; `wandb sync` uploads them, in order, as one run.
Where a model config key has a flag's name (vocab_size, dropout_rate), the config shows the model's value (the
vocabulary padded to a multiple of 128, say): the Trainer's callback adds the model config after the flags.
The Trainer's W&B callback then finds the run started and logs into it: `train/loss`, `train/learning_rate`,
`train/grad_norm`, `train/tokens_per_second`, `eval/loss`, `eval/<metric>` (e.g. `eval/accuracy`), `eval/invalid_rate`,
with `train/global_step` as the x axis.

Every run also appends each logged row (the Trainer's `log_history` entry) to `<output_dir>/metrics.jsonl`, so
other processes (the offline sweep runner's early termination) can follow a run between checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

logger = logging.getLogger("t5kit.tracking")

DEFAULT_PROJECT = "t5-toolkit"
DEFAULT_BASE_URL = "https://api.wandb.ai"
PROBE_TIMEOUT_S = 5.0
INIT_TIMEOUT_S = "60"
METRICS_LOG = "metrics.jsonl"
OFFLINE_MODES = ("offline", "dryrun", "disabled")


DEFAULT_TRACKERS = ("wandb", "tensorboard")  # --report_to's default: those of them that are installed
WANDB_RUN_FILE = "wandb_run.json"  # <output_dir>/wandb_run.json: the W&B run of this run folder


def default_trackers() -> list[str]:
    """`--report_to`'s default: W&B and TensorBoard, those of them installed (["none"] if neither is)."""
    from transformers.integrations import get_available_reporting_integrations

    installed = get_available_reporting_integrations()
    return [name for name in DEFAULT_TRACKERS if name in installed] or ["none"]


def report_list(report_to) -> list[str]:
    if report_to is None:
        return []
    return list(report_to) if isinstance(report_to, (list, tuple)) else [report_to]


def has_wandb_login() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    host = urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)).hostname or "api.wandb.ai"
    return netrc.is_file() and host in netrc.read_text(errors="ignore")


def server_unreachable(base_url: str | None = None, timeout: float | None = None) -> str | None:
    """None if the W&B server answers an HTTP request within `timeout` seconds (any status), else the reason.

    An HTTP request, not only a TCP connection: behind an intercepting proxy every connection opens, yet the TLS
    handshake with the real server fails.
    """
    import urllib.error
    import urllib.request

    url = base_url or os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
    if not urlparse(url).hostname:
        return f"WANDB_BASE_URL {url!r} names no host"
    if timeout is None:
        timeout = float(os.environ.get("WANDB_PROBE_TIMEOUT", PROBE_TIMEOUT_S))
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # the server answered (401, 404, ...): it is there
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{url}: {getattr(err, 'reason', None) or err}"
    return None


def _offline_line(why: str) -> str:
    where = Path(os.environ.get("WANDB_DIR") or ".") / "wandb"
    return (f"W&B: {why}: logging offline to {where} (upload later with `wandb sync {where}/offline-run-*`; "
            "--report_to none turns W&B off)")  # fmt: skip


def choose_wandb_mode() -> str:
    """Sets WANDB_MODE to offline where W&B cannot work online (and says why, in one line); returns the mode."""
    mode = os.environ.get("WANDB_MODE")
    if mode in OFFLINE_MODES:
        return mode
    if not has_wandb_login():
        os.environ["WANDB_MODE"] = "offline"
        logger.warning(_offline_line("no API key found"))
        return "offline"
    reason = server_unreachable()
    if reason is not None:
        os.environ["WANDB_MODE"] = "offline"
        logger.warning(_offline_line(f"server unreachable ({reason})"))
        return "offline"
    return mode or "online"


def flags_config(args, flag_groups: tuple = ()) -> dict[str, Any]:
    """Every flag of every argument group, for the tracker's config (the training flags last, as parsed)."""
    config: dict[str, Any] = {}
    for group in flag_groups:
        if dataclasses.is_dataclass(group):
            for item in dataclasses.fields(group):
                config[item.name] = _plain(getattr(group, item.name))
    config.update(args.to_dict())  # the Trainer's own dict: hub tokens are already replaced by placeholders
    for key in config:
        if key.endswith("_token") and config[key] is not None:
            config[key] = f"<{key.upper()}>"  # never a secret in the tracker (as TrainingArguments.to_dict does)
    return config


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def read_wandb_run_file(output_dir: str | Path) -> dict[str, Any] | None:
    """<output_dir>/wandb_run.json (the run folder's W&B run: id, project, its attempts' local folders), or None."""
    try:
        record = json.loads((Path(output_dir) / WANDB_RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("id") else None


def _write_wandb_run_file(output_dir: str | Path, record: dict[str, Any]) -> None:
    path = Path(output_dir) / WANDB_RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def configure_trackers(args, run_name: str, group: str | None = None, flag_groups: tuple = ()) -> None:
    """Run name, W&B mode/project/group and the W&B run itself (main process), before the Trainer exists.

    With `--resume_from_checkpoint` (a path, or `latest`) the W&B run recorded in the run folder continues.
    """
    if not args.run_name or args.run_name == args.output_dir:
        args.run_name = run_name
    if "wandb" not in report_list(args.report_to):
        return
    sweep = bool(os.environ.get("WANDB_SWEEP_ID"))
    if not sweep:  # a sweep agent's run belongs to the sweep's project, whatever the default here
        os.environ.setdefault("WANDB_PROJECT", DEFAULT_PROJECT)
    if group:
        os.environ.setdefault("WANDB_RUN_GROUP", group)
    os.environ.setdefault("WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # only the main process logs to W&B
    chosen = os.environ.get("WANDB_MODE")
    mode = choose_wandb_mode()
    if mode == "disabled":
        return
    # Offline by our choice: its one line above says so, and wandb's own terminal output (a dozen lines) is silenced.
    quiet = mode == "offline" and chosen not in OFFLINE_MODES
    # A resumed run continues the folder's W&B run; an id set by a sweep agent (WANDB_RUN_ID) comes first.
    earlier = read_wandb_run_file(args.output_dir) if args.resume_from_checkpoint else None
    if earlier and os.environ.get("WANDB_RUN_ID", earlier["id"]) != earlier["id"]:
        earlier = None
    project = None if sweep else ((earlier or {}).get("project") or os.environ["WANDB_PROJECT"])
    run = start_wandb_run(args, flags_config(args, flag_groups), run_id=earlier and earlier["id"], project=project,
                          quiet=quiet)  # fmt: skip
    if run is None:
        return
    earlier_dirs = (earlier or {}).get("local_dirs", [])
    record = {
        "id": run.id,
        "project": run.project,
        "entity": run.entity or None,
        "group": os.environ.get("WANDB_RUN_GROUP"),
        "name": args.run_name,
        "url": None if run.offline else run.url,
        "sweep_id": os.environ.get("WANDB_SWEEP_ID"),
        # Every attempt's local folder (offline: together what `wandb sync` uploads as this one run), oldest first.
        "local_dirs": [*earlier_dirs, str(Path(run.dir).parent)],
    }
    _write_wandb_run_file(args.output_dir, record)


def start_wandb_run(args, config: dict[str, Any], run_id: str | None = None, project: str | None = None,
                    quiet: bool = False):  # fmt: skip
    """Starts the W&B run (`run_id`: continue that run; `project`: None for WANDB_PROJECT or wandb's choice);
    returns it, or None where W&B could not start at all (training then goes on without it)."""
    import wandb

    if wandb.run is not None:  # a run left open by an earlier main() in this process
        wandb.finish()
    init = dict(
        project=project if project is not None else os.environ.get("WANDB_PROJECT"),
        group=os.environ.get("WANDB_RUN_GROUP"),
        name=args.run_name,
        config=config,
    )
    if run_id:
        init.update(id=run_id, resume="allow")
    if quiet:
        init["settings"] = wandb.Settings(silent=True)
    try:
        return wandb.init(**init)
    except Exception as err:  # noqa: BLE001 - any failure to reach W&B must not stop training
        logger.warning("W&B: could not start the run online (%s); logging offline to ./wandb", err)
    os.environ["WANDB_MODE"] = "offline"
    try:
        return wandb.init(mode="offline", **init)
    except Exception as err:  # noqa: BLE001
        logger.warning("W&B: could not start an offline run either (%s); training without W&B", err)
        args.report_to = [name for name in report_list(args.report_to) if name != "wandb"] or ["none"]
    return None


# The W&B run's summary key (hidden in the W&B UI) with the rows logged at its last step: {"step": S, kind: count}.
HELD_KEY = "_t5kit_rows_at_last_step"
# The Trainer's W&B callback puts these in the run summary, not in the history (WandbCallback.on_log).
SUMMARY_ONLY = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


def _row_kind(logs: dict) -> str:
    """eval, train (a training loss row) or other (the end-of-training summary) for a Trainer log row; the same for
    a W&B history row, whose keys the Trainer's callback prefixed with eval/ and train/."""
    if any(key.startswith(("eval_", "eval/")) for key in logs):
        return "eval"
    return "train" if "loss" in logs or "train/loss" in logs else "other"


def wandb_holds(run, record: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """What the W&B run holds from earlier attempts: its last step and how many rows of each kind it has there;
    (-1, {}) for nothing. Online from the run's summary (restored on resume); offline from the earlier attempts'
    local folders, whose files hold only what wandb had written when the attempt ended (a killed process loses
    wandb's unwritten buffer)."""
    if not run.offline:
        step = run.summary.get("train/global_step")
        if not isinstance(step, (int, float)):
            return -1, {}
        held = dict(run.summary.get(HELD_KEY) or {})
        return int(step), ({k: int(v) for k, v in held.items() if k != "step"} if held.get("step") == step else {})
    current = Path(run.dir).parent.resolve()
    step, at = -1, {}
    for folder in record.get("local_dirs", []):
        if Path(folder).resolve() == current:
            continue
        try:
            history = read_wandb_run(Path(folder), wait_s=3)["history"]  # a killed attempt's file has no end
        except Exception as err:  # noqa: BLE001 - a lost or unreadable earlier attempt holds nothing for us
            logger.info("W&B: %s unreadable (%s): counted as holding no rows", folder, err)
            continue
        for row in history:
            row_step = row.get("train/global_step")
            if not isinstance(row_step, (int, float)) or row_step < step:
                continue
            if row_step > step:
                step, at = int(row_step), {}
            kind = _row_kind(row)
            at[kind] = at.get(kind, 0) + 1
    return step, at


class _HeldRows:
    """Which rows of a resumed run the W&B run holds already: those of steps before its last step, and at that step
    as many rows of each kind as it has there (rows come in the same order in every attempt)."""

    def __init__(self, step: int, at: dict[str, int]):
        self.step, self.at, self.again = step, dict(at), {}
        self.last: tuple[int, dict[str, int]] = (step, dict(at))  # the run's last step and its rows, as it grows

    def held(self, step: int, kind: str) -> bool:
        if step < self.step:
            return True
        if step == self.step:
            self.again[kind] = self.again.get(kind, 0) + 1
            return self.again[kind] <= self.at.get(kind, 0)
        return False

    def logged(self, step: int, kind: str) -> dict[str, Any]:
        last_step, rows = self.last
        rows = {**rows, kind: rows.get(kind, 0) + 1} if step == last_step else {kind: 1}
        self.last = (step, rows)
        return {"step": step, **rows}


def follow_wandb_history(trainer) -> None:
    """One history per W&B run across a run's attempts (main process, W&B on). First the rows of the run folder's
    metrics.jsonl (up to the checkpoint resumed from) that the W&B run lacks are logged to it: those that an attempt
    killed before wandb wrote them lost, or that attempts without W&B logged. Then, while training, a row that the W&B
    run holds already (a resumed run logs again the steps after its checkpoint) is not logged to it twice."""
    wandb = sys.modules.get("wandb")
    if not trainer.is_world_process_zero() or wandb is None or getattr(wandb, "run", None) is None:
        return
    out = trainer.args.output_dir
    record = read_wandb_run_file(out)
    callback = next((c for c in trainer.callback_handler.callbacks if type(c).__name__ == "WandbCallback"), None)
    if record is None or record["id"] != wandb.run.id or callback is None or hasattr(callback, "_follows"):
        return
    from transformers.integrations.integration_utils import rewrite_logs

    run = wandb.run
    rows = _HeldRows(*wandb_holds(run, record))
    backfilled = 0
    for row in read_metrics_log(Path(out) / METRICS_LOG):
        step, logs = row.get("step"), {k: v for k, v in row.items() if k != "step"}
        if not isinstance(step, int) or rows.held(step, _row_kind(logs)):
            continue
        run.summary.update({k: v for k, v in logs.items() if k in SUMMARY_ONLY})
        values = {k: v for k, v in logs.items() if k not in SUMMARY_ONLY and isinstance(v, (int, float))}
        run.log({**rewrite_logs(values), "train/global_step": step})
        run.summary[HELD_KEY] = rows.logged(step, _row_kind(logs))
        backfilled += 1
    if backfilled:
        logger.info("W&B: %d row(s) of %s that run %s lacked logged to it", backfilled, METRICS_LOG, run.id)
    on_log = callback.on_log

    def follow(args, state, control, model=None, logs=None, **kwargs):
        kind = _row_kind(logs or {})
        if rows.held(state.global_step, kind):
            return None
        result = on_log(args, state, control, model=model, logs=logs, **kwargs)
        run.summary[HELD_KEY] = rows.logged(state.global_step, kind)
        return result

    callback.on_log = follow
    callback._follows = True


def append_metrics_log(output_dir: str, row: dict) -> None:
    """One JSON line per logged row (step, epoch and the logged values), in <output_dir>/metrics.jsonl."""
    path = Path(output_dir) / METRICS_LOG
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, default=float) + "\n")


def truncate_metrics_log(output_dir: str | Path, keep: int) -> int:
    """Keeps the first `keep` rows of <output_dir>/metrics.jsonl (one row per log_history entry: a checkpoint's
    log_history length), so that a run resumed from that checkpoint does not log its later rows twice; returns
    how many rows went (a torn last line counts)."""
    path = Path(output_dir) / METRICS_LOG
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) <= keep:
        return 0
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines[:keep]), encoding="utf-8")
    os.replace(tmp, path)
    return len(lines) - keep


def read_metrics_log(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; after a resume (the step goes back) the interrupted attempt's later rows go.

    A torn last line (the writer was killed mid-write) is skipped.
    """
    rows: list[dict] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = row.get("step")
        last = rows[-1].get("step") if rows else None
        if isinstance(step, (int, float)) and isinstance(last, (int, float)) and step < last:
            # The step went back: a resumed run logs again from its checkpoint. Drop what the interrupted attempt
            # logged from there on.
            while rows and isinstance(rows[-1].get("step"), (int, float)) and rows[-1]["step"] >= step:
                rows.pop()
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Reading an offline W&B run (run-<id>.wandb): LevelDB log format records holding wandb.proto Record messages.

_WANDB_HEADER = b":W&B"
_WANDB_HEADER_LEN = 7  # ident (4), magic (2), version (1)
_BLOCK = 32768
_RECORD_HEADER = 7  # crc32 (4), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _wandb_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if data[:4] != _WANDB_HEADER:
        raise ValueError(f"{path}: not a W&B run file")
    pos, pending = _WANDB_HEADER_LEN, b""
    while pos + _RECORD_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD_HEADER:
            pos += left  # block trailer padding
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _RECORD_HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def read_wandb_run(run_dir: Path, wait_s: float = 0.0) -> dict[str, Any]:
    """{"id", "project", "group", "name", "config", "history", "finished"} of a local W&B run folder (offline-run-*/).

    wandb's service process writes the file in the background, also after `wandb.finish()` returns: `wait_s`
    waits up to that long for the run's exit record.
    """
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + wait_s
    while True:
        files = sorted(Path(run_dir).glob("*.wandb"))
        records = []
        if files:
            for raw in _wandb_records(files[0]):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(raw)
                records.append(record)
        finished = any(r.WhichOneof("record_type") == "exit" for r in records)
        if finished or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not files:
        raise FileNotFoundError(f"{run_dir}: no .wandb file")
    run: dict[str, Any] = {"id": None, "project": None, "group": None, "name": None, "config": {}, "history": [],
                           "finished": finished}  # fmt: skip
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, project=record.run.project, group=record.run.run_group,
                       name=record.run.display_name)  # fmt: skip
            run["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            items = record.history.item
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return run
