"""Benchmark the collection stage on synthetic pools with planted near-duplicates of graded difficulty.

For each size it writes three sources (CSV n=8, JSONL n=7, TXT n=5) and a 500-prompt eval set, runs the real
`collect` stage in a fresh process, and reports wall time, peak RSS of the whole process tree (Ray workers
included) and, per rule, recall of planted pairs and precision:

- Base prompts: a request frame ("explain how to", "what is the best way to", …) and one to three clauses of
  content words (Zipf-distributed real English words from MiniLM's vocabulary, with function words).
- 5% of rows are planted near-duplicates of an earlier base row (each original used once), six kinds in
  equal shares: `edit` (one or two word edits), `case_punct` (casing, punctuation, spacing), `reorder`
  (clauses or clause halves swapped), `synonym` (60% of the content words replaced by a near-synonym: the
  word's nearest other whole word in MiniLM's input token-embedding table, e.g. kidnapping→abducted,
  foyer→hallway), `template` (another request frame and joiners, function words dropped: a paraphrase of
  the same request), `combo` (template + synonyms + reorder + an edit + casing). 150 planted copies of eval
  prompts (same kinds) sit in the last source.
- A planted duplicate counts as found only when the row it is matched to (`collided_with_id`) is its own
  original. Precision of a rule = drops matched to their own original / all its drops; every other drop is a
  false match, reported with its rule and examples. Drops of base rows measure how full of near-duplicates
  the base corpus itself is (by the stage's own rules).

The baseline, measured in the same run at the smallest size, is the reference code's dense computation
(UCSC-VLAA/STAR-1 `data_making/data_collection/utils.py`): a full N×N similarity matrix (sklearn
`cosine_similarity` of TF-IDF rows; sentence-transformers `cos_sim` of the embeddings) followed by its greedy
keep-first pass over the accepted rows, against star1's search for the same step on the same texts.
At sizes up to `--ann-check-max` it also compares the IVF index (`collect.embedding_search.method: ivf`)
against exact search on the pool's own embeddings: pair recall and agreement of the drop decisions.

    python bench/collect.py [--sizes 25000 50000 100000 200000] [--search auto|exact|ivf] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DUP_RATE = 0.05
EVAL_SIZE = 500
EVAL_PLANTED = 150
KINDS = ("edit", "case_punct", "reorder", "synonym", "template", "combo")
SINGLE_KINDS = KINDS[:-1]  # one rewrite each (the kinds issue 8 names); `combo` stacks them all
SOURCES = (("A", "a.csv", 8), ("B", "b.jsonl", 7), ("C", "c.txt", 5))
FRAMES = (  # at most 3 words: a longer shared frame would itself be a 5-gram that every prompt shares
    ("how do i", "?"),
    ("explain how to", "."),
    ("best way to", "?"),
    ("help me to", "."),
    ("teach me to", "."),
    ("steps to", "."),
    ("how to", "?"),
    ("describe how to", "."),
    ("instructions to", "."),
    ("ways to", "?"),
    ("tips to", "."),
    ("quickly explain", ":"),
)
JOINERS = (", and then ", "; after that ", ", and also ", " and ", ", then ")
FUNCTION = ("the", "a", "of", "with", "for", "in", "on", "at", "from", "my")
RULES = (
    "exact_duplicate",
    "ngram_self_dup",
    "ngram_overlap",
    "tfidf_overlap",
    "tfidf_self_dup",
    "embedding_self_dup",
    "embedding_eval_overlap",
)
EVAL_RULES = {"ngram_overlap", "tfidf_overlap", "embedding_eval_overlap"}


# --------------------------------------------------------------------------- words


def vocabulary() -> tuple[list[str], dict[str, str]]:
    """Whole English words from MiniLM's vocabulary, and a near-synonym for many of them: the nearest other
    word in the model's input token-embedding table (cosine ≥ 0.4, not sharing its first four letters)."""
    from safetensors.numpy import load_file

    from star1.embeddings import resolve_model

    folder = Path(resolve_model("all-MiniLM-L6-v2"))
    tokens = (folder / "vocab.txt").read_text().split("\n")
    ids = [i for i, t in enumerate(tokens) if t.isalpha() and t.isascii() and len(t) >= 3][:20000]
    words = [tokens[i] for i in ids]
    table = load_file(folder / "model.safetensors")["embeddings.word_embeddings.weight"].astype(np.float32)
    v = table[ids]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    synonyms: dict[str, str] = {}
    for start in range(0, len(words), 2048):
        s = v[start : start + 2048] @ v.T
        top = np.argsort(-s, axis=1)[:, 1:6]
        for r, row in enumerate(top):
            w = words[start + r]
            for c in row:
                if s[r, c] >= 0.4 and words[c][:4] != w[:4]:
                    synonyms[w] = words[c]
                    break
    return words, synonyms


class Prompts:
    """Structured synthetic prompts (frame, clauses, joiner) and the transforms that plant duplicates."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.words, self.synonyms = vocabulary()
        p = 1.0 / np.arange(1, len(self.words) + 1) ** 0.7
        self.p = p / p.sum()
        self._words = np.asarray(self.words)
        self._cdf = self.p.cumsum()  # what Generator.choice(p=…) rebuilds on every call
        self._cdf /= self._cdf[-1]

    def _zipf(self, size: int | None = None) -> Any:
        """Zipf-distributed word indices: the same draws as `rng.choice(len(words), size, p=p)`, without
        rebuilding the CDF (and the word array) for each clause (≈10× faster pool generation)."""
        u = self.rng.random() if size is None else self.rng.random(size)
        return self._cdf.searchsorted(u, side="right")

    def _clause(self, k: int) -> list[str]:
        content = self._words[self._zipf(k)].tolist()
        out: list[str] = []
        for w in content:
            out.append(w)
            if self.rng.random() < 0.25:
                out.append(FUNCTION[int(self.rng.integers(len(FUNCTION)))])
        return out

    def base(self) -> dict[str, Any]:
        n_clauses = int(self.rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        return {
            "frame": int(self.rng.integers(len(FRAMES))),
            "clauses": [self._clause(int(self.rng.integers(4, 9))) for _ in range(n_clauses)],
            "joiner": int(self.rng.integers(len(JOINERS))),
        }

    @staticmethod
    def render(p: dict[str, Any]) -> str:
        head, end = FRAMES[p["frame"]]
        text = f"{head} " + JOINERS[p["joiner"]].join(" ".join(c) for c in p["clauses"]) + end
        return text[0].upper() + text[1:]

    # ---- transforms: structured in, structured out (case_punct works on the rendered text)

    def edit(self, p: dict) -> dict:
        p = _copy(p)
        for _ in range(int(self.rng.integers(1, 3))):
            c = p["clauses"][int(self.rng.integers(len(p["clauses"])))]
            i, op = int(self.rng.integers(len(c))), int(self.rng.integers(3))
            if op == 0:
                c[i] = self.words[int(self._zipf())]
            elif op == 1 and len(c) > 3:
                del c[i]
            else:
                c.insert(i, self.words[int(self._zipf())])
        return p

    def reorder(self, p: dict) -> dict:
        p = _copy(p)
        if len(p["clauses"]) > 1:
            p["clauses"] = p["clauses"][1:] + p["clauses"][:1]
        else:
            c = p["clauses"][0]
            cut = int(self.rng.integers(1, len(c)))
            p["clauses"] = [c[cut:] + c[:cut]]
        return p

    def synonym(self, p: dict, share: float = 0.6) -> dict:
        p = _copy(p)
        for c in p["clauses"]:
            for i, w in enumerate(c):
                if w in self.synonyms and self.rng.random() < share:
                    c[i] = self.synonyms[w]
        return p

    def template(self, p: dict) -> dict:
        p = _copy(p)
        p["frame"] = int((p["frame"] + self.rng.integers(1, len(FRAMES))) % len(FRAMES))
        p["joiner"] = int((p["joiner"] + self.rng.integers(1, len(JOINERS))) % len(JOINERS))
        p["clauses"] = [[w for w in c if w not in FUNCTION] or c for c in p["clauses"]]
        return p

    def case_punct(self, text: str) -> str:
        style = int(self.rng.integers(3))
        text = text.upper() if style == 0 else text.title() if style == 1 else text.lower()
        text = text.replace(", ", " - ").replace("; ", ", ").replace(" ", "  ", 1)
        return text.rstrip(".?") + ("!!" if self.rng.random() < 0.5 else " ??")

    def plant(self, p: dict, kind: str) -> str:
        if kind == "case_punct":
            return self.case_punct(self.render(p))
        if kind == "combo":
            return self.case_punct(self.render(self.edit(self.reorder(self.synonym(self.template(p))))))
        return self.render(getattr(self, kind)(p))


def _copy(p: dict) -> dict:
    return {**p, "clauses": [list(c) for c in p["clauses"]]}


# --------------------------------------------------------------------------- the synthetic pool


def make_pool(n: int, folder: Path, seed: int = 0) -> dict[str, Any]:
    """Write the sources and eval set; return the ground truth (planted pairs, with 1-based source rows)."""
    gen = Prompts(seed)
    rng = gen.rng
    n_dup = int(n * DUP_RATE)
    dup_pos = np.sort(rng.choice(np.arange(n // 10, n), size=n_dup, replace=False))
    is_dup = np.zeros(n, dtype=bool)
    is_dup[dup_pos] = True
    structs: list[dict | None] = [None] * n
    texts: list[str] = [""] * n
    for i in np.flatnonzero(~is_dup):
        structs[i] = gen.base()
        texts[i] = gen.render(structs[i])
    used: set[int] = set()
    planted: list[dict[str, Any]] = []
    kinds = np.resize(np.asarray(KINDS), n_dup)
    rng.shuffle(kinds)
    for i, kind in zip(dup_pos.tolist(), kinds.tolist(), strict=True):
        while True:  # an earlier base row not used as an original yet
            j = int(rng.integers(0, i))
            if not is_dup[j] and j not in used:
                break
        used.add(j)
        texts[i] = gen.plant(structs[j], kind)  # type: ignore[arg-type]
        planted.append({"pos": i, "orig": j, "kind": kind})

    bounds = [0, n // 3, 2 * n // 3, n]
    where = {}  # global position → (source, 1-based row)
    for s, (name, _, _) in enumerate(SOURCES):
        for k, pos in enumerate(range(bounds[s], bounds[s + 1])):
            where[pos] = (name, k + 1)
    with open(folder / "a.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["prompt", "k"])
        wr.writerows([texts[i], i] for i in range(bounds[0], bounds[1]))
    with open(folder / "b.jsonl", "w") as f:
        f.writelines(json.dumps({"text": texts[i], "k": i}) + "\n" for i in range(bounds[1], bounds[2]))

    eval_structs = [gen.base() for _ in range(EVAL_SIZE)]
    eval_texts = [gen.render(p) for p in eval_structs]
    eval_kinds = np.resize(np.asarray(KINDS), EVAL_PLANTED).tolist()
    contaminated = [gen.plant(eval_structs[k], kind) for k, kind in enumerate(eval_kinds)]
    with open(folder / "c.txt", "w") as f:
        f.writelines(texts[i] + "\n" for i in range(bounds[2], bounds[3]))
        f.writelines(x + "\n" for x in contaminated)
    with open(folder / "eval.jsonl", "w") as f:
        f.writelines(json.dumps({"prompt": x}) + "\n" for x in eval_texts)
    n_c = bounds[3] - bounds[2]
    return {
        "pairs": [
            {
                "dup": where[p["pos"]],
                "orig": where[p["orig"]],
                "kind": p["kind"],
                "dup_text": texts[p["pos"]],
                "orig_text": texts[p["orig"]],
            }
            for p in planted
        ]
        + [
            {
                "dup": ("C", n_c + k + 1),
                "orig": ("E", k + 1),
                "kind": kind,
                "eval": True,
                "dup_text": contaminated[k],
                "orig_text": eval_texts[k],
            }
            for k, kind in enumerate(eval_kinds)
        ],
        "rows": n + EVAL_PLANTED,
        "texts": {
            **{where[i]: texts[i] for i in range(n)},
            **{("E", k + 1): t for k, t in enumerate(eval_texts)},
        },
    }


def config(folder: Path, store: Path, use_ray: bool, search: str) -> dict:
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
            "embedding_search": {"method": search},
        },
    }


# --------------------------------------------------------------------------- running and scoring


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


def run_stage(folder: Path) -> tuple[float, int]:
    """Run collect in a fresh process; (wall seconds, peak RSS of its process tree)."""
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
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
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
    if rc != 0:
        raise SystemExit(f"collect failed in {folder} (exit {rc})")
    return time.perf_counter() - t0, peak


def score(truth: dict[str, Any], rejects: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-rule precision and per-kind recall of planted pairs (found = matched to its own original)."""
    from star1.sources.load import prompt_id

    planted = {tuple(p["dup"]): p for p in truth["pairs"]}
    id_of = lambda key: prompt_id(key[0], truth["texts"][key])  # noqa: E731
    text_of_id = {id_of(k): t for k, t in truth["texts"].items()}
    found: dict[tuple, str] = {}
    per_rule = {r: {"dropped": 0, "correct": 0} for r in RULES}
    false_examples: dict[str, list] = defaultdict(list)
    base_dropped: Counter = Counter()
    for r in rejects:
        rule = r["rule"]
        if rule not in per_rule:
            continue  # load-time rejects (none are planted)
        per_rule[rule]["dropped"] += 1
        key = (r["source"], r["source_row"])
        p = planted.get(key)
        if p is not None and r["collided_with_id"] == id_of(tuple(p["orig"])):
            per_rule[rule]["correct"] += 1
            found[key] = rule
            continue
        if p is None:
            base_dropped[rule] += 1
        if len(false_examples[rule]) < 5:
            false_examples[rule].append(
                {
                    "dropped": r["prompt"],
                    "matched": text_of_id.get(r["collided_with_id"], r["collided_with_id"]),
                    "similarity": r["similarity"],
                    "planted": p is not None,
                }
            )
    for v in per_rule.values():
        v["false"] = v["dropped"] - v["correct"]
        v["precision"] = round(v["correct"] / v["dropped"], 4) if v["dropped"] else None
    out: dict[str, Any] = {"rules": per_rule, "false_examples": dict(false_examples)}
    for group, is_eval in (("pool", False), ("eval", True)):
        pairs = [p for p in truth["pairs"] if bool(p.get("eval")) == is_eval]
        by_kind = {}
        for kind in KINDS:
            ps = [p for p in pairs if p["kind"] == kind]
            hit = Counter(found[tuple(p["dup"])] for p in ps if tuple(p["dup"]) in found)
            by_kind[kind] = {
                "planted": len(ps),
                "found": sum(hit.values()),
                "recall": round(sum(hit.values()) / max(1, len(ps)), 4),
                "by_rule": dict(hit),
            }
        n_found = sum(k["found"] for k in by_kind.values())
        rule_share = Counter(found[tuple(p["dup"])] for p in pairs if tuple(p["dup"]) in found)
        out[group] = {
            "planted": len(pairs),
            "found": n_found,
            "recall": round(n_found / max(1, len(pairs)), 4),
            "recall_single_kinds": round(
                sum(by_kind[k]["found"] for k in SINGLE_KINDS)
                / max(1, sum(by_kind[k]["planted"] for k in SINGLE_KINDS)),
                4,
            ),
            "by_kind": by_kind,
            "found_by_rule": dict(rule_share),
        }
    n_base = truth["rows"] - len(truth["pairs"])
    out["base_rows_dropped"] = {
        "rows": n_base,
        "dropped": sum(base_dropped.values()),
        "rate": round(sum(base_dropped.values()) / n_base, 5),
        "by_rule": dict(base_dropped),
    }
    total = sum(v["dropped"] for v in per_rule.values())
    out["precision"] = round(sum(v["correct"] for v in per_rule.values()) / max(1, total), 4)
    return out


def step_inputs(folder: Path, later_rules: tuple[str, ...]) -> list[str]:
    """The texts that entered a global step, in pool order: the pool plus rows dropped by `later_rules`."""
    import pyarrow.parquet as pq

    order = {name: i for i, (name, _, _) in enumerate(SOURCES)}
    rows = pq.read_table(folder / "store/collect/pool.parquet").to_pylist()
    rejects = pq.read_table(folder / "store/collect/rejects.parquet").to_pylist()
    rows += [r for r in rejects if r["rule"] in later_rules]
    rows.sort(key=lambda r: (order[r["source"]], r["source_row"]))
    return [r["prompt"] for r in rows]


def embedding_inputs(folder: Path) -> tuple[list[str], Any]:
    """The texts that entered the embedding self-dedup, in order, and their cached embeddings."""
    from star1.config import parse_config
    from star1.embeddings import chunk_key, model_key, resolve_dtype
    from star1.store import Store

    cfg = parse_config(json.loads((folder / "cfg.json").read_text()))
    store = Store.from_uri(cfg.store.uri)
    texts = step_inputs(folder, ("embedding_self_dup", "embedding_eval_overlap"))
    ecfg = resolve_dtype(cfg.collect.embedding)  # type: ignore[union-attr]
    mkey, size = model_key(ecfg), ecfg.chunk_size
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
    arrays = []
    for c in chunks:
        rel = f"cache/embeddings/{mkey}/{chunk_key(mkey, c)}.npy"
        if not store.exists(rel):
            raise SystemExit(f"embedding chunk {rel} missing: the embedding inputs were not reconstructed")
        arrays.append(np.load(store.root + "/" + rel))
    return texts, np.concatenate(arrays)


def ann_check(folder: Path, threshold: float = 0.7, nprobes: tuple[int, ...] = (32, 64, 128)) -> dict:
    """IVF against exact search on the pool's own embeddings: pair recall and drop-decision agreement."""
    from star1.dedup.similarity import dense_pairs, greedy_keep_first, ivf_pairs

    _, emb = embedding_inputs(folder)
    t0 = time.perf_counter()
    exact = dense_pairs(emb, emb, threshold, upper_only=True)
    t_exact = time.perf_counter() - t0
    exact_set = set(zip(exact.query.tolist(), exact.index.tolist(), strict=True))
    exact_drop = set(greedy_keep_first(len(emb), exact))
    out = {"rows": len(emb), "exact_s": round(t_exact, 1), "exact_pairs": len(exact_set), "ivf": []}
    for nprobe in nprobes:
        t0 = time.perf_counter()
        approx = ivf_pairs(emb, emb, threshold, nprobe=nprobe, upper_only=True)
        t_ivf = time.perf_counter() - t0
        got = set(zip(approx.query.tolist(), approx.index.tolist(), strict=True))
        drop = set(greedy_keep_first(len(emb), approx))
        out["ivf"].append(
            {
                "nprobe": nprobe,
                "s": round(t_ivf, 1),
                "pair_recall": round(len(got & exact_set) / max(1, len(exact_set)), 4),
                "drop_recall": round(len(drop & exact_drop) / max(1, len(exact_drop)), 4),
                "drop_disagreements": len(drop ^ exact_drop),
            }
        )
    return out


# --------------------------------------------------------------------------- the reference's dense baseline


def _reference_greedy(sim: np.ndarray, t: float) -> set[int]:
    """The reference's self-dedup pass over its N×N matrix: drop row j when an accepted row reaches t."""
    accepted = [0]
    dropped = set()
    for j in range(1, sim.shape[0]):
        if np.any(sim[np.asarray(accepted), j] >= t):
            dropped.add(j)
        else:
            accepted.append(j)
    return dropped


def baseline_worker(kind: str, folder: Path, n: int) -> dict:
    """One measurement in a fresh process (peak RSS is this process's own)."""
    if kind.startswith("tfidf"):
        texts = step_inputs(folder, ("tfidf_self_dup", "embedding_self_dup", "embedding_eval_overlap"))[:n]
    else:
        texts, emb = embedding_inputs(folder)
        texts, emb = texts[:n], emb[:n]
    t0 = time.perf_counter()
    if kind == "tfidf-reference":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.metrics.pairwise import cosine_similarity

        sim = cosine_similarity(TfidfVectorizer().fit_transform(texts))  # dense N×N, float64
        t_matrix = time.perf_counter() - t0
        dropped = _reference_greedy(sim, 0.6)
    elif kind == "embed-reference":
        import torch
        from sentence_transformers import util

        sim = util.cos_sim(torch.from_numpy(emb), torch.from_numpy(emb)).numpy()  # dense N×N, float32
        t_matrix = time.perf_counter() - t0
        dropped = _reference_greedy(sim, 0.7)
    else:
        from star1.dedup.similarity import (
            SparseIndex,
            dense_pairs,
            greedy_keep_first,
            ivf_pairs,
            sparse_pairs,
            term_rarity_rank,
            tfidf_matrix,
        )

        if kind == "tfidf-star1":
            X = tfidf_matrix(texts)
            idx = SparseIndex(X, term_rarity_rank(X), 0.6)
            pairs = sparse_pairs(idx, idx, 0.6, upper_only=True)
        elif kind == "embed-star1-exact":
            pairs = dense_pairs(emb, emb, 0.7, upper_only=True)
        else:
            pairs = ivf_pairs(emb, emb, 0.7, upper_only=True)
        t_matrix = time.perf_counter() - t0
        dropped = set(greedy_keep_first(len(texts), pairs))
    total = time.perf_counter() - t0
    return {
        "kind": kind,
        "n": len(texts),
        "search_s": round(t_matrix, 2),
        "total_s": round(total, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "dropped": sorted(dropped),
    }


def dense_baseline(folder: Path, n: int) -> dict:
    results = {}
    for kind in ("tfidf-reference", "tfidf-star1", "embed-reference", "embed-star1-exact", "embed-star1-ivf"):
        out = subprocess.run(
            [sys.executable, __file__, "--baseline-worker", kind, str(folder), str(n)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    summary = {}
    for step, ref in (("tfidf", "tfidf-reference"), ("embedding", "embed-reference")):
        r = results[ref]
        for kind, v in results.items():
            if kind.startswith(step[:5]) and kind != ref:
                summary[kind] = {
                    "n": v["n"],
                    "star1_s": v["total_s"],
                    "star1_peak_gib": v["peak_rss_gib"],
                    "reference_s": r["total_s"],
                    "reference_matrix_s": r["search_s"],
                    "reference_peak_gib": r["peak_rss_gib"],
                    "speedup": round(r["total_s"] / max(v["total_s"], 1e-9), 1),
                    "rows_decided_differently": len(set(v["dropped"]) ^ set(r["dropped"])),
                    "reference_dropped": len(r["dropped"]),
                }
    return summary


# --------------------------------------------------------------------------- main


def run_one(n: int, work: Path, use_ray: bool, search: str, ann_max: int) -> dict:
    import pyarrow.parquet as pq

    folder = work / f"n{n}"
    folder.mkdir()
    truth = make_pool(n, folder)
    (folder / "cfg.json").write_text(json.dumps(config(folder, folder / "store", use_ray, search)))
    wall, peak = run_stage(folder)
    manifest = json.loads((folder / "store/collect/manifest.json").read_text())
    result = {
        "n": n,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "embedding_search": manifest["usage"].get("embedding_search"),
        **score(truth, pq.read_table(folder / "store/collect/rejects.parquet").to_pylist()),
        "kept": manifest["counts"]["total"]["kept"],
        "timings": manifest["timings"],
    }
    if n <= ann_max:
        result["ann_vs_exact"] = ann_check(folder)
    return result


def print_result(r: dict) -> None:
    print(
        f"\n== {r['n']:,} prompts: {r['wall_s']} s, peak {r['peak_rss_gib']} GiB, "
        f"search {r['embedding_search']}; "
        f"recall {r['pool']['recall']} (pool pairs; {r['pool']['recall_single_kinds']} without combo), "
        f"{r['eval']['recall']} (eval copies); "
        f"precision {r['precision']}; base rows dropped {r['base_rows_dropped']['dropped']} "
        f"({r['base_rows_dropped']['rate']:.3%})"
    )
    print(
        f"   {'rule':<24}{'dropped':>8}{'correct':>8}{'false':>7}{'precision':>10}"
        f"{'found pool':>11}{'found eval':>11}"
    )
    for rule, v in r["rules"].items():
        prec = "-" if v["precision"] is None else f"{v['precision']:.4f}"
        fp, fe = r["pool"]["found_by_rule"].get(rule, 0), r["eval"]["found_by_rule"].get(rule, 0)
        print(f"   {rule:<24}{v['dropped']:>8}{v['correct']:>8}{v['false']:>7}{prec:>10}{fp:>11}{fe:>11}")
    print(f"   {'kind':<12}{'pool found/planted':>20}{'recall':>8}   {'eval found/planted':>18}{'recall':>8}")
    for kind in KINDS:
        p, e = r["pool"]["by_kind"][kind], r["eval"]["by_kind"][kind]
        print(
            f"   {kind:<12}{p['found']:>12}/{p['planted']:<7}{p['recall']:>8}   "
            f"{e['found']:>10}/{e['planted']:<7}{e['recall']:>8}"
        )
    for rule, ex in r["false_examples"].items():
        print(
            f"   false match ({rule}): {ex[0]['dropped']!r} ~ {ex[0]['matched']!r} "
            f"(sim {ex[0]['similarity']})"
        )
    if "ann_vs_exact" in r:
        a = r["ann_vs_exact"]
        ivf = ", ".join(
            f"nprobe {x['nprobe']}: {x['s']} s, pair recall {x['pair_recall']}, drop recall "
            f"{x['drop_recall']} ({x['drop_disagreements']} rows differ)"
            for x in a["ivf"]
        )
        print(
            f"   IVF vs exact on {a['rows']:,} embeddings "
            f"(exact {a['exact_s']} s, {a['exact_pairs']} pairs): {ivf}"
        )
    print(f"   timings: {r['timings']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000, 200_000])
    ap.add_argument("--search", choices=["auto", "exact", "ivf"], default="auto")
    ap.add_argument("--ray", action="store_true", help="run the stage through a local Ray cluster")
    ap.add_argument(
        "--ann-check-max", type=int, default=200_000, help="largest size to compare IVF with exact"
    )
    ap.add_argument(
        "--baseline-n", type=int, default=20_000, help="texts in the dense N×N baseline (0: skip)"
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--baseline-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_worker:
        kind, folder, n = args.baseline_worker
        print(json.dumps(baseline_worker(kind, Path(folder), int(n))))
        return
    results, baseline = [], None
    with tempfile.TemporaryDirectory(prefix="star1-bench-") as tmp:
        work = Path(tmp)
        for n in args.sizes:
            r = run_one(n, work, args.ray, args.search, args.ann_check_max)
            prev = results[-1] if results else None
            r["growth_per_doubling"] = (
                round(r["wall_s"] / prev["wall_s"], 2) if prev and n == 2 * prev["n"] else None
            )
            results.append(r)
            print_result(r)
        if args.baseline_n:
            baseline = dense_baseline(work / f"n{args.sizes[0]}", args.baseline_n)
    print(
        "\n   n        wall s  peak GiB  search  pool recall  w/o combo  eval recall  precision  x/doubling"
    )
    for r in results:
        print(
            f"   {r['n']:<8}{r['wall_s']:>7}{r['peak_rss_gib']:>10}  {r['embedding_search']:<6}"
            f"{r['pool']['recall']:>13}{r['pool']['recall_single_kinds']:>11}"
            f"{r['eval']['recall']:>13}{r['precision']:>11}{r['growth_per_doubling'] or '-':>12}"
        )
    if baseline:
        print("\n   baseline: the reference code's dense N×N matrix + greedy pass vs star1, same texts")
        for kind, b in baseline.items():
            print(
                f"   {kind:<18} n={b['n']}: reference {b['reference_s']} s "
                f"({b['reference_peak_gib']} GiB peak) vs "
                f"star1 {b['star1_s']} s ({b['star1_peak_gib']} GiB) → {b['speedup']}x; rows decided "
                f"differently: {b['rows_decided_differently']} of {b['reference_dropped']} dropped"
            )
    if args.json:
        args.json.write_text(json.dumps({"results": results, "baseline": baseline}, indent=2, default=str))


if __name__ == "__main__":
    main()
