"""Multi-task mixtures: mixing rates as T5 defines them, and one deterministic training set drawn with those rates.

Rates (T5 paper, Raffel et al. 2020, section 3.5.2; code: t5/data/utils.py ``rate_num_examples``, which calls
seqio ``mixing_rate_num_examples``)::

    rate_num_examples(n, maximum=K, temperature=T) = min(n, K) ** (1 / T)     (no cap when K is None or 0)
    rate_i = rate_num_examples(n_i, K, T) / sum_j rate_num_examples(n_j, K, T)

T = 1 is examples-proportional mixing with the artificial data-set size limit K; T > 1 moves the rates towards
equal mixing ("temperature-scaled mixing", which keeps the limit K and applies it before the temperature). n_i is
the number of training examples of task i after preprocessing (T5 reads the cached "examples" statistic): here
after --max_train_samples and after one row per gold answer for ReCoRD-style records.

T5 samples an endless stream (``tf.data.experimental.sample_from_datasets``) and trains by steps. A Trainer epoch
needs a finite data set, so the mixture is built once per run as one ``datasets.Dataset``:

- Epoch length: ``sum_i n_i``, the examples the tasks hold together, redistributed by the rates (at most
  --max_mixture_samples rows: a smaller mixture at the same rates; --max_train_samples instead caps every task
  before the rates are computed, which moves them towards uniform mixing). Task i gets
  ``c_i`` rows, ``c_i = L * rate_i`` rounded by largest remainder (ties to the earlier task), so the counts sum
  to L and match the rates to within one example. With proportional mixing and a cap that does not bind,
  ``c_i = n_i``: one epoch is one pass over every task. A task whose ``c_i > n_i`` is repeated (every row
  ``c_i // n_i`` times, plus a seeded subset of the rest); one whose ``c_i < n_i`` gets a seeded subset. The
  subset is drawn once per run (from the seed), so every epoch of a down-sampled task reuses it: for more of a
  big task, raise --mixing_rate_cap or train with --max_steps on a larger cap.
- Order: each task's rows are spread evenly over the epoch (row j of task i sits at ``(j + 0.5) / c_i``), so even
  sequential batches mix the tasks at their rates. The training sampler (length-grouped by default) then shuffles
  per epoch as for one task.
- A single task is a mixture of one: rate 1, ``c = n``, every row once in file order: the same training set as
  without the mixture code.

The set depends only on (sizes, rates, seed), so a resumed run rebuilds the same set and the epoch-seeded sampler
(t5kit.fault_tolerance) gives the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import datasets
import numpy as np

# T5 paper section 3.5.3 pre-trains on the examples-proportional mixture of all supervised tasks with K = 2^19
# (section 3.5.2 compares K = 2^16 ... 2^21; for temperature-scaled mixing it keeps K at 2^21). T5's code default
# is no cap (rate_num_examples(maximum=None)): pass --mixing_rate_cap 0 for that.
T5_MIXING_RATE_CAP = 2**19
TASK_COLUMN = "task"  # the mixture's column naming each row's task ("glue/sst2")


def rate_num_examples(num_examples: int, maximum: int | None = None, temperature: float = 1.0) -> float:
    """T5's unnormalised rate of one task: min(n, maximum) ** (1 / temperature); no cap for maximum None or 0."""
    if temperature <= 0:
        raise ValueError(f"mixing temperature must be > 0, got {temperature}")
    rate = float(num_examples)
    if maximum:
        rate = min(rate, float(maximum))
    if temperature != 1.0:
        rate = rate ** (1.0 / temperature)
    return rate


def mixing_rates(sizes: Sequence[int], maximum: int | None = None, temperature: float = 1.0) -> list[float]:
    """Normalised mixing rates (they sum to 1): rate_i = rate_num_examples(n_i) / sum_j rate_num_examples(n_j).

    mixing_rates([100, 300]) == [0.25, 0.75]; mixing_rates([100, 300], maximum=200) == [1/3, 2/3];
    mixing_rates([100, 400], temperature=2) == [10/30, 20/30].
    """
    raw = [rate_num_examples(n, maximum, temperature) for n in sizes]
    total = sum(raw)
    if not sizes or total <= 0:
        raise ValueError(f"a mixture needs at least one task with training examples; sizes {list(sizes)}")
    return [r / total for r in raw]


def mixture_counts(sizes: Sequence[int], rates: Sequence[float], max_rows: int | None = None) -> list[int]:
    """Rows per task in one epoch: L = sum(sizes), or `max_rows` if smaller (--max_mixture_samples), split by
    `rates` with the largest-remainder method. The rates stay those of the full tasks."""
    length = int(sum(sizes)) if not max_rows else min(int(sum(sizes)), int(max_rows))
    exact = [length * r for r in rates]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(rates)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: length - sum(counts)]:
        counts[i] += 1
    return counts


def task_rows(size: int, count: int, seed: int, task_index: int) -> np.ndarray:
    """Row numbers of one task in the epoch: every row count // size times, plus a seeded subset of
    count % size rows (kept in file order). count == size: 0..size-1 in order."""
    repeats, rest = divmod(count, size) if size else (0, 0)
    rows = [np.tile(np.arange(size), repeats)] if repeats else []
    if rest:
        rng = np.random.default_rng([seed, task_index])
        rows.append(np.sort(rng.permutation(size)[:rest]))
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def mixture_order(counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(task index, position within the task's rows) of each epoch position: task i's j-th row at (j + 0.5) / c_i,
    ties broken by task order. One task: positions 0..c-1 in order."""
    tasks = np.concatenate([np.full(c, i, dtype=np.int64) for i, c in enumerate(counts)])
    within = np.concatenate([np.arange(c, dtype=np.int64) for c in counts])
    keys = np.concatenate([(np.arange(c) + 0.5) / c for c in counts if c] or [np.zeros(0)])
    order = np.lexsort((tasks, keys))  # primary key: evenly spread position; then task order
    return tasks[order], within[order]


def build_mixture(
    train_sets: Sequence[datasets.Dataset],
    names: Sequence[str],
    counts: Sequence[int],
    seed: int,
    columns: Sequence[str],
) -> datasets.Dataset:
    """One training set: `columns` of each task's rows picked by task_rows, in mixture_order, plus a `task` column."""
    parts = []
    for i, (ds, name) in enumerate(zip(train_sets, names)):
        part = ds.select_columns(list(columns))
        parts.append(part.add_column(TASK_COLUMN, [name] * len(part)))
    offsets = np.cumsum([0] + [len(ds) for ds in train_sets])
    rows = [task_rows(len(ds), c, seed, i) for i, (ds, c) in enumerate(zip(train_sets, counts))]
    tasks, within = mixture_order(counts)
    picked = np.empty(len(tasks), dtype=np.int64)
    for i in range(len(train_sets)):
        at = tasks == i
        picked[at] = offsets[i] + rows[i][within[at]]
    combined = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return combined.select(picked.tolist())


def format_rates_table(
    names: Sequence[str],
    sizes: Sequence[int],
    rates: Sequence[float],
    counts: Sequence[int],
    maximum: int | None,
    temperature: float,
) -> str:
    """Markdown table of the mixture: task, training examples, rate, rows per epoch (and times each row is seen)."""
    cap = f"K = {maximum}" if maximum else "no cap"
    lines = [
        f"mixing rates: rate_i ~ min(n_i, K) ** (1/T), {cap}, T = {temperature:g}; epoch = {sum(counts)} rows",
        "| task | train examples n_i | rate | rows per epoch | epochs of the task |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n, r, c in zip(names, sizes, rates, counts):
        lines.append(f"| {name} | {n} | {r:.4f} | {c} | {c / n if n else 0:.2f} |")
    return "\n".join(lines)
