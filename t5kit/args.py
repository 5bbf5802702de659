"""Argument groups shared by `pre_train_t5.py` and `fine_tune_t5.py`.

One source of truth per setting: every flag is a dataclass field with a `help`; the same name is the CLI flag,
the key in a YAML/JSON config file, the tracker config key and the sweep parameter.

Config files: `python pre_train_t5.py --config run.yaml --max_steps 10` reads `run.yaml` (safe_load) and lets
the command line override it. A lone `run.yaml`/`run.json` argument works too (the Hugging Face convention).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from t5kit.tracking import default_trackers

# Aliases accepted for `--lr_scheduler_type`: the TTT seed's schedule names -> transformers' names.
LR_SCHEDULER_ALIASES = {
    "warmuplinear": "linear",
    "warmupconstant": "constant_with_warmup",
}

CONFIG_FLAG = "--config"
# `--model_name_or_path random_init:PATH`: the architecture and tokenizer of PATH with fresh random weights, the
# no-pre-training control of a comparison (the same as `--model_name_or_path PATH --random_init`).
RANDOM_INIT_PREFIX = "random_init:"


class UsageError(ValueError):
    """A user mistake (bad flag, file or value). Scripts print its message and exit 2, without a traceback."""


def bf16_supported() -> bool:
    """True where bf16 autocast is fast and exact enough for T5: a bf16-capable GPU, or a CPU with AVX-512 BF16/AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


@dataclass
class ModelArguments:
    """Which model and tokenizer to start from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub name (t5-small, google/t5-v1_1-base) or local folder of a checkpoint to continue from."},
    )
    model_config: str | None = field(
        default=None,
        metadata={
            "help": "Train from scratch with this architecture: a preset name (tiny, mini, small, base, large; "
            "T5 v1.1 shapes) or a path to a config.json. Ignored when --model_name_or_path is set."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub name or local folder of a T5 tokenizer. Defaults to --model_name_or_path."},
    )
    vocab_size: int | None = field(
        default=None,
        metadata={
            "help": "Train a SentencePiece unigram tokenizer of this many tokens (100 <extra_id_N> sentinels "
            "included) on the training text, instead of loading one."
        },
    )
    dropout_rate: float | None = field(
        default=None,
        metadata={
            "help": "Dropout in the model. Default: 0.0 for pre-training (T5 v1.1), the checkpoint's value else."
        },
    )
    random_init: bool = field(
        default=False,
        metadata={
            "help": "Keep the architecture (config.json) and tokenizer of --model_name_or_path but start from random "
            "weights: the no-pre-training control. `--model_name_or_path random_init:PATH` says the same."
        },
    )
    attn_implementation: str = field(
        default="blocked",
        metadata={
            "help": "Attention kernel: blocked (default: cache-blocked attention with an fp32 softmax on CPU, "
            "~2.2x faster there than sdpa for T5's biased attention; on GPUs, training without attention dropout "
            "runs FlexAttention with the position bias and its gradient inside the kernel, and everything else "
            "sdpa), sdpa, or eager."
        },
    )

    def __post_init__(self):
        if self.model_name_or_path and self.model_name_or_path.startswith(RANDOM_INIT_PREFIX):
            self.model_name_or_path = self.model_name_or_path[len(RANDOM_INIT_PREFIX) :]
            self.random_init = True
        if self.random_init and not self.model_name_or_path:
            raise UsageError(
                "--random_init takes the architecture and tokenizer of --model_name_or_path: pass it "
                "(or --model_config PRESET for a from-scratch model)"
            )
        if self.model_name_or_path and self.vocab_size is not None:
            raise UsageError(
                f"--vocab_size trains a new tokenizer, whose ids would not match the embeddings of "
                f"--model_name_or_path {self.model_name_or_path}; drop --vocab_size to use its own tokenizer"
            )
        if self.vocab_size is not None and self.tokenizer_name_or_path is not None:
            raise UsageError("--vocab_size trains a new tokenizer; it cannot be combined with --tokenizer_name_or_path")
        if self.dropout_rate is not None and not 0.0 <= self.dropout_rate < 1.0:
            raise UsageError(f"--dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if self.attn_implementation not in ("blocked", "sdpa", "eager"):
            raise UsageError(f"--attn_implementation must be blocked, sdpa or eager, got {self.attn_implementation!r}")


@dataclass
class T5TrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` with T5-safe defaults.

    - bf16 is on by default where the hardware supports it; fp16 is refused (T5 activations overflow fp16).
    - With no GPU, `use_cpu` is set so the Trainer accepts bf16 and 2-process CPU launches synchronise.
    - `--resume_from_checkpoint latest` resumes from the newest checkpoint in `--output_dir`, if any.
    - `--report_to` is wandb and tensorboard (those installed; t5kit.tracking), not the Trainer's none.
    """

    output_dir: str | None = field(default=None, metadata={"help": "Where the run folder is written (required)."})
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 autocast. Default: on where the GPU/CPU supports bf16, else fp32."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep at most this many checkpoints."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Dataloader worker processes."})
    restore_callback_states_from_checkpoint: bool = field(
        default=True, metadata={"help": "On resume, restore callback state (the early-stopping counter) too."}
    )
    rms_scaled_updates: bool = field(
        default=False,
        metadata={
            "help": "AdamW with each tensor's step scaled by its root mean square (t5kit.optim.AdamWScale: "
            "Adafactor's scale_parameter, nanoT5's AdamWScale); pair it with a learning rate near 1e-2. "
            "Replaces --optim; not with --deepspeed."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an --output_dir that holds another run's outputs, deleting its checkpoints, "
            "results, metrics log and trained tokenizer first (without it, such a folder is refused)."
        },
    )
    report_to: None | str | list[str] = field(
        default=None,
        metadata={
            "help": "Where to log: wandb and tensorboard by default (those installed; W&B logs offline by itself, in "
            "./wandb, with no API key or server), none to log nowhere, all for every installed integration, or a "
            "list (wandb,tensorboard). The run folder's W&B run id is kept in wandb_run.json; a resumed run "
            "continues that W&B run."
        },
    )
    skip_nonfinite_steps: int = field(
        default=0,
        metadata={
            "help": "Tolerate this many optimizer steps with a NaN/inf loss or gradient, skipping their update; "
            "one more stops the run (exit 3) with the step and a hint."
        },
    )

    def __post_init__(self):
        if self.output_dir is None:
            raise UsageError("--output_dir is required")
        # "$VAR" expands, so a sweep can give each trial its own folder: runs/sweep/$WANDB_RUN_ID
        self.output_dir = os.path.expandvars(self.output_dir)
        if self.fp16:
            raise UsageError(
                "--fp16 is refused: T5's activations overflow in float16 and the loss turns NaN. "
                "Use --bf16 (the default where supported) or fp32 (--bf16 False)."
            )
        if os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower() == "fp16":
            raise UsageError(
                "the launcher asks for fp16 (ACCELERATE_MIXED_PRECISION=fp16, set by `accelerate config` answered "
                "FP16 or by the environment), which is refused: T5's activations overflow in float16. Answer bf16 "
                "(or no) in `accelerate config`, or unset ACCELERATE_MIXED_PRECISION."
            )
        if self.max_steps == 0:
            raise UsageError("--max_steps 0 trains nothing: give a number of steps, or -1 (the default) to train "
                             "for --num_train_epochs")  # fmt: skip
        if self.skip_nonfinite_steps < 0:
            raise UsageError(f"--skip_nonfinite_steps must be >= 0, got {self.skip_nonfinite_steps}")
        if self.rms_scaled_updates and self.deepspeed:
            raise UsageError("--rms_scaled_updates is not supported with --deepspeed (its config owns the optimizer)")
        if self.skip_nonfinite_steps and self.deepspeed:
            raise UsageError("--skip_nonfinite_steps is not supported with --deepspeed (its engine owns the update)")
        if self.hub_token:
            # A secret: kept in the environment for huggingface_hub, never in training_args.bin or tracker configs,
            # nor in the process's argv, which W&B records with the run.
            os.environ["HF_TOKEN"] = self.hub_token
            redact_argv(self.hub_token)
            self.hub_token = None
        if not torch.cuda.is_available():
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = bf16_supported()
        self.lr_scheduler_type = LR_SCHEDULER_ALIASES.get(str(self.lr_scheduler_type), self.lr_scheduler_type)
        if self.report_to is None:
            self.report_to = default_trackers()
        if isinstance(self.report_to, str) and "," in self.report_to:
            self.report_to = [name.strip() for name in self.report_to.split(",") if name.strip()]
        super().__post_init__()


def yaml_line_of(text: str, node_path: tuple[str, ...]) -> int | None:
    """1-based line of a key in a YAML text (("parameters", "learning_rate")), or None."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in node_path:
        if not isinstance(node, yaml.MappingNode):
            return line
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            return line
    return line


def _check_config_values(parser, values: dict[str, Any], path: str) -> dict[str, Any]:
    """Each config value converted by its flag's own type, as the command line would convert it; a value of the
    wrong type (`max_steps: 2.5`, `max_steps: ten`) or outside the flag's choices is a UsageError naming the file,
    line and key. Parser defaults skip argparse's conversion, so without this they would reach the Trainer as is."""
    text = Path(path).read_text(encoding="utf-8")
    checked = dict(values)
    for action in parser._actions:
        value = values.get(action.dest)
        if value is None or action.type is None or isinstance(value, dict):
            continue  # a mapping (a JSON-valued flag such as --lr_scheduler_kwargs): the Trainer checks it
        if isinstance(value, list) and action.nargs not in ("+", "*"):
            continue
        items = value if isinstance(value, list) else [value]
        try:
            converted = [action.type(str(item)) for item in items]
        except Exception:  # argparse type functions raise ValueError, TypeError or ArgumentTypeError
            converted = None
        bad = converted is None or (action.choices is not None and any(c not in action.choices for c in converted))
        if bad:
            line = yaml_line_of(text, (action.dest,)) if not path.endswith(".json") else None
            where = f"{path}:{line}" if line else path
            kinds = {"int": "an integer", "float": "a number", "string_to_bool": "true or false"}
            expected = (f"one of {', '.join(map(str, action.choices))}" if action.choices is not None
                        else kinds.get(getattr(action.type, "__name__", ""), "a valid value"))  # fmt: skip
            raise UsageError(f"{where}: {action.dest}: {value!r} is not {expected} (as the --{action.dest} flag takes)")
        checked[action.dest] = converted if isinstance(value, list) else converted[0]
    return checked


def redact_argv(secret: str) -> None:
    """Replaces `secret` in sys.argv (`--hub_token S`, `--hub_token=S`) by "<redacted>", in place."""
    for i, item in enumerate(sys.argv):
        if secret in item:
            sys.argv[i] = item.replace(secret, "<redacted>")


def _read_config_file(path: str, known_fields: set[str]) -> dict[str, Any]:
    """Reads a YAML or JSON config; unknown keys and parse errors name the file (and line for YAML)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{CONFIG_FLAG} {path}: no such file")
    text = file.read_text(encoding="utf-8")
    try:
        values = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise UsageError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of flag names to values, got {type(values).__name__}")
    unknown = sorted(set(values) - known_fields)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)}; keys must be flag names of this script")
    return values


def _with_aliases(argv: list[str]) -> list[str]:
    """`--lr_scheduler_type warmuplinear` (or `=warmuplinear`) -> transformers' name, before argparse checks choices."""
    flag = "--lr_scheduler_type"
    out = list(argv)
    for i, token in enumerate(out):
        if token.startswith(flag + "=") and token[len(flag) + 1 :] in LR_SCHEDULER_ALIASES:
            out[i] = f"{flag}={LR_SCHEDULER_ALIASES[token[len(flag) + 1 :]]}"
        elif token == flag and i + 1 < len(out) and out[i + 1] in LR_SCHEDULER_ALIASES:
            out[i + 1] = LR_SCHEDULER_ALIASES[out[i + 1]]
    return out


def parse_args(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parses argv (default sys.argv[1:]) into the given dataclasses; supports `--config FILE` and a lone FILE."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    known = {f.name for dc in dataclass_types for f in dataclasses.fields(dc) if f.init}
    config_path = None
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")):
        config_path, argv = argv[0], []
    elif CONFIG_FLAG in argv:
        at = argv.index(CONFIG_FLAG)
        if at + 1 >= len(argv):
            raise UsageError(f"{CONFIG_FLAG} needs a file path")
        config_path = argv[at + 1]
        argv = argv[:at] + argv[at + 2 :]
    argv = _with_aliases(argv)
    if config_path is not None:
        values = _read_config_file(config_path, known)
        if "lr_scheduler_type" in values:
            values["lr_scheduler_type"] = LR_SCHEDULER_ALIASES.get(
                values["lr_scheduler_type"], values["lr_scheduler_type"]
            )
        values = _check_config_values(parser, values, config_path)
        # Config values become the parser's defaults, so the command line still overrides them.
        for action in parser._actions:
            if action.dest in values:
                action.required = False
        parser.set_defaults(**values)
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except UsageError:
        raise
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    *groups, remaining = parsed
    if remaining:
        raise UsageError(f"unknown argument(s): {' '.join(remaining)}")
    return tuple(groups)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
