"""Does pre-training help? The CPU recipe end to end, as README "Does pre-training help?" reports it.

    .venv/bin/python -m bench.pretraining_payoff                          # everything, resumable (hours on 2 cores)
    .venv/bin/python -m bench.pretraining_payoff --stages pretrain suite  # the headline comparison only

The recipe: PMI masking (`--objective pmi`, its n-gram vocabulary built from the same corpus first, in seconds)
for 1,150 steps of configs/pretrain_cpu.yaml, then the suite with CoLA fine-tuned 1,000 steps and the other tasks 300.
`--objective span_corruption --pretrain_steps 1000 --task_set` (no per-task flags) is the plain recipe.

Stages (each one resumes where it stopped when the command is run again):
1. `pretrain`: `pre_train_t5.py --config configs/pretrain_cpu.yaml` on every .txt under <shared data>/corpus
   (Gutenberg, Tiny Shakespeare, WikiText-2: general English, no task text), timed.
2. `indomain`: the final model pre-trained further, with the same objective, on the unlabeled input text of the
   suite tasks' training splits (one document per example: its text fields joined by a space; no label, no prefix,
   no validation text): `--indomain_steps` steps.
3. `suite`: `finetune_suite.py` with configs/finetune_cpu.yaml and `--task_set` on glue/sst2, glue/cola, glue/rte
   and superglue/cb (the real files under <shared data>), seeds 0 1 2: the final model against random init of its
   architecture and tokenizer (the baseline).
4. `curve`: the same suite extended with the run's earlier checkpoints and the in-domain model (their rows are
   added; the finished runs are kept), which gives the average against pre-training tokens (suite_curve.png).

Everything goes under `--work_dir` (default bench/out/payoff, git-ignored); the suite's tables are
`<work_dir>/suite/suite_results.{md,json,png}`. Times are wall-clock on this machine and are printed per stage.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

from t5kit.args import RANDOM_INIT_PREFIX  # noqa: E402
from t5kit.finetune_data import FineTuneDataArguments, load_splits  # noqa: E402
from t5kit.tasks import get_task  # noqa: E402

REPO = common.REPO
TASKS = ("glue/sst2", "glue/cola", "glue/rte", "superglue/cb")
SEEDS = ("0", "1", "2")
STAGES = ("pretrain", "indomain", "suite", "curve")
INDOMAIN_LEARNING_RATE = "5e-3"  # half the recipe's peak (with --rms_scaled_updates): the model is trained already
TASK_SET = ("glue/cola:max_steps=1000",)  # at 300 steps every model predicts one CoLA class (MCC 0)
PMI_BUILD = ("--min_count", "10", "--size", "50000")


def run(command: list[str], log: Path) -> float:
    """Runs a command with its output in `log` (appended); its wall seconds. A failure stops the benchmark."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {' '.join(command)}   (log: {log})", flush=True)
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as handle:
        code = subprocess.call(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"exit {code} after {seconds:.0f} s; see {log}")
    return seconds


def task_texts(tasks: tuple[str, ...], data_dir: Path) -> list[str]:
    """The unlabeled input text of each task's training split, one document per example (its whitespace runs, line
    breaks included, made single spaces, so that a document is one line)."""
    docs = []
    for name in tasks:
        benchmark, _, task = name.partition("/")
        spec = get_task(benchmark, task)
        args = FineTuneDataArguments(benchmark=benchmark, dataset_name=task, data_dir=str(data_dir))
        train = load_splits(spec, args, train=True, evaluate=False, predict=False).train
        columns = [column for _, column in spec.input_fields]
        for row in train.select_columns(columns):
            text = " ".join(" ".join(row[c].split()) for c in columns if isinstance(row[c], str) and row[c].strip())
            if text:
                docs.append(text)
    return docs


def write_task_text(path: Path | str) -> Path:
    """`task_texts` of the suite's tasks from <shared data>, one document per line, written to `path`."""
    path = Path(path)
    docs = task_texts(TASKS, common.SHARED_DATA)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    print(f"[payoff] in-domain text: {len(docs)} documents from the training splits of {', '.join(TASKS)}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=str(common.WORK_DIR / "payoff"))
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--objective", choices=("pmi", "span_corruption"), default="pmi",
                        help="pre-training objective (pmi)")  # fmt: skip
    parser.add_argument("--pretrain_steps", type=int, default=1150, help="pre-training steps (1150)")
    parser.add_argument("--indomain_steps", type=int, default=300, help="continued pre-training steps (300)")
    parser.add_argument("--task_set", nargs="*", default=list(TASK_SET), metavar="TASK:NAME=VALUE",
                        help=f"the suite's per-task flags ({' '.join(TASK_SET)}); none: one budget")  # fmt: skip
    parser.add_argument("--curve_checkpoints", nargs="+",
                        default=["checkpoint-250", "checkpoint-500", "checkpoint-1000"],
                        help="checkpoints of the pre-training run added to the suite for the curve")  # fmt: skip
    args = parser.parse_args(argv)
    work = Path(args.work_dir).resolve()
    python = sys.executable
    pt, indomain, suite_dir = work / "pretrain", work / "indomain", work / "suite"
    times_path = work / "stage_seconds.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}

    def record(stage: str, seconds: float) -> None:
        times[stage] = round(times.get(stage, 0.0) + seconds, 1)  # a resumed stage adds its time
        work.mkdir(parents=True, exist_ok=True)
        times_path.write_text(json.dumps(times, indent=1))
        print(f"[payoff] {stage}: {seconds / 60:.1f} min (in all {times[stage] / 60:.1f} min)", flush=True)

    corpus = sorted(str(p) for p in (common.SHARED_DATA / "corpus").rglob("*.txt"))
    objective = ["--objective", args.objective]
    if args.objective == "pmi":
        vocabulary = work / "pmi_vocab.txt"
        if {"pretrain", "indomain"} & set(args.stages) and not vocabulary.is_file():
            build = [python, "-m", "t5kit.pmi", "build", "--train_files", *corpus, "--output", str(vocabulary)]
            record("pmi_vocabulary", run([*build, *PMI_BUILD, "--no_progress"], work / "logs" / "pmi.log"))
        objective += ["--pmi_vocabulary", str(vocabulary)]
    if "pretrain" in args.stages and not (pt / "all_results.json").is_file():
        record("pretrain", run([python, "pre_train_t5.py", "--config", "configs/pretrain_cpu.yaml", "--train_files",
                                *corpus, *objective, "--max_steps", str(args.pretrain_steps), "--output_dir", str(pt),
                                "--resume_from_checkpoint", "latest"], work / "logs" / "pretrain.log"))  # fmt: skip
    if "indomain" in args.stages and not (indomain / "all_results.json").is_file():
        text = write_task_text(work / "task_train_text.txt")
        record(
            "indomain",
            run(
                [
                    python,
                    "pre_train_t5.py",
                    "--model_name_or_path",
                    str(pt),
                    "--train_files",
                    str(text),
                    *objective,
                    "--input_length",
                    "128",
                    "--per_device_train_batch_size",
                    "64",
                    "--max_steps",
                    str(args.indomain_steps),
                    "--learning_rate",
                    INDOMAIN_LEARNING_RATE,
                    "--rms_scaled_updates",
                    "True",
                    "--max_eval_samples",
                    "200",
                    "--save_steps",
                    "100",
                    "--logging_steps",
                    "25",
                    "--output_dir",
                    str(indomain),
                    "--resume_from_checkpoint",
                    "latest",
                ],
                work / "logs" / "indomain.log",
            ),
        )
    models = [str(pt), f"{RANDOM_INIT_PREFIX}{pt}"]
    if "curve" in args.stages:
        models += [str(pt / name) for name in args.curve_checkpoints] + [str(indomain)]
    if "suite" in args.stages or "curve" in args.stages:
        record("suite", run([
            python, "finetune_suite.py", "--models", *models, "--tasks", *TASKS, "--seeds", *SEEDS,
            *(f"--task_set={item}" for item in args.task_set),
            "--config", "configs/finetune_cpu.yaml", "--set", f"data_dir={common.SHARED_DATA}",
            "--set", "disable_tqdm=True", "--suite_dir", str(suite_dir), "--poll_s", "2",
        ], work / "logs" / "suite.log"))  # fmt: skip
        print((suite_dir / "suite_results.md").read_text())


if __name__ == "__main__":
    main()
