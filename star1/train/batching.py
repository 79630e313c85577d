"""Which samples each worker trains on at each optimizer step: a pure, deterministic plan.

The samples are visited as one stream: epoch after epoch, each a seeded permutation of all samples, and the
stream is cut into consecutive global batches of `effective_batch`. So every sample is trained on once in
every epoch, nothing is dropped, and a step may hold the end of one epoch and the start of the next. The steps
are `samples × epochs // effective_batch` (39 for 1,000 samples × 5 epochs at 128); the last one also takes
the remainder of the stream (`samples × epochs % effective_batch` samples, 8 there), so it may be larger
than the others. This is the paper's loop (UCSC-VLAA/STAR-1 `b493335`, `train/sft.py`): its DataLoader has
batch 1 and `drop_last=True` (l. 194), which drops nothing, so each of the 8 processes gets 125 micro-batches
per epoch; its step count is `len(loader) × n_epochs // accumulation // world` = 39 (l. 196, warmup
`int(0.05 × 39)` = 1, l. 197); and its micro-batch counter runs across epochs and is never reset (l. 238–261),
which is also what decides a step: `accelerator.backward` (accelerate ≤ 1.7, `utils/deepspeed.py`
`DeepSpeedEngineWrapper.backward`) calls `engine.backward` and `engine.step` on every micro-batch, and
DeepSpeed 0.15.4 (`runtime/engine.py` l. 2070–2072, counter l. 2279) steps when `(micro_steps + 1) % 16 == 0`.
So the 13 micro-batches left at the end of an epoch are accumulated with the first 3 of the next, every step
has 128 samples, and no step is shorter. The one difference: the reference runs forward/backward on the last
8 samples of its last epoch but never steps on them; star1 adds them to its last step, so every sample of
every epoch reaches the weights (17 micro-batches per worker there instead of 16). A step's epoch (metrics)
is its first sample's; `ends_epoch` marks the step that completes an epoch (the default checkpoint).
`max_steps` stops early on the same plan.

Loss: the reference's model loss is the mean over one sample's label tokens (micro-batch 1), which DeepSpeed
divides by the accumulation (l. 1995–1996) and averages over workers: every sample of a step weighs 1/128,
whatever its length. star1's `loss_average: sample` (`collate.step_weights`) weighs each sample 1 / (samples
in the step), the same for every 128-sample step and the mean for the larger last one.

A global batch is split among the workers, then into micro-batches of `per_device_batch` rows. Without
packing a row is one sample (right-padded); with packing, samples are balanced across workers by tokens and
packed first-fit-decreasing into rows of at most `max_length` tokens. Every worker gets the same number of
micro-batches (padded with empty ones), because every forward/backward is a collective under DDP and ZeRO-3.
The plan depends on the worker count only in how a global batch is split, so a run may resume on a different
number of workers and see the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Row = list[int]  # sample indices packed into one sequence (one sample without packing)
MicroBatch = list[Row]  # an empty micro-batch is a placeholder that keeps workers in step


class BatchError(ValueError):
    """A batch geometry that cannot work (too little data, indivisible batch)."""


@dataclass(frozen=True)
class Geometry:
    samples: int
    effective_batch: int
    workers: int
    per_device_batch: int
    grad_accum: int  # micro-batches per step without packing (the last step may need more)
    steps_per_epoch: float  # samples / effective_batch: steps are not aligned with epochs
    epochs: int  # planned; `max_steps` may end the run sooner
    total_steps: int
    warmup_steps: int

    @property
    def planned_steps(self) -> int:
        return self.samples * self.epochs // self.effective_batch

    def span(self, step: int) -> tuple[int, int]:
        """[start, end) of step `step` (0-based) in the stream of all epochs' samples."""
        if not 0 <= step < self.planned_steps:
            raise IndexError(f"step {step} outside the plan's {self.planned_steps} steps")
        start = step * self.effective_batch
        last = step == self.planned_steps - 1
        return start, self.samples * self.epochs if last else start + self.effective_batch

    def epoch_of(self, step: int) -> int:
        """0-based epoch of the first sample of `step`: the epoch's last step is the one that completes it."""
        return self.span(step)[0] // self.samples

    def ends_epoch(self, step: int) -> bool:
        """Whether an epoch's last sample is in `step` (where the paper saves its per-epoch checkpoint)."""
        return step + 1 >= self.planned_steps or self.epoch_of(step) != self.epoch_of(step + 1)


def geometry(
    samples: int,
    effective_batch: int,
    workers: int,
    per_device_batch: int,
    epochs: int,
    warmup_ratio: float,
    max_steps: int | None = None,
) -> Geometry:
    if effective_batch % (workers * per_device_batch):
        raise BatchError(
            f"effective batch {effective_batch} cannot be divided among {workers} workers × "
            f"{per_device_batch} per device"
        )
    if samples < effective_batch:
        raise BatchError(
            f"{samples} training samples are fewer than one effective batch ({effective_batch}); "
            "lower train.recipe.effective_batch or add data"
        )
    total = samples * epochs // effective_batch  # as the paper's num_training_steps
    if max_steps is not None:
        total = min(total, max_steps)
    return Geometry(
        samples=samples,
        effective_batch=effective_batch,
        workers=workers,
        per_device_batch=per_device_batch,
        grad_accum=effective_batch // (workers * per_device_batch),
        steps_per_epoch=samples / effective_batch,
        epochs=epochs,
        total_steps=total,
        warmup_steps=int(warmup_ratio * total),  # as transformers' schedule in the paper's loop
    )


def global_batch(step: int, geom: Geometry, seed: int) -> list[int]:
    """Sample indices of optimizer step `step` (0-based): its slice of the stream of epoch permutations. A
    step across an epoch boundary may hold one sample twice (once per epoch), as the paper's does."""
    start, end = geom.span(step)
    n, out = geom.samples, []
    for epoch in range(start // n, (end - 1) // n + 1):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        out += [int(i) for i in order[max(start - epoch * n, 0) : min(end - epoch * n, n)]]
    return out


def _balance(batch: list[int], lengths: list[int], workers: int) -> list[list[int]]:
    """Longest-first to the worker with the fewest tokens (ties: lowest rank)."""
    shares: list[list[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i in sorted(batch, key=lambda i: (-lengths[i], i)):
        w = min(range(workers), key=lambda r: (load[r], r))
        shares[w].append(i)
        load[w] += lengths[i]
    return shares


def pack_rows(samples: list[int], lengths: list[int], max_length: int) -> list[Row]:
    """First-fit-decreasing into rows of at most `max_length` tokens."""
    rows: list[Row] = []
    room: list[int] = []
    for i in sorted(samples, key=lambda i: (-lengths[i], i)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_length - lengths[i])
    return rows


def _micro(rows: list[Row], per_device: int) -> list[MicroBatch]:
    return [rows[i : i + per_device] for i in range(0, len(rows), per_device)]


def step_plan(
    batch: list[int], lengths: list[int], workers: int, per_device: int, packing: bool, max_length: int
) -> list[list[MicroBatch]]:
    """Micro-batches of every worker for one global batch, equal in number across workers."""
    if packing:
        shares = _balance(batch, lengths, workers)
        plans = [_micro(pack_rows(s, lengths, max_length), per_device) for s in shares]
    else:
        plans = [_micro([[i] for i in batch[r::workers]], per_device) for r in range(workers)]
    n = max(len(p) for p in plans)
    return [p + [[] for _ in range(n - len(p))] for p in plans]


def slot_fraction(plan: list[list[MicroBatch]], lengths: list[int]) -> tuple[int, int]:
    """(real tokens, tensor slots) of one step's plan, as `collate` builds it: rows padded to the longest
    row of their micro-batch, an empty (placeholder) micro-batch one pad token."""
    real = slots = 0
    for worker in plan:
        for mb in worker:
            row_len = [sum(lengths[i] for i in row) for row in mb] or [0]
            real += sum(row_len)
            slots += max(len(mb), 1) * max(max(row_len), 1)
    return real, slots
