"""Experiment trackers: W&B that never hangs or crashes a run, a local metrics log, and a reader for offline W&B runs.

W&B (`--report_to wandb`), decided once per run before training starts, on the main process:
- `WANDB_MODE` set by you (online, offline, disabled) is respected, except that online with a server that cannot be
  reached goes offline.
- No API key (`WANDB_API_KEY` or a `~/.netrc` login): offline, with a warning. Upload later with `wandb sync`.
- A key, but the server (`WANDB_BASE_URL`, default https://api.wandb.ai) does not answer an HTTP request within
  `WANDB_PROBE_TIMEOUT` seconds (default 5): offline, with a warning, instead of wandb's ~90 s wait and error.
- The run is started here (`wandb.init`) with every flag of every argument group as its config, the project
  (`WANDB_PROJECT`, default t5-toolkit), the group (the task, e.g. glue/sst2, or pretrain; `WANDB_RUN_GROUP`
  overrides) and the run name. `WANDB_INIT_TIMEOUT` (default here 60 s) bounds the start; if it fails anyway
  the run restarts offline. If even that fails, training goes on without W&B.
Where a model config key has a flag's name (vocab_size, dropout_rate), the config shows the model's value (the
vocabulary padded to a multiple of 128, say): the Trainer's callback adds the model config after the flags.
The Trainer's W&B callback then finds the run started and logs into it: `train/loss`, `train/learning_rate`,
`train/grad_norm`, `train/tokens_per_second`, `eval/loss`, `eval/<metric>` (e.g. `eval/accuracy`), `eval/invalid_rate`.

Every run also appends each logged row (the Trainer's `log_history` entry) to `<output_dir>/metrics.jsonl`, so
other processes (the offline sweep runner's early termination) can follow a run between checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
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


def choose_wandb_mode() -> str:
    """Sets WANDB_MODE to offline where W&B cannot work online (and says why); returns the mode."""
    mode = os.environ.get("WANDB_MODE")
    if mode in OFFLINE_MODES:
        return mode
    if not has_wandb_login():
        os.environ["WANDB_MODE"] = "offline"
        logger.warning("W&B: no API key found, logging offline to ./wandb (upload later with `wandb sync`)")
        return "offline"
    reason = server_unreachable()
    if reason is not None:
        os.environ["WANDB_MODE"] = "offline"
        logger.warning(
            "W&B: server unreachable (%s), logging offline to ./wandb (upload later with `wandb sync`)", reason
        )
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


def configure_trackers(args, run_name: str, group: str | None = None, flag_groups: tuple = ()) -> None:
    """Run name, W&B mode/project/group and the W&B run itself (main process), before the Trainer exists."""
    if not args.run_name or args.run_name == args.output_dir:
        args.run_name = run_name
    if "wandb" not in report_list(args.report_to):
        return
    os.environ.setdefault("WANDB_PROJECT", DEFAULT_PROJECT)
    if group:
        os.environ.setdefault("WANDB_RUN_GROUP", group)
    os.environ.setdefault("WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # only the main process logs to W&B
    mode = choose_wandb_mode()
    if mode == "disabled":
        return
    start_wandb_run(args, flags_config(args, flag_groups))


def start_wandb_run(args, config: dict[str, Any]) -> None:
    import wandb

    if wandb.run is not None:  # a run left open by an earlier main() in this process
        wandb.finish()
    init = dict(
        project=os.environ["WANDB_PROJECT"],
        group=os.environ.get("WANDB_RUN_GROUP"),
        name=args.run_name,
        config=config,
    )
    try:
        wandb.init(**init)
        return
    except Exception as err:  # noqa: BLE001 - any failure to reach W&B must not stop training
        logger.warning("W&B: could not start the run online (%s); logging offline to ./wandb", err)
    os.environ["WANDB_MODE"] = "offline"
    try:
        wandb.init(mode="offline", **init)
    except Exception as err:  # noqa: BLE001
        logger.warning("W&B: could not start an offline run either (%s); training without W&B", err)
        args.report_to = [name for name in report_list(args.report_to) if name != "wandb"] or ["none"]


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
    """{"project", "group", "name", "config", "history", "finished"} of a local W&B run folder (offline-run-*/).

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
    run: dict[str, Any] = {"project": None, "group": None, "name": None, "config": {}, "history": [],
                           "finished": finished}  # fmt: skip
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(project=record.run.project, group=record.run.run_group, name=record.run.display_name)
            run["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            items = record.history.item
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return run
