"""The collection dedup/decontamination rules (paper §2.1), as one pure function over loaded sources.

Order of operations (sources in registry order, rows in file order):
  per source: exact_duplicate → ngram_self_dup (source's n) → ngram_overlap (8-grams vs. eval sets and
  earlier sources' survivors) → tfidf_overlap (cosine ≥ t vs. the same pool); survivors join the pool.
  then, over all survivors: tfidf_self_dup (greedy, keep first) → embedding_self_dup (greedy) →
  embedding_eval_overlap (vs. eval sets).
Source order therefore decides which copy of a cross-source duplicate survives (the earlier source's),
exactly as in the paper; the order is part of the stage's params, so reordering is never silent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from star1.config import CollectConfig, SourceSpec
from star1.dedup.ngrams import NgramIndex, self_dedup
from star1.dedup.similarity import (
    SparseIndex,
    best_match,
    dense_pairs,
    greedy_keep_first,
    ivf_pairs,
    sparse_pairs,
    term_rarity_rank,
    tfidf_matrix,
)
from star1.sources.load import LoadedSource

RULES = ("exact_duplicate", "ngram_self_dup", "ngram_overlap", "tfidf_overlap", "tfidf_self_dup",
         "embedding_self_dup", "embedding_eval_overlap")  # fmt: skip

EmbedFn = Callable[[list[str]], np.ndarray]
LogFn = Callable[[str], None]


@dataclass
class DedupResult:
    kept: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    rule_counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    embedding_search: str = ""  # the method the embedding self-dedup used (exact / ivf)


class _Pool:
    """Rows of all sources plus eval rows; a ref < 0 names eval row -ref-1, a ref ≥ 0 a pool row."""

    def __init__(self, sources: list[LoadedSource], evals: list[LoadedSource]) -> None:
        self.rows = [r for s in sources for r in s.rows]
        self.eval_rows = [r for e in evals for r in e.rows]
        self.rejects: list[dict[str, Any]] = []
        self.alive = np.ones(len(self.rows), dtype=bool)

    def ref_row(self, ref: int) -> dict[str, Any]:
        return self.eval_rows[-ref - 1] if ref < 0 else self.rows[ref]

    def drop(self, i: int, rule: str, ref: int, detail: str, sim: float | None = None) -> None:
        row, other = self.rows[i], self.ref_row(ref)
        self.alive[i] = False
        self.rejects.append(
            {
                **row,
                "rule": rule,
                "detail": detail,
                "collided_with_id": other["id"],
                "collided_with_source": other["source"],
                "similarity": sim,
            }
        )


def dedup_pool(
    sources: list[LoadedSource],
    specs: list[SourceSpec],
    evals: list[LoadedSource],
    cfg: CollectConfig,
    embed: EmbedFn,
    log: LogFn = lambda _m: None,
) -> DedupResult:
    import time

    timings: dict[str, float] = {}
    pool = _Pool(sources, evals)
    n_eval = len(pool.eval_rows)
    t0 = time.perf_counter()
    X_all = tfidf_matrix([r["prompt"] for r in pool.eval_rows] + [r["prompt"] for r in pool.rows])
    rank = term_rarity_rank(X_all)
    X_eval, X_rows = X_all[:n_eval], X_all[n_eval:]
    timings["tfidf_fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    grams = NgramIndex(cfg.decontam_ngram)
    grams.add([r["prompt"] for r in pool.eval_rows], [-(k + 1) for k in range(n_eval)])
    tfidf_pieces: list[tuple[SparseIndex, np.ndarray]] = []
    if n_eval:
        tfidf_pieces.append((SparseIndex(X_eval, rank, cfg.tfidf_threshold), -(np.arange(n_eval) + 1)))
    start = 0
    for src, spec in zip(sources, specs, strict=True):
        idx = np.arange(start, start + len(src.rows))
        start += len(src.rows)
        survivors = _per_source(pool, idx, spec, cfg, grams, tfidf_pieces, X_rows, rank)
        log(f"{spec.name}: {len(idx)} valid → {len(survivors)} after per-source rules")
        grams.add([pool.rows[i]["prompt"] for i in survivors], survivors.tolist())
        if len(survivors):
            tfidf_pieces.append((SparseIndex(X_rows[survivors], rank, cfg.tfidf_threshold), survivors))
    timings["per_source"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    alive = np.flatnonzero(pool.alive)
    index = SparseIndex(X_rows[alive], rank, cfg.tfidf_threshold)
    pairs = sparse_pairs(index, index, cfg.tfidf_threshold, cfg.block_rows, upper_only=True)
    for q, (i, sim) in greedy_keep_first(len(alive), pairs).items():
        pool.drop(
            int(alive[q]),
            "tfidf_self_dup",
            int(alive[i]),
            f"TF-IDF cosine {sim:.3f} ≥ {cfg.tfidf_threshold} to an earlier kept prompt",
            sim,
        )
    timings["tfidf_self"] = time.perf_counter() - t0
    log(f"global TF-IDF self-dedup: {len(alive)} → {int(pool.alive.sum())}")

    t0 = time.perf_counter()
    alive = np.flatnonzero(pool.alive)
    emb = embed([pool.rows[i]["prompt"] for i in alive])
    eval_emb = embed([r["prompt"] for r in pool.eval_rows]) if n_eval else None
    timings["embed"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    search = cfg.embedding_search
    method = search.method
    if method == "auto":
        method = "exact" if len(alive) <= search.exact_max_rows else "ivf"
    if method == "ivf":
        pairs = ivf_pairs(emb, emb, cfg.embed_threshold, search.nlist, search.nprobe, upper_only=True)
    else:
        pairs = dense_pairs(emb, emb, cfg.embed_threshold, cfg.block_rows, upper_only=True)
    dropped = greedy_keep_first(len(alive), pairs)
    for q, (i, sim) in dropped.items():
        pool.drop(
            int(alive[q]),
            "embedding_self_dup",
            int(alive[i]),
            f"embedding cosine {sim:.3f} ≥ {cfg.embed_threshold} to an earlier kept prompt",
            sim,
        )
    log(f"embedding self-dedup ({method} search): {len(alive)} → {len(alive) - len(dropped)}")
    if eval_emb is not None:
        keep_local = np.array([q for q in range(len(alive)) if q not in dropped], dtype=np.int64)
        pairs = dense_pairs(emb[keep_local], eval_emb, cfg.embed_decontam_threshold, cfg.block_rows)
        for q, (k, sim) in best_match(pairs).items():
            pool.drop(
                int(alive[keep_local[q]]),
                "embedding_eval_overlap",
                -(k + 1),
                f"embedding cosine {sim:.3f} ≥ {cfg.embed_decontam_threshold} to an eval prompt",
                sim,
            )
    timings["embed_search"] = time.perf_counter() - t0

    counts = {r: 0 for r in RULES}
    for r in pool.rejects:
        counts[r["rule"]] += 1
    kept = [pool.rows[i] for i in np.flatnonzero(pool.alive)]
    return DedupResult(kept, pool.rejects, counts, {k: round(v, 3) for k, v in timings.items()}, method)


def _per_source(
    pool: _Pool,
    idx: np.ndarray,
    spec: SourceSpec,
    cfg: CollectConfig,
    grams: NgramIndex,
    pieces: list[tuple[SparseIndex, np.ndarray]],
    X_rows: Any,
    rank: np.ndarray,
) -> np.ndarray:
    first: dict[str, int] = {}
    for i in idx:
        rid = pool.rows[i]["id"]
        if rid in first:
            pool.drop(
                int(i), "exact_duplicate", first[rid], "same normalised prompt earlier in this source", 1.0
            )
        else:
            first[rid] = int(i)
    alive = idx[pool.alive[idx]]

    for q, j in self_dedup([pool.rows[i]["prompt"] for i in alive], spec.ngram).items():
        pool.drop(
            int(alive[q]),
            "ngram_self_dup",
            int(alive[j]),
            f"shares a word {spec.ngram}-gram with an earlier kept prompt of this source",
        )
    alive = idx[pool.alive[idx]]

    for i in alive:
        who = grams.match(pool.rows[i]["prompt"])
        if who is not None:
            pool.drop(
                int(i),
                "ngram_overlap",
                who,
                f"shares a word {cfg.decontam_ngram}-gram with an eval prompt or an earlier source",
            )
    alive = idx[pool.alive[idx]]
    if not len(alive) or not pieces:
        return alive

    query = SparseIndex(X_rows[alive], rank, cfg.tfidf_threshold)
    best: dict[int, tuple[int, float]] = {}
    for piece, refs in pieces:
        for q, (k, sim) in best_match(
            sparse_pairs(query, piece, cfg.tfidf_threshold, cfg.block_rows)
        ).items():
            if q not in best or sim > best[q][1]:
                best[q] = (int(refs[k]), sim)
    for q, (ref, sim) in sorted(best.items()):
        pool.drop(
            int(alive[q]),
            "tfidf_overlap",
            ref,
            f"TF-IDF cosine {sim:.3f} ≥ {cfg.tfidf_threshold} to an eval prompt or an earlier source",
            sim,
        )
    return idx[pool.alive[idx]]
