"""The statistics behind `star1 compare`: per-item estimates, paired tests, multiplicity adjustment.

- Binary verdicts, one sample per item: exact McNemar test on the discordant pairs (statsmodels).
- Anything else (several samples per item, pass@k, graded scores, averages over benchmarks): paired bootstrap
  over items (scipy), resampling the per-item differences, so the pairing is kept; stratified by benchmark
  for averages. Two-sided p-value from the bootstrap distribution shifted to the null.
- Several benchmarks at once: Holm's step-down adjustment by default (statsmodels `multipletests`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import comb

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

CORRECTIONS = {"holm": "holm", "bonferroni": "bonferroni", "fdr_bh": "fdr_bh", "none": None}


def pass_k(metric: str) -> int:
    """k of a `pass@k` metric (1 for anything else)."""
    m = re.fullmatch(r"pass@(\d+)", metric.strip().lower())
    return int(m.group(1)) if m else 1


def item_estimate(scores: list[float], k: int = 1) -> float:
    """One item's score from its scored samples: the mean, or for pass@k (k > 1, binary samples, n ≥ k) the
    unbiased estimator 1 − C(n−c, k) / C(n, k) (Chen et al., 2021)."""
    n = len(scores)
    if k > 1 and n >= k and all(s in (0.0, 1.0) for s in scores):
        c = int(sum(scores))
        return 1.0 - comb(n - c, k) / comb(n, k)
    return float(np.mean(scores))


@dataclass(frozen=True)
class TestResult:
    """A paired comparison of candidate against baseline on one benchmark (or an average of several).
    `delta`, `ci_low`, `ci_high` are in points of the per-sample score (higher is better); `p_value` is
    two-sided and unadjusted."""

    test: str  # mcnemar_exact | paired_bootstrap | stratified_bootstrap | none
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int  # paired items
    detail: str = ""


def mcnemar_exact(base: np.ndarray, cand: np.ndarray, confidence: float, resamples: int, seed: int):
    """Exact McNemar on paired 0/1 verdicts; the CI of the difference comes from the paired bootstrap."""
    b = int(np.sum((base == 1) & (cand == 0)))  # good → bad
    c = int(np.sum((base == 0) & (cand == 1)))  # bad → good
    a = int(np.sum((base == 1) & (cand == 1)))
    d = int(np.sum((base == 0) & (cand == 0)))
    p = 1.0 if b + c == 0 else float(mcnemar([[a, b], [c, d]], exact=True).pvalue)
    boot = paired_bootstrap(base, cand, confidence, resamples, seed)
    return TestResult("mcnemar_exact", boot.delta, boot.ci_low, boot.ci_high, p, len(base), f"b={b} c={c}")


def paired_bootstrap(base: np.ndarray, cand: np.ndarray, confidence: float, resamples: int, seed: int):
    """Bootstrap over items of the mean per-item difference (candidate − baseline)."""
    return stratified_bootstrap([base], [cand], confidence, resamples, seed, test="paired_bootstrap")


def stratified_bootstrap(
    bases: list[np.ndarray],
    cands: list[np.ndarray],
    confidence: float,
    resamples: int,
    seed: int,
    test: str = "stratified_bootstrap",
) -> TestResult:
    """Bootstrap of the unweighted mean over strata (benchmarks) of each stratum's mean paired difference,
    resampling items within each stratum independently (scipy's `bootstrap` with one sample per stratum)."""
    diffs = [100.0 * (np.asarray(c, float) - np.asarray(b, float)) for b, c in zip(bases, cands, strict=True)]
    n = sum(len(d) for d in diffs)
    observed = float(np.mean([d.mean() for d in diffs]))
    if any(len(d) < 2 for d in diffs):
        return TestResult(test, observed, float("nan"), float("nan"), 1.0, n, "fewer than 2 items")
    if all(np.all(d == d[0]) for d in diffs):
        # every resample gives the observed delta: the smallest p-value a bootstrap can give (1 if no change)
        p = 1.0 if observed == 0 else 1 / (resamples + 1)
        return TestResult(test, observed, observed, observed, p, n, "constant difference")

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([s.mean(axis=axis) for s in samples], axis=0)

    res = sps.bootstrap(
        tuple(diffs),
        statistic,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=max(1, 5_000_000 // n),  # bounds memory: batch × n floats
        random_state=np.random.default_rng(seed),
    )
    dist = res.bootstrap_distribution
    # shift to the null (delta = 0): how often is a resampled delta as far from the observed as 0 is?
    extreme = int(np.sum(np.abs(dist - observed) >= abs(observed)))
    p = (1 + extreme) / (len(dist) + 1)
    ci = res.confidence_interval
    return TestResult(test, observed, float(ci.low), float(ci.high), min(1.0, p), n)


def adjust(p_values: list[float], method: str) -> list[float]:
    """Adjusted p-values for a family of tests (`holm`, `bonferroni`, `fdr_bh`, `none`)."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction '{method}' (one of {', '.join(CORRECTIONS)})")
    if not p_values or CORRECTIONS[method] is None:
        return list(p_values)
    return [float(p) for p in multipletests(p_values, method=CORRECTIONS[method])[1]]
