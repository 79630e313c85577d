"""The batch plan (deterministic, every sample once per epoch, workers in step, effective batch kept, the
reference's step count) and the packing contract: packed and unpacked batches give the same per-sample loss
and the same gradient."""

from __future__ import annotations

import numpy as np
import pytest

from star1.config import FormatConfig, TrainSource, parse_config
from star1.config.base import ConfigError
from star1.store import Store
from star1.train.batching import BatchError, geometry, global_batch, pack_rows, step_plan
from tests.train_helpers import RECORDS, tiny_llama


def test_paper_geometry():
    g = geometry(1000, 128, 8, 1, 5, 0.05)  # 1K samples, 8 GPUs × 1 × 16 accumulation
    # the reference's num_training_steps: len(loader) × n_epochs // accumulation // world (sft.py l. 196)
    assert g.total_steps == 1000 * 5 // 16 // 8 == 39
    assert (g.grad_accum, g.steps_per_epoch, g.warmup_steps) == (16, 1000 / 128, 1)  # int(0.05 × 39)
    short = geometry(1000, 128, 8, 1, 5, 0.05, max_steps=3)
    assert (short.total_steps, short.epochs, short.warmup_steps) == (3, 5, 0)
    assert [global_batch(s, short, 7) for s in range(3)] == [global_batch(s, g, 7) for s in range(3)]


def _stream(g, seed):
    return [i for step in range(g.total_steps) for i in global_batch(step, g, seed)]


@pytest.mark.parametrize("epochs", [1, 3, 5])
def test_paper_plan_trains_every_sample_once_per_epoch(epochs):
    """1,000 samples at 128 (8 workers × 1 × 16), as the reference: consecutive global batches of 128 over
    the epochs' permutations, across epoch boundaries; the remainder joins the last step, never dropped."""
    n, seed = 1000, 2002
    g = geometry(n, 128, 8, 1, epochs, 0.05)
    assert g.total_steps == n * epochs // 128  # 7, 23, 39: the reference's step count
    stream = _stream(g, seed)
    assert len(stream) == n * epochs
    for e in range(epochs):
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n)), f"epoch {e}"
    sizes = [len(global_batch(s, g, seed)) for s in range(g.total_steps)]
    assert sizes == [128] * (g.total_steps - 1) + [128 + n * epochs % 128]
    for step in range(g.total_steps):
        plan = step_plan(global_batch(step, g, seed), [1] * n, 8, 1, False, 8192)
        assert {len(p) for p in plan} == {16 if step < g.total_steps - 1 else -(-sizes[-1] // 8)}
    # the epoch in which each step is taken (metrics) and the steps that end an epoch (checkpoints)
    ends = [s for s in range(g.total_steps) if g.ends_epoch(s)]
    assert ends == [(e + 1) * n // 128 for e in range(epochs - 1)] + [g.total_steps - 1]
    assert [g.epoch_of(s) for s in ends] == list(range(epochs))
    if epochs == 5:
        assert ends == [7, 15, 23, 31, 38] and sizes[-1] == 136  # 5,000 = 39 × 128 + 8
    # pure: any step alone, in any order, from a fresh geometry, gives the same batch (resume anywhere)
    again = geometry(n, 128, 8, 1, epochs, 0.05)
    assert [global_batch(s, again, seed) for s in reversed(range(g.total_steps))][::-1] == [
        global_batch(s, g, seed) for s in range(g.total_steps)
    ]
    with pytest.raises(IndexError):
        global_batch(g.total_steps, g, seed)


def test_indivisible_batch_and_too_little_data():
    with pytest.raises(BatchError, match="cannot be divided among 3 workers"):
        geometry(1000, 128, 3, 1, 5, 0.05)
    with pytest.raises(BatchError, match="fewer than one effective batch"):
        geometry(100, 128, 8, 1, 5, 0.05)
    with pytest.raises(ConfigError, match="effective batch 128 cannot be divided among 6 workers × 1"):
        parse_config({"train": {"model": "m", "scaling": {"num_workers": 6}}})


@pytest.mark.parametrize("packing", [False, True])
def test_plan_covers_each_sample_once_per_epoch_and_keeps_workers_in_step(packing):
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(50, 900, size=70)]
    g = geometry(len(lengths), 16, 4, 2, 2, 0.05)
    assert g.total_steps == 140 // 16 == 8
    for step in range(g.total_steps):
        batch = global_batch(step, g, seed=7)
        assert batch == global_batch(step, g, seed=7)
        assert len(batch) == (16 if step < 7 else 16 + 140 % 16)  # the last step takes the remainder
        plan = step_plan(batch, lengths, 4, 2, packing, 1024)
        assert len({len(p) for p in plan}) == 1  # same number of micro-batches on every worker
        got = [i for p in plan for mb in p for row in mb for i in row]
        assert sorted(got) == sorted(batch)
        for p in plan:
            for mb in p:
                assert len(mb) <= 2
                assert all(sum(lengths[i] for i in row) <= 1024 for row in mb) or not packing
        if not packing:
            assert all(len(p) == -(-len(batch) // 8) for p in plan)  # grad_accum (2), 4 for the last
    stream = _stream(g, 7)
    for e in range(2):  # every sample once per epoch, nothing dropped
        assert sorted(stream[e * 70 : (e + 1) * 70]) == list(range(70))
    # another worker count splits the same global batches (a resumed run may change its size)
    assert global_batch(3, geometry(len(lengths), 16, 2, 1, 2, 0.05), 7) == global_batch(3, g, 7)


def test_packing_fills_rows():
    lengths = [700, 600, 500, 300, 200, 100, 90]
    rows = pack_rows(list(range(7)), lengths, 1024)
    assert all(sum(lengths[i] for i in r) <= 1024 for r in rows)
    assert sorted(i for r in rows for i in r) == list(range(7))
    assert len(rows) == 3  # 2490 tokens need at least 3 rows of 1024


# ------------------------------------------------------------------ packed vs unpacked


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """A tiny random Llama (the masking code path is the real model's), SmolLM2's tokenizer, 4 samples."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from star1.train.collate import Samples
    from star1.train.data import load_records
    from star1.train.encode import Formatter

    path = tiny_llama(tmp_path_factory.mktemp("tiny") / "model", layers=3)
    tok = AutoTokenizer.from_pretrained(path)
    store = Store.from_uri(str(tmp_path_factory.mktemp("s")))
    recs, _ = load_records([TrainSource(uri=str(RECORDS))], store)
    table, _ = Formatter(tok, tok.chat_template, FormatConfig()).encode(recs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    return model, Samples.from_table(table), tok.pad_token_id


def _losses(model, mb, samples, weights, pad, flatten=False):
    import torch

    from star1.train.collate import collate, sample_losses, token_losses

    b = collate(mb, samples, weights, pad, flatten)
    assert b.input_ids.shape[0] == (1 if flatten else len(mb))
    with torch.no_grad():
        return sample_losses(token_losses(model, b), b)


def test_packed_and_unpacked_give_the_same_per_sample_loss(smol):
    from star1.train.collate import step_weights

    model, samples, pad = smol
    batch = [0, 1, 2, 3]
    w = step_weights(batch, samples, "sample")
    alone = {}
    for i in batch:
        alone.update(_losses(model, [[i]], samples, w, pad))
    padded = _losses(model, [[i] for i in batch], samples, w, pad)  # one row each, right-padded
    packed = _losses(model, [batch], samples, w, pad)  # all four in one row
    packed_pairs = _losses(model, [[3, 0], [1, 2]], samples, w, pad)
    flat = _losses(model, [[3, 0], [1, 2]], samples, w, pad, flatten=True)  # the FlashAttention-2 layout
    for i in batch:
        assert alone[i] == pytest.approx(padded[i], abs=1e-4)
        assert alone[i] == pytest.approx(packed[i], abs=1e-4)
        assert alone[i] == pytest.approx(packed_pairs[i], abs=1e-4)
        assert alone[i] == pytest.approx(flat[i], abs=1e-4)
    assert len({round(v, 3) for v in alone.values()}) == 4  # the samples differ, so leakage would show
    # the causal mask really is block-diagonal: without position ids restarting, losses change
    import torch

    from star1.train.collate import collate, sample_losses, token_losses

    b = collate([batch], samples, w, pad)
    b.position_ids = torch.arange(b.input_ids.shape[1])[None]
    with torch.no_grad():
        leaky = sample_losses(token_losses(model, b), b)
    assert abs(leaky[batch[-1]] - alone[batch[-1]]) > 10 * 1e-4  # ten times the tolerance above


def test_packed_and_unpacked_give_the_same_gradient(smol):
    import torch

    from star1.train.collate import collate, step_weights, token_losses

    model, samples, pad = smol
    batch = [0, 1, 2, 3]
    for average in ("sample", "token"):
        w = step_weights(batch, samples, average)
        grads = []
        for micro in ([[[0], [1]], [[2], [3]]], [[[0, 1, 2, 3]]]):  # 2 padded micro-batches vs 1 packed row
            model.zero_grad()
            total = 0.0
            for mb in micro:
                b = collate(mb, samples, w, pad)
                loss = (token_losses(model, b) * b.weights).sum()
                loss.backward()
                total += float(loss.detach())
            grads.append((total, model.model.layers[-1].mlp.down_proj.weight.grad.clone()))
        (l1, g1), (l2, g2) = grads
        assert l1 == pytest.approx(l2, rel=1e-5)
        assert torch.allclose(g1, g2, atol=1e-6, rtol=1e-3), (g1 - g2).abs().max()
    model.zero_grad()
