"""The dedup rules against brute-force references, including sensitivity to one threshold step (0.01)."""

from __future__ import annotations

import numpy as np
import pytest

from star1.dedup.ngrams import NgramIndex, ngram_keys, self_dedup
from star1.dedup.similarity import (
    SparseIndex,
    best_match,
    dense_pairs,
    greedy_keep_first,
    sparse_pairs,
    term_rarity_rank,
    tfidf_matrix,
)


def reference_greedy(S: np.ndarray, t: float) -> set[int]:
    kept: list[int] = []
    dropped = set()
    for j in range(S.shape[0]):
        if any(S[i, j] >= t for i in kept):
            dropped.add(j)
        else:
            kept.append(j)
    return dropped


def random_corpus(n: int, seed: int, vocab: int = 60) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"w{i:02d}" for i in range(vocab)]
    p = 1.0 / np.arange(1, vocab + 1)  # Zipf-like: common words exist, as in real prompts
    p /= p.sum()
    docs = []
    for _ in range(n):
        if docs and rng.random() < 0.3:  # near-duplicate of an earlier doc: swap one or two words
            base = docs[rng.integers(len(docs))].split()
            for _ in range(rng.integers(1, 3)):
                base[rng.integers(len(base))] = words[rng.integers(vocab)]
            docs.append(" ".join(base))
        else:
            docs.append(" ".join(rng.choice(words, size=rng.integers(3, 9), p=p)))
    return docs


@pytest.fixture(scope="module")
def corpus():
    docs = random_corpus(600, seed=7)
    X = tfidf_matrix(docs)
    return docs, X, term_rarity_rank(X), (X @ X.T).toarray().astype(np.float64)


def test_tfidf_greedy_matches_brute_force_and_is_threshold_sensitive(corpus):
    docs, X, rank, S = corpus
    results = {}
    for t in (0.59, 0.6, 0.61):
        idx = SparseIndex(X, rank, t)
        pairs = sparse_pairs(idx, idx, t, block_rows=97, upper_only=True)
        got = set(greedy_keep_first(len(docs), pairs))
        assert got == reference_greedy(S, t), t
        results[t] = got
    # the corpus has pairs in [0.59, 0.6) and [0.6, 0.61): a one-step threshold error changes the result
    assert results[0.59] != results[0.6] != results[0.61]


def test_prefix_filter_finds_every_pair_exactly(corpus):
    _, X, rank, S = corpus
    t = 0.6
    idx = SparseIndex(X, rank, t)
    pairs = sparse_pairs(idx, idx, t, block_rows=128)
    want = set(zip(*np.nonzero(S >= t), strict=True))
    assert set(zip(pairs.query.tolist(), pairs.index.tolist(), strict=True)) == want
    # and the prefix product is much sparser than the full product (the point of prefix filtering)
    assert (idx.P @ idx.P.T).nnz < 0.5 * (X @ X.T).nnz


def test_decontamination_best_match_against_a_separate_index(corpus):
    _, X, rank, S = corpus
    q, k = X[:300], X[300:]
    pairs = sparse_pairs(SparseIndex(q, rank, 0.6), SparseIndex(k, rank, 0.6), 0.6, block_rows=50)
    best = best_match(pairs)
    ref = {i: int(np.argmax(S[i, 300:])) for i in range(300) if S[i, 300:].max() >= 0.6}
    assert set(best) == set(ref)
    for i, (j, sim) in best.items():
        assert sim == pytest.approx(S[i, 300 + j], abs=1e-5) and sim == pytest.approx(
            S[i, 300:].max(), abs=1e-5
        )


def test_dense_search_matches_brute_force_and_is_threshold_sensitive():
    rng = np.random.default_rng(3)
    E = rng.normal(size=(700, 6)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    S = E.astype(np.float64) @ E.T.astype(np.float64)
    results = {}
    for t in (0.69, 0.7, 0.71):
        got = set(greedy_keep_first(len(E), dense_pairs(E, E, t, block_rows=64, upper_only=True)))
        assert got == reference_greedy(S, t)
        results[t] = got
    assert results[0.69] != results[0.7] != results[0.71]


def test_ngram_self_dedup_is_greedy_keep_first():
    texts = [
        "one two three four five six",  # 0 kept
        "zero one two three four five",  # 1 shares 5-gram "one..five" with 0 → dropped
        "two three four five six seven",  # 2 shares "two..six" with 0 → dropped
        "a b c d e f",  # 3 kept
        "ONE, two; three four FIVE!! six",  # 4 same words as 0 modulo case/punctuation → dropped
    ]
    assert self_dedup(texts, 5) == {1: 0, 2: 0, 4: 0}
    assert self_dedup(texts, 6) == {4: 0}


def test_ngram_boundary_and_short_texts():
    a = "alpha beta gamma delta epsilon zeta eta theta"
    b = "x alpha beta gamma delta epsilon zeta eta"  # shares exactly 7 consecutive words with a
    assert self_dedup([a, b], 7) == {1: 0}
    assert self_dedup([a, b], 8) == {}  # off by one n-gram size step: no longer a duplicate
    assert ngram_keys("short text", 8) == ngram_keys("Short   TEXT!", 8)
    idx = NgramIndex(8)
    idx.add([a], [-1])
    assert idx.match("prefix " + a) == -1 and idx.match(b) is None


def _clustered_unit_rows(n: int, seed: int = 0) -> np.ndarray:
    """Rows around a few hundred centres, with near-duplicate pairs: the shape of sentence embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, 64)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.9 * rng.standard_normal((n, 64)).astype(np.float32)
    x[n // 2 :] = x[: n - n // 2] + 0.35 * rng.standard_normal((n - n // 2, 64)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ivf_search_finds_the_exact_pairs():
    from star1.dedup.similarity import ivf_pairs

    x = _clustered_unit_rows(6000)
    exact = dense_pairs(x, x, 0.7, upper_only=True)
    as_set = lambda p: set(zip(p.query.tolist(), p.index.tolist(), strict=True))  # noqa: E731
    assert len(exact) > 1000
    every_cell = ivf_pairs(x, x, 0.7, nlist=40, nprobe=40, upper_only=True)
    assert as_set(every_cell) == as_set(exact)  # scanning every cell is exact search
    approx = ivf_pairs(x, x, 0.7, nlist=40, nprobe=8, upper_only=True)
    assert as_set(approx) <= as_set(exact)  # never a pair below the threshold
    assert len(approx) >= 0.95 * len(exact)
