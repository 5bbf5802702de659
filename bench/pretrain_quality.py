"""Pre-training quality per time: training seconds to the same held-out loss, ours vs the plain recipe, in one process.

    .venv/bin/python -m bench.pretrain_quality             # mini, batch 16 x 128, 100 steps: ~4-5 min on 2 cores
    .venv/bin/python -m bench.pretrain_quality --quick     # smoke test: tiny model, a few steps (numbers mean nothing)

Question: how much sooner does the toolkit's default pre-training recipe reach a given span-corruption loss than the
plain recipe does? Both sides train the same model shape (`--model_config`, T5 v1.1 preset) with the same tokenizer
on the same packed training blocks at the same global batch and input / target lengths:

- **ours**: `pre_train_t5.main([...])` on its default path (bf16 autocast where the hardware has fast bf16, else
  fp32; AdamW at 1e-3 with cosine decay and 2% warm-up; dropout 0; the vectorised T5DataCollator; T5Trainer), run
  through `pretrain_throughput.run_ours` with `--max_steps --plain_steps`.
- **plain**: `Seq2SeqTrainer` with its defaults (fp32, AdamW at 5e-5 with linear decay, no warm-up), the model with
  T5Config's default dropout 0.1, fed by the per-example `PerExampleSpanCorruptionCollator`
  (`pretrain_throughput.run_plain`), for `--plain_steps` optimizer steps.

Method:

1. Ours runs first, because its `pre_train_t5.main` call trains (or loads the cached) tokenizer and packs the corpus;
   it holds out `--eval_blocks` packed blocks with its own seeded split (`--max_eval_samples`), which neither side
   trains on, and plain then gets ours' tokenizer and exactly ours' training blocks. Both sides run `--plain_steps`
   optimizer steps (ours' cosine schedule is set for that many), so both curves are complete.
2. The held-out loss is computed the same way for both, by one callback (`HeldOutLoss`) at step 0 and every
   `--eval_every` steps (and at the last step): the eval blocks are span-corrupted once, before training, by the
   toolkit's `T5DataCollator` with a fixed seed (EVAL_SEED), so both sides are scored on identical inputs and
   labels; the loss is the model's own cross-entropy per target token (a token-weighted mean over the eval
   batches), in fp32 with autocast off, in eval mode (no dropout), without gradients.
3. Training time: a `common.StepTimer` records the time between consecutive optimizer-step ends (batch fetch and
   collation, forward, backward, optimizer), from the start of training; the training seconds at an eval point are
   the sum of the step times up to it, minus the time the earlier evaluations took (an evaluation runs after the
   timer has closed its step, so it falls inside the next step's interval). Model building, corpus packing, the
   evaluations and saving are not counted. After the first step and after a step during which other processes took
   more than `--max_contention` of the CPUs, training pauses (outside any step) until the CPU is free, for at most
   `--wait_idle_s` per side; unlike the throughput benchmark no step is discarded (each one moved the model), so
   the report gives the CPU share other processes took during the steps.
4. The target is plain's held-out loss at its last eval point (after `--plain_steps` steps). For each side, the
   time to the target is the first time its curve reaches it: between the two eval points that bracket the
   crossing (the last one above the target, the first one at or below it) the time is interpolated linearly in
   the loss, and the two points' times bound it (the report gives the ratio's bounds too, and warns where ours
   crosses within the first eval interval, which starts at the untrained model). For plain this is normally its
   last point. The ratio is plain's time / ours'. If ours never reaches the target within the budget, the report
   says so and gives only an upper bound of the ratio (plain's time / ours' whole training time).

Budget of the defaults (estimated from pretrain_throughput's step times, not measured end to end): plain ~1.4 s and
ours ~0.6 s per step, 26 evaluations of 32 blocks per side (~0.7 s each), corpus packing ~10 s: ~4-5 minutes, plus
SentencePiece training unless pretrain_throughput.py has cached the same tokenizer (it is copied from there).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from bench import common  # noqa: E402  (sets the offline switches before transformers is imported)

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from bench import pretrain_throughput as throughput  # noqa: E402
from t5kit.corpus import PretrainDataArguments  # noqa: E402

EVAL_SEED = 1234  # seed of the eval collator's span masks: fixed, so both sides score the very same inputs and labels
HELD_OUT_PERCENT = PretrainDataArguments.validation_split_percentage  # pre_train_t5's default split (then capped)
TIMER_WARMUP_STEPS = 1  # StepTimer keeps its first step apart (warmup_seconds); here it is counted like any other
TINY_CORPUS = common.SHARED_DATA / "corpus" / "tinyshakespeare" / "part-000.txt"
QUICK = dict(  # --quick: the tiny model for a few steps, a ~1 MB corpus (a smoke test, not numbers)
    model_config="tiny",
    input_length=64,
    batch_size=8,
    plain_steps=6,
    eval_every=2,
    eval_blocks=8,
    vocab_size=1000,
    wait_idle_s=0.0,
)


# ---------------------------------------------------------------------------------------------------------------
# Held-out loss


def eval_batches(collator, blocks, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The held-out blocks span-corrupted once by a copy of ours' T5DataCollator (same noise settings and lengths)
    seeded with EVAL_SEED; every example keyed by its position (epoch 0), so the masks depend on nothing else."""
    collator = dataclasses.replace(collator, seed=EVAL_SEED, epoch=0)
    rows = blocks.with_format(None)["input_ids"]
    examples = [{"input_ids": ids, "idx": i, "epoch": 0} for i, ids in enumerate(rows)]
    return [collator(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]


@torch.no_grad()
def held_out_loss(model, batches: list[dict[str, torch.Tensor]]) -> float:
    """Cross-entropy per target token over all batches (fp32, eval mode: no dropout)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    try:
        with torch.autocast(device.type, enabled=False):
            for batch in batches:
                batch = {key: value.to(device) for key, value in batch.items()}
                count = int((batch["labels"] != -100).sum())
                total += float(model(**batch, use_cache=False).loss) * count
                tokens += count
    finally:
        model.train(was_training)
    return total / tokens


class HeldOutLoss(TrainerCallback):
    """Evaluates `held_out_loss` at step 0 and every `every` steps (and the last); records (step, loss, seconds the
    evaluation took). Must follow `timer` in the callback list, so that an evaluation starts after the timer has
    closed its step (checked)."""

    def __init__(self, batches, every: int, timer: common.StepTimer):
        self.batches, self.every, self.timer = batches, every, timer
        self.points: list[dict] = []

    def _evaluate(self, model, step: int) -> None:
        start = time.perf_counter()
        loss = held_out_loss(model, self.batches)
        self.points.append({"step": step, "loss": loss, "eval_seconds": time.perf_counter() - start})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.points = []
        self._evaluate(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.timer.steps_done != state.global_step:
            raise RuntimeError("HeldOutLoss must come after the StepTimer in the callback list")
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            self._evaluate(model, state.global_step)


def curve(timer: common.StepTimer, points: list[dict]) -> list[dict]:
    """Each eval point with its training seconds: the step times up to it, less the evaluations inside them."""
    steps = timer.warmup_seconds + [seconds for seconds, _ in timer.window]
    out = []
    for point in points:
        earlier_evals = sum(p["eval_seconds"] for p in points if p["step"] < point["step"])
        out.append({**point, "seconds": max(0.0, sum(steps[: point["step"]]) - earlier_evals)})
    return out


def crossing(points: list[dict], target: float) -> dict | None:
    """First point of the curve at or below `target`: the interpolated seconds and step, and the bracketing eval
    points' seconds (None where the curve never gets there)."""
    for before, point in zip([None] + points[:-1], points):
        if point["loss"] > target:
            continue
        if before is None:
            return {"seconds": point["seconds"], "step": point["step"], "low": point["seconds"],
                    "high": point["seconds"], "steps": (point["step"], point["step"])}  # fmt: skip
        share = (before["loss"] - target) / (before["loss"] - point["loss"])
        return {
            "seconds": before["seconds"] + share * (point["seconds"] - before["seconds"]),
            "step": before["step"] + share * (point["step"] - before["step"]),
            "low": before["seconds"],
            "high": point["seconds"],
            "steps": (before["step"], point["step"]),
        }
    return None


def contention(timer: common.StepTimer, limit: float) -> dict:
    """Other processes' CPU share during the steps (the first step is not measured): time-weighted mean, worst, and
    how many steps were above `limit`."""
    known = [(seconds, share) for seconds, share in timer.window if share is not None]
    seconds = sum(t for t, _ in known)
    return {
        "mean": sum(t * share for t, share in known) / seconds if seconds else None,
        "worst": max((share for _, share in known), default=None),
        "contended_steps": sum(share > limit for _, share in known),
        "measured_steps": len(known),
    }


# ---------------------------------------------------------------------------------------------------------------
# The two sides


def seed_tokenizer_cache(files: list[str], vocab_size: int, work_dir: Path) -> None:
    """Copies the pre-training throughput benchmark's cached tokenizer for the same corpus and size, if it has one
    (`make bench` runs it first): the same SentencePiece training would take minutes."""
    mine = throughput.tokenizer_cache_dir(files, vocab_size, work_dir)
    theirs = throughput.tokenizer_cache_dir(files, vocab_size, Path(throughput.parse_args([]).work_dir))
    if not (mine / "bench_info.json").is_file() and (theirs / "bench_info.json").is_file():
        shutil.rmtree(mine, ignore_errors=True)
        shutil.copytree(theirs, mine)


def new_timer(args) -> common.StepTimer:
    """Every step of the budget is kept (none discarded: max_discarded 0, no time limit); the run ends at max_steps."""
    return common.StepTimer(
        TIMER_WARMUP_STEPS,
        args.plain_steps - TIMER_WARMUP_STEPS,
        0,
        args.max_contention,
        float("inf"),
        args.wait_idle_s,
    )


def run_both(args, files: list[str], work_dir: Path) -> tuple[dict, dict, dict]:
    held_out = {}
    ours_timer, plain_timer = new_timer(args), new_timer(args)

    def attach_eval(trainer) -> None:
        held_out["blocks"] = trainer.eval_dataset.blocks
        held_out["batches"] = eval_batches(trainer.data_collator, trainer.eval_dataset.blocks, args.batch_size)
        held_out["ours"] = HeldOutLoss(held_out["batches"], args.eval_every, ours_timer)
        trainer.add_callback(held_out["ours"])

    ours = throughput.run_ours(
        args, files, work_dir, throughput.DEFAULT_PRECISION, timer=ours_timer, on_trainer=attach_eval,
        extra_argv=("--validation_split_percentage", str(HELD_OUT_PERCENT), "--max_eval_samples",
                    str(args.eval_blocks)),
    )  # fmt: skip
    plain_eval = HeldOutLoss(held_out["batches"], args.eval_every, plain_timer)
    plain = throughput.run_plain(
        args,
        ours["blocks"],
        ours["tokenizer"],
        ours["target_length"],
        work_dir,
        bf16=False,
        timer=plain_timer,
        callbacks=[plain_eval],
    )
    if ours["parameters"] != plain["parameters"]:
        raise AssertionError(f"ours and plain differ in size: {ours['parameters']} vs {plain['parameters']}")
    ours["curve"] = curve(ours_timer, held_out["ours"].points)
    plain["curve"] = curve(plain_timer, plain_eval.points)
    for run, timer in ((ours, ours_timer), (plain, plain_timer)):
        run["contention_stats"] = contention(timer, args.max_contention)
        run["train_seconds"] = sum(timer.warmup_seconds) + sum(t for t, _ in timer.window)
        run["steps_run"] = len(timer.warmup_seconds) + len(timer.window)
        run["waited_seconds"] = timer.waited
    data = {
        "eval_blocks": len(held_out["blocks"]),
        "eval_target_tokens": sum(int((b["labels"] != -100).sum()) for b in held_out["batches"]),
        "train_blocks": len(ours["blocks"]),
    }
    return ours, plain, data


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model_config", default="mini", help="T5 v1.1 preset (tiny, mini, small, base, large)")
    p.add_argument("--plain_steps", type=int, default=100, help="optimizer steps of the budget (both sides)")
    p.add_argument("--eval_every", type=int, default=4, help="held-out loss every this many steps (and at 0, last)")
    p.add_argument("--eval_blocks", type=int, default=32, help="held-out packed blocks (ours' seeded split)")
    p.add_argument("--batch_size", type=int, default=16, help="global batch (1 process); also the eval batch")
    p.add_argument("--input_length", type=int, default=128, help="encoder input length (target length follows)")
    p.add_argument("--vocab_size", type=int, default=32000, help="tokenizer size asked for (pretrain_throughput.py)")
    p.add_argument("--train_files", nargs="+", help="corpus files (default: every .txt under shared/data/corpus)")
    p.add_argument(
        "--max_contention", type=float, default=0.10,
        help="a step during which other processes took more than this share of the CPUs counts as contended",
    )  # fmt: skip
    p.add_argument(
        "--wait_idle_s", type=float, default=30.0,
        help="per side: pause at most this long in all, between steps, for other processes to leave the CPU",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: " + ", ".join(f"{k} {v}" for k, v in QUICK.items())
                   + ", the tinyshakespeare corpus")  # fmt: skip
    p.add_argument("--output", default=str(common.RESULTS_DIR / "pretrain_quality.md"), help="markdown written here")
    p.add_argument("--work_dir", default=str(common.WORK_DIR / "pretrain_quality"), help="run folders, caches")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.train_files = args.train_files or [str(TINY_CORPUS)]
    if args.plain_steps <= TIMER_WARMUP_STEPS or min(args.eval_every, args.eval_blocks, args.batch_size) < 1:
        p.error(f"--plain_steps must be > {TIMER_WARMUP_STEPS}; --eval_every, --eval_blocks, --batch_size >= 1")
    # What pretrain_throughput's runners read: max_steps = warmup_steps + steps + max_discarded = --plain_steps.
    args.warmup_steps, args.steps, args.max_discarded = TIMER_WARMUP_STEPS, args.plain_steps - TIMER_WARMUP_STEPS, 0
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    machine = common.machine_info()
    files = throughput.corpus_files(args)
    seed_tokenizer_cache(files, args.vocab_size, work_dir)
    common.wait_for_idle(args.wait_idle_s, args.max_contention)
    ours, plain, data = run_both(args, files, work_dir)

    target = plain["curve"][-1]["loss"]
    result = {
        "target_loss": target,
        "ours": crossing(ours["curve"], target),
        "plain": crossing(plain["curve"], target),  # at the latest its last point, which defines the target
    }
    if result["ours"]:
        ours_seconds = result["ours"]["seconds"]
        result["ratio"] = result["plain"]["seconds"] / ours_seconds if ours_seconds > 0 else float("inf")
    else:
        result["ratio_upper_bound"] = result["plain"]["seconds"] / ours["train_seconds"]
    command = " ".join([".venv/bin/python -m bench.pretrain_quality", *(sys.argv[1:] if argv is None else argv)])
    markdown = render(args, command, machine, ours, plain, data, result)
    print("\n" + markdown, flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n", encoding="utf-8")
    print(f"\nwritten to {out}  ({time.perf_counter() - started:.0f} s in all)")
    for run in (ours, plain):
        for unused in ("tokenizer", "blocks", "config", "collator_obj", "tokenizer_info"):
            run.pop(unused, None)
    return {**result, "ours_run": ours, "plain_run": plain, "data": data, "machine": machine,
            "markdown": markdown, "output": str(out)}  # fmt: skip


def ratio_lines(ours: dict, plain: dict, result: dict) -> list[str]:
    """The headline bullet (bold: run_all's summary picks it up), how the ratio splits into step speed and steps, and
    a warning where the crossing is too early for the eval schedule to resolve."""
    target, mine, theirs = result["target_loss"], result["ours"], result["plain"]
    headline = f"- **time ratio plain / ours to plain's final held-out loss {target:.3f}: "
    plain_at = f"plain reaches it after {theirs['seconds']:.1f} s of training (step {theirs['step']:.0f})"
    if mine is None:
        return [
            f"{headline}< {result['ratio_upper_bound']:.2f}x, not reached**: ours stayed above it for all "
            f"{ours['steps_run']} steps ({ours['train_seconds']:.1f} s of training, last loss "
            f"{ours['curve'][-1]['loss']:.3f}); {plain_at}.",
        ]
    low, high = mine["steps"]
    if high == 0:
        bound, how = "", "its initial model is already at or below it (the two initialisations differ)"
    elif mine["high"] > mine["low"]:
        upper = f"{theirs['seconds'] / mine['low']:.2f}x" if mine["low"] > 0 else "unbounded"
        lower = f"{theirs['seconds'] / mine['high']:.2f}x"
        bound = f" (interpolated; the bracketing eval points bound it to {lower}-{upper})"
        how = (
            f"step ~{mine['step']:.1f}, interpolated linearly in time between the eval points at steps {low} and "
            f"{high} that bracket the crossing: {mine['low']:.1f} s and {mine['high']:.1f} s"
        )
    else:
        bound, how = "", f"at the eval point of step {high} itself"
    speed = (plain["train_seconds"] / plain["steps_run"]) / (ours["train_seconds"] / ours["steps_run"])
    lines = [
        f"{headline}{result['ratio']:.2f}x**{bound}: ours reaches it after {mine['seconds']:.1f} s of training "
        f"({how}); {plain_at}.",
        f"- Of that: ours' steps were {speed:.2f}x faster (mean training seconds per step over each whole run: ours "
        f"{ours['train_seconds'] / ours['steps_run']:.3g}, plain {plain['train_seconds'] / plain['steps_run']:.3g}) "
        f"and it needed {theirs['step'] / max(mine['step'], 1e-9):.1f}x fewer steps; after the same "
        f"{ours['steps_run']} steps ours' held-out loss was {ours['curve'][-1]['loss']:.3f}.",
    ]
    if low == 0 and high > 0:
        lines.append(
            f"- **ours crossed the target within the first eval interval (steps 0-{high}): the interpolated ratio is "
            "coarse (the curve is far from linear there); the bounds hold, and a smaller --eval_every narrows "
            "them**"
        )
    return lines


def render(args, command, machine, ours, plain, data, result) -> str:
    by_step = {p["step"]: p for p in plain["curve"]}
    rows = []
    for point in ours["curve"]:
        other = by_step.get(point["step"])
        rows.append([
            point["step"], f"{point['seconds']:.2f}", f"{point['loss']:.3f}",
            f"{other['seconds']:.2f}" if other else "", f"{other['loss']:.3f}" if other else "",
        ])  # fmt: skip
    table = common.markdown_table(["step", "ours train s", "ours loss", "plain train s", "plain loss"], rows)
    corpus = f"{len(args.train_files)} --train_files" if args.train_files else "every .txt under shared/data/corpus"
    info = ours["tokenizer_info"]
    limit = f"{100 * args.max_contention:.0f}%"
    shares = []
    for name, run in (("ours", ours), ("plain", plain)):
        stats = run["contention_stats"]
        if stats["mean"] is not None:
            shares.append(
                f"{name} {100 * stats['mean']:.0f}% on average (worst step {100 * stats['worst']:.0f}%, "
                f"{stats['contended_steps']} of {stats['measured_steps']} steps above {limit}, "
                f"{run['waited_seconds']:.0f} s waited)"
            )
    means = [run["contention_stats"]["mean"] for run in (ours, plain) if run["contention_stats"]["mean"] is not None]
    lines = [
        "## Pre-training quality per time: ours vs the plain Seq2SeqTrainer recipe",
        "",
        f"Command: `{command}`",
        "",
        f"Model `{args.model_config}` (T5 v1.1 shape), {ours['parameters']:,} parameters, a {info['vocab_size']:,}-"
        f"token SentencePiece tokenizer (`pre_train_t5.py --vocab_size {args.vocab_size}`"
        + (f"; {'; '.join(info['attempts'])}" if len(info.get("attempts", [])) > 1 else "")
        + "). Global batch "
        f"{args.batch_size} x {args.input_length} input / {ours['target_length']} target tokens, packed raw blocks of "
        f"{ours['raw_length']} from {corpus}: {data['train_blocks']:,} training blocks (both sides) and "
        f"{data['eval_blocks']} held out ({data['eval_target_tokens']:,} target tokens). Budget: "
        f"{args.plain_steps} optimizer steps each, held-out loss every {args.eval_every} steps. "
        f"ours: `pre_train_t5.main` default path ({ours['precision']}, dropout {ours['dropout']:g}, AdamW 1e-3 "
        f"cosine); plain: `Seq2SeqTrainer` defaults ({plain['precision']}, dropout {plain['dropout']:g}, AdamW 5e-5 "
        "linear, per-example collator). One process, ours first.",
        "",
        *ratio_lines(ours, plain, result),
        "- Held-out loss: the same callback for both, on the same eval batches (the held-out blocks span-corrupted "
        f"once by the toolkit's `T5DataCollator` with the fixed seed {EVAL_SEED}, so the inputs and labels are "
        "identical), cross-entropy per target token, fp32 with autocast off, eval mode (no dropout).",
        "- Training seconds = summed optimizer-step times (`StepTimer`: batch fetch and collation, forward, backward, "
        "optimizer) up to the eval point; the evaluations, model building, corpus packing and saving are excluded. "
        "No step is discarded for contention. CPU share other processes took during the steps: "
        + ("; ".join(shares) if shares else "not measured")
        + ".",
        "",
        "Held-out loss against training seconds (step 0 = the initial model):",
        "",
        table,
        "",
        *common.report_tail(
            max(means) if means else None,
            "(time-weighted mean over one side's steps): the times and the ratio are not reliable; rerun on an idle "
            "machine",
            machine,
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
