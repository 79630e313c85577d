"""Benchmark the collection stage on synthetic pools with planted near-duplicates.

For each size (default 25K, 50K, 100K, 200K prompts) it writes three sources (CSV, JSONL, TXT) and an eval
set, runs the real `collect` stage in a fresh process, and prints wall time, peak RSS of the whole process
tree (Ray workers included), planted duplicates found / planted, and the growth ratio per doubling.
The baseline, measured in the same run at the smallest size, is the reference code's dense N×N TF-IDF
similarity matrix for the global self-dedup step, against our prefix-filtered search for the same step.

    python bench/collect.py [--sizes 25000 50000 100000 200000] [--ray]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DUP_RATE = 0.05
EVAL_SIZE = 500
EVAL_PLANTED = 100


def vocabulary() -> list[str]:
    """Real English word pieces from the bundled MiniLM tokenizer (so embeddings behave like text)."""
    from star1.embeddings import resolve_model

    words = Path(resolve_model("all-MiniLM-L6-v2"), "vocab.txt").read_text().split()
    return [w for w in words if w.isalpha() and w.isascii() and len(w) >= 3][:20000]


def perturb(rng: np.random.Generator, text: str, vocab: list[str]) -> str:
    """A near-duplicate: one or two word edits, maybe a case/punctuation change."""
    w = text.split()
    for _ in range(rng.integers(1, 3)):
        op = rng.integers(3)
        i = int(rng.integers(len(w)))
        if op == 0:
            w[i] = vocab[int(rng.integers(len(vocab)))]
        elif op == 1 and len(w) > 6:
            del w[i]
        else:
            w.insert(i, vocab[int(rng.integers(len(vocab)))])
    out = " ".join(w)
    return out.capitalize() + "?" if rng.random() < 0.5 else out


def random_texts(rng: np.random.Generator, vocab: list[str], p: np.ndarray, n: int) -> list[str]:
    """n texts of 8–30 words drawn from a Zipf-like distribution (sampled in one vectorised call)."""
    lengths = rng.integers(8, 31, size=n)
    words = np.asarray(vocab)[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
    ends = np.cumsum(lengths)
    return [" ".join(words[e - k : e]) for e, k in zip(ends, lengths, strict=True)]


def make_pool(n: int, folder: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 0.9
    p /= p.sum()
    n_dup = int(n * DUP_RATE)
    base = random_texts(rng, vocab, p, n - n_dup)
    prompts: list[str | None] = [None] * n
    dup_pos = set(rng.choice(np.arange(n // 10, n), size=n_dup, replace=False).tolist())
    it = iter(base)
    planted = []
    for i in range(n):
        if i in dup_pos:
            prompts[i] = perturb(rng, prompts[int(rng.integers(0, i))], vocab)
            planted.append(i)
        else:
            prompts[i] = next(it)
    thirds = [(0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)]
    import csv

    with open(folder / "a.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["prompt", "k"])
        wr.writerows([prompts[i], i] for i in range(*thirds[0]))
    with open(folder / "b.jsonl", "w") as f:
        f.writelines(json.dumps({"text": prompts[i], "k": i}) + "\n" for i in range(*thirds[1]))
    with open(folder / "c.txt", "w") as f:
        f.writelines(prompts[i] + "\n" for i in range(*thirds[2]))
    eval_prompts = random_texts(rng, vocab, p, EVAL_SIZE)
    # planted contamination: perturbed eval prompts hidden in the pool's last source
    contaminated = [perturb(rng, eval_prompts[i], vocab) for i in range(EVAL_PLANTED)]
    with open(folder / "c.txt", "a") as f:
        f.writelines(x + "\n" for x in contaminated)
    with open(folder / "eval.jsonl", "w") as f:
        f.writelines(json.dumps({"prompt": x}) + "\n" for x in eval_prompts)
    return {"planted_dups": [prompts[i] for i in planted], "planted_eval": contaminated}


def config(folder: Path, store: Path, use_ray: bool) -> dict:
    return {
        "store": {"uri": str(store)},
        "ray": {"enabled": use_ray, "num_cpus": os.cpu_count()},
        "collect": {
            "sources": [
                {
                    "name": "A",
                    "loader": {"uri": str(folder / "a.csv")},
                    "prompt_column": "prompt",
                    "ngram": 8,
                },
                {
                    "name": "B",
                    "loader": {"uri": str(folder / "b.jsonl")},
                    "prompt_column": "text",
                    "ngram": 7,
                },
                {"name": "C", "loader": {"uri": str(folder / "c.txt")}, "ngram": 5},
            ],
            "eval_sets": [
                {"name": "E", "loader": {"uri": str(folder / "eval.jsonl")}, "prompt_column": "prompt"}
            ],
        },
    }


def tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_one(n: int, use_ray: bool, work: Path) -> dict:
    folder = work / f"n{n}"
    folder.mkdir()
    planted = make_pool(n, folder)
    (folder / "cfg.json").write_text(json.dumps(config(folder, folder / "store", use_ray)))
    cmd = [
        sys.executable,
        "-c",
        "import json,sys; from star1.config import parse_config; "
        "from star1.stages.collect import run_collect; from star1.store import Store; "
        "c=parse_config(json.load(open(sys.argv[1]))); "
        "run_collect(c, Store.from_uri(c.store.uri), use_ray=c.ray.enabled, log=lambda m: None)",
        str(folder / "cfg.json"),
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(proc.pid))
            stop.wait(0.25)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"collect failed at n={n} (exit {rc})")
    manifest = json.loads((folder / "store/collect/manifest.json").read_text())
    import pyarrow.parquet as pq

    rejected = {
        r["prompt"]: r["rule"] for r in pq.read_table(folder / "store/collect/rejects.parquet").to_pylist()
    }
    dedup_rules = {
        "exact_duplicate",
        "ngram_self_dup",
        "ngram_overlap",
        "tfidf_overlap",
        "tfidf_self_dup",
        "embedding_self_dup",
    }
    found = sum(rejected.get(p) in dedup_rules for p in planted["planted_dups"])
    eval_found = sum(
        rejected.get(p) in {"ngram_overlap", "tfidf_overlap", "embedding_eval_overlap"}
        for p in planted["planted_eval"]
    )
    return {
        "n": n,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "planted": len(planted["planted_dups"]),
        "found": found,
        "recall": round(found / max(1, len(planted["planted_dups"])), 4),
        "eval_planted": len(planted["planted_eval"]),
        "eval_found": eval_found,
        "kept": manifest["counts"]["total"]["kept"],
        "rejected": manifest["counts"]["total"]["rejected"],
        "rules": manifest["counts"]["rules"],
        "timings": manifest["timings"],
    }


def dense_baseline(work: Path, n: int) -> dict:
    """The reference code's way for the global TF-IDF step (dense N×N matrix) vs ours, same texts."""
    import resource

    from star1.dedup.similarity import (
        SparseIndex,
        greedy_keep_first,
        sparse_pairs,
        term_rarity_rank,
        tfidf_matrix,
    )

    folder = work / f"n{n}"
    texts = [line.rstrip("\n") for line in open(folder / "c.txt")]
    texts += [json.loads(x)["text"] for x in open(folder / "b.jsonl")]
    X = tfidf_matrix(texts)
    t0 = time.perf_counter()
    idx = SparseIndex(X, term_rarity_rank(X), 0.6)
    ours = set(greedy_keep_first(len(texts), sparse_pairs(idx, idx, 0.6, upper_only=True)))
    t_ours = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    S = (X @ X.T).toarray()  # the N×N matrix
    np.fill_diagonal(S, 0)
    S = np.triu(S)  # only earlier rows count for a later row
    dropped: set[int] = set()
    kept_mask = np.ones(len(texts), dtype=bool)
    for j in range(len(texts)):
        hits = np.flatnonzero(S[:j, j] >= 0.6)
        if len(hits) and kept_mask[hits].any():
            kept_mask[j] = False
            dropped.add(j)
    t_dense = time.perf_counter() - t0
    extra = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20
    return {
        "n_texts": len(texts),
        "ours_s": round(t_ours, 2),
        "dense_s": round(t_dense, 2),
        "speedup": round(t_dense / max(t_ours, 1e-9), 1),
        "dense_extra_peak_gib": round(extra, 2),
        "same_result": ours == dropped,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000, 200_000])
    ap.add_argument("--ray", action="store_true", help="run the stage through a local Ray cluster")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="star1-bench-") as tmp:
        work = Path(tmp)
        print(
            f"{'n':>8} {'wall s':>8} {'peak GiB':>9} {'found/planted':>14} {'recall':>7} {'eval':>8} "
            f"{'x/doubling':>10}"
        )
        for n in args.sizes:
            r = run_one(n, args.ray, work)
            prev = results[-1] if results else None
            growth = f"{r['wall_s'] / prev['wall_s']:.2f}" if prev and n == 2 * prev["n"] else "-"
            r["growth_per_doubling"] = growth
            results.append(r)
            print(
                f"{n:>8} {r['wall_s']:>8} {r['peak_rss_gib']:>9} {r['found']:>7}/{r['planted']:<6} "
                f"{r['recall']:>7} {r['eval_found']:>3}/{r['eval_planted']:<4} {growth:>10}",
                flush=True,
            )
            print(f"         timings: {r['timings']}", flush=True)
        baseline = None if args.no_baseline else dense_baseline(work, args.sizes[0])
    if baseline:
        print(
            f"baseline (global TF-IDF step, {baseline['n_texts']} texts): dense N×N {baseline['dense_s']} s "
            f"(+{baseline['dense_extra_peak_gib']} GiB) vs prefix-filtered {baseline['ours_s']} s → "
            f"{baseline['speedup']}x faster, same result: {baseline['same_result']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"results": results, "baseline": baseline}, indent=2))


if __name__ == "__main__":
    main()
