"""How good is the regression gate? False alarms, power, and the cost of a comparison at the paper's scale.

1. False alarms: baseline and candidate drawn independently from the same per-item success rates (no true
   change); the share of comparisons each test flags at alpha = 0.05, as a ratio to alpha.
2. Power: a nightly candidate = the baseline's verdicts with about `churn` of the items flipping each way at
   random, plus a planted drop (on average); the share flagged as a regression by the gate's rule for one
   benchmark among 12 under Holm (p < alpha / 12, drop ≥ min effect 1 point).
3. Cost: `compare_runs` on two synthetic runs at the paper's sizes (StrongREJECT 313 … MMLU-Pro 12,032;
   AIME 30 x 8 samples), as a ratio to just reading the samples it needs (measured in the same run).

    python bench/report_stats.py [--trials 400]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star1.report import synthetic as syn  # noqa: E402
from star1.report.compare import GateSettings, compare_runs  # noqa: E402
from star1.report.runs import open_run  # noqa: E402
from star1.report.stats import mcnemar_exact, paired_bootstrap  # noqa: E402
from star1.store import Store  # noqa: E402

ALPHA = 0.05
SIZES = {"strongreject": 313, "jbb": 100, "wildchat": 370, "wildjailbreak": 250, "xstest": 250,
         "mmlu_pro": 12032, "aime24": 30, "math500": 500, "gpqa_diamond": 198, "humaneval": 164}  # fmt: skip
SAMPLES = {"aime24": 8, "gpqa_diamond": 4}


def test_for(samples: int):
    return mcnemar_exact if samples == 1 else paired_bootstrap


def false_alarms(trials: int) -> None:
    print("1. false alarms under no change (alpha = 0.05)")
    print(f"   {'items x samples':>16}  {'test':>16}  {'rate':>6}  {'rate/alpha':>10}")
    for n, k in ((100, 1), (300, 1), (30, 8), (198, 4)):
        rng = np.random.default_rng(n * 31 + k)
        hits = 0
        for i in range(trials):
            p = rng.beta(2, 2, n)[:, None]
            b, c = (rng.random((n, k)) < p).mean(1), (rng.random((n, k)) < p).mean(1)
            hits += test_for(k)(b, c, 0.95, 1000, i).p_value < ALPHA
        rate = hits / trials
        name = test_for(k).__name__
        print(f"   {f'{n} x {k}':>16}  {name:>16}  {rate:6.3f}  {rate / ALPHA:10.2f}")


def nightly(base: np.ndarray, drop: float, churn: float, rng: np.random.Generator) -> np.ndarray:
    """Each cell flips at random: 0→1 with the rate that makes `churn` of all cells improve on average,
    1→0 with the rate that adds `drop` points of loss on top."""
    ones = base == 1
    n, n1 = base.size, ones.sum()
    up = rng.random(base.shape) < churn * n / (n - n1)
    down = rng.random(base.shape) < (churn + drop / 100) * n / n1
    return np.where(ones, np.where(down, 0.0, 1.0), np.where(up, 1.0, 0.0))


def power(trials: int) -> None:
    print("2. power: share of nightly candidates flagged (p < alpha/12, drop >= 1 point)")
    print(f"   {'items x samples':>16}  {'churn':>5}  " + "  ".join(f"{d:>5}pt" for d in (2, 5, 10)))
    for n, k, churn in ((300, 1, 0.03), (300, 1, 0.10), (100, 1, 0.03), (500, 1, 0.03), (30, 8, 0.03)):
        rates = []
        for drop in (2, 5, 10):
            hits = 0
            for i in range(trials):
                base = syn.binary(n, 0.7, seed=i, n_samples=k)
                cand = nightly(base, drop, churn, np.random.default_rng(100_000 + i))
                r = test_for(k)(base.mean(1), cand.mean(1), 0.95, 1000, i)
                hits += r.p_value < ALPHA / 12 and r.delta <= -1.0
            rates.append(hits / trials)
        print(f"   {f'{n} x {k}':>16}  {churn:5.2f}  " + "  ".join(f"{r:7.2f}" for r in rates))


def cost() -> None:
    print("3. cost of one comparison at the paper's sizes")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_uri(tmp)
        base, cand = {}, {}
        for i, (name, n) in enumerate(SIZES.items()):
            kind = "safety" if i < 4 else "overrefusal" if name == "xstest" else "reasoning"
            scores = syn.binary(n, 0.7, seed=i, n_samples=SAMPLES.get(name, 1))
            base[name] = syn.Planted(kind, scores)
            cand[name] = syn.Planted(kind, syn.with_drop(scores, 1.0, seed=50 + i, churn=0.03))
        b = open_run(syn.write_run(store, "base", "synthetic/m", base))
        c = open_run(syn.write_run(store, "cand", "synthetic/m", cand))
        t0 = time.perf_counter()
        for run in (b, c):
            for name in SIZES:
                run.samples(name, ["item_id", "sample_idx", "score"])
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = compare_runs(b, c, GateSettings())
        cmp_s = time.perf_counter() - t0
        rows = sum(n * SAMPLES.get(name, 1) for name, n in SIZES.items())
        print(f"   {rows} samples per run, {len(result.benchmarks)} tests (10000 resamples each)")
        print(f"   read samples {read_s:.2f} s; compare {cmp_s:.2f} s = {cmp_s / read_s:.1f}x the read")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=400)
    args = ap.parse_args()
    false_alarms(args.trials)
    power(max(100, args.trials // 2))
    cost()


if __name__ == "__main__":
    main()
