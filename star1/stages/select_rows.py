"""Selection (paper §2.4): keep top-scoring rows, then prune greedily to N for source/category diversity.

Pruning repeatedly removes the row with the largest `source_share(row) × Σ_{c ∈ row} category_share(c)`,
where shares are recomputed over the remaining rows (category shares over the total label mass). All rows
with the same (source, category list) have the same score, so the loop works on those groups with integer
counts: each step compares `count(source) × Σ count(c)` (the common denominators cancel, so ties are exact)
and removes the smallest id of the winning group (ties between groups: smallest id). O(steps × groups).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from star1.policies import OTHER

SCORE_KEYS = (
    "Content_Safety_Compliance",
    "Relevancy_and_No_Redundant_Content",
    "Accuracy_of_Thinking_Process",
)


def diversity_prune(rows: list[dict[str, Any]], n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept rows sorted by id, removed rows in removal order). Deterministic for a given set of rows."""
    rows = sorted(rows, key=lambda r: r["id"])
    if len(rows) <= n:
        return rows, []
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r["source"], tuple(r["category"]))].append(i)
    keys = list(groups)
    sources = sorted({k[0] for k in keys})
    cats = sorted({c for k in keys for c in k[1]})
    g_src = np.array([sources.index(k[0]) for k in keys])
    g_cat = np.zeros((len(keys), len(cats)), dtype=np.int64)
    for gi, k in enumerate(keys):
        for c in k[1]:
            g_cat[gi, cats.index(c)] += 1
    members = [list(groups[k]) for k in keys]  # ascending row index == ascending id
    head = np.zeros(len(keys), dtype=np.int64)  # next member to remove per group
    g_size = np.array([len(m) for m in members], dtype=np.int64)
    src_count = np.bincount(g_src, weights=g_size, minlength=len(sources)).astype(np.int64)
    cat_count = (g_cat * g_size[:, None]).sum(axis=0)
    removed: list[int] = []
    big = np.iinfo(np.int64).max
    while len(rows) - len(removed) > n:
        alive = head < g_size
        score = np.where(alive, src_count[g_src] * (g_cat @ cat_count), -1)
        best = score.max()
        tied = np.flatnonzero(score == best)
        next_idx = np.array([members[g][head[g]] if head[g] < g_size[g] else big for g in tied])
        g = int(tied[np.argmin(next_idx)])
        removed.append(members[g][head[g]])
        head[g] += 1
        src_count[g_src[g]] -= 1
        cat_count -= g_cat[g]
    gone = set(removed)
    return [r for i, r in enumerate(rows) if i not in gone], [rows[i] for i in removed]


def split_by_score(
    rows: list[dict[str, Any]], threshold: int, keys: tuple[str, ...] = SCORE_KEYS
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str, str]]]:
    """Rows with every score ≥ threshold and no 'Other' label; the rest with a reason and detail."""
    keep, drop = [], []
    for r in rows:
        low = {k: r["score"][k] for k in keys if r["score"][k] < threshold}
        if low:
            drop.append((r, "below_threshold", f"scores below {threshold}: {low}"))
        elif OTHER in r["category"]:
            drop.append((r, "other_category", "labelled 'Other'"))
        else:
            keep.append(r)
    return keep, drop


def composition(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    src = Counter(r["source"] for r in rows)
    cat = Counter(c for r in rows for c in r["category"])
    return {"source": dict(src.most_common()), "category": dict(cat.most_common())}
