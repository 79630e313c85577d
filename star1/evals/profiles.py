"""Generation profiles: the paper's settings (default) and an R1-style sampling profile.

paper (recipe §8): greedy, repetition penalty 1.2, one sample; safety benchmarks 8000 tokens; reasoning
benchmarks their own limit (AIME/MATH/HumanEval 16384, GPQA 32768, MMLU-Pro 4096), top-p 0.95, seed 46.
r1 (DeepSeek-R1 card): temperature 0.6, top-p 0.95, `samples` per item (pass@1 = mean over samples, with
its standard error), no repetition penalty; sample i is seeded with seed + i so reruns are reproducible.
"""

from __future__ import annotations

from star1.config import EvalConfig
from star1.evals.engines import Sampling
from star1.evals.registry import BenchmarkSpec

SAFETY_MAX_TOKENS = 8000
REASONING_MAX_TOKENS = 16384


def samples_per_item(ev: EvalConfig) -> int:
    return ev.samples if ev.profile == "r1" else 1


def sampling_for(spec: BenchmarkSpec, ev: EvalConfig, sample_idx: int = 0) -> Sampling:
    limit = spec.max_tokens or (SAFETY_MAX_TOKENS if spec.profile == "safety" else REASONING_MAX_TOKENS)
    if ev.max_tokens:
        limit = min(limit, ev.max_tokens)
    if ev.profile == "r1":
        return Sampling(temperature=0.6, top_p=0.95, max_tokens=limit, seed=ev.seed + sample_idx)
    top_p = 1.0 if spec.profile == "safety" else 0.95
    # greedy decoding draws nothing at random: no per-request seed (a seeded request takes vLLM's slower
    # per-request sampler path); the seed is still recorded in the manifest
    return Sampling(temperature=0.0, top_p=top_p, max_tokens=limit, repetition_penalty=1.2)
