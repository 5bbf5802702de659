"""What a run leaves in its folder, for both scripts: all_results.json, predictions, result tables and plots.

all_results.json          every measured number and setting of the run (save_results)
README.md                 the model card, Hugging Face format (write_model_card; again whenever all_results.json is)
loss.png                  training and eval loss against step (plot_loss)
predictions/*.jsonl       fine-tuning: input, target and prediction of every evaluated example
results.md, metrics.png   fine-tuning: one table per task, and the task metric against step
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

logger = logging.getLogger("t5kit")

RESULTS_FILE = "all_results.json"
INVALID_LABEL = "(no label word)"  # a prediction that is none of the task's label words


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on a cluster node)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def jsonable(values: dict) -> dict:
    """Numpy/torch scalars as Python numbers, non-finite floats as strings (JSON has no NaN)."""
    clean = {}
    for key, value in values.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and not isinstance(value, (str, bytes)):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        clean[key] = value
    return clean


def save_results(trainer, results: dict) -> None:
    """<output_dir>/all_results.json, in the Trainer's format (other tools read it)."""
    trainer.save_metrics("all", jsonable(results), combined=False)


def plot_loss(log_history: list[dict], path: Path) -> None:
    """Training (and eval, where logged) loss against step."""
    train = [(row["step"], row["loss"]) for row in log_history if "loss" in row]
    evals = [(row["step"], row["eval_loss"]) for row in log_history if "eval_loss" in row]
    if not train and not evals:
        return
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for points, label in ((train, "train"), (evals, "eval")):
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, marker="." if label == "eval" else None, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def plot_eval_metric(
    log_history: list[dict], key: str, path: Path, final: tuple[int, float, str] | None = None
) -> None:
    """The metric at each evaluation during training (`log_history`), and apart from them the final evaluation
    (`final`: the step of the weights it scored, the value, a label), which may be of a restored checkpoint."""
    points = [(row["step"], row[key]) for row in log_history if key in row]
    if not points and final is None:
        return
    fig, ax = pyplot().subplots(figsize=(6, 4))
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o", label="during training")
    if final is not None:
        ax.plot([final[0]], [final[1]], marker="*", markersize=14, linestyle="none", color="tab:red", label=final[2])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def write_predictions(out: Path, spec, split: str, dataset, predictions: list[str]) -> Path:
    """predictions/<benchmark>_<task>_<split>.jsonl: input, target (and every gold answer) and prediction."""
    folder = out / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.benchmark}_{spec.name}_{split}.jsonl"
    references = dataset["references"] if "references" in dataset.column_names else None
    with path.open("w", encoding="utf-8") as handle:
        for i, (source, target, prediction) in enumerate(zip(dataset["source"], dataset["target"], predictions)):
            row = {"input": source, "target": target, "prediction": prediction}
            if references is not None:
                row["references"] = references[i]  # every gold answer (ReCoRD, SQuAD)
            handle.write(json.dumps(row) + "\n")
    return path


def label_report(spec, targets: list[str], predictions: list[str]) -> dict[str, Any] | None:
    """For a classification split: the majority class and its accuracy (what predicting it always scores), and the
    share of each predicted label (%); None for other tasks. SST-2 targets positive, positive, negative predicted
    as positive, positive, "maybe": majority positive at 66.7, predicted {positive: 66.7, (no label word): 33.3}.
    """
    if spec.label_words is None or not targets:
        return None
    words = list(spec.label_words)
    gold = Counter(targets)
    predicted = Counter(p.strip() if p.strip() in words else INVALID_LABEL for p in predictions)
    majority, count = gold.most_common(1)[0]
    return {
        "majority_class": majority,
        "majority_baseline": 100.0 * count / len(targets),
        "predicted_labels": {
            w: 100.0 * predicted[w] / len(predictions) for w in [*words, INVALID_LABEL] if predicted[w]
        },
    }


def describe_labels(split: str, report: dict[str, Any]) -> str:
    shares = ", ".join(f"{word} {share:.1f}%" for word, share in report["predicted_labels"].items())
    line = (f"{split}: predicted labels {shares}; always predicting the majority class "
            f"({report['majority_class']}) scores accuracy {report['majority_baseline']:.1f}")  # fmt: skip
    if len(report["predicted_labels"]) == 1:
        only = next(iter(report["predicted_labels"]))
        line += f". **Warning: every prediction is {only!r}: the model ignores its input.**"
    return line


def results_table(spec, per_split: dict[str, dict[str, float]], labels: dict[str, dict[str, Any]] | None = None) -> str:
    """A markdown table of one task's evaluated splits and metrics (0-100), and for classification the predicted
    labels against the majority-class baseline."""
    names = list(spec.metrics) + ["invalid_rate"]
    lines = [f"| {spec.full_name} split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for split, metrics in per_split.items():
        lines.append(f"| {split} | " + " | ".join(f"{metrics.get(n, float('nan')):.2f}" for n in names) + " |")
    notes = [describe_labels(split, report) for split, report in (labels or {}).items()]
    return "\n".join(lines + ([""] + [f"- {note}" for note in notes] if notes else []))


def describe_scored_model(state, args) -> str:
    """Which weights the final evaluation scored, and why (`state`, `args`: the Trainer's)."""
    best = state.best_model_checkpoint
    if not (args.load_best_model_at_end and best):
        return f"Scored model: the final weights (step {state.global_step})."
    key = args.metric_for_best_model
    evaluations = sum(key in row for row in state.log_history)
    return (f"Scored model: {Path(best).name}, restored at the end of training (step {state.global_step}) as the "
            f"best of {evaluations} evaluations by {key} = {state.best_metric:.2f} (a tie goes to the lower eval "
            "loss).")  # fmt: skip


def write_results_table(
    out: Path,
    per_task: list[tuple[Any, dict[str, dict[str, float]]]],
    average: tuple[str, float, dict[str, float]] | None = None,
    labels: dict[str, dict[str, dict]] | None = None,
    scored: str = "",
) -> str:
    """One table per task, and for a mixture `average` = (its name, its value, each task's score); also written to
    results.md."""
    labels = labels or {}
    table = "\n\n".join(results_table(spec, per_split, labels.get(spec.full_name)) for spec, per_split in per_task)
    if scored:
        table = f"{scored}\n\n{table}"
    if average is not None:
        name, value, task_scores = average
        scores = ", ".join(f"{task} {score:.2f}" for task, score in task_scores.items())
        table += (
            f"\n\n{name} (mean of the task scores; a task's score is the mean of its metrics): "
            f"**{value:.2f}** ({scores})"
        )
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    return table


# --------------------------------------------------------------------------------------------------------------
# The model card: README.md in the Hugging Face format (YAML front matter, then markdown), written from the run
# folder's own files (args.yaml, config.json, all_results.json, wandb_run.json), so it can be written again whenever
# all_results.json changes.

MODEL_CARD = "README.md"
FOREIGN_CARD = "MODEL_CARD.md"  # where the card goes when README.md in the folder is not one written here
CARD_MARK = "<!-- t5kit model card"
SCRIPTS = ("pre_train_t5.py", "fine_tune_t5.py")
# Results that are timings or counters of the evaluation loop, not metrics.
_NOT_METRICS = ("_runtime", "_samples_per_second", "_steps_per_second", "_predicted_labels")


def model_card_path(out: Path) -> Path:
    """<out>/README.md, unless README.md there is not a card written here (it is kept): <out>/MODEL_CARD.md then."""
    readme = Path(out) / MODEL_CARD
    if readme.is_file() and CARD_MARK not in readme.read_text(encoding="utf-8", errors="replace")[:4000]:
        return Path(out) / FOREIGN_CARD
    return readme


def remove_model_card(out: Path) -> None:
    """Removes a card written here for an earlier run of the folder (a new run starts there); any other README.md
    stays."""
    path = model_card_path(out)
    if path.name == MODEL_CARD:
        path.unlink(missing_ok=True)


def _read(path: Path, loader) -> dict:
    import yaml

    try:
        value = loader(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return value if isinstance(value, dict) else {}


def launch_command(flags: dict) -> tuple[str, str]:
    """(the script, the command that started this process): sys.argv where the process runs one of the scripts;
    else (a script's main() called from Python) the command that reruns the run from its args.yaml."""
    import shlex
    import sys

    script = "pre_train_t5.py" if "noise_density" in flags else "fine_tune_t5.py"
    if sys.argv and Path(sys.argv[0]).name in SCRIPTS:
        return Path(sys.argv[0]).name, shlex.join(["python", Path(sys.argv[0]).name, *sys.argv[1:]])
    return script, f"python {script} --config args.yaml"


def final_metrics(results: dict) -> dict[str, float]:
    """The metrics of all_results.json: the training loss and every evaluated number (eval_*, test_*, predict_*)."""
    keep = {}
    for key, value in results.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key == "train_loss" or (key.startswith(("eval_", "test_", "predict_")) and not key.endswith(_NOT_METRICS)):
            keep[key] = value
    return keep


def _is_hub_name(name: str | None) -> bool:
    return bool(name) and not Path(name).exists() and name.count("/") <= 1 and not name.startswith((".", "/", "~"))


def _task_specs(names: str) -> list:
    from t5kit.tasks import get_task

    specs = []
    for full in [n for n in names.split(",") if "/" in n]:
        try:
            specs.append(get_task(*full.split("/", 1)))
        except (KeyError, ValueError):
            continue
    return specs


def write_model_card(output_dir: str | Path, results: dict | None = None, command: str | None = None) -> Path:
    """Writes the run folder's model card (README.md, Hugging Face format) from args.yaml, config.json,
    all_results.json (or `results`) and wandb_run.json; returns its path. Call it again after all_results.json
    changes: the card is rewritten whole. `command`: the command that started the run (default: see
    launch_command)."""
    import yaml

    out = Path(output_dir)
    flags = _read(out / "args.yaml", yaml.safe_load)
    config = _read(out / "config.json", json.loads)
    results = _read(out / RESULTS_FILE, json.loads) if results is None else results
    tracked = _read(out / "wandb_run.json", json.loads)
    adapter = _read(out / "adapter_config.json", json.loads)
    script, launched = launch_command(flags)
    command = command or launched
    pretraining = script == "pre_train_t5.py"
    source = flags.get("model_name_or_path") or adapter.get("base_model_name_or_path")
    random_init = bool(flags.get("random_init"))
    specs = [] if pretraining else _task_specs(str(results.get("task") or ""))
    metrics = final_metrics(results)

    # Front matter
    tags = ["t5", "text2text-generation", "t5kit"]
    if pretraining:
        tags += ["span-corruption", "pretraining"]
    else:
        tags += ["fine-tuned", *dict.fromkeys(s.benchmark for s in specs), *(s.name for s in specs)]
    if results.get("parameter_efficient") and results["parameter_efficient"] != "full":
        tags.append(str(results["parameter_efficient"]).split(":")[0])  # lora, prompt_tuning, freeze, adapter
    meta: dict[str, Any] = {"library_name": "peft" if adapter else "transformers", "tags": tags}
    if source and not random_init and _is_hub_name(source):
        meta["base_model"] = source  # the hub accepts only a hub id here; a local folder is named below
    datasets = [flags["dataset_name"]] if pretraining and flags.get("dataset_name") else []
    datasets += [s.hub_path for s in specs if s.hub_path]
    if datasets:
        meta["datasets"] = list(dict.fromkeys(datasets))
    names = list(dict.fromkeys(m for s in specs for m in s.metrics))
    if names:
        meta["metrics"] = names
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip()

    # Model
    shape = ", ".join(f"{key} {config[key]}" for key in ("d_model", "d_ff", "num_layers", "num_decoder_layers",
                                                         "num_heads", "vocab_size") if key in config)  # fmt: skip
    parameters = results.get("model_parameters") or results.get("total_parameters")
    if random_init:
        start = f"random weights, with the architecture and tokenizer of `{source}` (the no-pre-training control)"
    elif source:
        where = "the Hugging Face hub model" if _is_hub_name(source) else "the local model folder"
        start = f"{where} `{source}`" + (" (its own card: README.md there)" if not _is_hub_name(source) else "")
    else:
        start = f"random weights (from scratch), architecture `--model_config {flags.get('model_config')}`"
    if flags.get("vocab_size"):
        tokenizer = f"a SentencePiece unigram tokenizer of {flags['vocab_size']} tokens trained on the training text"
    else:
        tokenizer = f"the tokenizer of `{flags.get('tokenizer_name_or_path') or source}`"
    model = [f"- Architecture: T5 (`T5ForConditionalGeneration`){f', {parameters:,} parameters' if parameters else ''}"
             f"{f': {shape}' if shape else ''}", f"- Started from: {start}", f"- Tokenizer: {tokenizer}"]  # fmt: skip
    if adapter:
        model.append(f"- This folder holds a {adapter.get('peft_type', 'peft')} adapter (`adapter_model.safetensors`) "
                     f"for `{adapter.get('base_model_name_or_path')}`, not a full model")  # fmt: skip

    # Data and objective
    if pretraining:
        if flags.get("train_files"):
            data = ["- Text files: " + ", ".join(f"`{f}`" for f in flags["train_files"])]
        else:
            data = [f"- Hub dataset `{flags.get('dataset_name')}`" + (f" ({flags['dataset_config_name']})" if
                    flags.get("dataset_config_name") else "") + f", split {flags.get('dataset_split')}"]  # fmt: skip
        counts = [f"{results[f'corpus_{k}']:,} {k.replace('_', ' ')}" for k in ("documents", "tokens",
                  "train_blocks", "eval_blocks") if isinstance(results.get(f"corpus_{k}"), int)]  # fmt: skip
        if counts:
            data.append("- Read: " + ", ".join(counts))
        objective = (f"Span corruption (T5's denoising objective): {flags.get('noise_density')} of the tokens "
                     f"masked in spans of mean length {flags.get('mean_noise_span_length')}, each span replaced by "
                     f"a sentinel; {results.get('raw_length', '?')} raw tokens per example become "
                     f"{results.get('input_length', flags.get('input_length'))} input and "
                     f"{results.get('target_length', '?')} target tokens.")  # fmt: skip
        kind = flags.get("objective", "span_corruption")
        if kind == "pmi":
            vocabulary = flags.get("pmi_vocabulary")
            objective = (f"PMI-masked span corruption (Levine et al. 2021): spans follow the n-grams of "
                         f"`{vocabulary}` where one covers a position, random spans elsewhere. "
                         f"{objective}")  # fmt: skip
        elif kind == "ul2":
            objective = (f"UL2 mixture of denoisers (Tay et al. 2022): R, X and S denoisers, relative rates "
                         f"{flags.get('ul2_rates')}; each input starts with its mode token "
                         "([NLU], [NLG], [S2S]).")  # fmt: skip
        elif kind == "prefix_lm":
            objective = "Prefix language modelling: each block split at a random point, the rest is the target."
    else:
        tasks = ", ".join(f"`{s.full_name}`" for s in specs) or f"`{results.get('task') or flags.get('benchmark')}`"
        origin = (f"local files in `{flags['data_dir']}`" if flags.get("data_dir") else
                  ", ".join(f"`{flags[k]}`" for k in ("train_file", "validation_file") if flags.get(k)) or
                  ", ".join(f"hub dataset `{s.hub_path}`" for s in specs if s.hub_path) or "?")  # fmt: skip
        data = [f"- Task(s): {tasks}, from {origin}"]
        if flags.get("max_train_samples"):
            data.append(f"- At most {flags['max_train_samples']} training examples")
        objective = (f"Fine-tuning, text to text: the task's input as text (with its prefix) to its label word or "
                     f"answer text, teacher-forced cross-entropy on the target tokens. Evaluated by "
                     f"{'scoring each label word (rank)' if flags.get('eval_mode') == 'rank' else 'generating text'}"
                     f"; method: {results.get('parameter_efficient') or 'full'}.")  # fmt: skip

    # Training
    steps = _read(out / "trainer_state.json", json.loads).get("global_step")
    length = f"{steps} steps" if steps else f"--max_steps {flags.get('max_steps')}"
    world, kind = results.get("world_size", 1), results.get("distributed_type")
    processes = f"{world} process{'es' if world != 1 else ''}" + (f" ({kind})" if kind not in (None, "NO") else "")
    training = (f"- {length}, effective batch {results.get('effective_batch_size', '?')} on {processes}, "
                f"{results.get('precision', '?')}; learning rate {flags.get('learning_rate')} "
                f"({flags.get('lr_scheduler_type')}, warm-up {flags.get('warmup_steps')}), optimizer "
                f"{flags.get('optim')}, seed {flags.get('seed')}")  # fmt: skip

    lines = [
        "---", front, "---", "",
        f"{CARD_MARK}: written by t5kit from args.yaml, config.json and all_results.json; rewritten with every "
        "result. -->", "",
        f"# {flags.get('run_name') or out.name}", "",
        f"A T5 model {'pre-trained' if pretraining else 'fine-tuned'} with `{script}` (t5kit).", "",
        "## Model", "", *model, "",
        "## Data", "", *data, "",
        "## Objective", "", objective, "",
        "## Training", "", training, "",
        "## Command", "", "```bash", command, "```", "",
        "Every flag of the run (config file and command line merged) is in `args.yaml`"
        + ("." if command.endswith("--config args.yaml") else f": `python {script} --config args.yaml` runs it again."),
        "",
        "## Results", "",
    ]  # fmt: skip
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
                  for key, value in metrics.items()]  # fmt: skip
        lines += ["", f"Every number of the run: `{RESULTS_FILE}`."]
        if (out / "results.md").is_file():
            lines[-1] += " Per task and split, and which checkpoint was scored: `results.md`."
    else:
        lines.append(f"No final metrics yet (`{RESULTS_FILE}`).")
    if tracked:
        folders = ", ".join(f"`{folder}`" for folder in tracked.get("local_dirs", []))
        where = tracked.get("url") or f"logged offline in {folders} (`wandb sync` uploads them as this one run)"
        lines += ["", "## Tracking", "", f"W&B run `{tracked.get('project')}/{tracked.get('id')}`: {where}."]
    if adapter:
        load = ["from peft import PeftModel", "", f'tokenizer = AutoTokenizer.from_pretrained("{out}")',
                f'base = T5ForConditionalGeneration.from_pretrained("{adapter.get("base_model_name_or_path")}")',
                f'model = PeftModel.from_pretrained(base, "{out}")']  # fmt: skip
    else:
        load = ["", f'tokenizer = AutoTokenizer.from_pretrained("{out}")',
                f'model = T5ForConditionalGeneration.from_pretrained("{out}")']  # fmt: skip
    lines += ["", "## Use", "", "```python", "from transformers import AutoTokenizer, T5ForConditionalGeneration",
              *load, "```"]  # fmt: skip
    path = model_card_path(out)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def refresh_model_card(out: Path) -> None:
    """write_model_card for a run whose results are saved already: a card that fails warns, and fails no run."""
    try:
        write_model_card(out)
    except Exception as err:  # noqa: BLE001
        logger.warning("model card not written: %s: %s", type(err).__name__, err)
