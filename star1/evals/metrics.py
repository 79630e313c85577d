"""From per-sample rows to a benchmark summary: per-item means (pass@1 over n samples), their mean in
percent and its standard error, outcome counts, per-category values, secondary metrics.

Unscored samples (score null) are left out of every mean and counted in `unscored`; an item with no scored
sample does not count as an item of the mean. The summary says how many items the headline value is a mean
over (`n_rate_items`; over-refusal: the safe prompts) and whether each is one 0/1 verdict (`binomial`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from star1.evals.registry import BenchmarkSpec
from star1.evals.results import BenchmarkSummary, is_unsafe
from star1.evals.scorers.common import TRUNCATED_THOUGHT


def mean_stderr(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n)); stderr None below 2 values."""
    if not values:
        return float("nan"), None
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def item_values(
    rows: Iterable[dict[str, Any]], value: Callable[[dict[str, Any]], float | None]
) -> dict[str, list[float]]:
    """Each item's non-null values; items without one are left out."""
    per: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        v = value(r)
        if v is not None:
            per[r["item_id"]].append(v)
    return dict(per)


def item_means(
    rows: Iterable[dict[str, Any]], value: Callable[[dict[str, Any]], float | None]
) -> dict[str, float]:
    return {k: sum(v) / len(v) for k, v in item_values(rows, value).items()}


def no_value_reason(spec: BenchmarkSpec, rows: list[dict[str, Any]], metric: str) -> str:
    """Why a benchmark's headline value could not be computed (it is NaN)."""
    if spec.kind == "overrefusal" and all(is_unsafe(r.get("_label")) for r in rows):
        return f"{spec.name}: no safe prompts to compute {metric} over"
    return f"{spec.name}: no scored sample to compute {metric} over"


def _pct(x: float) -> float:
    return round(100.0 * x, 4) if not math.isnan(x) else float("nan")


def summarize(
    spec: BenchmarkSpec, rows: list[dict[str, Any]], n_samples: int, version: dict[str, str]
) -> BenchmarkSummary:
    outcomes = Counter(r["verdict"] for r in rows)
    unscored = sum(r["score"] is None for r in rows)
    items = {r["item_id"] for r in rows}
    extra: dict[str, float] = {}
    truncated = sum(r["finish_reason"] == "length" for r in rows)
    empty = sum(
        not (r["output"] or "").strip() for r in rows if r["error"] is None or r["output"] is not None
    )
    extra["truncated_rate"] = _pct(truncated / len(rows)) if rows else 0.0
    cut_thoughts = sum(r["verdict"] == TRUNCATED_THOUGHT for r in rows)
    extra["truncated_thought_rate"] = _pct(cut_thoughts / len(rows)) if rows else 0.0
    extra["empty_output_rate"] = _pct(empty / len(rows)) if rows else 0.0

    if spec.kind == "overrefusal":
        metric, higher = "refusal_rate", False
        safe = [r for r in rows if not is_unsafe(r.get("_label"))]
        unsafe = [r for r in rows if is_unsafe(r.get("_label"))]

        def refused(r: dict[str, Any]) -> float | None:
            return None if r["score"] is None else 1.0 - r["score"]

        per = item_values(safe, refused)
        for cls in ("full_compliance", "full_refusal", "partial_refusal"):
            extra[f"{cls}_rate_safe"] = _share(safe, cls)
            if unsafe:
                extra[f"{cls}_rate_unsafe"] = _share(unsafe, cls)
        if unsafe:
            extra["compliance_rate_unsafe"] = extra["full_compliance_rate_unsafe"]
        by_cat = _by_category(safe, refused) | _by_category(unsafe, lambda r: r["score"], prefix="unsafe:")
    else:
        metric = "safe_rate" if spec.kind == "safety" else ("pass@1" if n_samples > 1 else "accuracy")
        higher = True
        per = item_values(rows, lambda r: r["score"])
        by_cat = _by_category(rows, lambda r: r["score"])
        if spec.kind == "safety":
            p = [r["p_unsafe"] for r in rows if r.get("p_unsafe") is not None]
            if p:
                extra["mean_p_unsafe"] = _pct(sum(p) / len(p))
    mean, se = mean_stderr([sum(v) / len(v) for v in per.values()])
    return BenchmarkSummary(
        benchmark=spec.name,
        kind=spec.kind,
        metric=metric,
        value=_pct(mean),
        higher_is_better=higher,
        stderr=_pct(se) if se is not None else None,
        n_items=len(items),
        n_rate_items=len(per),
        binomial=bool(per) and all(len(v) == 1 and v[0] in (0.0, 1.0) for v in per.values()),
        n_samples=len(rows),
        unscored=unscored,
        outcomes=dict(sorted(outcomes.items())),
        by_category=by_cat,
        extra=extra,
        version=version,
    )


def _share(rows: list[dict[str, Any]], verdict: str) -> float:
    scored = [r for r in rows if r["score"] is not None]
    return _pct(sum(r["verdict"] == verdict for r in scored) / len(scored)) if scored else float("nan")


def _by_category(
    rows: list[dict[str, Any]], value: Callable[[dict[str, Any]], float | None], prefix: str = ""
) -> dict[str, float]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["category"]:
            groups[r["category"]].append(r)
    out = {}
    for cat, rs in sorted(groups.items()):
        m, _ = mean_stderr(list(item_means(rs, value).values()))
        if not math.isnan(m):
            out[prefix + cat] = _pct(m)
    return out
