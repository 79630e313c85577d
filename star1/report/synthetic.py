"""Synthetic eval runs with planted per-sample verdicts, written in the results layout through the Store.

For tests, the demo report and docs — never for measurement: every synthetic run says so
(`RunSummary.extra["synthetic"] = True`, engine `synthetic`), and the report labels it. The summary of each
benchmark is computed from its planted samples the way an eval computes it (mean of per-item estimates), so
summaries and samples agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from star1.evals.results import (
    SAMPLE,
    BenchmarkSummary,
    Kind,
    RunSummary,
    is_unsafe,
    samples_path,
    summary_path,
)
from star1.report.stats import item_estimate, pass_k
from star1.store import Store

VERDICTS = {
    "safety": ("safe", "unsafe"),
    "overrefusal": ("compliance", "refusal"),
    "reasoning": ("correct", "wrong"),
}


@dataclass
class Planted:
    """One benchmark of a synthetic run. `scores`: items × samples in [0, 1] (higher is better), NaN =
    unscored. With `higher_is_better=False` the summary value is 100 − mean (e.g. a refusal rate).
    `labels` (over-refusal): each item's `safe` / `unsafe`; the value is over the safe items, as an eval's."""

    kind: Kind
    scores: np.ndarray
    metric: str = "safe_rate"
    higher_is_better: bool = True
    categories: list[str] | None = None
    version: dict[str, str] = field(default_factory=dict)
    stderr: bool = True  # write the stderr (else leave it None, as a writer may)
    labels: list[str] | None = None

    def label(self, i: int) -> str | None:
        return self.labels[i] if self.labels else ("safe" if self.kind == "overrefusal" else None)


def binary(n_items: int, rate: float, seed: int, n_samples: int = 1) -> np.ndarray:
    """Exactly round(rate · cells) ones, placed at random."""
    rng = np.random.default_rng(seed)
    cells = n_items * n_samples
    flat = np.zeros(cells)
    flat[rng.choice(cells, size=round(rate * cells), replace=False)] = 1.0
    return flat.reshape(n_items, n_samples)


def with_drop(scores: np.ndarray, points: float, seed: int, churn: float = 0.0) -> np.ndarray:
    """The same items with a planted change of `points` (negative = improvement) in the share of ones:
    about `churn` × cells flip 0→1 as noise (fewer when there are not that many zeros), and that many plus
    the drop flip 1→0."""
    rng = np.random.default_rng(seed)
    out = scores.copy().ravel()
    ones, zeros = np.flatnonzero(out == 1.0), np.flatnonzero(out == 0.0)
    net = round(points / 100 * out.size)
    noise = min(round(churn * out.size), len(zeros) - max(0, -net), len(ones) - max(0, net))
    up = max(0, noise) + max(0, -net)
    down = up + net
    if down > len(ones) or up > len(zeros) or down < 0:
        raise ValueError(f"cannot plant {points:+} points with churn {churn} on {out.size} cells")
    out[rng.choice(ones, size=down, replace=False)] = 0.0
    out[rng.choice(zeros, size=up, replace=False)] = 1.0
    return out.reshape(scores.shape)


def categories(n_items: int, names: list[str]) -> list[str]:
    return [names[i % len(names)] for i in range(n_items)]


def summarize(name: str, p: Planted) -> BenchmarkSummary:
    """The benchmark summary an eval would write for these samples."""
    k = pass_k(p.metric)
    per_item, cats, unsafe = [], [], []
    binomial = True
    for i, row in enumerate(p.scores):
        scored = [float(s) for s in row if not np.isnan(s)]
        if scored and is_unsafe(p.label(i)):
            unsafe.append(item_estimate(scored, k))
        elif scored:
            per_item.append(item_estimate(scored, k))
            cats.append(p.categories[i] if p.categories else None)
            binomial = binomial and len(scored) == 1 and scored[0] in (0.0, 1.0)
    est = np.asarray(per_item)
    mean = 100.0 * est.mean() if len(est) else 0.0
    value = mean if p.higher_is_better else 100.0 - mean
    stderr = 100.0 * est.std(ddof=1) / np.sqrt(len(est)) if p.stderr and len(est) > 1 else None
    good, bad = VERDICTS[p.kind]
    flat = p.scores[~np.isnan(p.scores)]
    by_category: dict[str, float] = {}
    if p.categories:
        for c in sorted(set(cats) - {None}):
            sel = est[[x == c for x in cats]]
            m = 100.0 * sel.mean()
            by_category[c] = m if p.higher_is_better else 100.0 - m
    return BenchmarkSummary(
        benchmark=name,
        kind=p.kind,
        metric=p.metric,
        value=value,
        higher_is_better=p.higher_is_better,
        stderr=stderr,
        n_items=p.scores.shape[0],
        n_rate_items=len(est),
        binomial=binomial and len(est) > 0,
        n_samples=p.scores.size,
        unscored=int(np.isnan(p.scores).sum()),
        outcomes={good: int((flat >= 0.5).sum()), bad: int((flat < 0.5).sum())},
        by_category=by_category,
        extra={"compliance_rate_unsafe": 100.0 - 100.0 * float(np.mean(unsafe))} if unsafe else {},
        version=dict(p.version),
    )


def samples_table(name: str, p: Planted) -> pa.Table:
    good, bad = VERDICTS[p.kind]
    rows = []
    for i, row in enumerate(p.scores):
        for j, s in enumerate(row):
            unscored = bool(np.isnan(s))
            rows.append(
                {
                    "benchmark": name,
                    "item_id": f"{name}-{i:05d}",
                    "sample_idx": j,
                    "category": p.categories[i] if p.categories else None,
                    "prompt": f"synthetic prompt {i} of {name}",
                    "output": f"synthetic output {i}.{j}",
                    "finish_reason": "stop",
                    "answer": None,
                    "verdict": None if unscored else (good if s >= 0.5 else bad),
                    "score": None if unscored else float(s),
                    "judge_output": None,
                    "p_unsafe": None,
                    "error": "judge_unparseable" if unscored else None,
                    "label": p.label(i),
                }
            )
    return pa.Table.from_pylist(rows, schema=SAMPLE)


def write_run(
    store: Store,
    run_name: str,
    model: str,
    benchmarks: dict[str, Planted],
    created_at: float | None = None,
    git_sha: str | None = None,
    folder: str = "eval",
) -> Store:
    """Write a complete synthetic run at `<store>/<folder>/<run_name>/`; returns the run's folder."""
    run_store = store.child(folder, run_name)
    summaries = {}
    for name, planted in benchmarks.items():
        run_store.write_table(samples_path(name), samples_table(name, planted))
        summaries[name] = summarize(name, planted)
        run_store.write_json(summary_path(name), summaries[name].model_dump(mode="json"))
    summary = RunSummary(
        run_name=run_name,
        model=model,
        model_hash=f"synthetic-{run_name}",
        engine="synthetic",
        created_at=time.time() if created_at is None else created_at,
        git_sha=git_sha,
        benchmarks=summaries,
        extra={"synthetic": True},
    )
    run_store.write_json(summary_path(), summary.model_dump(mode="json"))
    manifest = {
        "stage": "eval",
        "status": "complete",
        "params": {"model": model, "benchmarks": sorted(benchmarks), "engine": "synthetic"},
        "counts": {name: {"samples": s.n_samples, "unscored": s.unscored} for name, s in summaries.items()},
        "notes": ["synthetic run with planted verdicts (star1.report.synthetic)"],
        "created_at": summary.created_at,
    }
    run_store.write_json("manifest.json", manifest)  # last, as an eval writes it
    return run_store
