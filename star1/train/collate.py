"""Micro-batch tensors and the loss: rows of samples (packed or not) → input ids, position ids restarting at
every sample, per-sample shifted labels, and a weight per label token.

No attention mask is passed: transformers reads sample boundaries from the position ids (a block-diagonal
causal mask with sdpa/eager, varlen kernels with FlashAttention-2), so no token attends across samples, and
right padding sits in its own block after the real tokens. Labels are shifted inside each sample, so the last
token of one sample never predicts the first of the next. Weights make the loss of a micro-batch its share of
the global batch's loss, so packed and unpacked batches, any worker count and any accumulation give the
same gradient: `sample` averaging weighs every sample's mean token loss equally, `token` every token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from star1.train.batching import MicroBatch

IGNORE = -100


@dataclass(frozen=True)
class Samples:
    """The tokenized training set, as the workers hold it."""

    input_ids: list[np.ndarray]
    n_prompt: np.ndarray

    @classmethod
    def from_table(cls, table: pa.Table) -> Samples:
        ids = table.column("input_ids").to_pylist()
        return cls([np.asarray(x, dtype=np.int64) for x in ids], table.column("n_prompt").to_numpy())

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def label_tokens(self, i: int) -> int:
        return len(self.input_ids[i]) - max(int(self.n_prompt[i]), 1)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [rows, length]
    position_ids: torch.Tensor
    shift_labels: torch.Tensor  # target of each position, IGNORE where no loss
    weights: torch.Tensor  # float32, weight of each position's loss
    spans: list[tuple[int, int, int, int]]  # (sample, row, start, end)
    real_tokens: int

    def to(self, device: torch.device) -> Batch:
        t = {k: getattr(self, k).to(device) for k in ("input_ids", "position_ids", "shift_labels", "weights")}
        return Batch(**t, spans=self.spans, real_tokens=self.real_tokens)


def step_weights(batch: list[int], samples: Samples, average: str) -> dict[int, float]:
    """Loss weight of one label token of each sample of a global batch (the weights sum to 1)."""
    if average == "token":
        total = sum(samples.label_tokens(i) for i in batch)
        return dict.fromkeys(batch, 1.0 / total)
    return {i: 1.0 / (samples.label_tokens(i) * len(batch)) for i in batch}


def collate(
    mb: MicroBatch, samples: Samples, weights: dict[int, float], pad_id: int, flatten: bool = False
) -> Batch:
    """Tensors of one micro-batch; an empty one is a single weightless pad token (keeps workers in step).
    `flatten` puts all its samples in one row: FlashAttention-2 reads sample boundaries from position ids
    only in a batch of one row (varlen), and a flat row carries no padding at all."""
    rows = ([[i for row in mb for i in row]] if flatten else mb) or [[]]
    row_len = [sum(len(samples.input_ids[i]) for i in row) for row in rows]
    length = max(max(row_len), 1)
    shape = (len(rows), length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    labels = torch.full(shape, IGNORE, dtype=torch.long)
    w = torch.zeros(shape, dtype=torch.float32)
    spans = []
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            ids = torch.from_numpy(samples.input_ids[i])
            n = len(ids)
            input_ids[r, at : at + n] = ids
            position_ids[r, at : at + n] = torch.arange(n)
            first = max(int(samples.n_prompt[i]), 1)  # first token that is a target
            labels[r, at + first - 1 : at + n - 1] = ids[first:]
            w[r, at + first - 1 : at + n - 1] = weights[i]
            spans.append((i, r, at, at + n))
            at += n
        if at < length:  # padding: its own position block, after every real token
            position_ids[r, at:] = torch.arange(length - at)
    return Batch(input_ids, position_ids, labels, w, spans, sum(row_len))


def token_losses(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy at every position ([rows, length], 0 where ignored), computed in fp32."""
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
    ce = F.cross_entropy(
        logits.float().flatten(0, 1), batch.shift_labels.flatten(), ignore_index=IGNORE, reduction="none"
    )
    return ce.view(batch.shift_labels.shape)


def sample_losses(ce: torch.Tensor, batch: Batch) -> dict[int, float]:
    """Mean token loss of each sample of a micro-batch."""
    out = {}
    for i, r, start, end in batch.spans:
        mask = batch.shift_labels[r, start:end] != IGNORE
        out[i] = float(ce[r, start:end][mask].mean())
    return out
