"""Exact "all pairs with cosine ≥ t" without an N×N matrix.

Sparse (TF-IDF) vectors use prefix filtering (Bayardo et al., "Scaling Up All Pairs Similarity Search",
WWW 2007): order terms from rarest to most common; from each unit vector drop its most common terms while
their norm stays below t. If cos(x, y) ≥ t then x and y share a term that is in *both* kept prefixes, so the
sparse product of prefixes (computed in row blocks) yields every candidate; each candidate is then checked
with its exact cosine. Common words rarely survive in a prefix, so the product stays near-linear in size.

Dense (embedding) vectors are searched exactly with blocked matrix products (memory O(block × N), time
O(N²)), or approximately with an inverted-file index (faiss `IndexIVFFlat`, inner product): k-means cells,
each query scanning its `nprobe` nearest cells with an exact range search. Time ~ N² · nprobe / nlist.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

_EPS = 1e-9


@dataclass
class Pairs:
    """Matches between query rows and index rows: parallel arrays, sorted by (query, index)."""

    query: np.ndarray
    index: np.ndarray
    sim: np.ndarray

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def concat(cls, parts: list[Pairs]) -> Pairs:
        if not parts:
            return cls.empty()
        p = cls(*(np.concatenate([getattr(x, f) for x in parts]) for f in ("query", "index", "sim")))
        order = np.lexsort((p.index, p.query))
        return cls(p.query[order], p.index[order], p.sim[order])

    def __len__(self) -> int:
        return len(self.query)


# --------------------------------------------------------------------------- TF-IDF


def tfidf_matrix(texts: list[str]) -> sp.csr_matrix:
    """sklearn's default TF-IDF (word unigrams, smooth idf, L2 norm), fit once on the whole corpus."""
    try:
        return TfidfVectorizer(dtype=np.float32).fit_transform(texts).tocsr()
    except ValueError:  # empty vocabulary: no text has a word of 2+ characters
        return sp.csr_matrix((len(texts), 1), dtype=np.float32)


class SparseIndex:
    """L2-normalised sparse rows plus their prefix rows, for threshold `t`."""

    def __init__(self, X: sp.csr_matrix, term_rank: np.ndarray, t: float) -> None:
        self.X = sp.csr_matrix(X, dtype=np.float32, copy=True)  # never mutate the caller's matrix
        self.X.sum_duplicates()  # canonical: sorted indices, no duplicates
        self.P = prefix_rows(self.X, term_rank, t)

    def __len__(self) -> int:
        return self.X.shape[0]


def term_rarity_rank(X: sp.csr_matrix) -> np.ndarray:
    """rank[term] = position when terms are sorted from most common to rarest (ties by term index)."""
    df = np.bincount(X.indices, minlength=X.shape[1])
    order = np.lexsort((np.arange(X.shape[1]), -df))  # most common first
    rank = np.empty(X.shape[1], dtype=np.int64)
    rank[order] = np.arange(X.shape[1])
    return rank


def prefix_rows(X: sp.csr_matrix, term_rank: np.ndarray, t: float) -> sp.csr_matrix:
    """Drop from each row its most common terms while their squared norm stays below t² (minus a margin)."""
    X = X.tocsr()
    n = X.shape[0]
    row_of = np.repeat(np.arange(n), np.diff(X.indptr))
    order = np.lexsort((term_rank[X.indices], row_of))  # within each row: most common term first
    sq = X.data[order].astype(np.float64) ** 2
    csum = np.cumsum(sq)
    row_start = np.repeat(X.indptr[:-1], np.diff(X.indptr))
    before_row = np.where(row_start > 0, csum[np.maximum(row_start - 1, 0)], 0.0)
    in_row_csum = csum - before_row
    keep_sorted = in_row_csum >= t * t - _EPS  # conservative: a slightly longer prefix never loses a pair
    keep = np.zeros(len(order), dtype=bool)
    keep[order[keep_sorted]] = True
    P = sp.csr_matrix(
        (np.where(keep, X.data, 0).astype(np.float32), X.indices.copy(), X.indptr.copy()), shape=X.shape
    )
    P.eliminate_zeros()
    return P


def _exact_dots(A: sp.csr_matrix, B: sp.csr_matrix, qi: np.ndarray, ij: np.ndarray, chunk: int) -> np.ndarray:
    out = np.empty(len(qi), dtype=np.float32)
    for s in range(0, len(qi), chunk):
        a, b = A[qi[s : s + chunk]], B[ij[s : s + chunk]]
        out[s : s + chunk] = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    return out


def sparse_pairs(
    query: SparseIndex, index: SparseIndex, t: float, block_rows: int = 2048, upper_only: bool = False
) -> Pairs:
    """All (q, i) with cos ≥ t. With `upper_only` (query is index) keep only i < q: earlier rows."""
    parts: list[Pairs] = []
    PiT = index.P.T.tocsr()
    for start in range(0, len(query), block_rows):
        stop = min(start + block_rows, len(query))
        cand = (query.P[start:stop] @ PiT).tocoo()
        qi, ii = cand.row.astype(np.int64) + start, cand.col.astype(np.int64)
        if upper_only:
            m = ii < qi
            qi, ii = qi[m], ii[m]
        if len(qi) == 0:
            continue
        sims = _exact_dots(query.X, index.X, qi, ii, chunk=1 << 18)
        m = sims >= t
        parts.append(Pairs(qi[m], ii[m], sims[m]))
    return Pairs.concat(parts)


# --------------------------------------------------------------------------- dense


def dense_pairs(
    query: np.ndarray, index: np.ndarray, t: float, block_rows: int = 2048, upper_only: bool = False
) -> Pairs:
    """All (q, i) with dot(query[q], index[i]) ≥ t for unit-norm float32 rows, in row blocks (fewer rows a
    block for a large index, so one block's scores stay ≤ 512 MiB)."""
    parts: list[Pairs] = []
    block_rows = max(64, min(block_rows, (1 << 27) // max(1, len(index))))
    for start, block in _blocks(query, block_rows):
        stop = start + len(block)
        cols = index[:stop] if upper_only else index
        S = block @ cols.T
        if upper_only:  # only earlier rows: blank the diagonal and everything right of it
            S[:, start:stop][np.triu_indices(len(block))] = -np.inf
        r, c = np.nonzero(S >= t)
        if len(r):
            parts.append(Pairs(r.astype(np.int64) + start, c.astype(np.int64), S[r, c].astype(np.float32)))
    return Pairs.concat(parts)


def ivf_pairs(
    query: np.ndarray,
    index: np.ndarray,
    t: float,
    nlist: int | None = None,
    nprobe: int = 128,
    block_rows: int = 16384,
    upper_only: bool = False,
    seed: int = 1234,
) -> Pairs:
    """Approximately all (q, i) with dot ≥ t: the pairs of `dense_pairs` where i lies in one of the
    `nprobe` k-means cells nearest to q (`nlist` cells, default ≈ 4√N) — or, in a self-join (`upper_only`),
    q in one of i's, which lifts recall at no cost. Deterministic for a fixed seed."""
    import faiss

    n, d = index.shape
    if n == 0 or len(query) == 0:
        return Pairs.empty()
    nlist = max(1, min(nlist or round(4 * np.sqrt(n)), n // 39 or 1))  # k-means wants ≥ 39 points a cell
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    ivf.cp.max_points_per_centroid = 64  # train on ≤ 64·nlist sampled rows: enough for cells, cheap
    index = np.ascontiguousarray(index, dtype=np.float32)
    ivf.train(index)
    ivf.add(index)
    ivf.nprobe = min(nprobe, nlist)
    parts: list[Pairs] = []
    for start, block in _blocks(np.ascontiguousarray(query, dtype=np.float32), block_rows):
        lims, sims, ids = ivf.range_search(block, float(np.nextafter(np.float32(t), np.float32(-1))))
        qi = np.repeat(np.arange(len(block), dtype=np.int64) + start, np.diff(lims).astype(np.int64))
        ii = ids.astype(np.int64)
        m = sims >= t
        if upper_only:  # a self-join: a pair found from either end counts (later row, earlier row)
            m &= ii != qi
            qi, ii = np.maximum(qi, ii), np.minimum(qi, ii)
        if m.any():
            parts.append(Pairs(qi[m], ii[m], sims[m].astype(np.float32)))
    pairs = Pairs.concat(parts)
    if upper_only and len(pairs):  # found from both ends: keep one
        first = np.r_[True, (np.diff(pairs.query) != 0) | (np.diff(pairs.index) != 0)]
        pairs = Pairs(pairs.query[first], pairs.index[first], pairs.sim[first])
    return pairs


def _blocks(a: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, a.shape[0], size):
        yield start, a[start : start + size]


# --------------------------------------------------------------------------- decisions


def greedy_keep_first(n: int, pairs: Pairs) -> dict[int, tuple[int, float]]:
    """Greedy self-dedup in row order. `pairs` link a later row (query) to earlier rows (index).

    Returns {dropped row: (the earliest kept row it matched, similarity)}. A row matched only to
    already-dropped rows is kept, as in keep-first dedup.
    """
    kept = np.ones(n, dtype=bool)
    dropped: dict[int, tuple[int, float]] = {}
    q, i, s = pairs.query, pairs.index, pairs.sim
    bounds = np.flatnonzero(np.diff(q)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(q)], strict=True):
        if lo == hi:
            continue
        row = int(q[lo])
        for k in range(lo, hi):  # index sorted ascending: the first kept one is the earliest
            if kept[i[k]]:
                kept[row] = False
                dropped[row] = (int(i[k]), float(s[k]))
                break
    return dropped


def best_match(pairs: Pairs) -> dict[int, tuple[int, float]]:
    """{query row: (index row with the highest similarity, similarity)} (ties: lowest index row)."""
    if not len(pairs):
        return {}
    order = np.lexsort((pairs.index, -pairs.sim, pairs.query))
    q, i, s = pairs.query[order], pairs.index[order], pairs.sim[order]
    first = np.r_[True, q[1:] != q[:-1]]
    return {int(a): (int(b), float(c)) for a, b, c in zip(q[first], i[first], s[first], strict=True)}
