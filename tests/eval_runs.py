"""Synthetic eval runs for the report tests: three runs that differ in the ways real ones do (a benchmark
missing, an alias name, a custom benchmark, a lower-is-better metric, multi-sample pass@1, a summary
without stderr)."""

from __future__ import annotations

from star1.report import synthetic as syn
from star1.store import Store

HARM = ["violence", "privacy", "self_harm", "illicit"]
VERSION = {"data": "d1", "prompt_template": "t1", "generation": "greedy", "scorer": "guard-3"}


def bench(kind: str, n: int, rate: float, seed: int, **kw) -> syn.Planted:
    samples = kw.pop("samples", 1)
    cats = syn.categories(n, HARM) if kind == "safety" else None
    return syn.Planted(kind, syn.binary(n, rate, seed, samples), categories=cats, version=dict(VERSION), **kw)


def three_runs(store: Store) -> list[Store]:
    """alpha (everything), beta (no math500, no custom_safety), gamma (JBB under an alias name)."""
    alpha = {
        "strongreject": bench("safety", 313, 0.40, 1),
        "jbb": bench("safety", 100, 0.37, 2, stderr=False),
        "custom_safety": bench("safety", 60, 0.55, 3),
        "xstest": bench("overrefusal", 250, 0.96, 4, metric="refusal_rate", higher_is_better=False),
        "aime24": bench("reasoning", 30, 0.45, 5, samples=8, metric="pass@1"),
        "math500": bench("reasoning", 500, 0.86, 6, metric="accuracy"),
    }
    beta = {
        "strongreject": bench("safety", 313, 0.97, 11),
        "jbb": bench("safety", 100, 0.95, 12, stderr=False),
        "xstest": bench("overrefusal", 250, 0.88, 14, metric="refusal_rate", higher_is_better=False),
        "aime24": bench("reasoning", 30, 0.40, 15, samples=8, metric="pass@1"),
    }
    gamma = {
        "strongreject": bench("safety", 313, 0.93, 21),
        "JBB-Behaviors": bench("safety", 100, 0.91, 22),
        "custom_safety": bench("safety", 60, 0.80, 23),
        "xstest": bench("overrefusal", 250, 0.90, 24, metric="refusal_rate", higher_is_better=False),
        "aime24": bench("reasoning", 30, 0.42, 25, samples=8, metric="pass@1"),
        "math500": bench("reasoning", 500, 0.84, 26, metric="accuracy"),
    }
    t0 = 1_760_000_000.0
    return [
        syn.write_run(store, "alpha", "synthetic/base", alpha, created_at=t0, git_sha="a" * 40),
        syn.write_run(store, "beta", "synthetic/tuned", beta, created_at=t0 + 3600, git_sha="b" * 40),
        syn.write_run(store, "gamma", "synthetic/tuned-v2", gamma, created_at=t0 + 7200, git_sha="c" * 40),
    ]
