"""What a run leaves in its folder, for both scripts: all_results.json, predictions, result tables and plots.

all_results.json          every measured number and setting of the run (save_results)
loss.png                  training and eval loss against step (plot_loss)
predictions/*.jsonl       fine-tuning: input, target and prediction of every evaluated example
results.md, metrics.png   fine-tuning: one table per task, and the task metric against step
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

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
