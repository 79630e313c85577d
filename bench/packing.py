"""Real-token fraction of padded vs packed batching, on the released STAR-1 lengths.

Tokenizes `../shared/data/star1/STAR-1.json` through star1's own formatting (SmolLM2's tokenizer and chat
template; the paper's Qwen tokenizer is not available offline) — or, when that file is absent, draws lengths
from a log-normal fitted to it — and plans whole epochs with the paper's geometry (8 workers, effective batch
128, max length 8192). For each layout it prints the real-token fraction (real tokens ÷ tensor slots, as
`collate` builds the tensors: rows padded to the longest row of their micro-batch, placeholder micro-batches
included) and the forward passes per worker per optimizer step. The baseline is padded batching measured in
the same run; the target is a packed fraction ≥ 0.95.

    python bench/packing.py [--star1 PATH] [--workers 8] [--batch 128] [--max-length 8192] [--synthetic]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STAR1 = ROOT.parent / "shared" / "data" / "star1" / "STAR-1.json"

from star1.train.batching import geometry, global_batch, slot_fraction, step_plan  # noqa: E402


def star1_lengths(path: Path) -> list[int]:
    from transformers import AutoTokenizer

    from star1.config import FormatConfig, TrainSource
    from star1.llm.local_server import convert_gguf
    from star1.store import Store
    from star1.train.data import load_records
    from star1.train.encode import Formatter

    tok = AutoTokenizer.from_pretrained(convert_gguf())
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        records, _ = load_records([TrainSource(uri=str(path))], Store.from_uri(tmp))
    table, _ = Formatter(tok, tok.chat_template, FormatConfig()).encode(records)
    return [len(x) for x in table.column("input_ids").to_pylist()]


def synthetic_lengths(n: int = 1000, seed: int = 0) -> list[int]:
    """Log-normal with STAR-1's median (≈390 SmolLM2 tokens) and spread (p95 ≈ 730)."""
    rng = np.random.default_rng(seed)
    return [int(x) for x in np.clip(rng.lognormal(np.log(390), 0.38, n), 120, 4000)]


def run(lengths: list[int], workers: int, batch: int, max_length: int, epochs: int, per_device: int,
        packing: bool) -> tuple[float, float, float]:  # fmt: skip
    """(real-token fraction, forward passes per worker per step, fill of max_length-sized rows)."""
    g = geometry(len(lengths), batch, workers, per_device, epochs, 0.05)
    real = slots = passes = rows = 0
    for step in range(g.total_steps):
        plan = step_plan(global_batch(step, g, 2002), lengths, workers, per_device, packing, max_length)
        r, s = slot_fraction(plan, lengths)
        real, slots, passes = real + r, slots + s, passes + len(plan[0])
        rows += sum(len(mb) for worker in plan for mb in worker)
    return real / slots, passes / g.total_steps, real / (rows * max_length)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--star1", type=Path, default=STAR1, help="released STAR-1 JSON (default ../shared/…)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic lengths even if STAR-1.json exists")
    a = ap.parse_args()
    if a.star1.is_file() and not a.synthetic:
        lengths, origin = star1_lengths(a.star1), f"released STAR-1 ({a.star1.name}, SmolLM2 tokens)"
    else:
        lengths, origin = synthetic_lengths(), "synthetic log-normal (STAR-1.json absent)"
    ls = np.array(lengths)
    print(f"lengths: {origin}: n={len(ls)} mean={ls.mean():.0f} p50={np.median(ls):.0f} "
          f"p95={np.percentile(ls, 95):.0f} max={ls.max()}")  # fmt: skip
    print(f"geometry: {a.workers} workers, effective batch {a.batch}, max length {a.max_length}, "
          f"{a.epochs} epochs\n")  # fmt: skip
    print(f"{'layout':<34} {'real-token fraction':>20} {'passes/worker/step':>20}")
    per_worker = a.batch // a.workers
    base = None
    for b in (1, 2, 4, 8, per_worker):
        if per_worker % b:
            continue
        frac, passes, _ = run(lengths, a.workers, a.batch, a.max_length, a.epochs, b, packing=False)
        base = frac if b == per_worker else base
        print(f"{f'padded, {b} sample(s) per micro-batch':<34} {frac:>20.3f} {passes:>20.1f}")
    packed, fill = 0.0, 0.0
    for b in (1, 2):
        frac, passes, f = run(lengths, a.workers, a.batch, a.max_length, a.epochs, b, packing=True)
        packed, fill = (frac, f) if b == 1 else (packed, fill)
        print(f"{f'packed, {b} row(s) per micro-batch':<34} {frac:>20.3f} {passes:>20.1f}")
    ratio = packed / base if base else float("nan")
    ok = packed >= 0.95
    print(f"\npacked rows hold {fill:.3f} of max_length on average (rows are not padded to max_length)")
    print(f"packed vs padded at one pass per step ({per_worker} samples): {ratio:.2f}x real tokens per slot")
    print(f"target packed >= 0.95: {'met' if ok else 'NOT met'} ({packed:.3f})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
