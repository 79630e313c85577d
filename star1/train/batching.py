"""Which samples each worker trains on at each optimizer step: a pure, deterministic plan.

Every epoch is a seeded permutation of the samples cut into global batches of `effective_batch` (the last,
partial one is dropped, as the paper's DataLoader does). A global batch is split among the workers, then into
micro-batches of `per_device_batch` rows. Without packing a row is one sample (right-padded); with packing,
samples are balanced across workers by tokens and packed first-fit-decreasing into rows of at most
`max_length` tokens. Every worker gets the same number of micro-batches (padded with empty ones), because
every forward/backward is a collective under DDP and ZeRO-3. The plan depends on the worker count only in
how a global batch is split, so a run may resume on a different number of workers and see the same batches.
"""

from __future__ import annotations

import math
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
    grad_accum: int  # micro-batches per step without packing
    steps_per_epoch: int
    epochs: int
    total_steps: int
    warmup_steps: int


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
    steps_per_epoch = samples // effective_batch
    if steps_per_epoch == 0:
        raise BatchError(
            f"{samples} training samples are fewer than one effective batch ({effective_batch}); "
            "lower train.recipe.effective_batch or add data"
        )
    total = steps_per_epoch * epochs
    if max_steps is not None:
        total = min(total, max_steps)
    return Geometry(
        samples=samples,
        effective_batch=effective_batch,
        workers=workers,
        per_device_batch=per_device_batch,
        grad_accum=effective_batch // (workers * per_device_batch),
        steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(total / steps_per_epoch),
        total_steps=total,
        warmup_steps=int(warmup_ratio * total),  # as transformers' schedule in the paper's loop
    )


def global_batch(step: int, geom: Geometry, seed: int) -> list[int]:
    """Sample indices of optimizer step `step` (0-based)."""
    epoch, k = divmod(step, geom.steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(geom.samples)
    return [int(i) for i in order[k * geom.effective_batch : (k + 1) * geom.effective_batch]]


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
