"""The local model (SmolLM2-135M-Instruct, saved in bf16) generating on this CPU in bfloat16 and in float32,
and the dtype star1 chooses here (`star1/llm/cpu_dtype.py`).

Each run is a fresh process (`vllm.LLM`, enforce_eager, max_model_len 1024, star1's engine environment) that
loads the one converted copy with `dtype=` bfloat16 or float32 (vLLM casts on load), warms up on one short
request, then generates the same 8 chat prompts × 96 tokens, greedy, ignore_eos (every run makes exactly
768 tokens). Timed from the first request to the last result, engine start excluded. Runs alternate
(bf16, fp32, bf16, fp32, …) so a change in machine load hits both; the ratio float32/bf16 is over the runs of
this invocation. Also recorded: the CPU's model and bf16 flags, whether vLLM fell back from oneDNN
("Failed to create oneDNN linear"), and the load average before, after each run and at the end.

    python bench/local_dtype.py [--repeats 2] [--prompts 8] [--tokens 96] [--json docs/bench/local_dtype.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star1.llm.cpu_dtype import X86_BF16, cpu_features, resolve_dtype, vllm_on_cpu  # noqa: E402

DTYPES = ("bfloat16", "float32")  # the first is the baseline of the ratio
FALLBACK = "Failed to create oneDNN linear"
PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a short poem about the sea.",
    "How do I sort a list in Python?",
    "Give three tips for a job interview.",
    "What causes the seasons on Earth?",
    "Summarise the plot of Romeo and Juliet.",
    "Why is the sky blue?",
]


def run_child(model: str, dtype: str, prompts: int, tokens: int) -> dict:
    """In a fresh process: start the engine in `dtype`, warm up, time the generation."""
    for k, v in vllm_env().items():
        os.environ.setdefault(k, v)
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    llm = LLM(model=model, dtype=dtype, max_model_len=1024, enforce_eager=True, seed=0)
    start_s = time.perf_counter() - t0
    tok = llm.get_tokenizer()
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in (PROMPTS * (prompts // len(PROMPTS) + 1))[:prompts]
    ]
    llm.generate(texts[:1], SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)  # warm-up
    params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)
    t0 = time.perf_counter()
    outs = llm.generate(texts, params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    return {
        "dtype": dtype,
        "engine_dtype": str(getattr(llm.llm_engine, "model_config", llm).dtype).removeprefix("torch."),
        "start_s": round(start_s, 2),
        "generate_s": round(gen_s, 3),
        "tokens": generated,
        "tokens_per_s": round(generated / gen_s, 2),
        "sample": outs[0].outputs[0].text[:80],
    }


def vllm_env() -> dict[str, str]:
    from star1.evals.engines.vllm_common import vllm_env as env

    return {**env(), "HF_HUB_OFFLINE": "1"}


def one_run(model: str, dtype: str, args: argparse.Namespace, work: Path, i: int) -> dict:
    out, log = work / f"run{i}.json", work / f"run{i}-{dtype}.log"
    cmd = [sys.executable, __file__, "--model", model, "--prompts", str(args.prompts)]
    cmd += ["--tokens", str(args.tokens), "--child", dtype, "--child-json", str(out)]
    with open(log, "wb") as f:
        p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=f, stderr=f)
    text = log.read_text(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"run {i} ({dtype}) failed with exit {p.returncode}:\n" + text[-3000:])
    load = round(os.getloadavg()[0], 2)  # 1-minute load average as the run ends (this run included)
    return {"run": i, **json.loads(out.read_text()), "onednn_fallback": FALLBACK in text, "load_1m_end": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="runs per dtype, alternating")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=96, help="new tokens per prompt")
    ap.add_argument("--model", help="HF model folder (default: the converted SmolLM2)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--child", choices=DTYPES, help=argparse.SUPPRESS)
    ap.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.child_json.write_text(json.dumps(run_child(args.model, args.child, args.prompts, args.tokens)))
        return
    from star1.llm.local_server import convert_gguf

    model = args.model or str(convert_gguf())
    cpu = cpu_features()
    choice = resolve_dtype("auto", vllm_on_cpu)
    flags = {f: f in cpu.flags for f in ("avx2", "avx512f", *X86_BF16)} if cpu.arch == "x86" else {}
    flags |= {"bf16": "bf16" in cpu.flags} if cpu.arch == "arm" else {}
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="star1-dtype-bench-") as tmp:
        for i in range(args.repeats * len(DTYPES)):
            dtype = DTYPES[i % len(DTYPES)]
            r = one_run(model, dtype, args, Path(tmp), i)
            print(
                f"run {i}: {dtype:9s} {r['tokens_per_s']:7.1f} tok/s ({r['tokens']} tokens in "
                f"{r['generate_s']:.2f} s; engine start {r['start_s']:.0f} s; load {r['load_1m_end']:.1f})",
                flush=True,
            )
            runs.append(r)
    load_after = os.getloadavg()
    per = {d: [r["tokens_per_s"] for r in runs if r["dtype"] == d] for d in DTYPES}
    mean = {d: round(statistics.fmean(v), 2) for d, v in per.items()}
    pairs = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(runs[::2], runs[1::2], strict=True)]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": {"model": cpu.model, "arch": cpu.arch, "machine": platform.machine(), "flags": flags},
        "cores": os.cpu_count(),
        "star1_choice": {"dtype": choice.dtype, "reason": choice.reason},
        "model": model,
        "prompts": args.prompts,
        "new_tokens": args.tokens,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "runs": runs,
        "tokens_per_s": mean,
        "ratio_float32_over_bfloat16": round(mean["float32"] / mean["bfloat16"], 3),
        "ratio_per_pair": [round(x, 3) for x in pairs],
    }
    print()
    flag_text = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
    print(f"cpu: {cpu.model} ({cpu.arch}, {os.cpu_count()} cores); flags: {flag_text}")
    print(f"star1 chooses: {choice.dtype} ({choice.reason})")
    print(f"load average before: {load_before[0]:.2f}, after: {load_after[0]:.2f}")
    print(f"{'dtype':10s} {'runs (tok/s)':>24s} {'mean':>8s} {'oneDNN fallback':>16s}")
    for d in DTYPES:
        fb = "yes" if any(r["onednn_fallback"] for r in runs if r["dtype"] == d) else "no"
        print(f"{d:10s} {', '.join(f'{x:.1f}' for x in per[d]):>24s} {mean[d]:8.1f} {fb:>16s}")
    pair_text = ", ".join(f"{x:.2f}" for x in pairs)
    print(f"float32 / bfloat16: {result['ratio_float32_over_bfloat16']:.2f} (per pair: {pair_text})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
