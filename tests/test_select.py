"""Selection: threshold filter and greedy diversity pruning, against a direct O(N²) reference."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from star1.stages.select_rows import composition, diversity_prune, split_by_score
from tests.conftest import SHARED

CATS = ["A", "B", "C", "D"]


def reference(rows, n):
    """The paper's loop, literally: recompute every share each step, drop the max (first by id on ties)."""
    d = sorted(rows, key=lambda r: r["id"])
    removed = []
    while len(d) > n:
        src = Counter(r["source"] for r in d)
        cat = Counter(c for r in d for c in r["category"])
        mass = sum(cat.values())
        p = [src[r["source"]] / len(d) * sum(cat[c] / mass for c in r["category"]) for r in d]
        best = max(p)
        i = next(i for i, v in enumerate(p) if abs(v - best) <= 1e-12 * best)
        removed.append(d.pop(i)["id"])
    return [r["id"] for r in d], removed


def synthetic(n, seed):
    rng = random.Random(seed)
    return [
        {
            "id": f"{rng.getrandbits(40):010x}",
            "source": rng.choice("ssssttuv"),
            "category": rng.sample(CATS, rng.choice([1, 1, 1, 2, 3])),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_papers_loop(seed):
    rows = synthetic(300, seed)
    kept, removed = diversity_prune(rows, 120)
    ref_kept, ref_removed = reference(rows, 120)
    assert [r["id"] for r in removed] == ref_removed
    assert sorted(r["id"] for r in kept) == sorted(ref_kept)


def test_input_order_does_not_matter_and_balance_improves():
    rows = synthetic(400, 5)
    a, _ = diversity_prune(rows, 100)
    b, _ = diversity_prune(list(reversed(rows)), 100)
    assert [r["id"] for r in a] == [r["id"] for r in b]
    before, after = Counter(r["source"] for r in rows), Counter(r["source"] for r in a)
    assert max(after.values()) / min(after.values()) < max(before.values()) / min(before.values())


def test_threshold_filter_reasons():
    s10 = {
        "Content_Safety_Compliance": 10,
        "Relevancy_and_No_Redundant_Content": 10,
        "Accuracy_of_Thinking_Process": 10,
    }
    rows = [
        {"id": "1", "category": ["A"], "score": s10},
        {"id": "2", "category": ["A"], "score": {**s10, "Accuracy_of_Thinking_Process": 9}},
        {"id": "3", "category": ["Other"], "score": s10},
    ]
    keep, drop = split_by_score(rows, 10)
    assert [r["id"] for r in keep] == ["1"]
    assert [(r["id"], why) for r, why, _ in drop] == [("2", "below_threshold"), ("3", "other_category")]


STAR1 = SHARED / "data" / "star1" / "STAR-1.json"


@pytest.mark.shared
@pytest.mark.skipif(not STAR1.exists(), reason="no ../shared/data/star1/STAR-1.json")
def test_released_star1_selection():
    rows = json.loads(STAR1.read_text())
    keep, drop = split_by_score(rows, 10)
    assert len(keep) == 1000 and not drop
    kept, removed = diversity_prune(keep, 1000)
    assert len(kept) == 1000 and not removed
    half, removed = diversity_prune(keep, 500)
    again, _ = diversity_prune(list(reversed(keep)), 500)
    assert [r["id"] for r in half] == [r["id"] for r in again] and len(removed) == 500
    full, sub = composition(keep), composition(half)
    # the largest sources and categories give up the most rows
    assert sub["source"]["SaladBench"] < full["source"]["SaladBench"] / 2
    top_cat = max(full["category"], key=full["category"].get)
    assert sub["category"][top_cat] / full["category"][top_cat] < 0.5
    assert set(sub["source"]) == set(full["source"])  # small sources are never pruned away
    assert max(sub["source"].values()) / 500 < max(full["source"].values()) / 1000  # less skewed
